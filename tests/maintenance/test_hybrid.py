"""Hybrid storage: local first, a real SeaweedFS behind it, and that SeaweedFS going away."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from mediakeep import MediaKeep
from mediakeep.errors import NotFound
from mediakeep.signing import UrlSigner
from mediakeep.stores.base import ByteRange
from mediakeep.stores.hybrid import HybridStore
from tests.conftest import PRIVATE_BUCKET, PUBLIC_BUCKET, ServiceThread
from tests.core.helpers import png_bytes
from tests.maintenance.conftest import (
    hybrid_settings,
    read_all,
    remote_keys,
    s3_of,
    set_atime,
)
from tests.support.netutil import free_port
from tests.support.seaweed import SeaweedS3


@pytest.fixture(scope="module")
def outage_seaweed() -> Iterator[SeaweedS3]:
    """A SeaweedFS of this module's own, so stopping it disturbs no other test."""
    server = SeaweedS3()
    server.start()
    try:
        yield server
    finally:
        server.close()


async def test_writes_survive_a_remote_outage_and_replicate_when_it_returns(
    outage_seaweed: SeaweedS3, tmp_path: Path, request: pytest.FixtureRequest, owner: str
) -> None:
    sw = outage_seaweed
    settings = hybrid_settings(
        tmp_path,
        request,
        sw,
        variants_enabled=False,
        hybrid_retry_max=0.5,
        hybrid_cache_max_bytes=1,  # every replicated copy is over the cap: evict them all
    )
    blobs = [png_bytes(1000 + i) for i in range(100)]
    sw.stop()
    try:
        async with MediaKeep(settings) as keep:
            store = keep.store
            assert isinstance(store, HybridStore)
            results = await keep.store_many(blobs, owner=owner, concurrency=8)
            assert [r.status for r in results] == ["stored"] * 100
            waiting = await store.status()
            assert (waiting.pending_puts, waiting.pending_deletes) == (100, 0)
            assert waiting.pending_bytes == sum(len(b) for b in blobs)
            # Nothing can be evicted while the remote is away: these are the only copies.
            assert (await store.clean_cache()).evicted == 0

            sw.start()
            left = await store.flush(within=120)
            assert left.backlog == 0 and left.conflicts == 0
            remote = s3_of(sw)
            assert await remote_keys(remote, PRIVATE_BUCKET, f"{owner}/") == {
                r.key for r in results
            }

            cleaned = await store.clean_cache()
            assert cleaned.evicted == 100 and cleaned.adopted == 0
            for r in results:
                assert not store.path_for(PRIVATE_BUCKET, str(r.key)).exists()
            for r, blob in zip(results, blobs, strict=True):
                asset = await keep.get(str(r.id), owner=owner)
                assert await read_all(keep.get_asset_stream(asset)) == blob
                # ...and the read put it back in the local cache.
                assert store.path_for(PRIVATE_BUCKET, asset.key).read_bytes() == blob
            await remote.close()
    finally:
        if not sw.running:
            sw.start()


async def test_local_only_mode_then_the_remote_catches_up(
    seaweed: SeaweedS3, tmp_path: Path, request: pytest.FixtureRequest, owner: str
) -> None:
    off = hybrid_settings(tmp_path, request, None, variants_enabled=False)
    async with MediaKeep(off) as keep:
        store = keep.store
        assert isinstance(store, HybridStore) and store.remote is None
        kept = await keep.put_bytes(png_bytes(1), owner=owner)
        dropped = await keep.put_bytes(png_bytes(2), owner=owner)
        await keep.delete(str(dropped.id), owner=owner)
        asset = await keep.get(str(kept.id), owner=owner)
        assert await read_all(keep.get_asset_stream(asset)) == png_bytes(1)
        assert "sig=" in await keep.url(str(kept.id))
        waiting = await store.status()
        assert (waiting.remote, waiting.pending_puts, waiting.pending_deletes) == ("none", 1, 1)
        assert (await store.clean_cache()).evicted == 0

    on = hybrid_settings(tmp_path, request, seaweed, variants_enabled=False)
    async with MediaKeep(on) as keep:
        store = keep.store
        assert isinstance(store, HybridStore)
        assert (await store.flush(within=60)).backlog == 0
        remote = s3_of(seaweed)
        assert await remote_keys(remote, PRIVATE_BUCKET, f"{owner}/") == {kept.key}
        await remote.close()


async def test_a_delete_hides_the_remote_copy_at_once(hybrid: HybridStore) -> None:
    key = f"h-{uuid.uuid4().hex}/a.png"
    await hybrid.put(PRIVATE_BUCKET, key, b"abc", content_type="image/png", cache_control="x")
    assert (await hybrid.flush(within=60)).backlog == 0
    hybrid.path_for(PRIVATE_BUCKET, key).unlink()  # as if evicted
    head = await hybrid.head(PRIVATE_BUCKET, key)
    assert head is not None and head.size == 3
    assert [o.key async for o in hybrid.list_objects(PRIVATE_BUCKET, key)] == [key]

    await hybrid.delete(PRIVATE_BUCKET, key)
    assert await hybrid.head(PRIVATE_BUCKET, key) is None
    with pytest.raises(NotFound):
        await read_all(hybrid.get(PRIVATE_BUCKET, key))
    assert [o async for o in hybrid.list_objects(PRIVATE_BUCKET, key)] == []
    assert hybrid.remote is not None
    assert await hybrid.remote.head(PRIVATE_BUCKET, key) is not None  # not yet replicated
    assert (await hybrid.flush(within=60)).backlog == 0
    assert await hybrid.remote.head(PRIVATE_BUCKET, key) is None


async def test_copy_and_ranges_of_remote_only_objects(hybrid: HybridStore) -> None:
    prefix = f"h-{uuid.uuid4().hex}"
    data = bytes(range(256)) * 8
    await hybrid.put(
        PRIVATE_BUCKET, f"{prefix}/src.bin", data, content_type="video/mp4", cache_control="x"
    )
    assert (await hybrid.flush(within=60)).backlog == 0
    hybrid.path_for(PRIVATE_BUCKET, f"{prefix}/src.bin").unlink()
    part = await read_all(hybrid.get(PRIVATE_BUCKET, f"{prefix}/src.bin", ByteRange(10, 19)))
    assert part == data[10:20]
    hybrid.path_for(PRIVATE_BUCKET, f"{prefix}/src.bin").unlink()
    await hybrid.copy(PRIVATE_BUCKET, f"{prefix}/src.bin", PUBLIC_BUCKET, f"{prefix}/dst.bin")
    assert (await hybrid.flush(within=60)).backlog == 0
    assert hybrid.remote is not None
    copied = await read_all(hybrid.remote.get(PUBLIC_BUCKET, f"{prefix}/dst.bin"))
    assert copied == data


async def test_eviction_is_lru_and_ttl_and_spares_what_waits(hybrid: HybridStore) -> None:
    prefix = f"h-{uuid.uuid4().hex}"
    keys = [f"{prefix}/{i}.bin" for i in range(4)]
    for k in keys:
        await hybrid.put(PRIVATE_BUCKET, k, b"x" * 100, content_type="video/mp4", cache_control="x")
    assert (await hybrid.flush(within=60)).backlog == 0
    waiting = f"{prefix}/waiting.bin"
    await hybrid.put(
        PRIVATE_BUCKET, waiting, b"w" * 100, content_type="video/mp4", cache_control="x"
    )
    now = time.time()
    last_read = {keys[0]: now - 10, keys[1]: now - 50, keys[2]: now - 30, keys[3]: now - 20}
    for k, t in last_read.items():
        set_atime(hybrid.path_for(PRIVATE_BUCKET, k), t)
    set_atime(hybrid.path_for(PRIVATE_BUCKET, waiting), now - 10_000)
    # Other tests' files share nothing with this root; the cap counts this root only.
    hybrid.cache_max_bytes, hybrid.cache_ttl = 300, 1000

    report = await hybrid.clean_cache(now=now)
    assert (report.evicted, report.evicted_bytes) == (2, 200)
    here = {k for k in [*keys, waiting] if hybrid.path_for(PRIVATE_BUCKET, k).exists()}
    assert here == {keys[0], keys[3], waiting}  # the two least recently read went

    report = await hybrid.clean_cache(now=now + 985)  # keys[3] unread for 1005 s
    assert report.evicted == 1
    here = {k for k in [*keys, waiting] if hybrid.path_for(PRIVATE_BUCKET, k).exists()}
    assert here == {keys[0], waiting}  # never the one that still waits for replication


async def test_files_from_before_hybrid_are_replicated_not_evicted(hybrid: HybridStore) -> None:
    key = f"h-{uuid.uuid4().hex}/old.png"
    path = hybrid.path_for(PRIVATE_BUCKET, key)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"written by the local store, before hybrid")
    hybrid.cache_max_bytes = 1
    report = await hybrid.clean_cache()
    assert report.adopted >= 1 and path.exists()
    assert (await hybrid.flush(within=60)).backlog == 0
    assert hybrid.remote is not None
    assert await read_all(hybrid.remote.get(PRIVATE_BUCKET, key)) == path.read_bytes()
    await hybrid.clean_cache()
    assert not path.exists()
    assert (await read_all(hybrid.get(PRIVATE_BUCKET, key))).startswith(b"written by")


async def test_the_journal_survives_a_restart(seaweed: SeaweedS3, tmp_path: Path) -> None:
    prefix = f"h-{uuid.uuid4().hex}"

    def make() -> HybridStore:
        return HybridStore(
            tmp_path / "objects", "http://x", UrlSigner("s"), s3_of(seaweed), background=False
        )

    first = make()
    await first.start([PRIVATE_BUCKET])
    for i in range(3):
        await first.put(
            PRIVATE_BUCKET, f"{prefix}/{i}", b"%d" % i, content_type="image/png", cache_control="x"
        )
    await first.close()  # "crash": nothing was replicated

    second = make()
    await second.start([PRIVATE_BUCKET])
    assert (await second.status()).pending_puts == 3
    assert (await second.flush(within=60)).backlog == 0
    assert second.remote is not None
    assert await remote_keys(second.remote, PRIVATE_BUCKET, f"{prefix}/") == {
        f"{prefix}/{i}" for i in range(3)
    }
    await second.close()


async def test_other_bytes_on_the_remote_are_a_conflict_not_a_loss(hybrid: HybridStore) -> None:
    key = f"h-{uuid.uuid4().hex}/c.png"
    assert hybrid.remote is not None
    await hybrid.remote.put(PRIVATE_BUCKET, key, b"remote!", content_type="x", cache_control="x")
    await hybrid.put(PRIVATE_BUCKET, key, b"local bytes", content_type="x", cache_control="x")
    left = await hybrid.flush(within=60)
    assert (left.backlog, left.conflicts) == (0, 1)
    hybrid.cache_max_bytes = 1
    await hybrid.clean_cache()
    assert await read_all(hybrid.get(PRIVATE_BUCKET, key)) == b"local bytes"


async def test_the_service_serves_evicted_objects_from_the_remote(
    seaweed: SeaweedS3, tmp_path: Path, request: pytest.FixtureRequest, owner: str
) -> None:
    port = free_port()
    settings = hybrid_settings(
        tmp_path, request, seaweed, base_url=f"http://127.0.0.1:{port}", variants_enabled=False
    )
    svc = ServiceThread(settings, port).start()
    try:
        async with MediaKeep(settings) as keep:
            store = keep.store
            assert isinstance(store, HybridStore)
            stored = await keep.put_bytes(png_bytes(7), owner=owner)
            assert (await store.flush(within=60)).backlog == 0
            store.cache_max_bytes = 1
            assert (await store.clean_cache()).evicted >= 1
            url = await keep.url(str(stored.id))
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http,
                http.get(url) as resp,
            ):
                assert resp.status == 200
                assert await resp.read() == png_bytes(7)
    finally:
        svc.stop()


async def test_a_write_in_progress_is_not_dropped_by_a_replication_round(
    hybrid: HybridStore,
) -> None:
    key = f"h-{uuid.uuid4().hex}/slow.bin"
    release = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"first half, "
        await release.wait()
        yield b"second half"

    writing = asyncio.create_task(
        hybrid.put(PRIVATE_BUCKET, key, body(), content_type="video/mp4", cache_control="x")
    )
    while not any(hybrid.root.joinpath(".tmp").iterdir()):
        await asyncio.sleep(0.01)  # the write has begun: its bytes are on their way
    await hybrid.replicate()  # a round (this process's, or another's) runs meanwhile
    release.set()
    await writing
    assert (await hybrid.status()).pending_puts == 1
    assert (await hybrid.flush(within=60)).backlog == 0
    assert hybrid.remote is not None
    assert await read_all(hybrid.remote.get(PRIVATE_BUCKET, key)) == b"first half, second half"


async def test_a_write_that_died_before_its_entry_moved_still_replicates(
    seaweed: SeaweedS3, tmp_path: Path
) -> None:
    store = HybridStore(
        tmp_path / "objects", "http://x", UrlSigner("s"), s3_of(seaweed), background=False
    )
    await store.start([PRIVATE_BUCKET])
    key = f"h-{uuid.uuid4().hex}/crashed.png"
    await store.put(PRIVATE_BUCKET, key, b"bytes", content_type="image/png", cache_control="x")
    # Put the entry back where a write leaves it until its file is complete, as if the
    # process died right between the two steps.
    puts, intents = store.root / ".hybrid" / "put", store.root / ".hybrid" / "intent"
    for entry in puts.iterdir():
        entry.rename(intents / entry.name)
    await store.close()

    again = HybridStore(
        tmp_path / "objects", "http://x", UrlSigner("s"), s3_of(seaweed), background=False
    )
    await again.start([PRIVATE_BUCKET])
    assert (await again.status()).pending_puts == 1
    assert (await again.flush(within=60)).backlog == 0
    assert again.remote is not None
    assert await again.remote.head(PRIVATE_BUCKET, key) is not None
    await again.close()
