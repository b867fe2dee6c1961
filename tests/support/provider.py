"""A local "provider CDN": real HTTP servers that tests download media from.

`Provider` runs in a background thread with its own event loop, so async
tests, sync tests and CLI subprocesses can all reach it. Every byte it serves
is generated (no fixtures on disk) and deterministic.

Well-behaved server (aiohttp), `provider.url(path)`:

==========================================  ==========================================
``/img/{seed}.png|.jpg|.webp?w=&h=``        real image rendered from `seed` (default
                                            64x64), correct Content-Type; same seed and
                                            size give the same bytes (`render_image`)
``/img-wrong-ext/{seed}.jpg``               PNG bytes labelled image/jpeg
``/html-as-png``                            HTML page labelled image/png
``/flaky/{key}?fail=1&code=503``            first `fail` requests for `key` answer `code`
``&retry_after=S``                          (with Retry-After: S if given), then the PNG
                                            of seed `key`
``/status/{code}``                          that status with a small text body
``/redirect?to=URL``                        302 to URL
``/redirect-chain/{n}?to=URL``              exactly n 302 hops, the last one to URL
                                            (`to` defaults to /img/redirected.png)
``/bytes/{n}?kind=png|mp4|zero&cl=1``       n bytes: magic header for `kind` (PNG
                                            signature + IHDR, or an `ftyp` box, brand
                                            isom) then filler made on the fly
                                            (`iter_payload`); cl=0 streams chunked
``/slow?bytes=1000000&delay=1&chunk=100``   headers at once, then `chunk` bytes of PNG
``&cl=1``                                   payload every `delay` seconds
``/gzip-bomb?size=1073741824``              Content-Encoding: gzip, image/png, ~1 MB on
                                            the wire that inflates to `size` zero bytes
==========================================  ==========================================

Raw socket server that breaks HTTP on purpose, `provider.raw_url(path)`:

==========================================  ==========================================
``/lie-length``                             says Content-Length: 10, sends 10 MB, closes
``/reset?delay=0.2``                        says Content-Length: 1 MiB, sends 1000 bytes
                                            of PNG, waits `delay`, then TCP RST
``/short``                                  says Content-Length: 100000, sends 500 bytes
                                            of PNG, then a clean close (FIN)
``/hang``                                   reads the request and never answers
anything else                               404
==========================================  ==========================================

`hits(path)` counts requests per path (query string ignored) on both servers;
`reset_hits()` also resets the flaky counters. `stop()` then `start()` again
brings both servers back on the same ports, which is how tests fake an outage.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import random
import socket
import struct
import threading
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import Literal, Self, cast
from urllib.parse import urlsplit

from aiohttp import web
from PIL import Image, ImageDraw

from .netutil import LOOPBACK
from .threaded import LoopThread

ImageFormat = Literal["png", "jpg", "webp"]
PayloadKind = Literal["png", "mp4", "zero"]

CONTENT_TYPES: dict[str, str] = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
_PIL_FORMATS: dict[str, str] = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
PAYLOAD_TYPES: dict[str, str] = {
    "png": "image/png",
    "mp4": "video/mp4",
    "zero": "application/octet-stream",
}

CHUNK = 64 * 1024
MIB = 1024 * 1024
GIB = 1024 * MIB
MAX_SIDE = 8192

HTML_BODY = (
    b"<!DOCTYPE html>\n<html><head><title>Access denied</title></head>"
    b"<body><h1>403</h1><p>This is an HTML error page, not an image.</p></body></html>\n"
)


# -- deterministic content ---------------------------------------------------


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


@functools.lru_cache(maxsize=256)
def render_image(seed: str, fmt: ImageFormat = "png", width: int = 64, height: int = 64) -> bytes:
    """The exact bytes `/img/{seed}.{fmt}?w=&h=` serves."""
    if fmt not in _PIL_FORMATS:
        raise ValueError(f"unsupported image format {fmt!r}")
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise ValueError(f"image size {width}x{height} out of range")
    rng = _rng("image", seed, width, height)

    def colour() -> tuple[int, int, int]:
        return (rng.randrange(256), rng.randrange(256), rng.randrange(256))

    img = Image.new("RGB", (width, height), colour())
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x0, x1 = sorted((rng.randrange(width), rng.randrange(width)))
        y0, y1 = sorted((rng.randrange(height), rng.randrange(height)))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x1, y1), fill=colour())
    # Grain makes sizes realistic and keeps two seeds with similar shapes apart.
    noise = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    img = Image.blend(img, noise, 0.12)
    out = io.BytesIO()
    if fmt == "jpg":
        img.save(out, "JPEG", quality=90)
    elif fmt == "webp":
        img.save(out, "WEBP", quality=90, method=4)
    else:
        img.save(out, "PNG")
    return out.getvalue()


def _png_header() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 1024, 1024, 8, 2, 0, 0, 0)
    crc = zlib.crc32(b"IHDR" + ihdr)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", crc)


def _mp4_header() -> bytes:
    brands = b"isom" + b"iso2" + b"mp41"
    return struct.pack(">I4s4sI", 16 + len(brands), b"ftyp", b"isom", 512) + brands


MAGIC: dict[str, bytes] = {"png": _png_header(), "mp4": _mp4_header(), "zero": b""}


@functools.lru_cache(maxsize=1)
def _noise_block() -> bytes:
    # Slicing one seeded block is ~10x faster than fresh random bytes per
    # chunk, which matters when a test streams a gigabyte.
    block = _rng("filler").randbytes(MIB)
    return block + block[:CHUNK]


def iter_payload(n: int, kind: PayloadKind = "png", chunk: int = CHUNK) -> Iterator[bytes]:
    """The exact bytes `/bytes/{n}?kind=` serves, in chunks, without holding them all."""
    if kind not in MAGIC:
        raise ValueError(f"unknown payload kind {kind!r}")
    chunk = max(1, min(chunk, CHUNK))
    head = MAGIC[kind][:n]
    sent = len(head)
    if head:
        yield head
    noise = _noise_block()
    index = 0
    while sent < n:
        size = min(chunk, n - sent)
        if kind == "zero":
            yield bytes(size)
        else:
            offset = (index * 40503 + n) % MIB
            yield noise[offset : offset + size]
        sent += size
        index += 1


def payload_sha256(n: int, kind: PayloadKind = "png") -> str:
    digest = hashlib.sha256()
    for part in iter_payload(n, kind):
        digest.update(part)
    return digest.hexdigest()


def payload_prefix(n: int, kind: PayloadKind = "png") -> bytes:
    return b"".join(iter_payload(n, kind))


@functools.lru_cache(maxsize=4)
def gzip_bomb(size: int = GIB) -> bytes:
    """A gzip member that inflates to `size` zero bytes, built without inflating it.

    After a full flush deflate forgets its history, so every further MiB of
    zeros compresses to the same block: compress one, repeat it, then append
    the trailer, whose CRC only needs zeros fed through crc32.
    """
    full, rest = divmod(size, MIB)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(bytes(MIB)) + comp.flush(zlib.Z_FULL_FLUSH) if full else b""
    tail = comp.compress(bytes(rest)) + comp.flush(zlib.Z_FINISH)
    crc = 0
    zeros = bytes(MIB)
    for _ in range(full):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(bytes(rest), crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + block * full + tail + struct.pack("<II", crc, size & 0xFFFFFFFF)


# -- server ------------------------------------------------------------------


def _int_arg(request: web.Request, name: str, default: int) -> int:
    try:
        return int(request.query.get(name, default))
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"{name} must be an integer") from exc


def _float_arg(request: web.Request, name: str, default: float) -> float:
    try:
        return float(request.query.get(name, default))
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"{name} must be a number") from exc


class Provider:
    """Both provider servers on free loopback ports, in one background thread."""

    def __init__(self, host: str = LOOPBACK) -> None:
        self.host = host
        self.port = 0
        self.raw_port = 0
        self._hits: Counter[str] = Counter()
        self._flaky: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._runs = LoopThread("mk-test-provider")
        self._runner: web.AppRunner | None = None
        self._raw_server: asyncio.Server | None = None
        self._raw_conns: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._closing: asyncio.Event | None = None

    # -- public API ----------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def raw_base_url(self) -> str:
        return f"http://{self.host}:{self.raw_port}"

    def url(self, path: str) -> str:
        return self.base_url + ("" if path.startswith("/") else "/") + path

    def raw_url(self, path: str) -> str:
        return self.raw_base_url + ("" if path.startswith("/") else "/") + path

    def hits(self, path: str) -> int:
        """Requests seen for `path` (a path or full URL; the query is ignored)."""
        key = urlsplit(path).path or "/"
        with self._lock:
            return self._hits[key]

    def reset_hits(self) -> None:
        with self._lock:
            self._hits.clear()
            self._flaky.clear()

    def start(self) -> Self:
        self._runs.start(self._serve_start)
        return self

    def stop(self) -> None:
        self._runs.stop(self._serve_stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- lifecycle inside the loop ------------------------------------------

    async def _serve_start(self) -> None:
        self._closing = asyncio.Event()
        app = web.Application(middlewares=[self._count_middleware])
        app.add_routes(
            [
                web.get("/img/{seed}.{ext}", self._img),
                web.get("/img-wrong-ext/{seed}.jpg", self._img_wrong_ext),
                web.get("/html-as-png", self._html_as_png),
                web.get("/flaky/{key}", self._flaky_route),
                web.get("/status/{code}", self._status),
                web.get("/redirect", self._redirect),
                web.get("/redirect-chain/{n}", self._redirect_chain),
                web.get("/bytes/{n}", self._bytes),
                web.get("/slow", self._slow),
                web.get("/gzip-bomb", self._gzip_bomb),
            ]
        )
        # Streams to disconnected or slowloris clients must not hold up stop().
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        # A restarted provider comes back on the same ports, so URLs handed
        # out before stop() work again: that is how tests fake an outage.
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._bound_port(self._runner.addresses)
        self._raw_server = await asyncio.start_server(self._raw_handle, self.host, self.raw_port)
        self.raw_port = self._raw_server.sockets[0].getsockname()[1]

    @staticmethod
    def _bound_port(addresses: list[object]) -> int:
        for addr in addresses:
            if isinstance(addr, tuple):
                return int(addr[1])
        raise RuntimeError(f"aiohttp bound no TCP address: {addresses}")

    async def _serve_stop(self) -> None:
        assert self._closing is not None
        self._closing.set()
        if self._raw_server is not None:
            self._raw_server.close()
            # Aborting the sockets (rather than cancelling the handlers) lets
            # each handler see a dead connection and finish normally.
            for writer in self._raw_conns.values():
                writer.transport.abort()
            if self._raw_conns:
                await asyncio.wait(list(self._raw_conns), timeout=5)
            await self._raw_server.wait_closed()
        if self._runner is not None:
            await self._runner.cleanup()

    def _count(self, path: str) -> None:
        with self._lock:
            self._hits[path] += 1

    @web.middleware
    async def _count_middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        self._count(request.rel_url.path)
        return await handler(request)

    async def _sleep_or_closing(self, delay: float) -> bool:
        """Sleep; True if the provider is shutting down meanwhile."""
        assert self._closing is not None
        try:
            await asyncio.wait_for(self._closing.wait(), delay)
        except TimeoutError:
            return False
        return True

    # -- well-behaved routes -------------------------------------------------

    async def _render(self, seed: str, fmt: str, width: int, height: int) -> bytes:
        if fmt not in _PIL_FORMATS:
            raise web.HTTPNotFound(text=f"no image format {fmt!r}")
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            raise web.HTTPBadRequest(text="image size out of range")
        # Big renders take a while; keep the loop serving other requests.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, render_image, seed, fmt, width, height)

    async def _img(self, request: web.Request) -> web.Response:
        fmt = request.match_info["ext"]
        body = await self._render(
            request.match_info["seed"],
            fmt,
            _int_arg(request, "w", 64),
            _int_arg(request, "h", 64),
        )
        return web.Response(body=body, content_type=CONTENT_TYPES[fmt])

    async def _img_wrong_ext(self, request: web.Request) -> web.Response:
        body = await self._render(request.match_info["seed"], "png", 64, 64)
        return web.Response(body=body, content_type="image/jpeg")

    async def _html_as_png(self, request: web.Request) -> web.Response:
        return web.Response(body=HTML_BODY, content_type="image/png")

    async def _flaky_route(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        fail = _int_arg(request, "fail", 1)
        code = _int_arg(request, "code", 503)
        with self._lock:
            self._flaky[key] += 1
            attempt = self._flaky[key]
        if attempt <= fail:
            headers = {}
            if "retry_after" in request.query:
                headers["Retry-After"] = request.query["retry_after"]
            return web.Response(
                status=code, text=f"flaky {key}: attempt {attempt}/{fail}\n", headers=headers
            )
        return web.Response(body=await self._render(key, "png", 64, 64), content_type="image/png")

    async def _status(self, request: web.Request) -> web.Response:
        try:
            code = int(request.match_info["code"])
        except ValueError as exc:
            raise web.HTTPBadRequest(text="status code must be an integer") from exc
        if not 200 <= code <= 599:
            raise web.HTTPBadRequest(text="status code must be 200..599")
        if code in (204, 304):
            return web.Response(status=code)
        return web.Response(status=code, text=f"status {code}\n")

    def _target(self, request: web.Request) -> str:
        return request.query.get("to") or self.url("/img/redirected.png")

    async def _redirect(self, request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": self._target(request)})

    async def _redirect_chain(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"]) if request.match_info["n"].isdigit() else 1
        if n <= 1:
            location = self._target(request)
        else:
            location = self.url(f"/redirect-chain/{n - 1}")
            if request.query_string:
                location += "?" + request.query_string
        return web.Response(status=302, headers={"Location": location})

    async def _stream(
        self,
        request: web.Request,
        parts: Iterator[bytes],
        content_type: str,
        length: int | None,
        delay: float = 0.0,
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        if length is None:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = length
        await resp.prepare(request)
        try:
            for part in parts:
                if delay and await self._sleep_or_closing(delay):
                    return resp
                await resp.write(part)
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            # The client gave up mid-body; that is what these routes are for.
            pass
        return resp

    async def _bytes(self, request: web.Request) -> web.StreamResponse:
        try:
            n = int(request.match_info["n"])
        except ValueError as exc:
            raise web.HTTPBadRequest(text="n must be an integer") from exc
        kind = request.query.get("kind", "png")
        if kind not in MAGIC or n < 0:
            raise web.HTTPBadRequest(text="kind must be png, mp4 or zero; n >= 0")
        with_length = request.query.get("cl", "1") != "0"
        return await self._stream(
            request,
            iter_payload(n, cast(PayloadKind, kind)),
            PAYLOAD_TYPES[kind],
            n if with_length else None,
        )

    async def _slow(self, request: web.Request) -> web.StreamResponse:
        n = _int_arg(request, "bytes", 1_000_000)
        chunk = max(1, _int_arg(request, "chunk", 100))
        delay = _float_arg(request, "delay", 1.0)
        with_length = request.query.get("cl", "1") != "0"
        return await self._stream(
            request,
            iter_payload(n, "png", chunk),
            "image/png",
            n if with_length else None,
            delay=delay,
        )

    async def _gzip_bomb(self, request: web.Request) -> web.Response:
        size = _int_arg(request, "size", GIB)
        if not 0 <= size <= 64 * GIB:
            raise web.HTTPBadRequest(text="size out of range")
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(None, gzip_bomb, size)
        return web.Response(
            body=body, headers={"Content-Type": "image/png", "Content-Encoding": "gzip"}
        )

    # -- raw routes ----------------------------------------------------------

    async def _raw_handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._raw_conns[task] = writer
        try:
            await self._raw_dispatch(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            # Clients of these routes are expected to hang up or misbehave.
            pass
        finally:
            self._raw_conns.pop(task, None)
            writer.close()

    async def _raw_dispatch(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        target = request_line.split(" ")[1] if request_line.count(" ") >= 2 else "/"
        parsed = urlsplit(target)
        path = parsed.path or "/"
        self._count(path)
        query = dict(part.split("=", 1) for part in parsed.query.split("&") if "=" in part)

        def headers(length: int) -> bytes:
            return (
                "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n"
                f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
            ).encode()

        if path == "/lie-length":
            writer.write(headers(10))
            for part in iter_payload(10 * MIB, "png"):
                writer.write(part)
                await writer.drain()
            await writer.drain()
        elif path == "/reset":
            writer.write(headers(MIB) + payload_prefix(1000))
            await writer.drain()
            await self._sleep_or_closing(float(query.get("delay", "0.2")))
            sock = writer.get_extra_info("socket")
            if sock is not None:
                # Linger 0 turns close() into an RST instead of a FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        elif path == "/short":
            writer.write(headers(100_000) + payload_prefix(500))
            await writer.drain()
        elif path == "/hang":
            await self._sleep_or_closing(3600)
        else:
            body = b"not found\n"
            writer.write(
                b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
