"""An S3 endpoint under a path prefix, as Supabase serves its S3 API at
``{project}/storage/v1/s3``, in front of the SeaweedFS test server.

Each request must arrive under the prefix with a valid SigV4 signature computed over the
full path it was sent to (prefix included), by header or by query string; the proxy then
strips the prefix, signs the request again for SeaweedFS with the same credentials, and
forwards it. So a client that drops the prefix gets 404, and one that signs a different
path than it requests gets 403: both are what Supabase would answer.
"""

from __future__ import annotations

import hashlib
import hmac
from threading import Lock
from urllib.parse import parse_qsl, quote, urlsplit

import aiohttp
from aiohttp import web
from yarl import URL

from .threaded import ThreadedApp

ALGORITHM = "AWS4-HMAC-SHA256"
_HOP = {"host", "content-length", "transfer-encoding", "connection", "authorization"}


def _enc(value: str) -> str:
    return quote(value, safe="-_.~")


def canonical_query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted((_enc(k), _enc(v)) for k, v in pairs))


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signature(
    secret: str,
    *,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    signed: list[str],
    payload_hash: str,
    amz_date: str,
    scope: str,
) -> str:
    canonical = "\n".join(
        [
            method,
            path,
            canonical_query(query),
            "".join(f"{h}:{' '.join(headers[h].split())}\n" for h in signed),
            ";".join(signed),
            payload_hash,
        ]
    )
    to_sign = "\n".join(
        [ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    date, region, service, _ = scope.split("/")
    key = signing_key(secret, date, region, service)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


class S3PrefixProxy:
    def __init__(self, upstream: str, access_key: str, secret_key: str, prefix: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.access_key = access_key
        self.secret_key = secret_key
        self.prefix = "/" + prefix.strip("/")
        self.forwarded = 0
        self.refused: list[str] = []
        # Flip one byte of every PUT body on its way through: a faulty network path or
        # middlebox that the store's end-to-end checksum has to catch.
        self.corrupt_puts = False
        self._lock = Lock()
        self._server = ThreadedApp(self._app, "mk-test-s3-prefix-proxy")

    @property
    def endpoint(self) -> str:
        return self._server.base_url + self.prefix

    def start(self) -> S3PrefixProxy:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    def _refuse(self, status: int, why: str) -> web.Response:
        with self._lock:
            self.refused.append(why)
        return web.Response(status=status, text=why)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw_path, _, raw_query = request.raw_path.partition("?")
        if not (raw_path == self.prefix or raw_path.startswith(self.prefix + "/")):
            return self._refuse(404, f"not under {self.prefix}: {raw_path}")
        query = parse_qsl(raw_query, keep_blank_values=True)
        headers = {k.lower(): v for k, v in request.headers.items()}
        inner_path = raw_path[len(self.prefix) :] or "/"
        inner_headers = {**headers, "host": urlsplit(self.upstream).netloc}
        out = {k: v for k, v in headers.items() if k not in _HOP}
        out_query = raw_query
        params = dict(query)
        if "authorization" in headers:
            auth = headers["authorization"]
            if not auth.startswith(ALGORITHM + " "):
                return self._refuse(403, "not SigV4")
            fields = dict(p.strip().split("=", 1) for p in auth[len(ALGORITHM) :].split(","))
            access, _, scope = fields["Credential"].partition("/")
            signed = fields["SignedHeaders"].split(";")

            def sign(path: str, hdrs: dict[str, str]) -> str:
                return signature(
                    self.secret_key,
                    method=request.method,
                    path=path,
                    query=query,
                    headers=hdrs,
                    signed=signed,
                    payload_hash=headers.get("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
                    amz_date=headers["x-amz-date"],
                    scope=scope,
                )

            if access != self.access_key or not hmac.compare_digest(
                sign(raw_path, headers), fields["Signature"]
            ):
                return self._refuse(403, f"bad signature for {raw_path}")
            out["authorization"] = (
                f"{ALGORITHM} Credential={fields['Credential']}, "
                f"SignedHeaders={fields['SignedHeaders']}, "
                f"Signature={sign(inner_path, inner_headers)}"
            )
        elif "X-Amz-Signature" in params:
            rest = [(k, v) for k, v in query if k != "X-Amz-Signature"]
            access, _, scope = params["X-Amz-Credential"].partition("/")

            def presign(path: str, hdrs: dict[str, str]) -> str:
                return signature(
                    self.secret_key,
                    method=request.method,
                    path=path,
                    query=rest,
                    headers=hdrs,
                    signed=params["X-Amz-SignedHeaders"].split(";"),
                    payload_hash="UNSIGNED-PAYLOAD",
                    amz_date=params["X-Amz-Date"],
                    scope=scope,
                )

            if access != self.access_key or not hmac.compare_digest(
                presign(raw_path, headers), params["X-Amz-Signature"]
            ):
                return self._refuse(403, f"bad presigned signature for {raw_path}")
            again = [*rest, ("X-Amz-Signature", presign(inner_path, inner_headers))]
            out_query = "&".join(f"{_enc(k)}={_enc(v)}" for k, v in again)
        # Unsigned requests pass as they are: SeaweedFS decides, as for a public bucket.
        body = await request.read()
        if self.corrupt_puts and request.method == "PUT" and body:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        target = f"{self.upstream}{inner_path}" + (f"?{out_query}" if out_query else "")
        async with (
            aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=["Content-Type"]) as s,
            s.request(
                request.method, URL(target, encoded=True), headers=out, data=body or None
            ) as resp,
        ):
            payload = await resp.read()
            keep = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP}
            length = resp.headers.get("Content-Length")
        with self._lock:
            self.forwarded += 1
        if request.method == "HEAD":
            # A HEAD answer's Content-Length is the object's size, not this empty body.
            head = web.StreamResponse(status=resp.status, headers=keep)
            if length is not None:
                head.content_length = int(length)
            await head.prepare(request)
            return head
        return web.Response(status=resp.status, headers=keep, body=payload)
