"""The test-support servers do what the rest of the suite relies on."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import os
import socket
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator

import aiohttp
import obstore
import pytest
from obstore.exceptions import PermissionDeniedError
from PIL import Image
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.netutil import direct_opener
from tests.support.postgres import PostgresServer
from tests.support.provider import (
    GIB,
    MAGIC,
    Provider,
    gzip_bomb,
    payload_sha256,
    render_image,
)
from tests.support.seaweed import SeaweedS3, validate_bucket_name

PUBLIC = "mk-smoke-public"


@pytest.fixture(scope="module")
def s3() -> Iterator[SeaweedS3]:
    with SeaweedS3(anonymous_read_buckets=[PUBLIC]) as server:
        yield server


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with Provider() as p:
        yield p


def fetch(url: str, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """GET without following redirects or raising on error statuses."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers), err.read()


# -- SeaweedFS ---------------------------------------------------------------


def test_seaweed_checks_signatures(s3: SeaweedS3) -> None:
    bucket = s3.unique_bucket("smoke")
    good = s3.store(bucket)
    obstore.put(good, "a/b.bin", b"payload")
    assert bytes(obstore.get(good, "a/b.bin").bytes()) == b"payload"

    forged = s3.store(bucket, secret_key="not-the-secret")
    with pytest.raises(PermissionDeniedError, match="SignatureDoesNotMatch"):
        obstore.put(forged, "evil.bin", b"x")
    with pytest.raises(PermissionDeniedError):
        obstore.get(forged, "a/b.bin")
    # An unsigned request to a private bucket is refused too.
    status, _, _ = fetch(f"{s3.endpoint}/{bucket}/a/b.bin")
    assert status == 403


def test_seaweed_buckets_are_not_auto_created(s3: SeaweedS3) -> None:
    with pytest.raises(FileNotFoundError):
        obstore.put(s3.store("mk-never-created"), "k", b"v")
    s3.create_bucket("mk-created-once")
    s3.create_bucket("mk-created-once")  # idempotent
    assert s3.bucket_exists("mk-created-once")
    assert not s3.bucket_exists("mk-never-created")


def test_seaweed_anonymous_read_bucket(s3: SeaweedS3) -> None:
    s3.create_bucket(PUBLIC)
    obstore.put(s3.store(PUBLIC), "pub.txt", b"hello world")
    status, _, body = fetch(f"{s3.endpoint}/{PUBLIC}/pub.txt")
    assert (status, body) == (200, b"hello world")
    req = urllib.request.Request(f"{s3.endpoint}/{PUBLIC}/anon.txt", data=b"x", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as err:
        direct_opener.open(req, timeout=10)
    assert err.value.code == 403


def test_bucket_name_validation() -> None:
    validate_bucket_name("mk-assets.v2")
    for bad in ("Upper", "ab", "a_b", "-lead", "trail-", "a..b", "192.168.1.1"):
        with pytest.raises(ValueError):
            validate_bucket_name(bad)


def test_seaweed_restart_keeps_data_and_kills_group(s3: SeaweedS3) -> None:
    bucket = s3.unique_bucket("restart")
    obstore.put(s3.store(bucket), "kept", b"survives")
    old_pid = s3.pid
    assert old_pid is not None
    s3.restart(hard=True)
    with pytest.raises(ProcessLookupError):
        os.killpg(old_pid, 0)
    assert s3.running
    assert bytes(obstore.get(s3.store(bucket), "kept").bytes()) == b"survives"


# -- PostgreSQL --------------------------------------------------------------


async def _select_one(url: str) -> int:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(text("SELECT 1"))).scalar_one())
    finally:
        await engine.dispose()


@pytest.mark.parametrize("embedded", [False, True], ids=["default", "forced-embedded"])
async def test_postgres_fresh_databases(embedded: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if embedded:
        monkeypatch.setenv("MEDIAKEEP_TEST_FORCE_EMBEDDED_PG", "1")
    server = PostgresServer()
    await asyncio.to_thread(server.start)
    try:
        if embedded:
            assert server.mode == "embedded"
        first = await server.create_database_async()
        second = server.create_database()  # the sync API works inside a running loop
        assert first != second
        assert first.startswith("postgresql+asyncpg://")
        assert await _select_one(first) == 1
        # Keep a connection open: drop must still succeed.
        engine = create_async_engine(second)
        async with engine.connect() as conn:
            await conn.execute(text("CREATE TABLE t (x int)"))
            await conn.commit()
            await server.drop_database_async(second)
        await engine.dispose()
        with pytest.raises(Exception, match="does not exist"):
            await _select_one(second)
    finally:
        await asyncio.to_thread(server.close)
    if embedded:
        assert server.root is None  # temp dir removed with the server


# -- provider ----------------------------------------------------------------


def test_provider_images_are_real_and_deterministic(provider: Provider) -> None:
    for ext, mime, fmt in (("png", "image/png", "PNG"), ("jpg", "image/jpeg", "JPEG")):
        status, headers, body = fetch(provider.url(f"/img/cat.{ext}?w=40&h=30"))
        assert status == 200
        assert headers["Content-Type"] == mime
        with Image.open(io.BytesIO(body)) as img:
            assert (img.format, img.size) == (fmt, (40, 30))
        assert body == render_image("cat", ext, 40, 30)
    _, headers, webp = fetch(provider.url("/img/cat.webp"))
    assert headers["Content-Type"] == "image/webp" and webp[8:12] == b"WEBP"
    assert fetch(provider.url("/img/cat.png"))[2] != fetch(provider.url("/img/dog.png"))[2]


def test_provider_lying_routes(provider: Provider) -> None:
    _, headers, body = fetch(provider.url("/img-wrong-ext/x.jpg"))
    assert headers["Content-Type"] == "image/jpeg"
    assert body.startswith(MAGIC["png"][:8])
    _, headers, body = fetch(provider.url("/html-as-png"))
    assert headers["Content-Type"] == "image/png"
    assert body.lstrip().lower().startswith(b"<!doctype html")


def test_provider_flaky_counts_per_key(provider: Provider) -> None:
    url = provider.url("/flaky/k1?fail=2&code=429&retry_after=3")
    first = fetch(url)
    assert (first[0], first[1]["Retry-After"]) == (429, "3")
    assert fetch(url)[0] == 429
    status, headers, body = fetch(url)
    assert (status, headers["Content-Type"]) == (200, "image/png")
    assert body == render_image("k1")
    assert provider.hits("/flaky/k1") == 3
    assert fetch(provider.url("/flaky/k2"))[0] == 503  # its own counter


def test_provider_status_and_redirects(provider: Provider) -> None:
    assert fetch(provider.url("/status/404"))[0] == 404
    target = provider.url("/img/end.png")
    status, headers, _ = fetch(provider.url(f"/redirect?to={target}"))
    assert (status, headers["Location"]) == (302, target)
    hops = 0
    url = provider.url(f"/redirect-chain/3?to={target}")
    while (answer := fetch(url))[0] == 302:
        url = answer[1]["Location"]
        hops += 1
    assert hops == 3 and url == target and answer[0] == 200


async def test_provider_bytes_stream(provider: Provider) -> None:
    n = 3 * 1024 * 1024 + 17
    async with aiohttp.ClientSession() as session:
        for kind in ("png", "mp4"):
            for cl in ("1", "0"):
                async with session.get(provider.url(f"/bytes/{n}?kind={kind}&cl={cl}")) as resp:
                    assert resp.content_length == (n if cl == "1" else None)
                    digest = hashlib.sha256()
                    first = b""
                    async for part in resp.content.iter_chunked(65536):
                        first = first or part
                        digest.update(part)
                assert first.startswith(MAGIC[kind])
                assert digest.hexdigest() == payload_sha256(n, kind)
    assert MAGIC["mp4"][4:12] == b"ftypisom"


async def test_provider_slow_trickles(provider: Provider) -> None:
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as session,
        session.get(provider.url("/slow?bytes=1000&chunk=10&delay=0.2")) as resp,
    ):
        assert resp.status == 200
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.7):
                await resp.read()
    assert time.monotonic() - started < 3


def test_provider_gzip_bomb_is_small_on_the_wire(provider: Provider) -> None:
    req = urllib.request.Request(provider.url("/gzip-bomb"))
    with direct_opener.open(req, timeout=30) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        assert resp.headers["Content-Type"] == "image/png"
        wire = resp.read()
    assert len(wire) < 2 * 1024 * 1024
    inflater = zlib.decompressobj(31)
    assert inflater.decompress(wire[:4096], 1 << 20) == bytes(1 << 20)
    # A small bomb decompresses fully and checks the trailer (CRC and size).
    assert gzip.decompress(gzip_bomb(5 * 1024 * 1024 + 3)) == bytes(5 * 1024 * 1024 + 3)
    assert int.from_bytes(wire[-4:], "little") == GIB % (1 << 32)


def _raw_get(provider: Provider, path: str) -> tuple[bytes, bytes, str]:
    """Send a raw request; return (head, body read until close, how it ended)."""
    with socket.create_connection((provider.host, provider.raw_port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        ending = "eof"
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            ending = "reset"
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body, ending


def test_provider_raw_routes(provider: Provider) -> None:
    head, body, _ = _raw_get(provider, "/lie-length")
    assert b"Content-Length: 10\r\n" in head
    assert len(body) == 10 * 1024 * 1024
    assert provider.hits(provider.raw_url("/lie-length?x=1")) == 1

    head, body, ending = _raw_get(provider, "/short")
    assert b"Content-Length: 100000\r\n" in head
    assert (len(body), ending) == (500, "eof")
    assert body.startswith(MAGIC["png"])

    head, body, ending = _raw_get(provider, "/reset?delay=0.3")
    assert b"Content-Length: 1048576\r\n" in head
    assert ending == "reset"
    assert len(body) == 1000


async def test_provider_raw_routes_break_a_real_client(provider: Provider) -> None:
    async with aiohttp.ClientSession() as session:
        # aiohttp either stops at the declared 10 bytes or rejects the extra
        # data; what it must never do is hand over the 10 MB.
        try:
            async with session.get(provider.raw_url("/lie-length")) as resp:
                assert len(await resp.read()) == 10
        except aiohttp.ClientResponseError as err:
            assert "Data after" in err.message
        for path in ("/short", "/reset"):
            with pytest.raises(aiohttp.ClientPayloadError):
                async with session.get(provider.raw_url(path)) as resp:
                    await resp.read()
