"""HMAC-signed URLs for the local store: the service verifies what this module signs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import quote

from .errors import ExpiredSignature, InvalidSignature


class UrlSigner:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"mediakeep-url-v1:" + secret.encode()).digest()

    def _mac(self, method: str, path: str, expires: int) -> str:
        msg = f"{method}\n{path}\n{expires}".encode()
        digest = hmac.new(self._key, msg, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(self, method: str, path: str, expires: int) -> str:
        """Query string (``exp=..&sig=..``) authorising ``method path`` until ``expires``."""
        return f"exp={expires}&sig={self._mac(method, path, expires)}"

    def verify(
        self, method: str, path: str, expires: str | None, sig: str | None, now: float | None = None
    ) -> None:
        # ASCII only: str.isdigit() admits digits int() refuses ("²"), and compare_digest
        # raises TypeError on non-ASCII text; both come straight from the query string.
        if not expires or not sig or not (expires + sig).isascii() or not expires.isdigit():
            raise InvalidSignature("the URL is not signed")
        expected = self._mac(method, path, int(expires))
        if not hmac.compare_digest(expected, sig):
            raise InvalidSignature("the URL's signature does not match")
        if int(expires) < (time.time() if now is None else now):
            raise ExpiredSignature("the signed URL has expired")


def quote_key(key: str) -> str:
    return quote(key, safe="/")
