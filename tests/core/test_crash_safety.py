"""Interrupted writes leave nothing that looks complete, and the sweep finishes them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from mediakeep import MediaKeep, StreamSource
from mediakeep.pipeline.store import StoreRequest
from tests.core.helpers import assert_nothing_stored, keys_in_store, png_bytes, rows_for


class Boom(Exception):
    pass


async def test_stream_failing_midway_leaves_nothing(keep: MediaKeep, owner: str) -> None:
    data = png_bytes(40, size=400)

    async def stream() -> AsyncIterator[bytes]:
        yield data[:70_000]
        raise Boom("source died")

    with pytest.raises(Boom):
        await keep.pipeline.run(StreamSource(stream()), StoreRequest(owner=owner, collection="c"))
    await assert_nothing_stored(keep, owner)


async def test_crashed_writer_is_swept(keep: MediaKeep, owner: str) -> None:
    # Phase one and the upload happened, then the process died before phase three.
    key = f"{owner}/c/crashed.png"
    await keep.repo.begin_write(
        owner=owner,
        collection="c",
        slot=None,
        public=False,
        bucket=keep.settings.private_bucket,
        key=key,
        content_type="image/png",
        media_kind="image",
        source_url=None,
        provider=None,
        metadata={},
        asset_id="00000000-0000-4000-8000-" + owner[-12:].rjust(12, "0"),
    )
    await keep.store.put(
        keep.settings.private_bucket,
        key,
        png_bytes(41),
        content_type="image/png",
        cache_control="private",
    )
    assert await rows_for(keep, owner) == (1, 1)
    # A pending write is invisible: it never shows up as an asset.
    assert (await keep.list(owner=owner)).items == []

    await keep.sweep(older_than=timedelta(hours=1))
    assert await rows_for(keep, owner) == (1, 1)  # too young: its writer may be alive
    report = await keep.sweep(older_than=timedelta(seconds=0))
    assert report.pending_removed >= 1
    await assert_nothing_stored(keep, owner)


async def test_orphan_objects_are_found_by_the_sweep(keep: MediaKeep, owner: str) -> None:
    kept = await keep.put_bytes(png_bytes(42), owner=owner)
    await keep.store.put(
        keep.settings.private_bucket,
        f"{owner}/c/orphan.png",
        png_bytes(43),
        content_type="image/png",
        cache_control="private",
    )
    report = await keep.sweep(older_than=timedelta(seconds=0), orphans=True)
    assert report.orphan_objects_removed >= 1
    assert await keys_in_store(keep, owner) == [f"{keep.settings.private_bucket}/{kept.key}"]
