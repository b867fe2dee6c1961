"""The load suite (`make test-load`): a real `mediakeep serve` process on PostgreSQL and
SeaweedFS takes ingests from 50 clients while 200 more read permanent links and follow
them to the store, for MEDIAKEEP_LOAD_DURATION seconds (60 by default).

Asserted: no 5xx from the service, no transport failures that could hide one, and no lost
write: every ingest the service called a success has its asset and object rows stored and
its bytes in the bucket with the reported sha256. Latencies and memory are measured and
reported (reports/load-latest.json and .md), never asserted: they depend on the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import obstore
import psutil  # type: ignore[import-untyped]
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from mediakeep.auth import mint_token
from tests.load.harness import Catalogue, LoadRun, Plan, Stats, Stored, percentile
from tests.support.netutil import free_port
from tests.support.provider import Provider
from tests.support.seaweed import SeaweedS3

REPORTS = Path(__file__).resolve().parents[2] / "reports"
JWT_SECRET = "load-test-jwt-secret-long-enough-for-hs256-0123456789abcdef"
CLI = [sys.executable, "-m", "mediakeep.cli"]


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    return float(raw) if raw.strip() else default


DURATION = _env_float("MEDIAKEEP_LOAD_DURATION", 60.0)
INGESTERS = int(_env_float("MEDIAKEEP_LOAD_INGESTERS", 50))
READERS = int(_env_float("MEDIAKEEP_LOAD_READERS", 200))
# Pacing: on 2 shared cores the one serve process answers ~90-120 requests/s of this mix
# when saturated (and then queues into the database pool's 30 s checkout timeout), so
# ~10 ingests/s and ~50 reads/s (each followed to the store) keep it busy, not drowned.
INGEST_THINK = _env_float("MEDIAKEEP_LOAD_INGEST_THINK", 5.0)
READ_THINK = _env_float("MEDIAKEEP_LOAD_READ_THINK", 4.0)
# One owner per ingest client, each well under the per-owner limit (60 / INGEST_THINK a
# minute against 120), so 429s would mean the limiter misbehaves, not that we overran it.
RATE_LIMIT = 120


@dataclass
class Serve:
    url: str
    pid: int
    log: Path
    buckets: tuple[str, str]


@pytest.fixture
def serve(seaweed: SeaweedS3, pg_url: str, tmp_path: Path) -> Iterator[Serve]:
    port = free_port()
    buckets = (f"mk-load-{uuid.uuid4().hex[:8]}", f"mk-load-pub-{uuid.uuid4().hex[:8]}")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MEDIAKEEP_")},
        "MEDIAKEEP_DATABASE_URL": pg_url,
        "MEDIAKEEP_DATA_DIR": str(tmp_path / "data"),
        "MEDIAKEEP_STORE": "s3",
        "MEDIAKEEP_S3_ENDPOINT": seaweed.endpoint,
        "MEDIAKEEP_S3_REGION": seaweed.region,
        "MEDIAKEEP_S3_ACCESS_KEY_ID": seaweed.access_key,
        "MEDIAKEEP_S3_SECRET_ACCESS_KEY": seaweed.secret_key,
        "MEDIAKEEP_PRIVATE_BUCKET": buckets[0],
        "MEDIAKEEP_PUBLIC_BUCKET": buckets[1],
        "MEDIAKEEP_JWT_SECRET": JWT_SECRET,
        "MEDIAKEEP_SIGNING_SECRET": "load-test-signing-secret",
        # The provider listens on loopback.
        "MEDIAKEEP_ALLOW_PRIVATE_NETWORKS": "true",
        "MEDIAKEEP_INGEST_RATE_LIMIT": str(RATE_LIMIT),
        "MEDIAKEEP_BASE_URL": f"http://127.0.0.1:{port}",
        "NO_PROXY": "*",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [*CLI, "serve", "--port", str(port)],
            env=env,
            cwd=tmp_path,  # no stray .env file is read
            stdout=subprocess.DEVNULL,
            stderr=fh,
        )
    try:
        _wait_ready(f"http://127.0.0.1:{port}/readyz", proc, log)
        yield Serve(f"http://127.0.0.1:{port}", proc.pid, log, buckets)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mediakeep serve exited: {log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"mediakeep serve did not become ready: {log.read_text()[-4000:]}")


def _rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


async def _seed(
    base: str, tokens: dict[str, str], provider: Provider, catalogue: Catalogue
) -> None:
    """Two assets per owner before the clock starts, so readers have something to read."""
    async with aiohttp.ClientSession(trust_env=False) as http:

        async def one(owner: str) -> None:
            urls = [provider.url(f"/img/seed-{owner}-{i}.png?w=96&h=96") for i in range(2)]
            async with http.post(
                f"{base}/v1/ingest",
                json={"urls": urls},
                headers={"Authorization": f"Bearer {tokens[owner]}"},
            ) as resp:
                body = await resp.json()
                assert resp.status == 200, body
            for item in body["results"]:
                catalogue.add(owner, item["id"], item["sha256"])

        await asyncio.gather(*(one(o) for o in tokens))


async def _sample_rss(pid: int, samples: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append(_rss(pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def _lost_writes(
    pg_url: str, seaweed: SeaweedS3, bucket: str, stored: list[Stored]
) -> list[str]:
    """Every reported success, checked against the database and the bucket directly."""
    problems: list[str] = []
    engine = create_async_engine(pg_url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT a.id, a.owner, a.status, a.sha256, o.status, o.sha256, o.bucket,"
                        " o.key FROM assets a LEFT JOIN objects o ON o.id = a.object_id"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    by_id = {r[0]: r for r in rows}
    to_read: list[tuple[str, str, str]] = []
    for s in stored:
        row = by_id.get(s.asset_id)
        if row is None:
            problems.append(f"{s.asset_id} ({s.via}): no asset row")
            continue
        _, owner, a_status, a_sha, o_status, o_sha, o_bucket, key = row
        if owner != s.owner or a_status != "stored" or a_sha != s.sha256:
            problems.append(f"{s.asset_id}: asset row {owner}/{a_status}/{a_sha}")
        elif o_status != "stored" or o_sha != s.sha256 or o_bucket != bucket:
            problems.append(f"{s.asset_id}: object row {o_status}/{o_sha}/{o_bucket}")
        else:
            to_read.append((s.asset_id, key, s.sha256))
    store = seaweed.store(bucket)
    gate = asyncio.Semaphore(16)

    async def check(asset_id: str, key: str, sha256: str) -> None:
        async with gate:
            try:
                data = await (await obstore.get_async(store, key)).bytes_async()
            except Exception as exc:  # any failure to read it back is a lost write
                problems.append(f"{asset_id}: object {key} unreadable: {exc!r}")
                return
        if hashlib.sha256(bytes(data)).hexdigest() != sha256:
            problems.append(f"{asset_id}: object {key} has other bytes")

    await asyncio.gather(*(check(*t) for t in to_read))
    return problems


def _server_log(log: Path) -> dict[str, Any]:
    """What the service itself logged: 5xx it answered, error records, and how long it
    spent on each route (from its access log; the gap to the client's figures is time
    spent queueing before the route ran)."""
    statuses_5xx = 0
    errors: list[str] = []
    durations: dict[str, list[float]] = defaultdict(list)
    for line in log.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec.get("status"), int) and rec["status"] >= 500:
            statuses_5xx += 1
        if "duration_ms" in rec and "route" in rec:
            durations[f"{rec.get('method')} {rec['route']}"].append(float(rec["duration_ms"]))
        if str(rec.get("level", "")).lower() in ("error", "critical") and len(errors) < 10:
            errors.append(line[:1000])
    routes = {}
    for route, values in sorted(durations.items()):
        values.sort()
        routes[route] = {
            "requests": len(values),
            **{f"p{p}_ms": percentile(values, p) for p in (50, 95, 99)},
        }
    return {"logged_5xx": statuses_5xx, "error_records": errors, "routes": routes}


def _write_report(report: dict[str, Any]) -> None:
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "load-latest.json").write_text(json.dumps(report, indent=2) + "\n")
    plan = report["plan"]
    rss = report["rss_mib"]
    lines = [
        "# mediakeep load run",
        "",
        f"{report['started_at']} on {report['machine']}: `mediakeep serve` on PostgreSQL and"
        f" SeaweedFS, {plan['ingesters']} ingest clients (think {plan['ingest_think']} s,"
        f" every {plan['async_every']}th async) and {plan['readers']} readers (think"
        f" {plan['read_think']} s, every {plan['sign_every']}th via /url) for"
        f" {plan['duration']} s; ingest rate limit {RATE_LIMIT}/min per owner.",
        "",
        "| kind | requests | statuses | transport errors | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for kind, k in report["kinds"].items():
        statuses = ", ".join(f"{s}: {n}" for s, n in k["statuses"].items()) or "-"
        errors = ", ".join(f"{e}: {n}" for e, n in k["transport_errors"].items()) or "-"
        lines.append(
            f"| {kind} | {k['requests']} | {statuses} | {errors} | {k['p50_ms']} |"
            f" {k['p95_ms']} | {k['p99_ms']} | {k['max_ms']} |"
        )
    lines += [
        "",
        "Time the service spent per route (its access log):",
        "",
        "| route | requests | p50 ms | p95 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for route, r in report["server_log"]["routes"].items():
        lines.append(
            f"| {route} | {r['requests']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} |"
        )
    lines += [
        "",
        f"- service 5xx: {report['service_5xx']} (logged by the service: "
        f"{report['server_log']['logged_5xx']})",
        f"- successful ingests: {report['stored']}, lost writes: {len(report['lost_writes'])}",
        f"- failed items: {report['failed_items'] or 'none'}; read mismatches: "
        f"{report['read_mismatches']}; jobs unfinished: {report['jobs_unfinished']}",
        f"- throughput: {report['throughput_rps']} service requests/s; serve process CPU:"
        f" {report['serve_cpu_load']} cores on average",
        f"- serve RSS: start {rss['start']} MiB, peak {rss['peak']} MiB, end {rss['end']} MiB",
        f"- wall time of the run (including drain): {report['run_seconds']} s",
        "",
        "`follow` is the store (SeaweedFS) answering the signed URL, not the service.",
        "Only `follow` latencies include a body download; the service's are metadata only.",
    ]
    (REPORTS / "load-latest.md").write_text("\n".join(lines) + "\n")


@pytest.mark.timeout(max(300, int(DURATION * 3)))
async def test_service_under_load(
    serve: Serve, seaweed: SeaweedS3, pg_url: str, provider: Provider
) -> None:
    owners = [f"load{uuid.uuid4().hex[:8]}" for _ in range(INGESTERS)]
    tokens = {o: mint_token(JWT_SECRET, o, expires_in=3600) for o in owners}
    catalogue = Catalogue()
    await _seed(serve.url, tokens, provider, catalogue)
    plan = Plan(
        base_url=serve.url,
        duration=DURATION,
        ingesters=INGESTERS,
        readers=READERS,
        ingest_think=INGEST_THINK,
        read_think=READ_THINK,
        async_every=4,
        sign_every=5,
    )
    run = LoadRun(
        plan,
        tokens,
        owners,
        catalogue,
        source_url=lambda seed: provider.url(f"/img/{seed}.png?w=96&h=96"),
    )
    rss_start = _rss(serve.pid)
    cpu_start = sum(psutil.Process(serve.pid).cpu_times()[:2])
    samples: list[int] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_rss(serve.pid, samples, stop))
    started = time.monotonic()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    stats: Stats = await run.run()
    run_seconds = time.monotonic() - started
    stop.set()
    await sampler
    rss_end = _rss(serve.pid)
    cpu_used = sum(psutil.Process(serve.pid).cpu_times()[:2]) - cpu_start
    lost = await _lost_writes(pg_url, seaweed, serve.buckets[0], stats.stored)

    summary = stats.summary()
    service_requests = sum(summary["kinds"][k]["requests"] for k in summary["kinds"])
    service_requests -= summary["kinds"]["follow"]["requests"]
    mib = 1024 * 1024
    report: dict[str, Any] = {
        "started_at": started_at,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "plan": {
            "duration": DURATION,
            "ingesters": INGESTERS,
            "readers": READERS,
            "ingest_think": INGEST_THINK,
            "read_think": READ_THINK,
            "async_every": plan.async_every,
            "sign_every": plan.sign_every,
            "ingest_rate_limit": RATE_LIMIT,
        },
        **summary,
        "lost_writes": lost,
        "throughput_rps": round(service_requests / DURATION, 1),
        # CPU seconds per wall second of the serve process (1.0: one core, all the time).
        "serve_cpu_load": round(cpu_used / run_seconds, 2),
        "rss_mib": {
            "start": round(rss_start / mib, 1),
            "peak": round(max([rss_start, *samples]) / mib, 1),
            "end": round(rss_end / mib, 1),
        },
        "server_log": _server_log(serve.log),
        "run_seconds": round(run_seconds, 1),
    }
    _write_report(report)
    # The service's own log next to the report, for reading a failed run afterwards.
    shutil.copyfile(serve.log, REPORTS / "load-serve.log")

    transport = {k: v for k, v in summary["kinds"].items() if v["transport_errors"]}
    assert summary["service_5xx"] == 0, summary["samples"]
    assert report["server_log"]["logged_5xx"] == 0, report["server_log"]
    assert not transport, transport
    assert lost == [], lost[:20]
    assert stats.stored, "nothing was ingested"
    assert summary["read_mismatches"] == 0
    assert summary["jobs_unfinished"] == 0
