"""A store cancelled while its finalize waits its turn in SQLite's writer thread: the
rollback waits for that transaction's outcome instead of racing it, so the file is kept
whole (row stored, object present), never a stored row whose object was deleted."""

from __future__ import annotations

import asyncio
import io
import os
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select

from mediakeep import MediaKeep
from mediakeep.db import writes
from mediakeep.db.models import Asset, StoredObject
from tests.conftest import BACKENDS, Backend

SQLITE_LOCAL = [b for b in BACKENDS if b.db == "sqlite" and b.store == "local"]


@pytest.mark.parametrize("backend", SQLITE_LOCAL, ids=lambda b: b.id)
async def test_cancelling_during_a_queued_finalize_loses_nothing(
    backend: Backend, keep: MediaKeep, owner: str
) -> None:
    buf = io.BytesIO()
    Image.frombytes("RGB", (256, 256), os.urandom(256 * 256 * 3)).save(buf, "PNG")
    data = buf.getvalue()
    head = 96 * 1024  # past what the pipeline reads before writing the pending rows
    body_sent = asyncio.Event()
    finish_body = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield data[:head]
        await asyncio.sleep(0)
        body_sent.set()
        await finish_body.wait()
        yield data[head:]

    # Know when the pending rows are committed (while the body downloads), and when the
    # finalize is handed to the writer thread.
    pending_written = asyncio.Event()
    finalize_queued = asyncio.Event()
    real_run = keep.repo.writes.run

    async def run(fn: Any, /, **kwargs: Any) -> Any:
        if fn is writes.finalize:
            finalize_queued.set()
        result = await real_run(fn, **kwargs)
        if fn is writes.insert_pending:
            pending_written.set()
        return result

    keep.repo.writes.run = run  # type: ignore[method-assign]
    storing = asyncio.ensure_future(keep.put_stream(body(), owner=owner))
    await asyncio.wait_for(body_sent.wait(), 10)
    await asyncio.wait_for(pending_written.wait(), 10)
    (bucket, key) = (await _rows(keep, owner))[0][1:]

    # Occupy the writer thread, so the finalize queues behind this transaction.
    gate = threading.Event()
    blocker = asyncio.ensure_future(real_run(lambda c: gate.wait(10)))
    finish_body.set()
    await asyncio.wait_for(finalize_queued.wait(), 10)
    await asyncio.sleep(0.05)  # into the thread's queue
    storing.cancel()
    # Let the queued finalize go once the rollback has had its chance to delete the
    # object (at most a second): a rollback that does not wait for it deletes at once.
    for _ in range(20):
        if await keep.store.head(bucket, key) is None:
            break
        await asyncio.sleep(0.05)
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await storing
    await blocker

    # The final write was already under way when the cancel came: its outcome stands,
    # whole. (Before, the rollback deleted the object at once while the finalize still
    # waited its turn: the file was lost, or worse, recorded as stored without its bytes.)
    rows = await _rows(keep, owner)
    assert [r[0] for r in rows] == ["stored"]
    assert await keep.store.head(rows[0][1], rows[0][2]) is not None


async def _rows(keep: MediaKeep, owner: str) -> list[Any]:
    async with keep.repo.reads() as s:
        return list(
            (
                await s.execute(
                    select(Asset.status, StoredObject.bucket, StoredObject.key)
                    .join(StoredObject, Asset.object_id == StoredObject.id)
                    .where(Asset.owner == owner)
                )
            ).all()
        )
