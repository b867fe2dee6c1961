"""The stored sha256 is the hash of exactly the bytes stored, however the stream was cut
(small pieces are hashed inline, large ones in the hasher thread, in order)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os

from hypothesis import given, settings
from hypothesis import strategies as st

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
