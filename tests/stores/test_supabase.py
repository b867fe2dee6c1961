"""What only the Supabase store has: URL rules, error mapping, server-side signing in
batches, bucket limits, old-server fallbacks. Against the local Storage API server, which
these tests also inspect (requests per route, bytes received so far)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from mediakeep.errors import (
    BucketNotFound,
    InvalidInput,
    NotFound,
    ObjectExists,
    ObjectTooLarge,
    StoreAuthError,
    StoreError,
    StoreRejectedType,
)
from mediakeep.settings import Settings
from mediakeep.stores.base import cache_control
from mediakeep.stores.factory import build_store
from mediakeep.stores.supabase import SupabaseStore, map_error, storage_url
from tests.support.supabase_storage import FakeSupabaseStorage

MIB = 1024 * 1024


@pytest.fixture(scope="module", params=[True, False], ids=["http400", "realstatus"])
def fake(request: pytest.FixtureRequest) -> Iterator[FakeSupabaseStorage]:
    # Hosted Storage answers most errors with HTTP 400 and the real status in the body;
    # newer servers may send the real status. The store must understand both.
    with FakeSupabaseStorage(legacy_status=request.param) as server:
        yield server


@pytest.fixture
async def store(fake: FakeSupabaseStorage) -> AsyncIterator[SupabaseStore]:
    s = SupabaseStore(url=fake.url, service_key=fake.service_key, public_buckets=["pub"])
    await s.start(["priv", "pub"])
    yield s
    await s.close()


def key() -> str:
    return f"t/{uuid.uuid4().hex}.bin"


async def read_all(it: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in it])


# -- URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "path", "expected"),
    [
        ("https://abc.supabase.co", None, "https://abc.supabase.co/storage/v1"),
        ("https://abc.supabase.co/", None, "https://abc.supabase.co/storage/v1"),
        ("abc.supabase.co", None, "https://abc.supabase.co/storage/v1"),
        ("https://abc.supabase.co/storage/v1/", None, "https://abc.supabase.co/storage/v1"),
        ("https://abc.supabase.co//storage//v1", None, "https://abc.supabase.co/storage/v1"),
        ("http://127.0.0.1:5000", "", "http://127.0.0.1:5000"),
        ("http://127.0.0.1:5000", "/", "http://127.0.0.1:5000"),
        ("http://gw.internal/supabase", None, "http://gw.internal/supabase"),
        ("http://gw.internal/x", "/storage/v1", "http://gw.internal/x/storage/v1"),
        ("https://abc.supabase.co/storage/v1", "storage/v1", "https://abc.supabase.co/storage/v1"),
    ],
)
def test_storage_url_rule(given: str, path: str | None, expected: str) -> None:
    assert storage_url(given, path) == expected


def test_storage_url_refuses_the_s3_endpoint_and_non_http() -> None:
    with pytest.raises(InvalidInput, match="S3"):
        storage_url("https://abc.supabase.co/storage/v1/s3")
    with pytest.raises(InvalidInput):
        storage_url("ftp://abc.supabase.co")


def test_public_urls_are_built_from_the_project_url() -> None:
    s = SupabaseStore(url="abc.supabase.co/", service_key="k")
    url = s.public_url("public-assets", "u/c/a b.png")
    assert url == "https://abc.supabase.co/storage/v1/object/public/public-assets/u/c/a%20b.png"
    cdn = SupabaseStore(
        url="https://abc.supabase.co", service_key="k", public_base_url="https://cdn.example.com/"
    )
    assert cdn.public_url("b", "k.png") == "https://cdn.example.com/b/k.png"


def test_settings_select_and_configure_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIAKEEP_STORE", "supabase")
    monkeypatch.setenv("MEDIAKEEP_SUPABASE_URL", "https://abc.supabase.co")
    monkeypatch.setenv("MEDIAKEEP_SUPABASE_SERVICE_KEY", "service-secret")
    monkeypatch.setenv("MEDIAKEEP_PUBLIC_BUCKET", "pics")
    s = Settings()
    assert "service-secret" not in repr(s)
    store = build_store(s)
    assert isinstance(store, SupabaseStore)
    assert store.storage_url == "https://abc.supabase.co/storage/v1"
    assert store.public_buckets == {"pics"}
    assert "service-secret" not in repr(store)
    monkeypatch.delenv("MEDIAKEEP_SUPABASE_SERVICE_KEY")
    with pytest.raises(InvalidInput, match="SERVICE_KEY"):
        build_store(Settings())


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (
            400,
            '{"statusCode":"404","error":"Bucket not found","message":"Bucket not found"}',
            BucketNotFound,
        ),
        (
            404,
            '{"statusCode":"404","code":"NoSuchBucket","error":"x","message":"x"}',
            BucketNotFound,
        ),
        (400, '{"statusCode":"404","error":"not_found","message":"Object not found"}', NotFound),
        (
            400,
            '{"statusCode":"409","error":"Duplicate","message":"The resource already exists"}',
            ObjectExists,
        ),
        (409, '{"statusCode":"409","code":"KeyAlreadyExists","message":"exists"}', ObjectExists),
        (
            400,
            '{"statusCode":"413","error":"Payload too large","message":"too big"}',
            ObjectTooLarge,
        ),
        (413, "<html>Request Entity Too Large</html>", ObjectTooLarge),
        (400, '{"statusCode":"415","error":"invalid_mime_type","message":"no"}', StoreRejectedType),
        (
            400,
            '{"statusCode":"403","error":"Unauthorized","message":"invalid signature"}',
            StoreAuthError,
        ),
        (400, '{"statusCode":"400","code":"InvalidJWT","message":"jwt expired"}', StoreAuthError),
        (401, '{"message":"Invalid API key"}', StoreAuthError),
        (
            404,
            '{"statusCode":404,"error":"Not Found","message":"Route HEAD:/x not found"}',
            StoreError,
        ),
        (404, "<html>404 Not Found</html>", StoreError),
        (404, '{"message":"Route POST:/bucket not found","error":"Not Found"}', StoreError),
    ],
)
def test_errors_map_to_typed_errors(status: int, body: str, error: type[Exception]) -> None:
    err = map_error(status, body, "op")
    assert type(err) is error


def test_server_trouble_is_retryable_and_bad_requests_are_not() -> None:
    assert map_error(500, '{"statusCode":"500","message":"boom"}', "op").retryable
    assert map_error(400, '{"statusCode":"429","message":"slow down"}', "op").retryable
    assert not map_error(400, '{"statusCode":"400","message":"Invalid key"}', "op").retryable


async def test_a_wrong_key_is_an_auth_error(fake: FakeSupabaseStorage) -> None:
    forged = fake.sign_token({"role": "service_role"}).rsplit(".", 1)[0] + ".bad"
    for key_value in (forged, fake.anon_key):
        s = SupabaseStore(url=fake.url, service_key=key_value)
        try:
            with pytest.raises(StoreAuthError):
                await s.put("priv", key(), b"x", content_type="text/plain", cache_control="x")
            with pytest.raises(StoreAuthError):
                await s.head("priv", key())
        finally:
            await s.close()


async def test_new_style_secret_keys_go_in_apikey_only(
    store: SupabaseStore, fake: FakeSupabaseStorage
) -> None:
    s = SupabaseStore(url=fake.url, service_key=fake.secret_key)
    try:
        k = key()
        await s.put("priv", k, b"ok", content_type="text/plain", cache_control="x")
        assert await read_all(s.get("priv", k)) == b"ok"
    finally:
        await s.close()
    wrong = SupabaseStore(url=fake.url, service_key="sb_secret_wrong")
    try:
        with pytest.raises(StoreAuthError):
            await wrong.head("priv", key())
    finally:
        await wrong.close()


async def test_a_wrong_storage_path_is_not_a_missing_object(fake: FakeSupabaseStorage) -> None:
    # The project URL given with a path that is not the API (a typo in a gateway prefix):
    # a missing object must not be what it looks like.
    s = SupabaseStore(url=fake.url + "/storage", service_key=fake.service_key)
    try:
        with pytest.raises(StoreError) as info:
            await s.head("priv", key())
        assert type(info.value) is StoreError and not info.value.retryable
    finally:
        await s.close()


async def test_missing_bucket_is_its_own_error(store: SupabaseStore) -> None:
    with pytest.raises(BucketNotFound):
        await store.put("no-such-bucket", key(), b"x", content_type="text/plain", cache_control="x")
    with pytest.raises(BucketNotFound):
        await store.head("no-such-bucket", key())


# -- uploads -----------------------------------------------------------------------------


async def test_upload_sends_type_cache_control_and_no_upsert(
    store: SupabaseStore, fake: FakeSupabaseStorage
) -> None:
    k = key()
    await store.put("pub", k, b"data", content_type="image/webp", cache_control=cache_control(True))
    obj = fake.objects[("pub", k)]
    assert obj.mimetype == "image/webp"
    assert obj.cache_control == "public, max-age=31536000, immutable"
    with pytest.raises(ObjectExists):
        await store.put("pub", k, b"other", content_type="image/webp", cache_control="x")
    await store.put("pub", k, b"other", content_type="image/webp", cache_control="x", upsert=True)
    assert await read_all(store.get("pub", k)) == b"other"


async def test_upload_streams_the_body(store: SupabaseStore, fake: FakeSupabaseStorage) -> None:
    k = key()

    async def body() -> AsyncIterator[bytes]:
        yield b"\0" * MIB
        # The rest is only produced once the server holds the first MiB: a client that
        # gathered the whole body before sending would wait here until the deadline.
        deadline = time.monotonic() + 30
        while fake.bytes_received("priv", k) < MIB:
            if time.monotonic() > deadline:
                raise AssertionError("the upload was buffered, not streamed")
            await asyncio.sleep(0.01)
        for _ in range(4):
            yield b"\1" * MIB

    info = await store.put("priv", k, body(), content_type="video/mp4", cache_control="x")
    assert info.size == 5 * MIB
    assert fake.objects[("priv", k)].size == 5 * MIB


async def test_bucket_limits_are_enforced_and_mapped(
    store: SupabaseStore, fake: FakeSupabaseStorage
) -> None:
    bucket = f"lim-{uuid.uuid4().hex[:8]}"
    created = await store.create_bucket(
        bucket, public=False, file_size_limit=1000, allowed_mime_types=["image/*", "video/mp4"]
    )
    assert created is True
    assert await store.create_bucket(bucket, file_size_limit=1) is False  # left as it was
    assert fake.buckets[bucket].file_size_limit == 1000
    assert fake.buckets[bucket].allowed_mime_types == ["image/*", "video/mp4"]
    await store.put(bucket, "ok.png", b"x" * 1000, content_type="image/png", cache_control="x")
    with pytest.raises(ObjectTooLarge):
        await store.put(bucket, "big.png", b"x" * 1001, content_type="image/png", cache_control="x")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b"y" * 400

    with pytest.raises(ObjectTooLarge):
        await store.put(bucket, "big2.png", chunks(), content_type="image/png", cache_control="x")
    with pytest.raises(StoreRejectedType):
        await store.put(bucket, "a.txt", b"x", content_type="text/plain", cache_control="x")
    assert {o.key async for o in store.list_objects(bucket)} == {"ok.png"}


async def test_start_sets_public_flag_and_limits(fake: FakeSupabaseStorage) -> None:
    tag = uuid.uuid4().hex[:8]
    s = SupabaseStore(
        url=fake.url,
        service_key=fake.service_key,
        public_buckets=[f"p-{tag}"],
        bucket_file_size_limit=5 * MIB,
        bucket_allowed_mime_types=["image/png"],
    )
    try:
        await s.start([f"a-{tag}", f"p-{tag}"])
        await s.start([f"a-{tag}", f"p-{tag}"])
    finally:
        await s.close()
    assert fake.buckets[f"a-{tag}"].public is False
    assert fake.buckets[f"p-{tag}"].public is True
    assert fake.buckets[f"p-{tag}"].file_size_limit == 5 * MIB
    assert fake.buckets[f"p-{tag}"].allowed_mime_types == ["image/png"]


# -- signing -----------------------------------------------------------------------------


async def test_batch_signing_is_one_request(
    store: SupabaseStore, fake: FakeSupabaseStorage
) -> None:
    keys = [key() for _ in range(25)]
    for k in keys:
        await store.put("priv", k, k.encode(), content_type="text/plain", cache_control="x")
    before = fake.calls("sign_many")
    urls = await store.sign_get_async("priv", keys, 60)
    assert fake.calls("sign_many") == before + 1
    assert fake.calls("sign_one") == 0
    async with aiohttp.ClientSession() as http:
        for k, url in zip(keys[:3], urls[:3], strict=True):
            async with http.get(url) as resp:
                assert (resp.status, await resp.read()) == (200, k.encode())


async def test_signing_a_missing_object_says_which(store: SupabaseStore) -> None:
    present = key()
    await store.put("priv", present, b"x", content_type="text/plain", cache_control="x")
    with pytest.raises(NotFound) as info:
        await store.sign_get_async("priv", [present, "t/absent.bin"], 60)
    assert info.value.detail["keys"] == ["t/absent.bin"]


async def test_expired_and_foreign_tokens_are_refused(
    store: SupabaseStore, fake: FakeSupabaseStorage
) -> None:
    k = key()
    await store.put("priv", k, b"secret", content_type="text/plain", cache_control="x")
    now = int(time.time())
    expired = fake.sign_token(
        {"url": f"priv/{k}", "kind": "download", "iat": now - 20, "exp": now - 10}
    )
    other = fake.sign_token(
        {"url": "priv/t/other", "kind": "download", "iat": now, "exp": now + 60}
    )
    upload = (await store.sign_put_async("priv", k, 60, "text/plain")).url.split("token=")[1]
    async with aiohttp.ClientSession() as http:
        for token in (expired, other, upload):
            async with http.get(f"{fake.storage_url}/object/sign/priv/{k}?token={token}") as r:
                assert r.status in (400, 403)
                assert await r.read() != b"secret"


async def test_signed_upload_url_refuses_an_existing_key(store: SupabaseStore) -> None:
    k = key()
    req = await store.sign_put_async("priv", k, 60, "image/png")
    assert req.headers["cache-control"].startswith("private")
    async with aiohttp.ClientSession() as http:
        async with http.put(req.url, data=b"one", headers=req.headers) as r:
            assert r.status == 200
        async with http.put(req.url, data=b"two", headers=req.headers) as r:
            assert r.status in (400, 409)
    assert await read_all(store.get("priv", k)) == b"one"
    head = await store.head("priv", k)
    assert head is not None and head.content_type == "image/png"


# -- listing and copying -----------------------------------------------------------------


async def test_deleting_while_listing_skips_nothing(fake: FakeSupabaseStorage) -> None:
    s = SupabaseStore(url=fake.url, service_key=fake.service_key, list_page_size=4)
    folder = f"sweep-{uuid.uuid4().hex[:8]}"
    try:
        keys = [f"{folder}/{i:03d}" for i in range(17)]
        for k in keys:
            await s.put("priv", k, b"o", content_type="text/plain", cache_control="x")
        seen = []
        async for info in s.list_objects("priv", f"{folder}/"):
            seen.append(info.key)
            await s.delete("priv", info.key)  # what the orphan sweep does
        assert seen == keys
    finally:
        await s.close()


async def test_cross_bucket_copy_on_an_old_server_falls_back_to_streaming() -> None:
    with FakeSupabaseStorage(legacy_copy=True) as old:
        stores = [
            SupabaseStore(url=old.url, service_key=old.service_key, public_buckets=["pub"])
            for _ in range(2)
        ]
        try:
            await stores[0].start(["priv", "pub"])
            await stores[0].put(
                "priv", "a/src.png", b"pixels", content_type="image/png", cache_control="x"
            )
            # A new key: the old server copies inside the source bucket instead.
            await stores[0].copy("priv", "a/src.png", "pub", "a/dst.png")
            assert await read_all(stores[0].get("pub", "a/dst.png")) == b"pixels"
            assert old.objects[("pub", "a/dst.png")].cache_control.startswith("public")
            assert await stores[0].head("priv", "a/dst.png") is None  # the stray is gone
            # The same key: the old server answers "duplicate" for the source itself.
            await stores[1].copy("priv", "a/src.png", "pub", "a/src.png")
            assert await read_all(stores[1].get("pub", "a/src.png")) == b"pixels"
            assert await read_all(stores[1].get("priv", "a/src.png")) == b"pixels"
        finally:
            for s in stores:
                await s.close()


async def test_head_finds_the_size_when_a_proxy_drops_it() -> None:
    with FakeSupabaseStorage(drop_head_length=True) as fake:
        s = SupabaseStore(url=fake.url, service_key=fake.service_key)
        try:
            await s.start(["priv"])
            await s.put("priv", "a.bin", b"x" * 1234, content_type="video/mp4", cache_control="x")
            async with (
                aiohttp.ClientSession() as http,
                http.head(
                    f"{fake.storage_url}/object/authenticated/priv/a.bin",
                    headers={"Authorization": f"Bearer {fake.service_key}"},
                ) as r,
            ):
                assert r.status == 200 and "Content-Length" not in r.headers
            head = await s.head("priv", "a.bin")
            assert head is not None and head.size == 1234 and head.content_type == "video/mp4"
            assert await s.head("priv", "b.bin") is None
        finally:
            await s.close()
