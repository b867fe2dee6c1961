"""Local servers and helpers for the jobs tests: fal's JWKS (with the tests' own key
pair), a callback receiver, a throttled media server, and fal result shapes as fal's
documentation records them (URLs pointing at local servers instead of fal.media)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from PIL import Image

from tests.support.provider import iter_payload
from tests.support.threaded import ThreadedApp

# -- fal's webhook keys ------------------------------------------------------------------


def jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),
    }


class JwksServer(ThreadedApp):
    """Serves a JWKS at /.well-known/jwks.json and counts the fetches."""

    def __init__(self, keys: list[Ed25519PrivateKey]) -> None:
        self.keys = keys
        self.fetches = 0
        super().__init__(self._app, "mk-test-jwks")

    @property
    def url(self) -> str:
        return f"{self.base_url}/.well-known/jwks.json"

    def _app(self) -> web.Application:
        async def jwks(_request: web.Request) -> web.Response:
            self.fetches += 1
            # An RSA key first: verifiers must skip key types they cannot use.
            doc = {"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}, *map(jwk, self.keys)]}
            return web.json_response(doc)

        app = web.Application()
        app.add_routes([web.get("/.well-known/jwks.json", jwks)])
        return app


def fal_headers(
    key: Ed25519PrivateKey,
    body: bytes,
    *,
    request_id: str,
    user_id: str = "fal-user-1",
    timestamp: int | None = None,
) -> dict[str, str]:
    """Headers as fal sends them: Ed25519 over request id, user id, timestamp and the
    hex SHA-256 of the body, joined by newlines; the signature in hex."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    message = "\n".join([request_id, user_id, ts, hashlib.sha256(body).hexdigest()]).encode()
    return {
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": user_id,
        "X-Fal-Webhook-Timestamp": ts,
        "X-Fal-Webhook-Signature": key.sign(message).hex(),
        "Content-Type": "application/json",
    }


# -- a completion callback receiver -------------------------------------------------------


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]


class CallbackReceiver(ThreadedApp):
    """Records every POST to /hook; answers 500 to the first ``fail_first`` of them."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.received: list[Received] = []
        self._lock = threading.Lock()
        super().__init__(self._app, "mk-test-callbacks")

    @property
    def url(self) -> str:
        return f"{self.base_url}/hook"

    def _app(self) -> web.Application:
        async def hook(request: web.Request) -> web.Response:
            body = await request.read()
            with self._lock:
                self.received.append(Received(body, dict(request.headers)))
                n = len(self.received)
            return web.Response(status=500 if n <= self.fail_first else 204)

        app = web.Application()
        app.add_routes([web.post("/hook", hook)])
        return app


# -- media served slowly, so a test can act in the middle of a download --------------------


class MediaServer(ThreadedApp):
    """``/big/{n}.mp4?chunk=&delay=``: n bytes of MP4-looking payload, ``chunk`` bytes per
    ``delay`` seconds (deterministic bytes: ``iter_payload(n, "mp4")``). Counts requests
    and bytes sent per path and query (``key``)."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.sent: dict[str, int] = {}
        super().__init__(self._app, "mk-test-media")

    def url(self, path: str) -> str:
        return self.base_url + path

    @staticmethod
    def key(url: str) -> str:
        """What ``hits`` and ``sent`` are keyed by for ``url``."""
        parts = urlsplit(url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def _app(self) -> web.Application:
        async def big(request: web.Request) -> web.StreamResponse:
            n = int(request.match_info["n"])
            chunk = int(request.query.get("chunk", 262144))
            delay = float(request.query.get("delay", 0))
            path = request.path_qs
            self.hits[path] = self.hits.get(path, 0) + 1
            resp = web.StreamResponse(headers={"Content-Type": "video/mp4"})
            resp.content_length = n
            await resp.prepare(request)
            try:
                for part in iter_payload(n, "mp4", 65536):
                    for i in range(0, len(part), chunk):
                        piece = part[i : i + chunk]
                        await resp.write(piece)
                        self.sent[path] = self.sent.get(path, 0) + len(piece)
                        if delay:
                            await asyncio.sleep(delay)
                await resp.write_eof()
            except (ConnectionError, RuntimeError):
                pass  # the client went away: what the kill tests are about
            return resp

        app = web.Application()
        app.add_routes([web.get("/big/{n}.mp4", big)])
        return app


# -- fal results, shaped as fal's docs record them ---------------------------------------


def png(seed: int, size: int = 40) -> bytes:
    img = Image.new("RGB", (size, size), (seed * 37 % 256, seed * 91 % 256, seed * 53 % 256))
    for i in range(size):
        img.putpixel((i, (i * 7) % size), (255, 255 - seed % 256, 0))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def flux_result(urls: list[str], seed: int = 196619188014358660) -> dict[str, Any]:
    """fal-ai/flux/dev: ``images[]`` File objects with dimensions, plus seed and timings."""
    return {
        "images": [
            {"url": u, "width": 40, "height": 40, "content_type": "image/png"} for u in urls
        ],
        "timings": {"inference": 1.37},
        "seed": seed,
        "has_nsfw_concepts": [False] * len(urls),
        "prompt": "a lighthouse at dusk",
    }


def video_result(url: str) -> dict[str, Any]:
    """Video endpoints: one ``video`` File object."""
    return {
        "video": {
            "url": url,
            "content_type": "video/mp4",
            "file_name": "output.mp4",
            "file_size": 123456,
        },
        "seed": 7,
    }


def audio_result(url: str) -> dict[str, Any]:
    """stable-audio: ``audio_file``."""
    return {
        "audio_file": {
            "url": url,
            "content_type": "audio/wav",
            "file_name": "audio.wav",
            "file_size": 4242,
        }
    }


def webhook_body(request_id: str, payload: dict[str, Any] | None, status: str = "OK") -> bytes:
    """A fal queue webhook body."""
    doc: dict[str, Any] = {
        "request_id": request_id,
        "gateway_request_id": request_id,
        "status": status,
        "payload": payload,
    }
    if status != "OK":
        doc["error"] = "Invalid status code: 422"
    return json.dumps(doc).encode()


def sse_events(lines: Iterator[str]) -> Iterator[tuple[int | None, str, dict[str, Any]]]:
    """Parse a text/event-stream into (id, event, data) triples."""
    event_id: int | None = None
    event = "message"
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield event_id, event, json.loads("\n".join(data))
            event_id, event, data = None, "message", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id":
                event_id = int(value)
            elif name == "event":
                event = value
            elif name == "data":
                data.append(value)
