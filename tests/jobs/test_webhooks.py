"""fal webhooks: verified exactly as fal documents it (against a local JWKS holding the
tests' own key), tied to an owner by a ticket mediakeep signed; anything untrusted writes
nothing, and a replayed request id stores nothing twice."""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from mediakeep import MediaKeep
from mediakeep.db.models import Asset, Generation, Job
from mediakeep.integrations.tickets import AUDIENCE
from tests.jobs.conftest import Keeps
from tests.jobs.support import JwksServer, fal_headers, flux_result, webhook_body
from tests.support.provider import Provider

TICKET_SECRET = "webhook-ticket-secret-for-the-tests-0123456789"


async def counts(keep: MediaKeep) -> tuple[int, int, int]:
    """(generations, jobs, assets) in this test's database."""
    async with keep.repo.sessions() as s:
        gens = await s.scalar(select(func.count()).select_from(Generation))
        jobs = await s.scalar(select(func.count()).select_from(Job))
        assets = await s.scalar(select(func.count()).select_from(Asset))
    return int(gens or 0), int(jobs or 0), int(assets or 0)


def hook_path(webhook_url: str) -> str:
    parts = urlsplit(webhook_url)
    return f"{parts.path}?{parts.query}"


def wait_generation(c: httpx.Client, gen_id: str) -> dict[str, Any]:
    for _ in range(1200):
        gen: dict[str, Any] = c.get(f"/v1/generations/{gen_id}").json()
        if gen["status"] in ("completed", "partial", "failed"):
            return gen
        time.sleep(0.05)
    raise AssertionError("the generation never finished")


async def test_fal_webhooks(
    keeps: Keeps,
    services: Any,
    provider: Provider,
    jwks: JwksServer,
    fal_key: Ed25519PrivateKey,
    owner: str,
) -> None:
    svc = services(fal_jwks_url=jwks.url, webhook_secret=TICKET_SECRET)
    keep = await keeps.open(fal_jwks_url=jwks.url, webhook_secret=TICKET_SECRET)
    alice = svc.client(owner)
    bob_owner = owner + "b"
    anon = svc.client()
    made = alice.post("/v1/webhooks/fal/tickets", json={"collection": "renders"})
    assert made.status_code == 201, made.text
    ticket = made.json()
    assert ticket["owner"] == owner and ticket["collection"] == "renders"
    hook = hook_path(ticket["webhook_url"])
    fetches = jwks.fetches

    url = provider.url(f"/img/{owner}-hook.png")
    request_id = str(uuid.uuid4())
    body = webhook_body(request_id, flux_result([url]))

    def post(
        data: bytes = body, headers: dict[str, str] | None = None, path: str = hook
    ) -> httpx.Response:
        h = fal_headers(fal_key, data, request_id=request_id) if headers is None else headers
        return anon.post(path, content=data, headers=h)

    def refused(resp: httpx.Response, status: int, code: str) -> None:
        assert resp.status_code == status, resp.text
        assert resp.json()["code"] == code

    # -- nothing untrusted writes anything --------------------------------------------
    signed = fal_headers(fal_key, body, request_id=request_id)
    for missing in list(signed)[:4]:
        refused(
            post(headers={k: v for k, v in signed.items() if k != missing}), 401, "webhook_unsigned"
        )
    refused(post(headers={"Content-Type": "application/json"}), 401, "webhook_unsigned")
    stranger = Ed25519PrivateKey.generate()
    refused(
        post(headers=fal_headers(stranger, body, request_id=request_id)),
        401,
        "webhook_signature_invalid",
    )
    altered = body.replace(b'"OK"', b'"OK" ')
    refused(post(data=altered, headers=signed), 401, "webhook_signature_invalid")
    other_id = dict(signed, **{"X-Fal-Webhook-Request-Id": str(uuid.uuid4())})
    refused(post(headers=other_id), 401, "webhook_signature_invalid")
    for skew in (-301, 301):
        stale = fal_headers(fal_key, body, request_id=request_id, timestamp=int(time.time()) + skew)
        refused(post(headers=stale), 401, "webhook_stale")
    refused(post(path="/v1/webhooks/fal"), 401, "ticket_invalid")
    forged = jwt.encode(
        {"sub": owner, "aud": AUDIENCE, "iss": "mediakeep", "iat": 1, "exp": 2**40},
        "not-the-secret-but-long-enough-for-hs256-0123456789",
        algorithm="HS256",
    )
    refused(post(path=f"/v1/webhooks/fal?ticket={forged}"), 401, "ticket_invalid")
    tampered = ticket["ticket"][:-4] + ("AAAA" if not ticket["ticket"].endswith("AAAA") else "BBBB")
    refused(post(path=f"/v1/webhooks/fal?ticket={tampered}"), 401, "ticket_invalid")
    old = keep.fal_ticket(owner=owner, expires_in=1)
    expired = jwt.encode(
        {
            **jwt.decode(old.ticket, options={"verify_signature": False}),
            "exp": int(time.time()) - 5,
        },
        TICKET_SECRET,
        algorithm="HS256",
    )
    refused(post(path=f"/v1/webhooks/fal?ticket={expired}"), 401, "ticket_expired")
    assert await counts(keep) == (0, 0, 0)
    assert provider.hits(url) == 0

    # -- a valid webhook is recorded and its media stored by a job ---------------------
    ok = post()
    assert ok.status_code == 200, ok.text
    receipt = ok.json()
    assert receipt["replayed"] is False and receipt["job_id"]
    gen = wait_generation(alice, receipt["generation_id"])
    assert gen["status"] == "completed" and gen["request_id"] == request_id
    assert gen["collection"] == "renders" and gen["metadata"]["fal_user_id"] == "fal-user-1"
    assert gen["metadata"]["seed"] == 196619188014358660
    assert len(gen["media"]) == 1 and gen["media"][0]["status"] == "stored"
    assert provider.hits(url) == 1
    before = await counts(keep)
    assert before == (1, 1, 1)

    # -- replays of the request id store nothing twice ---------------------------------
    again = post()
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert again.json()["generation_id"] == receipt["generation_id"]
    assert await counts(keep) == before and provider.hits(url) == 1

    # -- a ticket for another owner cannot touch this request --------------------------
    bob_ticket = keep.fal_ticket(owner=bob_owner)
    refused(post(path=hook_path(bob_ticket.webhook_url)), 403, "ticket_owner_mismatch")
    assert await counts(keep) == before

    # A request registered (pending) by one owner is not completed by another's webhook.
    pending_id = str(uuid.uuid4())
    registered = alice.post(
        "/v1/generations",
        json={"provider": "fal", "request_id": pending_id, "endpoint": "fal-ai/flux/dev"},
    )
    assert registered.status_code == 201 and registered.json()["status"] == "pending"
    pending_body = webhook_body(pending_id, flux_result([url]))
    theirs = anon.post(
        hook_path(bob_ticket.webhook_url),
        content=pending_body,
        headers=fal_headers(fal_key, pending_body, request_id=pending_id),
    )
    refused(theirs, 403, "ticket_owner_mismatch")
    assert alice.get(f"/v1/generations/{registered.json()['id']}").json()["media"] == []
    mine = anon.post(
        hook,
        content=pending_body,
        headers=fal_headers(fal_key, pending_body, request_id=pending_id),
    )
    assert mine.status_code == 200 and mine.json()["generation_id"] == registered.json()["id"]
    done = wait_generation(alice, registered.json()["id"])
    assert done["status"] == "completed" and done["endpoint"] == "fal-ai/flux/dev"

    # -- fal reporting a failure records a failed generation, stores nothing ----------
    failed_id = str(uuid.uuid4())
    failed_body = webhook_body(failed_id, {"detail": [{"msg": "field required"}]}, "ERROR")
    failed = anon.post(
        hook, content=failed_body, headers=fal_headers(fal_key, failed_body, request_id=failed_id)
    ).json()
    assert failed["status"] == "failed" and failed["job_id"] is None
    gen_failed = alice.get(f"/v1/generations/{failed['generation_id']}").json()
    assert gen_failed["error"]["code"] == "provider_error"

    # The keys were fetched once for all of this (cached about a day).
    assert jwks.fetches - fetches == 1


async def test_tickets_are_per_caller(keeps: Keeps, services: Any, owner: str) -> None:
    svc = services(webhook_secret=TICKET_SECRET)
    c = svc.client(owner)
    refused = c.post("/v1/webhooks/fal/tickets", json={"owner": owner + "x"})
    assert refused.status_code == 403 and refused.json()["code"] == "owner_not_allowed"
    bad = c.post("/v1/webhooks/fal/tickets", json={"expires_in": 10**9})
    assert bad.status_code == 422
    made = c.post("/v1/webhooks/fal/tickets", json={"expires_in": 60}).json()
    claims = jwt.decode(made["ticket"], TICKET_SECRET, algorithms=["HS256"], audience=AUDIENCE)
    assert claims["sub"] == owner and claims["exp"] - claims["iat"] == 60
