"""Scheduled maintenance, for the worker to call: ``await keep.maintenance_tick()`` every
minute or so does gc every ``MEDIAKEEP_GC_INTERVAL`` and cache clean-up every
``MEDIAKEEP_CACHE_CLEANUP_INTERVAL`` seconds, at most one process at a time."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..stores.hybrid import CacheReport, HybridStore
from .gc import GcReport, collect_garbage
from .lock import maintenance_lock

if TYPE_CHECKING:
    from ..keep import MediaKeep

log = logging.getLogger("mediakeep.maintenance")


@dataclass
class Schedule:
    """When this process last did each task (monotonic seconds)."""

    last_gc: float | None = None
    last_cache: float | None = None


@dataclass
class TickReport:
    ran: bool
    reason: str = ""  # why nothing ran
    gc: GcReport | None = None
    cache: CacheReport | None = None
    bundles_evicted: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ran": self.ran,
            "reason": self.reason,
            "gc": self.gc.to_dict() if self.gc else None,
            "cache": self.cache.to_dict() if self.cache else None,
            "bundles_evicted": self.bundles_evicted,
            "errors": self.errors,
        }


def _due(last: float | None, interval: float, now: float) -> bool:
    return interval > 0 and (last is None or now - last >= interval)


async def tick(keep: MediaKeep, schedule: Schedule, *, force: bool = False) -> TickReport:
    s = keep.settings
    if not s.auto_cleanup and not force:
        return TickReport(ran=False, reason="MEDIAKEEP_AUTO_CLEANUP is off")
    now = time.monotonic()
    gc_due = force or _due(schedule.last_gc, s.gc_interval, now)
    cache_due = force or _due(schedule.last_cache, s.cache_cleanup_interval, now)
    if not (gc_due or cache_due):
        return TickReport(ran=False, reason="nothing due")
    async with maintenance_lock(keep.engine, s.data_dir) as held:
        if not held:
            # Another process is sweeping right now: that is this interval's sweep.
            if gc_due:
                schedule.last_gc = now
            if cache_due:
                schedule.last_cache = now
            return TickReport(ran=False, reason="another process is running maintenance")
        report = TickReport(ran=True)
        if cache_due:
            schedule.last_cache = now
            try:
                if isinstance(keep.store, HybridStore):
                    report.cache = await keep.store.clean_cache()
                report.bundles_evicted = await asyncio.to_thread(keep.bundle_cache.evict)
            except Exception as exc:
                log.exception("cache clean-up failed")
                report.errors.append(f"cache clean-up: {type(exc).__name__}: {exc}")
        if gc_due:
            schedule.last_gc = now  # also on failure: a failing gc must not run back to back
            try:
                report.gc = await collect_garbage(keep, grace=timedelta(seconds=s.gc_grace))
            except Exception as exc:
                log.exception("gc failed")
                report.errors.append(f"gc: {type(exc).__name__}: {exc}")
        if report.gc is not None:
            log.info(
                "gc done",
                extra={
                    "category": "cleanup",
                    "removed": report.gc.removed,
                    "bytes": report.gc.removed_bytes,
                    "missing": report.gc.missing_marked,
                    "jobs": report.gc.old_jobs,
                },
            )
        return report
