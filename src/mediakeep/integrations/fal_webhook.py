"""Verifying fal.ai webhooks as fal documents it.

Headers: ``X-Fal-Webhook-Request-Id``, ``X-Fal-Webhook-User-Id``,
``X-Fal-Webhook-Timestamp`` (Unix seconds) and ``X-Fal-Webhook-Signature`` (hex). The
signed message is the request id, the user id, the timestamp and the hex SHA-256 of the
raw body, joined by newlines; the signature is Ed25519 by one of the keys in fal's JWKS.
The timestamp must be within the tolerance (300 s) of now."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp

from ..errors import JwksUnavailable, WebhookSignatureInvalid, WebhookStale, WebhookUnsigned

if TYPE_CHECKING:
    # Loaded when a webhook is verified: OpenSSL's bindings cost ~8 MB of RSS in every
    # process that imports mediakeep, and most never receive a webhook.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

REQUEST_ID = "x-fal-webhook-request-id"
USER_ID = "x-fal-webhook-user-id"
TIMESTAMP = "x-fal-webhook-timestamp"
SIGNATURE = "x-fal-webhook-signature"
# After a failed verification, keys older than this are fetched again (fal rotated them).
REFRESH_AFTER = 300.0


@dataclass(frozen=True)
class SignedHeaders:
    request_id: str
    user_id: str
    timestamp: str
    signature: bytes


def message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    return "\n".join([request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()]).encode()


def read_headers(
    headers: Mapping[str, str], tolerance: int, now: float | None = None
) -> SignedHeaders:
    """The signature headers, checked for presence, form and freshness (no keys needed)."""
    lower = {k.lower(): v for k, v in headers.items()}
    values = [lower.get(h, "").strip() for h in (REQUEST_ID, USER_ID, TIMESTAMP, SIGNATURE)]
    if not all(values):
        raise WebhookUnsigned("the webhook is not signed (X-Fal-Webhook-* headers missing)")
    request_id, user_id, stamp, signature = values
    if not stamp.isdigit() or len(stamp) > 12:
        raise WebhookUnsigned("X-Fal-Webhook-Timestamp is not a Unix time")
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > tolerance:
        raise WebhookStale("the webhook timestamp is too old (or in the future)")
    try:
        raw = bytes.fromhex(signature)
    except ValueError as exc:
        raise WebhookSignatureInvalid("X-Fal-Webhook-Signature is not hex") from exc
    if len(raw) != 64:
        raise WebhookSignatureInvalid("X-Fal-Webhook-Signature is not an Ed25519 signature")
    if len(request_id) > 255 or len(user_id) > 255:
        raise WebhookUnsigned("the webhook headers are too long")
    return SignedHeaders(request_id, user_id, stamp, raw)


def _b64url(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def parse_jwks(doc: object) -> list[Ed25519PublicKey]:
    """The Ed25519 keys of a JWKS document; other key types are ignored."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys: list[Ed25519PublicKey] = []
    entries = doc.get("keys") if isinstance(doc, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        if entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
            continue
        x = entry.get("x")
        if not isinstance(x, str):
            continue
        try:
            keys.append(Ed25519PublicKey.from_public_bytes(_b64url(x)))
        except (ValueError, binascii.Error):
            continue
    return keys


class FalWebhookVerifier:
    """Checks signatures against fal's published keys, cached for ``cache_ttl``."""

    def __init__(self, jwks_url: str, cache_ttl: float, tolerance: int) -> None:
        self.jwks_url = jwks_url
        self.cache_ttl = cache_ttl
        self.tolerance = tolerance
        self._keys: list[Ed25519PublicKey] = []
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def _fetch(self) -> list[Ed25519PublicKey]:
        try:
            async with (
                aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=10), trust_env=False
                ) as session,
                session.get(self.jwks_url, allow_redirects=False) as resp,
            ):
                if resp.status != 200:
                    raise JwksUnavailable(f"the JWKS answered HTTP {resp.status}")
                doc = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise JwksUnavailable(f"cannot fetch the webhook keys: {type(exc).__name__}") from exc
        keys = parse_jwks(doc)
        if not keys:
            raise JwksUnavailable("the JWKS holds no Ed25519 key")
        return keys

    async def keys(self, *, refresh: bool = False) -> list[Ed25519PublicKey]:
        async with self._lock:
            age = None if self._fetched_at is None else time.monotonic() - self._fetched_at
            stale = age is None or age > self.cache_ttl
            if stale or (refresh and age is not None and age > REFRESH_AFTER):
                self._keys = await self._fetch()
                self._fetched_at = time.monotonic()
            return list(self._keys)

    async def verify(self, signed: SignedHeaders, body: bytes) -> None:
        from cryptography.exceptions import InvalidSignature

        msg = message(signed.request_id, signed.user_id, signed.timestamp, body)
        for refresh in (False, True):
            for key in await self.keys(refresh=refresh):
                try:
                    key.verify(signed.signature, msg)
                except InvalidSignature:
                    continue
                return
        raise WebhookSignatureInvalid("the webhook signature does not match fal's keys")
