"""SHA-256 of a stream, computed beside the event loop instead of on it.

The event loop thread is what bounds ingest throughput for small files, and hashing was
the largest single cost left on it (about a quarter of its CPU per image). hashlib
releases the GIL for large buffers, so one hasher thread runs truly in parallel; a
stream's updates go to it in order (one thread, FIFO queue), and only the final digest is
awaited.

Updates are handed over in batches, not one by one: a hand-off (a future, a lock, a queue
put, a thread wake-up) costs ~40 µs of the event loop, and a 1 MiB download chunk is only
~0.7 ms of hashing. Chunks wait by reference (no copy) until ``FLUSH_AT`` bytes have
gathered or ``finish()`` is called at the end of the stream, so an image is usually one
hand-off (digest included), made when its body is in, and hashed while it uploads."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

# Below this a stream that was never handed over is cheaper to hash inline.
INLINE_BELOW = 64 * 1024
# Pending chunks are handed over once this many bytes have gathered (bounded: the chunks
# are the stream's own buffers, kept alive until hashed).
FLUSH_AT = 4 * 1024 * 1024

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _hasher_thread() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(1, thread_name_prefix="mk-sha256")
    return _pool


class StreamHash:
    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self._offloaded = False
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._digest: Future[str] | None = None

    def update(self, data: bytes) -> None:
        if self._digest is not None:
            raise RuntimeError("the stream was already finished")
        if not self._offloaded and not self._pending and len(data) < INLINE_BELOW:
            self._h.update(data)
            return
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= FLUSH_AT:
            self._hand_over(final=False)

    def finish(self) -> None:
        """The stream has ended: hash what is left in the thread, digest included, in one
        hand-off, while the caller goes on (the upload)."""
        if self._digest is None and (self._pending or self._offloaded):
            self._hand_over(final=True)

    def _hand_over(self, final: bool) -> None:
        # Once one batch went to the thread, all later ones must follow it there.
        self._offloaded = True
        batch, self._pending, self._pending_size = self._pending, [], 0
        pool = _hasher_thread()
        if final:
            self._digest = pool.submit(_update_all, self._h, batch, True)
        else:
            pool.submit(_update_all, self._h, batch, False)

    async def hexdigest(self) -> str:
        self.finish()
        if self._digest is None:
            return self._h.hexdigest()
        return await asyncio.wrap_future(self._digest)


def _update_all(h: Any, chunks: list[bytes], digest: bool) -> str:
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest() if digest else ""
