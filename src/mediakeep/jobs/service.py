"""The job worker inside ``mediakeep serve``: on SQLite the one worker there is, on
PostgreSQL one among any number (turn it off with MEDIAKEEP_SERVE_WORKER=false)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .worker import JobWorker

if TYPE_CHECKING:
    from ..keep import MediaKeep

log = logging.getLogger("mediakeep.jobs")


class ServiceWorker:
    def __init__(self, keep: MediaKeep) -> None:
        self.worker = JobWorker(keep)
        self.task: asyncio.Task[object] = asyncio.create_task(self.worker.run())

    async def stop(self) -> None:
        self.worker.stop()
        try:
            await self.task
        except Exception:
            log.exception("the job worker stopped with an error")


def start_service_worker(keep: MediaKeep) -> ServiceWorker | None:
    if not keep.settings.serve_worker:
        return None
    return ServiceWorker(keep)
