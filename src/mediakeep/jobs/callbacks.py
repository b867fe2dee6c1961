"""Completion callbacks: the final result POSTed to the URL given with the job, signed so
the receiver can tell it came from us and was not replayed.

``Mediakeep-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``
(the body is the raw request body, byte for byte). See docs/JOBS.md."""

from __future__ import annotations

import hashlib
import hmac
import time

import aiohttp
from yarl import URL

from ..errors import ExpiredSignature, InvalidSignature, MediaKeepError
from ..pipeline.netguard import GuardedResolver, NetworkPolicy

SIGNATURE_HEADER = "Mediakeep-Signature"
EVENT_HEADER = "Mediakeep-Event"
JOB_HEADER = "Mediakeep-Job-Id"
ATTEMPT_HEADER = "Mediakeep-Delivery-Attempt"
DEFAULT_TOLERANCE = 300


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``Mediakeep-Signature`` header value for ``body``."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_mac(secret, t, body)}"


def verify(
    secret: str,
    body: bytes,
    header: str | None,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """What a receiver does (shown here for Python receivers): raises InvalidSignature
    unless ``header`` signs exactly ``body`` with ``secret`` within ``tolerance`` seconds."""
    if not header:
        raise InvalidSignature("the callback is not signed")
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        fields.setdefault(name, []).append(value)
    stamp = (fields.get("t") or [""])[0]
    if not stamp.isdigit():
        raise InvalidSignature("the signature has no timestamp")
    expected = _mac(secret, int(stamp), body)
    # Several v1 values may be sent while a secret is being rotated; one must match.
    if not any(hmac.compare_digest(expected, v) for v in fields.get("v1", [])):
        raise InvalidSignature("the callback signature does not match")
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > tolerance:
        raise ExpiredSignature("the callback timestamp is too old (or in the future)")


class CallbackSender:
    """POSTs callbacks through the same address policy as downloads: a callback URL is a
    user-given URL our server requests, so it must not reach what downloads may not."""

    def __init__(self, policy: NetworkPolicy, secret: str, timeout: float) -> None:
        self.policy = policy
        self.secret = secret
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    resolver=GuardedResolver(self.policy), use_dns_cache=False
                ),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                trust_env=False,
                headers={"User-Agent": "mediakeep-callbacks/0.1"},
            )
        return self._session

    async def send(self, url: str, body: bytes, *, event: str, job_id: str, attempt: int) -> None:
        """Deliver once; raises with the reason unless the receiver answered 2xx."""
        target = URL(url)
        self.policy.check_url(target)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.secret, body),
            EVENT_HEADER: event,
            JOB_HEADER: job_id,
            ATTEMPT_HEADER: str(attempt),
        }
        try:
            async with self._client().post(
                target, data=body, headers=headers, allow_redirects=False
            ) as resp:
                await resp.content.read(64 * 1024)
                if not 200 <= resp.status < 300:
                    raise CallbackFailed(f"the receiver answered HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CallbackFailed(f"could not reach the receiver: {type(exc).__name__}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class CallbackFailed(MediaKeepError):
    code = "callback_failed"
    status = 502
    retryable = True
