"""Stand-in for a provider CDN: serves the corpus directory over loopback HTTP.

Run as ``python -m bench.cdn --root DIR --port N``. It lives in its own process so its CPU
never lands in a contender's figures. It is aiohttp's static handler on the stock asyncio
loop, because that loop answers with ``sendfile(2)`` and the kernel copies page-cached bytes
straight to the socket; uvloop has no native sendfile and falls back to read/write copies
(measured: about 1.5x the server CPU), and ``rclone serve http`` took about 3x.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import struct
import zlib
from pathlib import Path

from aiohttp import web


async def _health(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def tiny_png(n: int) -> bytes:
    """A valid 1x1 PNG unique to ``n``, so thousands of assets never deduplicate."""
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixel = bytes([0, n & 0xFF, (n >> 8) & 0xFF, (n >> 16) & 0xFF])  # filter byte + RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"tEXt", b"Comment\x00mkbench-" + str(n).encode())
        + _chunk(b"IDAT", zlib.compress(pixel))
        + _chunk(b"IEND", b"")
    )


async def _tiny(request: web.Request) -> web.Response:
    # Generated rather than stored: the signed-URL micro-benchmark needs 10,000 distinct
    # assets, and 10,000 files on disk would only slow down corpus handling.
    return web.Response(body=tiny_png(int(request.match_info["n"])), content_type="image/png")


async def serve(root: Path, host: str, port: int) -> None:
    app = web.Application()
    app.router.add_get("/healthz", _health)
    app.router.add_get(r"/tiny/{n:\d+}.png", _tiny)
    # show_index lets rclone's http backend list a directory like a real index page would.
    app.router.add_static("/", root, show_index=True, follow_symlinks=False)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the benchmark corpus over HTTP.")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.root, args.host, args.port))


if __name__ == "__main__":
    main()
