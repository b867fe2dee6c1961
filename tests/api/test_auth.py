"""Bearer tokens (HS256, Supabase-shaped), API keys, the service role, and the
``mediakeep token`` command, against the real server."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import jwt
import pytest

from tests.api.conftest import API_BACKENDS, JWT_SECRET, Api, ApiFactory, new_owner
from tests.core.helpers import png_bytes

LOCAL = API_BACKENDS[0]


@pytest.fixture
def api(api_for: ApiFactory) -> Api:
    return api_for(LOCAL)


def raw_token(claims: dict[str, Any], secret: str = JWT_SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=alg)


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims(owner: str, **kw: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": owner,
        "role": "authenticated",
        "aud": "authenticated",
        "iat": now,
        "exp": now + 600,
        **kw,
    }


def status_of(api: Api, headers: dict[str, str]) -> tuple[int, str]:
    r = api.client(headers=headers).get("/v1/assets")
    code = r.json().get("code", "") if r.status_code != 200 else ""
    return r.status_code, code


def test_bad_credentials_get_401(api: Api) -> None:
    owner = new_owner()
    now = int(time.time())
    cases = {
        "missing": ({}, "unauthorized"),
        "expired": (
            {"Authorization": "Bearer " + raw_token(claims(owner, iat=now - 7200, exp=now - 3600))},
            "token_expired",
        ),
        "malformed": ({"Authorization": "Bearer not.a.jwt"}, "invalid_token"),
        "garbage": ({"Authorization": "Bearer abc"}, "invalid_token"),
        "wrong secret": (
            {"Authorization": "Bearer " + raw_token(claims(owner), secret="x" * 48)},
            "invalid_token",
        ),
        "alg none": (
            {
                "Authorization": "Bearer "
                + b64({"alg": "none", "typ": "JWT"})
                + "."
                + b64(claims(owner))
                + "."
            },
            "invalid_token",
        ),
        "other alg": (
            {"Authorization": "Bearer " + raw_token(claims(owner), alg="HS512")},
            "invalid_token",
        ),
        "no exp": (
            {"Authorization": "Bearer " + raw_token({"sub": owner, "role": "authenticated"})},
            "invalid_token",
        ),
        "no sub": (
            {"Authorization": "Bearer " + raw_token({"role": "authenticated", "exp": now + 60})},
            "invalid_token",
        ),
        "wrong audience": (
            {"Authorization": "Bearer " + raw_token(claims(owner, aud="someone-else"))},
            "invalid_token",
        ),
        "basic auth": ({"Authorization": "Basic dXNlcjpwYXNz"}, "invalid_token"),
        "bad api key": ({"X-API-Key": "mk_nope"}, "invalid_api_key"),
    }
    for name, (headers, code) in cases.items():
        assert status_of(api, headers) == (401, code), name
    r = api.client().get("/v1/assets")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.headers["content-type"] == "application/problem+json"


def test_supabase_access_tokens_work(api: Api) -> None:
    # What Supabase Auth issues for a signed-in user, signed with the project's secret.
    user = str(uuid.uuid4())
    token = raw_token(
        claims(
            user,
            iss="https://abcdefghijklmnop.supabase.co/auth/v1",
            email="someone@example.com",
            phone="",
            app_metadata={"provider": "email", "providers": ["email"]},
            user_metadata={},
            aal="aal1",
            session_id=str(uuid.uuid4()),
            is_anonymous=False,
        )
    )
    c = api.client(headers={"Authorization": f"Bearer {token}"})
    r = c.post("/v1/uploads", files={"file": ("a.png", png_bytes(100))})
    assert r.status_code == 201, r.text
    assert c.get(f"/v1/assets/{r.json()['id']}").json()["owner"] == user


def test_service_role_acts_for_any_owner(api: Api) -> None:
    alice = new_owner()
    mine = api.client(alice).post("/v1/uploads", files={"file": ("a.png", png_bytes(101))})
    service_key = raw_token(
        {"iss": "supabase", "role": "service_role", "exp": int(time.time()) + 600}
    )
    svc = api.client(headers={"Authorization": f"Bearer {service_key}"})

    listed = svc.get("/v1/assets", params={"owner": alice}).json()["items"]
    assert [a["id"] for a in listed] == [mine.json()["id"]]
    assert svc.get(f"/v1/assets/{mine.json()['id']}", params={"owner": alice}).status_code == 200
    r = svc.get("/v1/assets")
    assert (r.status_code, r.json()["code"]) == (400, "owner_required")
    # Owner in the body works too.
    pre = svc.post(
        "/v1/uploads/presign", json={"content_type": "image/png", "size": 10, "owner": alice}
    )
    assert pre.status_code == 201
    # A service role acting for Bob does not see Alice's asset.
    other = svc.get(f"/v1/assets/{mine.json()['id']}", params={"owner": new_owner()})
    assert other.status_code == 404


def test_users_cannot_act_for_someone_else(api: Api) -> None:
    alice, bob = new_owner(), new_owner()
    c = api.client(alice)
    assert c.get("/v1/assets", params={"owner": alice}).status_code == 200
    r = c.get("/v1/assets", params={"owner": bob})
    assert (r.status_code, r.json()["code"]) == (403, "owner_not_allowed")
    r = c.post("/v1/ingest", json={"urls": ["http://x.invalid/a.png"], "owner": bob})
    assert (r.status_code, r.json()["code"]) == (403, "owner_not_allowed")


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MEDIAKEEP_")}
    return subprocess.run(
        [sys.executable, "-m", "mediakeep.cli", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_token_command_output_works_against_the_api(api: Api, tmp_path: Any) -> None:
    env = {"MEDIAKEEP_JWT_SECRET": JWT_SECRET, "MEDIAKEEP_DATA_DIR": str(tmp_path)}
    owner = new_owner()
    plain_out = run_cli(["token", "--owner", owner], env)
    assert plain_out.returncode == 0, plain_out.stderr
    token = plain_out.stdout.strip()
    c = api.client(headers={"Authorization": f"Bearer {token}"})
    assert c.post("/v1/uploads", files={"file": ("a.png", png_bytes(102))}).status_code == 201

    as_json = run_cli(["token", "--owner", owner, "--expires-in", "120", "--json"], env)
    data = json.loads(as_json.stdout)
    decoded = jwt.decode(data["token"], JWT_SECRET, algorithms=["HS256"], audience="authenticated")
    assert decoded["sub"] == owner and decoded["exp"] - decoded["iat"] == 120
    assert data["owner"] == owner and data["expires_at"]
    c = api.client(headers={"Authorization": f"Bearer {data['token']}"})
    assert len(c.get("/v1/assets").json()["items"]) == 1

    svc = json.loads(run_cli(["token", "--service-role", "--json"], env).stdout)
    c = api.client(headers={"Authorization": f"Bearer {svc['token']}"})
    assert len(c.get("/v1/assets", params={"owner": owner}).json()["items"]) == 1

    missing = run_cli(["token"], env)
    assert missing.returncode != 0


def test_api_keys_from_the_token_command(api_for: ApiFactory, tmp_path: Any) -> None:
    owner = new_owner()
    made = run_cli(["token", "--api-key", "--owner", owner, "--json"], {})
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert key["api_keys_entry"].startswith(f"{owner}:")
    assert key["api_key"] not in key["api_keys_entry"]  # only its hash is configured
    # Not embedded (PostgreSQL + S3) and no JWT secret: bearer tokens are refused, keys work.
    api = api_for(API_BACKENDS[1], jwt_secret=None, api_keys=(key["api_keys_entry"],))
    c = api.client(headers={"X-API-Key": key["api_key"]})
    r = c.post("/v1/uploads", files={"file": ("a.png", png_bytes(103))})
    assert r.status_code == 201, r.text
    assert c.get(f"/v1/assets/{r.json()['id']}").json()["owner"] == owner
    other = api.client(headers={"X-API-Key": key["api_key"] + "x"})
    assert other.get("/v1/assets").status_code == 401
    bearer = api.client(headers={"Authorization": f"Bearer {raw_token(claims(owner))}"})
    assert (bearer.get("/v1/assets").status_code, bearer.get("/v1/assets").json()["code"]) == (
        401,
        "invalid_token",
    )
