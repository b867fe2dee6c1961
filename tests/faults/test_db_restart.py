"""Scenario 2: PostgreSQL restarts in the middle of a batch. Worker processes and the HTTP
service must ride it out on their own: no process is restarted to help them."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx

from mediakeep import MediaKeep
from mediakeep.auth import mint_token
from tests.conftest import Backend, ServiceThread
from tests.faults.conftest import FaultReport
from tests.faults.support import (
    Accepted,
    Figures,
    RestartablePostgres,
    audit,
    drained,
    expected_sha,
    fault_settings,
    payload_urls,
    start_workers,
    stop_workers,
    submit_all,
    until_stored,
    worker_env,
)
from tests.jobs.test_faults import WorkerProcess
from tests.support.netutil import free_port
from tests.support.provider import Provider

BEFORE = 150  # submitted through the library before the restart
AFTER = 150  # through the HTTP API once the database is back
DOWN_FOR = 3.0
JWT_SECRET = "fault-suite-jwt-secret-long-enough-for-hs256-0123456789"
OWNER = "dbrestart"


async def test_postgresql_restarted_during_a_batch(
    tmp_path: Path, provider: Provider, fault_report: FaultReport
) -> None:
    backend = Backend("postgres", "local")
    pg = RestartablePostgres().start()
    db = pg.create_database()
    port = free_port()
    settings = fault_settings(
        tmp_path,
        db,
        base_url=f"http://127.0.0.1:{port}",
        jwt_secret=JWT_SECRET,
        serve_worker=False,
        ingest_rate_limit=0,
    )
    keep = MediaKeep(settings)
    await keep.start()
    service = ServiceThread(settings, port).start()
    workers: list[WorkerProcess] = []
    fault = f"private PostgreSQL shut down (fast) and restarted, {DOWN_FOR:g} s down, mid-batch"
    figures = Figures("db-restart", fault, backend.id)
    fault_report.add(figures)
    try:
        workers = start_workers(
            worker_env(settings, job_concurrency=4), 2, tmp_path / "workers.log"
        )
        started = time.monotonic()
        accepted = await submit_all(keep, OWNER, [[u] for u in payload_urls(provider, 0, BEFORE)])
        done_before = await until_stored(keep, BEFORE // 5)
        await asyncio.to_thread(pg.restart, DOWN_FOR)

        # The service's pool holds connections the restart cut: the very first requests
        # after it must already succeed, not make the callers retry.
        statuses: Counter[int] = Counter()
        token = mint_token(JWT_SECRET, OWNER)
        async with httpx.AsyncClient(
            base_url=service.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=20,
            trust_env=False,
        ) as http:
            for url in payload_urls(provider, BEFORE, AFTER):
                resp = await http.post("/v1/ingest", json={"urls": [url], "async": True})
                statuses[resp.status_code] += 1
                if resp.status_code == 202:
                    accepted.append(Accepted(resp.json()["id"], [expected_sha(url)]))
        finished = await drained(keep, 90)
        totals = stop_workers(workers)
        figures.duration_s = round(time.monotonic() - started, 1)
        figures.notes = {
            "stored_before_restart": done_before,
            "http_answers_after_restart": dict(statuses),
            "workers": len(workers),
            "worker_retries": totals.get("retried", 0),
            "worker_leases_lost": totals.get("lost", 0),
            "drained": finished,
            "workers_exited_early": totals["exited_early"],
        }
        await audit(keep, accepted, figures)
    finally:
        for w in workers:
            w.close()
        service.stop()
        await keep.close()
        pg.close()
    assert not figures.nonzero(), (figures.nonzero(), figures.problems[:20])
    assert figures.notes["workers_exited_early"] == 0, "a worker died of the fault"
    assert statuses == {202: AFTER}, statuses
    assert figures.items_stored + figures.items_failed == BEFORE + AFTER
