"""Scenario 3: ``mediakeep worker`` processes SIGKILLed at random moments, ten times, each
replaced by a fresh one, while three-item jobs (two quick downloads and one slow one) run.

The random delays come from a seeded generator; the seed is in the report, and
MEDIAKEEP_FAULTS_SEED replays a run."""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

from sqlalchemy import func, select

from mediakeep import MediaKeep
from mediakeep.db.models import Job
from tests.conftest import Backend
from tests.faults.conftest import FaultReport
from tests.faults.support import (
    Accepted,
    Figures,
    LoggedWorker,
    audit,
    drained,
    fault_settings,
    payload_urls,
    start_workers,
    stop_workers,
    submit_all,
    unfinished,
    worker_env,
)
from tests.jobs.support import MediaServer
from tests.jobs.test_faults import WorkerProcess
from tests.support.postgres import PostgresServer
from tests.support.provider import Provider
from tests.support.seaweed import SeaweedS3

KILLS = 10
WORKERS = 2
WAVE = 20  # jobs of three items each
OWNER = "kills"


async def held_by(keep: MediaKeep, worker: str) -> int:
    async with keep.repo.reads() as s:
        n = await s.scalar(
            select(func.count()).where(Job.worker == worker, Job.status == "running")
        )
    return int(n or 0)


async def test_workers_sigkilled_ten_times_at_random_moments(
    tmp_path: Path,
    provider: Provider,
    seaweed: SeaweedS3,
    postgres: PostgresServer,
    fault_report: FaultReport,
) -> None:
    # PostgreSQL: several worker processes claiming with SKIP LOCKED is the deployment
    # that kills and takeovers are about.
    backend = Backend("postgres", "s3")
    seed = int(os.environ.get("MEDIAKEEP_FAULTS_SEED") or time.time_ns() % 1_000_000)
    rng = random.Random(seed)
    db = postgres.create_database()
    settings = fault_settings(tmp_path, db, s3=seaweed)
    keep = MediaKeep(settings)
    await keep.start()
    figures = Figures("worker-kills", f"{KILLS} SIGKILLs of worker processes", backend.id)
    fault_report.add(figures)
    workers: list[WorkerProcess] = []
    dead: list[WorkerProcess] = []
    spawned: list[WorkerProcess] = []
    accepted: list[Accepted] = []
    held: list[int] = []
    waves = 0
    with MediaServer() as media:

        async def wave() -> None:
            nonlocal waves
            start = waves * WAVE * 2
            quick = payload_urls(provider, start, WAVE * 2)
            # ~0.3 s per slow body, in 16 KiB pieces: a kill often lands mid-transfer.
            slow = [
                media.url(f"/big/{150_000 + 7 * (waves * WAVE + i)}.mp4?chunk=16384&delay=0.03")
                for i in range(WAVE)
            ]
            jobs = [[quick[2 * i], quick[2 * i + 1], slow[i]] for i in range(WAVE)]
            accepted.extend(await submit_all(keep, OWNER, jobs))
            waves += 1

        try:
            env = worker_env(settings, job_concurrency=4)
            log = tmp_path / "workers.log"
            started = time.monotonic()
            await wave()
            await wave()
            workers = start_workers(env, WORKERS, log)
            for _ in range(KILLS):
                await asyncio.sleep(rng.uniform(0.3, 2.0))
                # Killed while there is work: top the queue up when it runs low.
                if (await unfinished(keep) or 0) < WAVE:
                    await wave()
                victim = rng.randrange(len(workers))
                held.append(await held_by(keep, workers[victim].name))
                workers[victim].kill()
                dead.append(workers[victim])
                fresh = LoggedWorker(env, log)
                spawned.append(fresh)  # closed in the end whether or not it comes up
                workers[victim] = await asyncio.to_thread(fresh.ready)
            finished = await drained(keep, 90)
            totals = stop_workers(workers)
            figures.duration_s = round(time.monotonic() - started, 1)
            figures.notes = {
                "seed": seed,
                "kills": len(dead),
                "jobs_running_on_the_killed_worker": held,
                "waves": waves,
                "slow_downloads_started": sum(media.hits.values()),
                "drained": finished,
                "workers_exited_early": totals["exited_early"],
                "surviving_workers_retries": totals.get("retried", 0),
            }
            await audit(keep, accepted, figures)
        finally:
            for w in [*workers, *dead, *spawned]:
                w.close()
            await keep.close()
            postgres.drop_database(db)
    assert len(dead) == KILLS
    assert sum(held) > 0, "no kill caught a worker with jobs in hand"
    assert not figures.nonzero(), (figures.nonzero(), figures.problems[:20])
    assert figures.notes["workers_exited_early"] == 0, "a worker died of the fault"
    assert figures.items_stored + figures.items_failed == figures.items_accepted
