"""The stored sha256 is the hash of exactly the bytes stored, however the stream was cut
(small pieces are hashed inline, large ones in the hasher thread, in order)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from mediakeep.pipeline import hashing
from mediakeep.pipeline.hashing import INLINE_BELOW, StreamHash
from tests.support.aio import run_sync

DATA = os.urandom(3 * INLINE_BELOW + 12345)


@settings(max_examples=50, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(DATA)), max_size=20))
def test_digest_matches_hashlib_for_any_chunking(cuts: list[int]) -> None:
    bounds = [0, *sorted(set(cuts)), len(DATA)]

    async def digest() -> str:
        h = StreamHash()
        for a, b in itertools.pairwise(bounds):
            h.update(DATA[a:b])
        return await h.hexdigest()

    assert run_sync(digest()) == hashlib.sha256(DATA).hexdigest()


async def test_many_streams_hashed_at_once_do_not_mix() -> None:
    blobs = [os.urandom(INLINE_BELOW * 2 + i) for i in range(16)]

    async def one(blob: bytes) -> str:
        h = StreamHash()
        for i in range(0, len(blob), 50_000):
            h.update(blob[i : i + 50_000])
            await asyncio.sleep(0)
        return await h.hexdigest()

    got = await asyncio.gather(*(one(b) for b in blobs))
    assert got == [hashlib.sha256(b).hexdigest() for b in blobs]


async def test_a_body_is_handed_to_the_hasher_in_one_batch_once_it_ends() -> None:
    # Each hand-off costs the event loop more than hashing a chunk: an image's chunks go
    # over together when its body is in, not one by one.
    calls: list[int] = []
    h = StreamHash()
    real = hashing._hasher_thread()
    submit = real.submit

    def counting(fn: object, *args: object) -> object:
        calls.append(len(args))
        return submit(fn, *args)  # type: ignore[arg-type]

    real.submit = counting  # type: ignore[method-assign]
    try:
        blob = os.urandom(3 * 1024 * 1024)
        for i in range(0, len(blob), 256 * 1024):
            h.update(blob[i : i + 256 * 1024])
        assert calls == []  # nothing handed over while the body is still arriving
        h.finish()
        assert await h.hexdigest() == hashlib.sha256(blob).hexdigest()
        assert len(calls) == 1  # the digest came with the last batch
        # A long stream is handed over every FLUSH_AT bytes, so it waits for no end.
        calls.clear()
        long = StreamHash()
        piece = os.urandom(1024 * 1024)
        for _ in range(3 * hashing.FLUSH_AT // len(piece)):
            long.update(piece)
        assert len(calls) == 3
        assert (
            await long.hexdigest()
            == hashlib.sha256(piece * (3 * hashing.FLUSH_AT // len(piece))).hexdigest()
        )
    finally:
        real.submit = submit  # type: ignore[method-assign]
