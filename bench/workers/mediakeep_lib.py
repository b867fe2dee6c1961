"""mediakeep as a library, exactly as docs/API-SKETCH.md documents it.

Run as ``python -m bench.workers.mediakeep_lib JOB.json``. ``mode`` is ``ingest`` (one
``ingest_urls`` call, timed on its own as ``xfer_s``) or ``urls`` (the signed-URL
micro-benchmark: ingest many tiny distinct images, then time ``keep.urls`` over all ids).
Any failure, including the library not existing yet, is left to crash with a traceback:
the harness turns a non-zero exit into an ERROR row.
"""

from __future__ import annotations

import asyncio
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _field(obj: Any, name: str) -> Any:
    value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
    # A str-valued Enum and a plain string must compare the same.
    return getattr(value, "value", value)


def summarize(results: list[Any]) -> dict[str, Any]:
    """Counts and first error of a list of IngestResult (objects or their JSON dicts)."""
    statuses: dict[str, int] = {}
    stored_bytes = 0
    first_error: str | None = None
    ids: list[Any] = []
    for res in results:
        status = str(_field(res, "status"))
        statuses[status] = statuses.get(status, 0) + 1
        if status == "stored":
            stored_bytes += int(_field(res, "size") or 0)
            ids.append(_field(res, "id"))
        elif first_error is None:
            error = _field(res, "error")
            detail = error if error is not None else status
            first_error = f"{_field(res, 'source')}: {detail}"
    return {
        "files": statuses.get("stored", 0),
        "bytes": stored_bytes,
        "statuses": statuses,
        "first_error": first_error,
        "ids": ids,
    }


async def run(job: dict[str, Any]) -> dict[str, Any]:
    from mediakeep import MediaKeep, Settings

    s3 = job["s3"]
    settings = Settings(
        database_url=job["database_url"],
        store="s3",
        s3_endpoint=s3["endpoint"],
        s3_region=s3["region"],
        s3_access_key_id=s3["access_key"],
        s3_secret_access_key=s3["secret_key"],
        private_bucket=job["private_bucket"],
        public_bucket=job["public_bucket"],
        allow_private_networks=True,
        variants_enabled=bool(job.get("variants", False)),
        placeholders=bool(job.get("variants", False)),
    )
    async with MediaKeep(settings) as keep:
        started = time.perf_counter()
        cpu_before = _cpu_seconds()
        results = await keep.ingest_urls(
            job["urls"],
            owner=job["owner"],
            collection=job["collection"],
            concurrency=int(job["concurrency"]),
        )
        summary = summarize(list(results))
        summary["xfer_s"] = time.perf_counter() - started
        # CPU of the ingest alone (every thread), without interpreter start-up and
        # migrating the fresh database: what a long-running service pays per batch.
        summary["xfer_cpu_s"] = _cpu_seconds() - cpu_before
        if job["mode"] != "urls":
            summary.pop("ids")
            return summary

        ids = summary["ids"]
        if len(ids) != len(job["urls"]):
            raise RuntimeError(
                f"only {len(ids)}/{len(job['urls'])} assets stored: {summary['first_error']}"
            )
        timings = []
        for _ in range(int(job["repeats"])):
            started = time.perf_counter()
            urls = await keep.urls(ids)
            timings.append(time.perf_counter() - started)
            if len(urls) != len(ids):
                raise RuntimeError(f"urls() returned {len(urls)} URLs for {len(ids)} ids")
        return {
            "batch": len(ids),
            "setup_ingest_s": summary["xfer_s"],
            "timings_s": timings,
            "urls_per_s": len(ids) / statistics.median(timings),
        }


def main() -> None:
    job: dict[str, Any] = json.loads(Path(sys.argv[1]).read_text())
    result = asyncio.run(run(job))
    Path(job["result"]).write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
