"""Signed URLs for private assets, plain URLs for public ones, fetched with plain HTTP."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import pytest

from mediakeep import MediaKeep
from mediakeep.settings import Settings
from mediakeep.stores.s3 import S3Store
from tests.conftest import BACKENDS, Backend
from tests.core.helpers import png_bytes
from tests.support.netutil import free_port


def tamper(url: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    out = []
    for k, v in query:
        if k in ("sig", "X-Amz-Signature"):
            v = ("0" if v[0] != "0" else "1") + v[1:]
        out.append((k, v))
    return urlunsplit(parts._replace(query=urlencode(out)))


def unsigned(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(query=""))


async def fetch(url: str) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.read(), dict(resp.headers)


@pytest.mark.parametrize("backend", BACKENDS[:2], ids=lambda b: b.id)
async def test_signed_and_public_urls(backend: Backend, service_for, owner: str) -> None:  # type: ignore[no-untyped-def]
    _svc, settings = service_for(backend)
    async with MediaKeep(settings) as keep:
        data = png_bytes(5)
        private = await keep.put_bytes(data, owner=owner)
        public = await keep.put_bytes(png_bytes(6), owner=owner, public=True)

        status, body, headers = await fetch(private.url or "")
        assert (status, body) == (200, data)
        assert headers["Content-Type"] == "image/png"
        assert headers["Cache-Control"].startswith("private")
        assert "immutable" in headers["Cache-Control"]

        assert (await fetch(tamper(private.url or "")))[0] == 403
        assert (await fetch(unsigned(private.url or "")))[0] == 403

        status, body, headers = await fetch(public.url or "")
        assert (status, body) == (200, png_bytes(6))
        assert headers["Cache-Control"].startswith("public")
        assert "?" not in (public.url or "")

        short = await keep.url(private.id or "", owner=owner, expires_in=1)
        assert (await fetch(short))[0] == 200
        await asyncio.sleep(2.1)
        assert (await fetch(short))[0] == 403


@pytest.mark.parametrize("backend", BACKENDS[:2], ids=lambda b: b.id)
async def test_visibility_moves_the_object(backend: Backend, service_for, owner: str) -> None:  # type: ignore[no-untyped-def]
    _svc, settings = service_for(backend)
    async with MediaKeep(settings) as keep:
        data = png_bytes(8)
        r = await keep.put_bytes(data, owner=owner)
        moved = await keep.set_visibility(r.id or "", True, owner=owner)
        assert moved.bucket == settings.public_bucket and moved.public
        url = await keep.url(r.id or "", owner=owner)
        status, body, headers = await fetch(url)
        assert (status, body) == (200, data)
        # The moved copy keeps its type and takes the public bucket's caching.
        assert headers["Content-Type"] == "image/png"
        assert headers["Cache-Control"].startswith("public")
        assert await keep.store.head(settings.private_bucket, r.key or "") is None
        back = await keep.set_visibility(r.id or "", False, owner=owner)
        assert back.bucket == settings.private_bucket
        assert await keep.store.head(settings.public_bucket, r.key or "") is None
        assert (await fetch(await keep.url(r.id or "")))[:2] == (200, data)


def test_batch_signing_makes_no_network_calls() -> None:
    # Nothing listens on this port: signing 1,000 URLs must still succeed, locally.
    store = S3Store(
        endpoint=f"http://127.0.0.1:{free_port()}",
        region="us-east-1",
        access_key_id="AKIAEXAMPLE",
        secret_access_key="secret",
    )
    keys = [f"o/c/{i}.png" for i in range(1000)]
    urls = store.sign_get("assets", keys, 3600)
    assert len(set(urls)) == 1000
    assert all("X-Amz-Signature=" in u for u in urls)


async def test_urls_skip_other_owners_and_unknown_ids(keep: MediaKeep, owner: str) -> None:
    mine = await keep.put_bytes(png_bytes(30), owner=owner)
    theirs = await keep.put_bytes(png_bytes(31), owner=owner + "x")
    got = await keep.urls([mine.id or "", theirs.id or "", "nope"], owner=owner)
    assert set(got) == {mine.id}


def test_settings_read_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIAKEEP_STORE", "s3")
    monkeypatch.setenv("MEDIAKEEP_MAX_FILE_SIZE", "1234")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMAWS")
    monkeypatch.setenv("MEDIAKEEP_ALLOWED_TYPES", "image/png,image/webp")
    s = Settings()
    assert s.store == "s3" and s.max_file_size == 1234
    assert s.s3_access_key_id == "AKIAFROMAWS"
    assert s.allowed_types == ("image/png", "image/webp")


async def test_a_batch_signs_its_urls_in_one_call_and_each_opens_its_file(
    keep: MediaKeep, owner: str
) -> None:
    calls: list[int] = []
    real = keep.store.sign_get_async

    async def counting(bucket: str, keys: list[str], expires_in: int) -> list[str]:
        calls.append(len(keys))
        return await real(bucket, keys, expires_in)

    keep.store.sign_get_async = counting  # type: ignore[method-assign]
    blobs = [png_bytes(60 + i) for i in range(6)]
    results = await keep.store_many(blobs, owner=owner)
    # Supabase signs on its server: one round trip for the batch, not one per file.
    assert calls == [6]
    for blob, r in zip(blobs, results, strict=True):
        assert r.status == "stored" and r.url
        if keep.settings.store != "local":  # local URLs point at the service, not up here
            status, body, _ = await fetch(r.url)
            assert (status, body) == (200, blob)
