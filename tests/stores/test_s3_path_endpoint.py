"""The S3 store against an endpoint with a path, the way Supabase's S3 API is reached
(``{project}/storage/v1/s3``), configured as docs/SUPABASE.md says. SeaweedFS stands in for
Supabase behind a proxy that serves S3 under that path and checks every signature against
the full path requested."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import aiohttp
import pytest
from yarl import URL

from mediakeep.settings import Settings
from mediakeep.stores.base import ByteRange
from mediakeep.stores.factory import build_store
from mediakeep.stores.s3 import S3Store
from tests.support.s3_prefix_proxy import S3PrefixProxy
from tests.support.seaweed import SeaweedS3

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def proxy(seaweed: SeaweedS3) -> Iterator[S3PrefixProxy]:
    p = S3PrefixProxy(seaweed.endpoint, seaweed.access_key, seaweed.secret_key, "/storage/v1/s3")
    p.start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
async def store(proxy: S3PrefixProxy, seaweed: SeaweedS3) -> AsyncIterator[S3Store]:
    project = proxy.endpoint.removesuffix("/storage/v1/s3")
    settings = Settings(
        store="s3",
        s3_endpoint=f"{project}/storage/v1/s3",
        s3_region=seaweed.region,
        s3_access_key_id=seaweed.access_key,
        s3_secret_access_key=seaweed.secret_key,
        public_base_url=f"{project}/storage/v1/object/public",
    )
    s = build_store(settings)
    assert isinstance(s, S3Store)
    yield s
    await s.close()


async def fetch(method: str, url: str, data: bytes | None = None) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, URL(url, encoded=True), data=data) as resp,
    ):
        return resp.status, await resp.read()


async def read_all(it: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in it])


async def test_every_operation_goes_through_the_path(store: S3Store, proxy: S3PrefixProxy) -> None:
    bucket = f"mk-sb-{uuid.uuid4().hex[:10]}"
    refused = len(proxy.refused)
    await store.start([bucket])
    await store.start([bucket])

    await store.put(bucket, "u/c/a b.png", b"small", content_type="image/png", cache_control="x")

    async def big() -> AsyncIterator[bytes]:
        for i in range(10):
            yield bytes([i]) * MIB

    info = await store.put(
        bucket, "u/c/big.mp4", big(), content_type="video/mp4", cache_control="x"
    )
    assert info.size == 10 * MIB
    digest = hashlib.sha256(await read_all(store.get(bucket, "u/c/big.mp4"))).hexdigest()
    assert digest == hashlib.sha256(b"".join(bytes([i]) * MIB for i in range(10))).hexdigest()
    assert await read_all(store.get(bucket, "u/c/a b.png", ByteRange(1, 3))) == b"mal"
    head = await store.head(bucket, "u/c/a b.png")
    assert head is not None and head.size == 5
    assert await store.head(bucket, "u/c/none.png") is None

    await store.copy(bucket, "u/c/a b.png", bucket, "u/c/copy.png")
    keys = sorted([o.key async for o in store.list_objects(bucket, "u/c/")])
    assert keys == ["u/c/a b.png", "u/c/big.mp4", "u/c/copy.png"]

    [url] = await store.sign_get_async(bucket, ["u/c/copy.png"], 600)
    assert url.startswith(proxy.endpoint + f"/{bucket}/")
    assert await fetch("GET", url) == (200, b"small")
    assert (await fetch("GET", url.replace("X-Amz-Signature=", "X-Amz-Signature=0")))[0] == 403
    assert proxy.refused[refused:] == [f"bad presigned signature for {urlsplit(url).path}"]
    refused += 1

    req = await store.sign_put_async(bucket, "u/c/put.png", 600, "image/png")
    assert (await fetch("PUT", req.url, b"via signed put"))[0] == 200
    assert await read_all(store.get(bucket, "u/c/put.png")) == b"via signed put"

    await store.delete(bucket, "u/c/copy.png")
    await store.delete(bucket, "u/c/copy.png")
    assert await store.head(bucket, "u/c/copy.png") is None
    assert len(proxy.refused) == refused, proxy.refused[refused:]
    assert proxy.forwarded > 10


async def test_public_urls_use_the_public_object_route(
    store: S3Store, proxy: S3PrefixProxy
) -> None:
    project = proxy.endpoint.removesuffix("/storage/v1/s3")
    assert store.public_url("public-assets", "u/c/a b.png") == (
        f"{project}/storage/v1/object/public/public-assets/u/c/a%20b.png"
    )


async def test_the_proxy_checks_the_signed_path(seaweed: SeaweedS3, proxy: S3PrefixProxy) -> None:
    # A URL signed for the bare path, sent under the prefix, must fail: otherwise the test
    # above would pass even if the client signed without the prefix.
    direct = S3Store(
        endpoint=seaweed.endpoint,
        region=seaweed.region,
        access_key_id=seaweed.access_key,
        secret_access_key=seaweed.secret_key,
    )
    [url] = direct.sign_get("mediakeep-readiness", ["probe"], 600)
    moved = url.replace(seaweed.endpoint, proxy.endpoint)
    assert (await fetch("GET", moved))[0] == 403
    assert (await fetch("GET", url.replace(seaweed.endpoint, proxy._server.base_url)))[0] == 404
    assert (await fetch("GET", url))[0] == 200
