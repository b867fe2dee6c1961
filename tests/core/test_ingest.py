"""The store pipeline end to end, on every database x store combination."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from PIL import Image

from mediakeep import MediaKeep
from mediakeep.models import ItemProgress
from mediakeep.pipeline.store import WHOLE_BODY
from tests.conftest import KeepFactory
from tests.core.helpers import assert_nothing_stored, keys_in_store, png_bytes, rows_for
from tests.support.provider import Provider, payload_sha256


async def test_ingest_url_stores_bytes_and_records_them(
    keep: MediaKeep, provider: Provider, owner: str
) -> None:
    url = provider.url("/img/7.png")
    result = await keep.ingest_url(
        url, owner=owner, collection="gen-1", provider="fal-ai", metadata={"prompt": "a cat"}
    )
    assert result.status == "stored", result.error
    assert result.content_type == "image/png"
    assert result.key == f"{owner}/gen-1/{result.id}.png"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        original = await resp.read()
    assert result.size == len(original)
    assert result.sha256 == hashlib.sha256(original).hexdigest()

    asset = await keep.get(result.id or "", owner=owner)
    assert asset.source_url == url
    assert asset.provider == "fal-ai"
    assert asset.metadata == {"prompt": "a cat"}
    assert (asset.width, asset.height) == (64, 64)
    assert asset.media_kind == "image"
    assert asset.visibility == "private"

    stored = b"".join([c async for c in keep.store.get(asset.bucket, asset.key)])
    assert stored == original


async def test_same_bytes_twice_for_one_owner_store_one_object(
    keep: MediaKeep, provider: Provider, owner: str
) -> None:
    first = await keep.ingest_url(provider.url("/img/11.png"), owner=owner)
    second = await keep.put_bytes(
        b"".join([c async for c in keep.store.get(first.asset.bucket, first.key or "")])
        if first.asset
        else b"",
        owner=owner,
    )
    assert (first.status, second.status) == ("stored", "deduplicated")
    assert second.id != first.id
    assert second.key == first.key
    assert len(await keys_in_store(keep, owner)) == 1
    assert await rows_for(keep, owner) == (2, 1)


async def test_the_same_bytes_stored_concurrently_become_one_object(
    keep: MediaKeep, owner: str
) -> None:
    # Every writer finds no twin, then all but one lose the race on the owner's
    # (bucket, sha256) constraint at finalize and must come back as duplicates.
    data = png_bytes(41)
    results = await keep.store_many([data] * 12, owner=owner, concurrency=12)
    statuses = sorted(r.status for r in results)
    assert statuses == ["deduplicated"] * 11 + ["stored"], [r.error for r in results]
    assert len({r.key for r in results}) == 1
    assert len(await keys_in_store(keep, owner)) == 1
    assert await rows_for(keep, owner) == (12, 1)


async def test_a_stream_that_refills_one_buffer_is_stored_as_sent(
    keep: MediaKeep, owner: str
) -> None:
    noise = Image.frombytes("RGB", (300, 300), os.urandom(300 * 300 * 3))
    out = io.BytesIO()
    noise.save(out, "PNG")
    data = out.getvalue()  # ~270 KB: many chunks
    buf = bytearray(64 * 1024)

    async def chunks() -> AsyncIterator[bytearray]:
        # One buffer, refilled for every chunk, as a reader into a fixed buffer does.
        for i in range(0, len(data), len(buf)):
            piece = data[i : i + len(buf)]
            buf[: len(piece)] = piece
            yield buf if len(piece) == len(buf) else bytearray(piece)

    result = await keep.put_stream(chunks(), owner=owner)  # type: ignore[arg-type]
    assert result.status == "stored", result.error
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    asset = result.asset
    assert asset is not None
    stored = b"".join([c async for c in keep.store.get(asset.bucket, asset.key)])
    assert stored == data


async def test_same_bytes_for_two_owners_store_two_objects(
    keep: MediaKeep, provider: Provider, owner: str
) -> None:
    other = owner + "b"
    a = await keep.ingest_url(provider.url("/img/12.png"), owner=owner)
    b = await keep.ingest_url(provider.url("/img/12.png"), owner=other)
    assert (a.status, b.status) == ("stored", "stored")
    assert a.sha256 == b.sha256 and a.key != b.key
    assert len(await keys_in_store(keep, owner)) == 1
    assert len(await keys_in_store(keep, other)) == 1
    # Neither owner can reach the other's asset.
    assert (await keep.urls([a.id or "", b.id or ""], owner=owner)).keys() == {a.id}


async def test_deleting_a_shared_object_keeps_bytes_until_last_reference(
    keep: MediaKeep, owner: str
) -> None:
    data = png_bytes(3)
    a = await keep.put_bytes(data, owner=owner)
    b = await keep.put_bytes(data, owner=owner)
    await keep.delete(a.id or "", owner=owner)
    assert len(await keys_in_store(keep, owner)) == 1
    assert (await keep.get(b.id or "")).sha256 == a.sha256
    await keep.delete(b.id or "", owner=owner)
    await assert_nothing_stored(keep, owner)


async def test_server_lying_about_type_is_rejected_and_nothing_stored(
    keep: MediaKeep, provider: Provider, owner: str
) -> None:
    result = await keep.ingest_url(provider.url("/html-as-png"), owner=owner)
    assert result.status == "failed"
    assert result.error and result.error["code"] == "unsupported_media_type"
    await assert_nothing_stored(keep, owner)


async def test_real_type_wins_over_header_and_extension(
    keep: MediaKeep, provider: Provider, owner: str
) -> None:
    result = await keep.ingest_url(provider.url("/img-wrong-ext/5.jpg"), owner=owner)
    assert result.status == "stored"
    assert result.content_type == "image/png"
    assert (result.key or "").endswith(".png")


async def test_server_lying_about_length_is_rejected_and_nothing_stored(
    keep: MediaKeep, provider: Provider, owner: str
) -> None:
    result = await keep.ingest_url(provider.raw_url("/lie-length"), owner=owner)
    assert result.status == "failed"
    await assert_nothing_stored(keep, owner)


async def test_body_cut_short_is_rejected_and_nothing_stored(
    keep: MediaKeep, provider: Provider, owner: str
) -> None:
    result = await keep.ingest_url(provider.raw_url("/short"), owner=owner)
    assert result.status == "failed"
    assert result.error and result.error["code"] in ("download_failed", "size_mismatch")
    await assert_nothing_stored(keep, owner)


async def test_flaky_server_succeeds_on_retry(
    keep: MediaKeep, provider: Provider, owner: str
) -> None:
    path = f"/flaky/{owner}?fail=2&code=503"
    result = await keep.ingest_url(provider.url(path), owner=owner)
    assert result.status == "stored", result.error
    assert provider.hits(f"/flaky/{owner}") == 3


async def test_retry_after_is_honoured(keep: MediaKeep, provider: Provider, owner: str) -> None:
    path = f"/flaky/{owner}?fail=1&code=429&retry_after=1"
    result = await keep.ingest_url(provider.url(path), owner=owner)
    assert result.status == "stored", result.error
    assert provider.hits(f"/flaky/{owner}") == 2


async def test_not_found_fails_fast_without_retry(
    keep: MediaKeep, provider: Provider, owner: str
) -> None:
    path = f"/status/404?o={owner}"
    result = await keep.ingest_url(provider.url(path), owner=owner)
    assert result.status == "failed"
    assert result.error and result.error["code"] == "upstream_status"
    assert provider.hits("/status/404") >= 1
    before = provider.hits("/status/404")
    await keep.ingest_url(provider.url(path), owner=owner)
    assert provider.hits("/status/404") == before + 1
    await assert_nothing_stored(keep, owner)


async def test_size_cap_enforced_while_streaming(
    keeps: KeepFactory, provider: Provider, owner: str
) -> None:
    keep = await keeps.open(max_file_size=1_000_000)
    # Chunked: no Content-Length to check up front, the cap fires mid-stream.
    chunked = await keep.ingest_url(provider.url("/bytes/50000000?kind=png&cl=0"), owner=owner)
    assert chunked.error and chunked.error["code"] == "file_too_large"
    declared = await keep.ingest_url(provider.url("/bytes/50000000?kind=png&cl=1"), owner=owner)
    assert declared.error and declared.error["code"] == "file_too_large"
    await assert_nothing_stored(keep, owner)


async def test_batch_reports_each_item_and_progress(
    keep: MediaKeep, provider: Provider, owner: str
) -> None:
    urls = [
        provider.url("/img/21.png"),
        provider.url("/html-as-png"),
        provider.url("/img/22.jpg"),
        provider.url("/img/21.png"),
    ]
    events: list[ItemProgress] = []
    results = await keep.ingest_urls(urls, owner=owner, concurrency=2, progress=events.append)
    statuses = [r.status for r in results]
    assert statuses[1:3] == ["failed", "stored"]
    # The same bytes twice: whichever finishes second points at the first one's object.
    assert {statuses[0], statuses[3]} == {"stored", "deduplicated"}
    assert results[0].key == results[3].key
    assert [r.source for r in results] == urls
    finished = [e for e in events if e.status != "downloading"]
    assert len(finished) == 4
    assert max(e.items_done for e in finished) == 4
    assert all(e.items_total == 4 for e in events)


async def test_large_stream_is_stored_intact(
    keep: MediaKeep, provider: Provider, owner: str
) -> None:
    # 20 MB: above the single-PUT limit, so S3 takes the multipart path.
    url = provider.url("/bytes/20000000?kind=mp4&cl=0")
    result = await keep.ingest_url(url, owner=owner)
    assert result.status == "stored", result.error
    assert result.content_type == "video/mp4"
    assert result.size == 20_000_000
    h = hashlib.sha256()
    async for chunk in keep.store.get(
        result.asset.bucket if result.asset else "", result.key or ""
    ):
        h.update(chunk)
    assert h.hexdigest() == result.sha256


@pytest.mark.parametrize("extra", [0, 1])
async def test_bodies_at_the_single_buffer_limit_are_stored_intact(
    keep: MediaKeep, provider: Provider, owner: str, extra: int
) -> None:
    # Up to WHOLE_BODY the body goes to the store as one buffer; one byte more and what was
    # already read is replayed ahead of the rest of the stream.
    n = WHOLE_BODY + extra
    result = await keep.ingest_url(provider.url(f"/bytes/{n}?kind=mp4&cl=0"), owner=owner)
    assert result.status == "stored", result.error
    assert result.size == n and result.sha256 == payload_sha256(n, "mp4")
    h = hashlib.sha256()
    async for chunk in keep.store.get(
        result.asset.bucket if result.asset else "", result.key or ""
    ):
        h.update(chunk)
    assert h.hexdigest() == result.sha256


async def test_the_concurrency_limit_is_on_transfers_not_on_finalizing_records(
    keeps: KeepFactory, owner: str
) -> None:
    # With one transfer at a time, the second file starts while the first one's record is
    # still being finalized: that step holds no buffers, so it holds no transfer slot.
    # (Variants are made and uploaded after the record, inside the slot: off here.)
    keep = await keeps.open(variants_enabled=False, placeholders=False)
    first_finalizing = asyncio.Event()
    let_finalize = asyncio.Event()
    begun: list[str] = []
    real_finalize, real_begin = keep.repo.finalize, keep.repo.begin_write

    async def finalize(pending: Any, **kw: Any) -> Any:
        if not first_finalizing.is_set():
            first_finalizing.set()
            await let_finalize.wait()
        return await real_finalize(pending, **kw)

    async def begin_write(**kw: Any) -> Any:
        begun.append(kw["asset_id"])
        if len(begun) == 2:
            let_finalize.set()  # the second transfer began while the first was held
        return await real_begin(**kw)

    keep.repo.finalize = finalize  # type: ignore[method-assign]
    keep.repo.begin_write = begin_write  # type: ignore[method-assign]
    results = await asyncio.wait_for(
        keep.store_many([png_bytes(70), png_bytes(71)], owner=owner, concurrency=1), 20
    )
    assert [r.status for r in results] == ["stored", "stored"]
    assert len(begun) == 2
