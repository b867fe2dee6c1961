"""SHA-256 of a stream, computed beside the event loop instead of on it.

The event loop thread is what bounds ingest throughput for small files, and hashing was
the largest single cost left on it (about a quarter of its CPU per image). hashlib
releases the GIL for large buffers, so one hasher thread runs truly in parallel; a
stream's updates go to it in order (one thread, FIFO queue), and only the final digest is
awaited."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor

# Below this a chunk is cheaper to hash than to hand to another thread.
INLINE_BELOW = 64 * 1024

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

    def update(self, data: bytes) -> None:
        if not self._offloaded and len(data) < INLINE_BELOW:
            self._h.update(data)
            return
        # Once one update went to the thread, all later ones must follow it there.
        self._offloaded = True
        _hasher_thread().submit(self._h.update, data)

    async def hexdigest(self) -> str:
        if not self._offloaded:
            return self._h.hexdigest()
        done: Future[str] = _hasher_thread().submit(self._h.hexdigest)
        return await asyncio.wrap_future(done)
