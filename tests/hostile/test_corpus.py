"""The hostile-input corpus: every case gets a clear error with a stable code, nothing is
stored for the attacker's owner, and the service stays healthy."""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
import jwt
import pytest
from PIL import Image

from tests.core.test_ssrf import BLOCKED
from tests.hostile.conftest import MAX_FILE, SECRET, Target
from tests.media.test_pipeline_media import png_header_only

# --- SSRF --------------------------------------------------------------------------

# The addresses the library-level SSRF tests use, plus the userinfo disguise.
PRIVATE = [*BLOCKED, "http://fal.media@127.0.0.1/x.png"]
SCHEMES = [
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/_x",
    "ftp://example.com/x.png",
    "data:image/png;base64,iVBORw0KGgo=",
    "javascript:alert(1)",
]


def ingest(t: Target, owner: str, urls: list[str], **extra: Any) -> httpx.Response:
    with t.client(owner) as c:
        return c.post("/v1/ingest", json={"urls": urls, **extra})


def only_item(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 207, resp.text
    (item,) = resp.json()["results"]
    assert item["status"] == "failed" and item["id"] is None
    error: dict[str, Any] = item["error"]
    return error


@pytest.mark.parametrize("url", PRIVATE + SCHEMES)
def test_ssrf_targets_are_refused(hostile: Target, victim: str, url: str) -> None:
    error = only_item(ingest(hostile, victim, [url]))
    assert error["code"] in ("blocked_destination", "invalid_url"), error
    assert 400 <= error["status"] < 500
    hostile.assert_untouched(victim)


@pytest.mark.parametrize(
    "target", ["http://127.0.0.1:9/x.png", "http://[::1]:9/x", "http://169.254.169.254/"]
)
@pytest.mark.parametrize("hops", [1, 3])
def test_redirects_to_private_addresses_are_refused(
    hostile: Target, victim: str, target: str, hops: int
) -> None:
    path = f"/redirect?to={target}" if hops == 1 else f"/redirect-chain/{hops}?to={target}"
    error = only_item(ingest(hostile, victim, [hostile.provider.url(path)]))
    assert error["code"] == "blocked_destination" and error["status"] == 400
    hostile.assert_untouched(victim)


# --- content -------------------------------------------------------------------------

CONTENT = [
    ("/html-as-png", "unsupported_media_type"),
    ("/img-wrong-ext/3.jpg?as=html", None),  # control: a lie about the extension is fine
    ("/bytes/300000?kind=png&cl=1", "corrupt_media"),  # a PNG that never ends
    ("/gzip-bomb", "unsupported_media_type"),
    (f"/bytes/{MAX_FILE * 3}?kind=png&cl=1", "file_too_large"),
    (f"/bytes/{MAX_FILE * 3}?kind=png&cl=0", "file_too_large"),
    ("/bytes/20?kind=zero&cl=1", "unsupported_media_type"),
]


@pytest.mark.parametrize(("path", "code"), CONTENT)
def test_hostile_content_from_a_provider(
    hostile: Target, victim: str, path: str, code: str | None
) -> None:
    resp = ingest(hostile, victim, [hostile.provider.url(path)])
    if code is None:
        assert resp.status_code == 200 and resp.json()["results"][0]["status"] == "stored"
        return
    error = only_item(resp)
    assert error["code"] == code and 400 <= error["status"] < 500, error
    hostile.assert_untouched(victim)


def test_endless_slow_body_hits_the_deadline(hostile: Target, victim: str) -> None:
    url = hostile.provider.url("/slow?bytes=1000000&delay=0.2&chunk=100")
    error = only_item(ingest(hostile, victim, [url]))
    # The provider, not the caller, is at fault: a gateway timeout for this item.
    assert error["code"] == "download_timeout" and error["status"] == 504
    hostile.assert_untouched(victim)


def upload(t: Target, owner: str, data: bytes, name: str = "f.bin") -> httpx.Response:
    with t.client(owner) as c:
        return c.post("/v1/uploads", files={"file": (name, data, "image/png")})


def _png(size: tuple[int, int] = (40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (9, 9, 9)).save(buf, "PNG")
    return buf.getvalue()


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "GIF")
    return buf.getvalue()


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (200, 200), (50, 60, 70)).save(buf, "JPEG")
    return buf.getvalue()


SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>'
UPLOADS = [
    ("svg-with-script", SVG, 415),
    ("png-html-polyglot", _png() + b"<html><script>alert(1)</script></html>", 422),
    ("gif-script-polyglot", _gif()[:-1] + b"*/=alert(1)//", 415),
    ("decompression-bomb", png_header_only(100_000, 100_000), 422),
    ("truncated-jpeg", _jpeg()[:400], 422),
    ("empty", b"", 415),
    ("html", b"<!doctype html><html><body>hi</body></html>", 415),
    ("oversize", b"\x89PNG\r\n\x1a\n" + b"\x00" * (MAX_FILE + 10), 413),
    ("exe", b"MZ\x90\x00" + b"\x00" * 500, 415),
]


@pytest.mark.parametrize(("name", "data", "status"), UPLOADS, ids=[u[0] for u in UPLOADS])
def test_hostile_uploads(hostile: Target, victim: str, name: str, data: bytes, status: int) -> None:
    resp = upload(hostile, victim, data, name=f"{name}.png")
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["code"]
    hostile.assert_untouched(victim)


# --- names and ids -------------------------------------------------------------------

NAMES = ["../x", "/etc", "a/../../b", "a\x00b", "\uff41dmin", "x" * 200, "..", " a"]


@pytest.mark.parametrize("field", ["collection", "slot"])
@pytest.mark.parametrize("name", NAMES)
def test_hostile_names_are_refused(hostile: Target, victim: str, field: str, name: str) -> None:
    resp = ingest(hostile, victim, [hostile.provider.url("/img/1.png")], **{field: name})
    assert resp.status_code in (400, 422), resp.text
    assert resp.json()["code"] in ("validation_error", "invalid_name")
    hostile.assert_untouched(victim)


def test_sql_looking_strings_are_stored_safely_and_returned_unchanged(
    hostile: Target, victim: str
) -> None:
    evil = {"prompt": "'; DROP TABLE assets; --", "x": 'Robert"); DELETE FROM objects;--'}
    resp = ingest(hostile, victim, [hostile.provider.url("/img/77.png")], metadata=evil)
    assert resp.status_code == 200, resp.text
    asset_id = resp.json()["results"][0]["id"]
    with hostile.client(victim) as c:
        assert c.get(f"/v1/assets/{asset_id}").json()["metadata"] == evil
        assert len(c.get("/v1/assets").json()["items"]) == 1


# --- auth ----------------------------------------------------------------------------


def _tokens(owner: str) -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": owner, "exp": now + 600, "aud": "authenticated"}
    return {
        "expired": jwt.encode({**claims, "exp": now - 10}, SECRET, algorithm="HS256"),
        "wrong-secret": jwt.encode(claims, "not-the-secret-0123456789abcdefghij", "HS256"),
        "alg-none": jwt.encode(claims, None, algorithm="none"),
        "malformed": "not.a.jwt",
        "hs512": jwt.encode(claims, SECRET, algorithm="HS512"),
    }


@pytest.mark.parametrize(
    "kind", ["missing", "expired", "wrong-secret", "alg-none", "malformed", "hs512"]
)
def test_bad_credentials_get_401(hostile: Target, victim: str, kind: str) -> None:
    headers = {} if kind == "missing" else {"Authorization": f"Bearer {_tokens(victim)[kind]}"}
    with hostile.client(**headers) as c:
        resp = c.post("/v1/ingest", json={"urls": [hostile.provider.url("/img/5.png")]})
    assert resp.status_code == 401 and resp.json()["code"], resp.text
    hostile.assert_untouched(victim)


def test_other_tenants_ids_are_not_found_alone_and_in_batches(hostile: Target, victim: str) -> None:
    resp = ingest(hostile, hostile.owner, [hostile.provider.url("/img/8.png")])
    theirs = resp.json()["results"][0]["id"]
    mine = ingest(hostile, victim, [hostile.provider.url("/img/9.png")]).json()["results"][0]["id"]
    with hostile.client(victim) as c:
        for path in (
            f"/v1/assets/{theirs}",
            f"/v1/assets/{theirs}/url",
            f"/v1/assets/{theirs}/content",
        ):
            r = c.get(path)
            assert r.status_code == 404 and r.json()["code"] == "not_found"
        assert c.delete(f"/v1/assets/{theirs}").status_code == 404
        batch = c.post("/v1/signed-urls", json={"ids": [mine, theirs]})
        items = {i["id"]: i["status"] for i in batch.json()["items"]}
        assert items == {mine: 200, theirs: 404}


def test_tampered_and_expired_signed_urls_are_refused(hostile: Target, victim: str) -> None:
    asset = ingest(hostile, victim, [hostile.provider.url("/img/10.png")]).json()["results"][0]
    with hostile.client(victim) as c:
        # A 1 s URL alone would make the first check race the clock on a busy machine.
        url = c.get(f"/v1/assets/{asset['id']}/url", params={"expires_in": 600}).json()["url"]
        short = c.get(f"/v1/assets/{asset['id']}/url", params={"expires_in": 1}).json()["url"]
    with httpx.Client(trust_env=False) as plain:
        assert plain.get(url).status_code == 200
        tampered = url.replace("sig=", "sig=A")
        assert plain.get(tampered).status_code == 403
        other_key = url.replace(asset["id"], "00000000-0000-4000-8000-000000000000")
        assert plain.get(other_key).status_code in (403, 404)
        time.sleep(2.1)
        expired = plain.get(short)
        assert expired.status_code == 403 and expired.json()["code"] == "expired_signature"


def test_presigned_upload_cannot_be_replayed(hostile: Target, victim: str) -> None:
    data = _png((30, 30))
    with hostile.client(victim) as c:
        p = c.post(
            "/v1/uploads/presign", json={"content_type": "image/png", "size": len(data)}
        ).json()
        with httpx.Client(trust_env=False) as plain:
            assert plain.put(p["upload_url"], content=data, headers=p["headers"]).status_code < 300
        first = c.post(f"/v1/uploads/{p['asset_id']}/complete")
        assert first.status_code in (200, 201), first.text
        again = c.post(f"/v1/uploads/{p['asset_id']}/complete")
        assert again.status_code == 409 and again.json()["code"]
        with httpx.Client(trust_env=False) as plain:
            replay = plain.put(p["upload_url"], content=data, headers=p["headers"])
        assert replay.status_code >= 400


# --- requests ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"{not json", {"Content-Type": "application/json"}, 422),
        (b'{"urls": "http://x"}', {"Content-Type": "application/json"}, 422),
        (b'{"urls": [1, 2]}', {"Content-Type": "application/json"}, 422),
        (b'{"urls": []}', {"Content-Type": "application/json"}, 422),
        (b'{"urls": ["http://x"], "public": "maybe"}', {"Content-Type": "application/json"}, 422),
        (b"[" * 100_000, {"Content-Type": "application/json"}, 400),
        (b'{"a": "' + b"x" * 3_000_000 + b'"}', {"Content-Type": "application/json"}, 413),
    ],
    ids=["malformed", "wrong-type", "wrong-item-type", "empty", "bad-bool", "deep-nesting", "huge"],
)
def test_bad_request_bodies(
    hostile: Target, victim: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    with hostile.client(victim) as c:
        resp = c.post("/v1/ingest", content=body, headers=headers)
    assert resp.status_code == status, resp.text[:300]
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["code"] in ("validation_error", "bad_request", "request_too_large")
    hostile.assert_untouched(victim)


def test_batches_above_the_limit_are_refused(hostile: Target, victim: str) -> None:
    urls = [f"http://example.com/{i}.png" for i in range(10_000)]
    resp = ingest(hostile, victim, urls)
    assert resp.status_code in (413, 422) and resp.json()["code"]
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(1001)]
    with hostile.client(victim) as c:
        too_many = c.post("/v1/signed-urls", json={"ids": ids})
    assert too_many.status_code == 422 and too_many.json()["code"] == "validation_error"
    hostile.assert_untouched(victim)
