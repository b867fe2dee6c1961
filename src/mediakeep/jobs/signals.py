"""Wake-ups for readers of a job's events, when this process commits new ones.

Event streams (SSE) and ``wait_for_job`` read the database, so they see events written by
any process. Between reads they used to sleep a fixed quarter second; now a reader in the
process that wrote the events is woken at the commit, and the sleep is only a fallback for
events written elsewhere (a separate worker process).

A reader starts watching before it reads, so an event committed between its read and its
wait still wakes it: nothing is lost in that gap.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class JobSignals:
    def __init__(self) -> None:
        self._watchers: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        # Commits may come from another thread than the watcher's loop (the blocking
        # facade runs its own loop in a thread).
        self._lock = threading.Lock()

    @contextmanager
    def watch(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set when events of ``job_id`` are committed while the block runs."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._watchers.setdefault(job_id, set()).add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                watchers = self._watchers.get(job_id)
                if watchers is not None:
                    watchers.discard(entry)
                    if not watchers:
                        del self._watchers[job_id]

    def notify(self, job_ids: Iterable[str]) -> None:
        with self._lock:
            woken = [w for j in job_ids for w in self._watchers.get(j, ())]
        for loop, event in woken:
            if loop.is_closed():
                continue
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                event.set()
            else:
                loop.call_soon_threadsafe(event.set)

    def watching(self) -> int:
        """How many jobs have a reader waiting (for tests and metrics)."""
        with self._lock:
            return len(self._watchers)
