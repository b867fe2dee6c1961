"""Scenario 1: the object store (SeaweedFS) goes down in the middle of 300 async ingests,
stays down for seconds, and comes back on the same data."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from mediakeep import MediaKeep
from tests.conftest import Backend
from tests.faults.conftest import FaultReport
from tests.faults.support import (
    Figures,
    audit,
    drained,
    fault_settings,
    payload_urls,
    start_workers,
    stop_workers,
    submit_all,
    until_stored,
    worker_env,
)
from tests.jobs.test_faults import WorkerProcess
from tests.support.postgres import PostgresServer
from tests.support.provider import Provider
from tests.support.seaweed import SeaweedS3

JOBS = 300
DOWN_FOR = 4.0


async def test_object_store_stopped_and_restarted_during_300_ingests(
    tmp_path: Path, provider: Provider, postgres: PostgresServer, fault_report: FaultReport
) -> None:
    backend = Backend("postgres", "s3")
    s3 = SeaweedS3().start()  # a server of its own: this one is taken down
    db = postgres.create_database()
    settings = fault_settings(tmp_path, db, s3=s3)
    keep = MediaKeep(settings)
    await keep.start()
    workers: list[WorkerProcess] = []
    figures = Figures("store-outage", f"SeaweedFS stopped {DOWN_FOR:g} s mid-batch", backend.id)
    fault_report.add(figures)
    try:
        workers = start_workers(
            worker_env(settings, job_concurrency=4), 2, tmp_path / "workers.log"
        )
        started = time.monotonic()
        urls = payload_urls(provider, 0, JOBS)
        accepted = await submit_all(keep, "outage", [[u] for u in urls])

        # Partway: some stored, most still to come.
        done_before = await until_stored(keep, JOBS // 5)
        await asyncio.to_thread(s3.stop)
        await asyncio.sleep(DOWN_FOR)
        await asyncio.to_thread(s3.start)
        finished = await drained(keep, 90)
        totals = stop_workers(workers)
        figures.duration_s = round(time.monotonic() - started, 1)
        figures.notes = {
            "stored_before_outage": done_before,
            "workers": len(workers),
            "worker_store_outages": totals.get("store_outages", 0),
            "worker_retries": totals.get("retried", 0),
            "drained": finished,
            "workers_exited_early": totals["exited_early"],
        }
        await audit(keep, accepted, figures)
    finally:
        for w in workers:
            w.close()
        await keep.close()
        s3.close()
        postgres.drop_database(db)
    assert not figures.nonzero(), (figures.nonzero(), figures.problems[:20])
    assert figures.notes["workers_exited_early"] == 0, "a worker died of the fault"
    assert figures.items_stored + figures.items_failed == JOBS
