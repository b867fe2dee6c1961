"""One contract for every object store: local (behind the real service), S3 (SeaweedFS),
Supabase (the local Storage API server, or a real project when
MEDIAKEEP_TEST_SUPABASE_URL/_KEY are set) and hybrid (local behind the service, SeaweedFS
as its remote). Signed and public URLs are fetched with plain HTTP, as a browser would."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import pytest
from yarl import URL

from mediakeep.errors import InvalidSignature, NotFound, ObjectExists, UnsupportedOperation
from mediakeep.stores.base import ByteRange, ObjectStore, SignedRequest
from mediakeep.stores.factory import build_store
from mediakeep.stores.hybrid import HybridStore
from mediakeep.stores.local import LocalStore
from mediakeep.stores.s3 import S3Store
from mediakeep.stores.supabase import SupabaseStore
from tests.conftest import PRIVATE_BUCKET, PUBLIC_BUCKET, Backend, ServiceThread, make_settings
from tests.support.netutil import free_port
from tests.support.seaweed import SeaweedS3
from tests.support.supabase_storage import SupabaseTarget

MIB = 1024 * 1024
SUPABASE_PAGE = 5  # small pages, so listing crosses page boundaries with few objects


@dataclass
class Subject:
    kind: str
    store: ObjectStore
    private: str
    public: str
    # More objects than this under one prefix need more than one list page.
    page: int
    # head() reports the content type (the local store keeps bytes only).
    knows_content_type: bool
    # An existing key is refused instead of overwritten.
    refuses_overwrite: bool
    # Checks a signed PUT where no server we run accepts it (the local store's service
    # serves reads only): verifies the signature, raises if it is not valid.
    check_put: Callable[[SignedRequest], None] | None
    new_bucket: Callable[[], str]


def _local_put_check(store: LocalStore) -> Callable[[SignedRequest], None]:
    def check(req: SignedRequest) -> None:
        parts = urlsplit(req.url)
        query = dict(parse_qsl(parts.query))
        store.signer.verify("PUT", parts.path, query.get("exp"), query.get("sig"))

    return check


@pytest.fixture(scope="module", params=["local", "s3", "supabase", "hybrid"])
async def subject(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Subject]:
    kind: str = request.param
    tag = uuid.uuid4().hex[:8]
    if kind == "local":
        tmp = tmp_path_factory.mktemp("contract-local")
        port = free_port()
        settings = make_settings(
            Backend("sqlite", "local"), tmp, request, base_url=f"http://127.0.0.1:{port}"
        )
        svc = ServiceThread(settings, port).start()
        store = build_store(settings)
        assert isinstance(store, LocalStore)
        await store.start([PRIVATE_BUCKET, PUBLIC_BUCKET])
        yield Subject(
            kind,
            store,
            PRIVATE_BUCKET,
            PUBLIC_BUCKET,
            page=0,
            knows_content_type=False,
            refuses_overwrite=True,
            check_put=_local_put_check(store),
            new_bucket=lambda: f"mk-ct-{uuid.uuid4().hex[:10]}",
        )
        svc.stop()
    elif kind == "hybrid":
        sw_remote: SeaweedS3 = request.getfixturevalue("seaweed")
        tmp = tmp_path_factory.mktemp("contract-hybrid")
        port = free_port()
        settings = make_settings(
            Backend("sqlite", "local"),
            tmp,
            request,
            base_url=f"http://127.0.0.1:{port}",
            store="hybrid",
            hybrid_remote="s3",
            s3_endpoint=sw_remote.endpoint,
            s3_region=sw_remote.region,
            s3_access_key_id=sw_remote.access_key,
            s3_secret_access_key=sw_remote.secret_key,
        )
        svc = ServiceThread(settings, port).start()
        hybrid = build_store(settings)
        assert isinstance(hybrid, HybridStore)
        await hybrid.start([PRIVATE_BUCKET, PUBLIC_BUCKET])
        yield Subject(
            kind,
            hybrid,
            PRIVATE_BUCKET,
            PUBLIC_BUCKET,
            page=0,
            knows_content_type=False,
            refuses_overwrite=True,
            check_put=_local_put_check(hybrid),
            new_bucket=lambda: f"mk-ct-{uuid.uuid4().hex[:10]}",
        )
        await hybrid.close()
        svc.stop()
    elif kind == "s3":
        sw: SeaweedS3 = request.getfixturevalue("seaweed")
        s3 = S3Store(
            endpoint=sw.endpoint,
            region=sw.region,
            access_key_id=sw.access_key,
            secret_access_key=sw.secret_key,
        )
        await s3.start([PRIVATE_BUCKET, PUBLIC_BUCKET])
        yield Subject(
            kind,
            s3,
            PRIVATE_BUCKET,
            PUBLIC_BUCKET,
            page=1000,  # S3's ListObjectsV2 page
            knows_content_type=False,
            refuses_overwrite=False,
            check_put=None,
            new_bucket=lambda: f"mk-ct-{uuid.uuid4().hex[:10]}",
        )
        await s3.close()
    else:
        sb: SupabaseTarget = request.getfixturevalue("supabase")
        private = sb.uses(f"mk-ct-{tag}-private")
        public = sb.uses(f"mk-ct-{tag}-public")
        supa = SupabaseStore(
            url=sb.url,
            service_key=sb.service_key,
            public_buckets=[public],
            list_page_size=SUPABASE_PAGE,
        )
        await supa.start([private, public])
        yield Subject(
            kind,
            supa,
            private,
            public,
            page=SUPABASE_PAGE,
            knows_content_type=True,
            refuses_overwrite=True,
            check_put=None,
            new_bucket=lambda: sb.uses(f"mk-ct-{uuid.uuid4().hex[:10]}"),
        )
        await supa.close()


@pytest.fixture
def prefix() -> str:
    # Every test writes under its own prefix: buckets are shared across the module.
    return f"ct-{uuid.uuid4().hex[:12]}"


async def read_all(it: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in it])


async def http(
    method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, URL(url, encoded=True), data=data, headers=headers) as resp,
    ):
        return resp.status, await resp.read()


def tamper(url: str) -> str:
    """The same URL with one character of its signature changed."""
    parts = urlsplit(url)
    out = []
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if k in ("sig", "X-Amz-Signature", "token"):
            i = len(v) - 8
            v = v[:i] + ("B" if v[i] != "B" else "C") + v[i + 1 :]
        out.append((k, v))
    return urlunsplit(parts._replace(query=urlencode(out)))


def unsigned(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(query=""))


async def stream(total: int, chunk: int = 256 * 1024) -> AsyncIterator[bytes]:
    seed = hashlib.sha256(str(total).encode()).digest()
    sent = 0
    n = 0
    while sent < total:
        block = hashlib.sha256(seed + n.to_bytes(8, "big")).digest() * (chunk // 32)
        block = block[: min(chunk, total - sent)]
        sent += len(block)
        n += 1
        yield block


# -- the contract ------------------------------------------------------------------------


async def test_put_get_bytes_round_trip(subject: Subject, prefix: str) -> None:
    store, key = subject.store, f"{prefix}/img with space.png"
    data = os.urandom(4096)
    info = await store.put(
        subject.private, key, data, content_type="image/png", cache_control="private"
    )
    assert info.size == len(data)
    assert await read_all(store.get(subject.private, key)) == data
    head = await store.head(subject.private, key)
    assert head is not None and head.size == len(data) and head.key == key
    if subject.knows_content_type:
        assert head.content_type == "image/png"


async def test_put_streams_many_megabytes(subject: Subject, prefix: str) -> None:
    store, key = subject.store, f"{prefix}/big.bin"
    total = 12 * MIB + 12345  # past S3's single-PUT limit: multipart there
    expected = hashlib.sha256(b"".join([c async for c in stream(total)])).hexdigest()
    info = await store.put(
        subject.private, key, stream(total), content_type="video/mp4", cache_control="private"
    )
    assert info.size == total
    digest = hashlib.sha256()
    async for chunk in store.get(subject.private, key):
        digest.update(chunk)
    assert digest.hexdigest() == expected
    head = await store.head(subject.private, key)
    assert head is not None and head.size == total


async def test_range_get(subject: Subject, prefix: str) -> None:
    store, key = subject.store, f"{prefix}/range.bin"
    data = bytes(range(256)) * 4
    await store.put(subject.private, key, data, content_type="audio/mpeg", cache_control="x")
    assert await read_all(store.get(subject.private, key, ByteRange(10, 19))) == data[10:20]
    last = len(data) - 1
    assert await read_all(store.get(subject.private, key, ByteRange(1000, last))) == data[1000:]
    assert await read_all(store.get(subject.private, key, ByteRange(0, 0))) == data[:1]


async def test_missing_objects(subject: Subject, prefix: str) -> None:
    assert await subject.store.head(subject.private, f"{prefix}/nothing") is None
    with pytest.raises(NotFound):
        await read_all(subject.store.get(subject.private, f"{prefix}/nothing"))


async def test_delete_is_idempotent(subject: Subject, prefix: str) -> None:
    store, key = subject.store, f"{prefix}/gone.txt"
    await store.put(subject.private, key, b"bye", content_type="text/plain", cache_control="x")
    await store.delete(subject.private, key)
    assert await store.head(subject.private, key) is None
    await store.delete(subject.private, key)
    await store.delete(subject.private, f"{prefix}/never-existed")
    with pytest.raises(NotFound):
        await read_all(store.get(subject.private, key))


async def test_existing_key_is_not_overwritten(subject: Subject, prefix: str) -> None:
    # S3: single-part writes are conditional (If-None-Match); small bodies take that path.
    store, key = subject.store, f"{prefix}/once.txt"
    await store.put(subject.private, key, b"first", content_type="text/plain", cache_control="x")
    with pytest.raises(ObjectExists):
        await store.put(
            subject.private, key, b"second", content_type="text/plain", cache_control="x"
        )
    assert await read_all(store.get(subject.private, key)) == b"first"


async def test_list_by_prefix_across_pages(subject: Subject, prefix: str) -> None:
    store = subject.store
    many = [f"{prefix}/a/{i:04d}.txt" for i in range(subject.page + 3)]
    nested = [f"{prefix}/a/deeper/x.txt", f"{prefix}/a/deeper/still/y.txt", f"{prefix}/ab.txt"]
    outside = [f"{prefix}/b/z.txt", f"{prefix}/A/upper.txt", f"{prefix}x/sibling.txt"]
    sem = asyncio.Semaphore(16)

    async def put(key: str) -> None:
        async with sem:
            await store.put(
                subject.private, key, b"k", content_type="text/plain", cache_control="x"
            )

    await asyncio.gather(*(put(k) for k in many + nested + outside))
    got = [o async for o in store.list_objects(subject.private, f"{prefix}/a")]
    assert sorted(o.key for o in got) == sorted(many + nested)
    assert all(o.size == 1 for o in got)
    folder = [o.key async for o in store.list_objects(subject.private, f"{prefix}/a/deeper/")]
    assert sorted(folder) == sorted(nested[:2])
    assert [o async for o in store.list_objects(subject.private, f"{prefix}/none/")] == []
    everything = {o.key async for o in store.list_objects(subject.private, f"{prefix}")}
    assert everything == set(many + nested + outside)


async def test_copy_within_and_across_buckets(subject: Subject, prefix: str) -> None:
    store = subject.store
    src, data = f"{prefix}/src.png", os.urandom(2048)
    await store.put(subject.private, src, data, content_type="image/png", cache_control="x")
    await store.copy(subject.private, src, subject.private, f"{prefix}/same-bucket.png")
    assert await read_all(store.get(subject.private, f"{prefix}/same-bucket.png")) == data
    await store.copy(subject.private, src, subject.public, f"{prefix}/other-bucket.png")
    assert await read_all(store.get(subject.public, f"{prefix}/other-bucket.png")) == data
    assert await read_all(store.get(subject.private, src)) == data  # the source stays
    # Copying onto a key that already holds the copy is not an error.
    await store.copy(subject.private, src, subject.public, f"{prefix}/other-bucket.png")
    with pytest.raises(NotFound):
        await store.copy(subject.private, f"{prefix}/missing", subject.private, f"{prefix}/m2")


async def test_signed_get_urls_work_over_plain_http(subject: Subject, prefix: str) -> None:
    store = subject.store
    keys = [f"{prefix}/s{i}.png" for i in range(3)]
    blobs = {k: os.urandom(100 + i) for i, k in enumerate(keys)}
    for k, v in blobs.items():
        await store.put(subject.private, k, v, content_type="image/png", cache_control="x")
    urls = await store.sign_get_async(subject.private, keys, 600)
    assert len(urls) == len(keys)
    for k, url in zip(keys, urls, strict=True):
        assert await http("GET", url) == (200, blobs[k])
    status, body = await http("GET", tamper(urls[0]))
    assert status in (400, 401, 403) and body != blobs[keys[0]]
    status, body = await http("GET", unsigned(urls[0]))
    assert status >= 400 and body != blobs[keys[0]]
    if isinstance(store, SupabaseStore):
        with pytest.raises(UnsupportedOperation):
            store.sign_get(subject.private, keys, 600)
    else:
        assert len(store.sign_get(subject.private, keys, 600)) == len(keys)


async def test_signed_put_urls_work_over_plain_http(subject: Subject, prefix: str) -> None:
    store, key = subject.store, f"{prefix}/uploaded.png"
    data = os.urandom(3000)
    req = await store.sign_put_async(subject.private, key, 600, "image/png")
    assert req.method == "PUT"
    if subject.check_put is not None:
        subject.check_put(req)
        with pytest.raises(InvalidSignature):
            subject.check_put(SignedRequest(tamper(req.url), req.method, req.headers))
        return
    status, _ = await http("PUT", req.url, data, req.headers)
    assert status == 200
    assert await read_all(store.get(subject.private, key)) == data
    other = await store.sign_put_async(subject.private, f"{prefix}/other.png", 600, "image/png")
    status, _ = await http("PUT", tamper(other.url), data, other.headers)
    assert status in (400, 401, 403)
    assert await store.head(subject.private, f"{prefix}/other.png") is None


async def test_public_url_only_serves_the_public_bucket(subject: Subject, prefix: str) -> None:
    store, key = subject.store, f"{prefix}/pub.png"
    data = os.urandom(500)
    await store.put(subject.public, key, data, content_type="image/png", cache_control="public")
    await store.put(subject.private, key, data, content_type="image/png", cache_control="x")
    url = store.public_url(subject.public, key)
    assert "?" not in url and "//" not in urlsplit(url).path
    assert await http("GET", url) == (200, data)
    status, body = await http("GET", store.public_url(subject.private, key))
    assert status >= 400 and body != data


async def test_bucket_creation_is_idempotent(subject: Subject, prefix: str) -> None:
    store, bucket = subject.store, subject.new_bucket()
    await store.start([bucket])
    await store.start([bucket])
    await store.put(
        bucket, f"{prefix}/x.txt", b"in a new bucket", content_type="text/plain", cache_control="x"
    )
    assert await read_all(store.get(bucket, f"{prefix}/x.txt")) == b"in a new bucket"
    await store.delete(bucket, f"{prefix}/x.txt")
