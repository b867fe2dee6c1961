"""Scenario 4: the local store's disk fills up. A real filesystem (a small tmpfs) holds the
objects; a ballast file leaves room for about half a batch. Writes past that get ENOSPC from
the kernel. They must fail with a reason, leave neither a partial file nor a record, and once
the ballast is gone new ingests must go through."""

from __future__ import annotations

import os
import time
from pathlib import Path

from sqlalchemy import func, select

from mediakeep import MediaKeep
from mediakeep.db.models import Asset, StoredObject
from tests.conftest import Backend
from tests.faults.conftest import FaultReport
from tests.faults.support import (
    Figures,
    audit,
    drained,
    fault_settings,
    payload_urls,
    small_filesystem,
    start_workers,
    stop_workers,
    submit_all,
    worker_env,
)
from tests.jobs.test_faults import WorkerProcess
from tests.support.provider import Provider

MIB = 1024 * 1024
DISK = 8 * MIB
ROOM = int(1.5 * MIB)  # left free beside the ballast
SIZE = 100_000  # per payload: ROOM holds about 15 of them
FULL_BATCH = 30
AFTER_BATCH = 20
OWNER = "diskfull"
ENOSPC_TEXT = os.strerror(28)  # "No space left on device"


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


async def record_count(keep: MediaKeep) -> tuple[int, int]:
    async with keep.repo.reads() as s:
        assets = await s.scalar(select(func.count()).select_from(Asset))
        objects = await s.scalar(select(func.count()).select_from(StoredObject))
    return int(assets or 0), int(objects or 0)


async def test_local_store_disk_full(
    tmp_path: Path, provider: Provider, fault_report: FaultReport
) -> None:
    backend = Backend("sqlite", "local")
    objects = tmp_path / "objects"
    with small_filesystem(objects, DISK):
        # The database stays on the roomy disk: the fault under test is the store's.
        settings = fault_settings(
            tmp_path,
            f"sqlite+aiosqlite:///{tmp_path / 'diskfull.db'}",
            local_root=objects,
            job_max_attempts=3,
            # Nobody dies here, so no lease needs to run out quickly; a short one only makes
            # a busy SQLite look like a lost lease (see the suite's notes on SQLite).
            job_visibility_timeout=30.0,
        )
        keep = MediaKeep(settings)
        await keep.start()
        figures = Figures("disk-full", f"local store on an {DISK // MIB} MiB tmpfs", backend.id)
        fault_report.add(figures)
        workers: list[WorkerProcess] = []
        ballast = objects / "ballast.bin"  # beside the buckets, never inside one
        try:
            free = os.statvfs(objects).f_bavail * os.statvfs(objects).f_frsize
            with ballast.open("wb") as fh:
                fh.write(b"\0" * (free - ROOM))
            started = time.monotonic()
            workers = start_workers(
                worker_env(settings, job_concurrency=4), 1, tmp_path / "workers.log"
            )
            urls = payload_urls(provider, 0, FULL_BATCH, SIZE)
            accepted = await submit_all(keep, OWNER, [[u] for u in urls])
            full_drained = await drained(keep, 120)

            # A synchronous ingest on the full disk: the caller gets the reason at once.
            before = await record_count(keep)
            refused = await keep.ingest_url(payload_urls(provider, 500, 1, 4 * MIB)[0], owner=OWNER)
            sync_left = (await record_count(keep))[0] - before[0]
            partial = files_under(objects / ".tmp")

            ballast.unlink()
            urls = payload_urls(provider, FULL_BATCH, AFTER_BATCH, SIZE)
            after = await submit_all(keep, OWNER, [[u] for u in urls])
            after_drained = await drained(keep, 120)
            totals = stop_workers(workers)
            figures.duration_s = round(time.monotonic() - started, 1)
            await audit(keep, [*accepted, *after], figures)
            full_jobs = [await keep.get_job(a.job_id) for a in accepted]
            full_failed = [j.items[0] for j in full_jobs if j.status == "failed"]
            after_jobs = [await keep.get_job(a.job_id) for a in after]
            after_stored = sum(1 for j in after_jobs if j.status == "completed")
            figures.notes = {
                "while_full": f"{len(full_failed)} of {FULL_BATCH} failed",
                "after_space_freed": f"{after_stored} of {AFTER_BATCH} stored",
                "sync_ingest_while_full": refused.error,
                "worker_retries": totals.get("retried", 0),
                "drained": full_drained and after_drained,
                "workers_exited_early": totals["exited_early"],
            }
        finally:
            for w in workers:
                w.close()
            await keep.close()
            ballast.unlink(missing_ok=True)
    assert not figures.nonzero(), (figures.nonzero(), figures.problems[:20])
    assert figures.notes["workers_exited_early"] == 0, "a worker died of the fault"
    # The disk did fill: some of the first batch could not be stored, each saying why.
    assert full_failed, "nothing hit ENOSPC: the ballast left too much room"
    for item in full_failed:
        assert item.error is not None and item.error["code"] == "store_error", item.error
        assert ENOSPC_TEXT in item.error["message"], item.error
    assert refused.status == "failed" and refused.error is not None, refused
    assert refused.error["code"] == "store_error" and ENOSPC_TEXT in refused.error["message"]
    # Nothing half-written anywhere, and the failures left no rows (gc had nothing to do).
    assert sync_left == 0 and partial == []
    assert figures.gc_removed == {}, figures.gc_removed
    # With the space back, everything new went through.
    assert after_stored == AFTER_BATCH
