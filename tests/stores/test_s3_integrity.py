"""Bytes changed between mediakeep and the store never end up recorded as stored.

The proxy in front of SeaweedFS flips a byte of every upload body. Payloads are unsigned
(SeaweedFS does not check the signed payload hash), so what catches the change is the
end-to-end checksum: x-amz-checksum-sha256, which the store verifies, or, for stores
without flexible checksums, the MD5 ETag compared after the write."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Literal

import pytest

from mediakeep.errors import IntegrityError, StoreError
from mediakeep.stores.factory import resolve_checksum
from mediakeep.stores.s3 import S3Store
from tests.support.s3_prefix_proxy import S3PrefixProxy
from tests.support.seaweed import SeaweedS3

PREFIX = "/s3"


@pytest.fixture(scope="module")
def proxy(seaweed: SeaweedS3) -> Iterator[S3PrefixProxy]:
    p = S3PrefixProxy(seaweed.endpoint, seaweed.access_key, seaweed.secret_key, PREFIX)
    p.start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def bucket(seaweed: SeaweedS3) -> str:
    name = seaweed.unique_bucket("integrity")
    seaweed.create_bucket(name)
    return name


def s3_store(
    proxy: S3PrefixProxy, seaweed: SeaweedS3, checksum: Literal["sha256", "md5", "none"]
) -> S3Store:
    return S3Store(
        endpoint=proxy.endpoint,
        region=seaweed.region,
        access_key_id=seaweed.access_key,
        secret_access_key=seaweed.secret_key,
        create_buckets=False,
        checksum=checksum,
    )


@pytest.fixture
async def corrupting(proxy: S3PrefixProxy) -> AsyncIterator[S3PrefixProxy]:
    proxy.corrupt_puts = True
    try:
        yield proxy
    finally:
        proxy.corrupt_puts = False


BODY = b"generated image bytes " * 4000


async def test_sha256_checksum_refuses_a_changed_body_before_anything_is_stored(
    corrupting: S3PrefixProxy, seaweed: SeaweedS3, bucket: str
) -> None:
    store = s3_store(corrupting, seaweed, "sha256")
    key = f"k/{uuid.uuid4().hex}.bin"
    with pytest.raises(StoreError):
        await store.put(bucket, key, BODY, content_type="image/png", cache_control="no-cache")
    assert await store.head(bucket, key) is None


async def test_sha256_checksum_covers_every_part_of_a_multipart_upload(
    corrupting: S3PrefixProxy, seaweed: SeaweedS3, bucket: str
) -> None:
    store = s3_store(corrupting, seaweed, "sha256")
    key = f"k/{uuid.uuid4().hex}.bin"

    async def body() -> AsyncIterator[bytes]:
        for _ in range(20):  # 20 MiB: three parts
            yield b"v" * (1024 * 1024)

    with pytest.raises(StoreError):
        await store.put(bucket, key, body(), content_type="video/mp4", cache_control="no-cache")
    assert await store.head(bucket, key) is None


async def test_md5_etag_check_catches_a_changed_body(
    corrupting: S3PrefixProxy, seaweed: SeaweedS3, bucket: str
) -> None:
    store = s3_store(corrupting, seaweed, "md5")
    key = f"k/{uuid.uuid4().hex}.bin"
    # The store took the changed bytes; the ETag no longer matches what was sent (the
    # pipeline's rollback then deletes the object).
    with pytest.raises(IntegrityError):
        await store.put(bucket, key, BODY, content_type="image/png", cache_control="no-cache")


@pytest.mark.parametrize("checksum", ["sha256", "md5", "none"])
async def test_an_unchanged_body_is_stored_and_marked_verified(
    proxy: S3PrefixProxy,
    seaweed: SeaweedS3,
    bucket: str,
    checksum: Literal["sha256", "md5", "none"],
) -> None:
    store = s3_store(proxy, seaweed, checksum)
    key = f"k/{uuid.uuid4().hex}.bin"
    info = await store.put(bucket, key, BODY, content_type="image/png", cache_control="no-cache")
    assert info.confirmed and info.size == len(BODY)
    assert b"".join([c async for c in store.get(bucket, key)]) == BODY


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        (None, "sha256"),  # AWS
        ("https://s3.eu-west-1.amazonaws.com", "sha256"),
        ("http://minio.internal:9000", "sha256"),  # a wire, maybe a proxy
        ("http://10.0.0.7:9000", "sha256"),
        ("https://127.0.0.1:9000", "sha256"),  # TLS: something terminates and re-sends it
        ("https://localhost:9000", "sha256"),
        ("http://127.0.0.1:8333", "none"),  # the same machine, nothing in between
        ("http://127.9.9.9:8333", "none"),
        ("http://localhost:8333", "none"),
        ("http://[::1]:8333", "none"),
    ],
)
def test_auto_checksum_is_sha256_unless_the_store_is_plain_http_on_this_machine(
    endpoint: str | None, expected: str
) -> None:
    assert resolve_checksum("auto", endpoint) == expected
    # Said explicitly, the setting wins wherever the store is.
    assert resolve_checksum("sha256", endpoint) == "sha256"
    assert resolve_checksum("none", endpoint) == "none"
