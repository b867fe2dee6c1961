"""``mediakeep worker``, ``mediakeep persist-json FILE`` and ``mediakeep jobs show|ls``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import MediaKeepError
from .common import (
    JsonOpt,
    OwnerOpt,
    emit_json,
    err,
    fail,
    load_settings,
    out,
    run_async,
    styled,
    with_keep,
)

if TYPE_CHECKING:
    from ..integrations.persist import PersistReport
    from ..jobs.worker import JobWorker, WorkerStats
    from ..keep import MediaKeep

jobs_app = typer.Typer(help="Durable ingest jobs.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
    app.command("persist-json")(persist_json)
    app.add_typer(jobs_app, name="jobs")


def _line(data: dict[str, Any]) -> None:
    # One JSON object per line: a long-running command's output stays parseable as it goes.
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def worker(
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", min=1, max=256, help="Jobs at once.")
    ] = None,
    poll_interval: Annotated[
        float | None, typer.Option("--poll-interval", min=0.01, help="Seconds.")
    ] = None,
    drain: Annotated[
        bool, typer.Option("--drain", help="Exit once no job is waiting or running.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a job worker until SIGTERM/SIGINT: claims due jobs (many workers may share one
    PostgreSQL database), finishes jobs whose worker died, delivers callbacks. On stop,
    running jobs get MEDIAKEEP_JOB_SHUTDOWN_GRACE seconds, then go back to the queue.
    With --json, prints a "ready" line and, on exit, a "stopped" line with its counts."""
    import asyncio
    import signal

    from ..keep import MediaKeep

    async def run() -> WorkerStats:
        async with MediaKeep(load_settings()) as keep:
            w = keep.job_worker(concurrency=concurrency, poll_interval=poll_interval)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, w.stop)

            def ready(wk: JobWorker) -> None:
                if as_json:
                    _line({"event": "ready", "worker": wk.name, "concurrency": wk.concurrency})
                else:
                    err.print(f"worker {wk.name} ready ({wk.concurrency} jobs at once)")

            return await w.run(drain=drain, on_ready=ready)

    try:
        stats = run_async(run())
    except MediaKeepError as exc:
        fail(exc, as_json)
        return
    if as_json:
        _line({"event": "stopped", **stats.to_dict()})
    else:
        err.print(
            f"worker {stats.worker} stopped: {stats.jobs} jobs "
            f"({stats.completed} completed, {stats.partial} partial, {stats.failed} failed, "
            f"{stats.retried} to retry)"
        )


def persist_json(
    file: Annotated[Path, typer.Argument(help="A JSON file, or - for standard input.")],
    owner: OwnerOpt,
    collection: Annotated[str | None, typer.Option("--collection", "-c")] = None,
    public: Annotated[bool, typer.Option("--public")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the document here.")
    ] = None,
    in_place: Annotated[bool, typer.Option("--in-place", help="Rewrite FILE itself.")] = False,
    host: Annotated[
        list[str] | None,
        typer.Option("--host", help="Media host (repeatable); replaces the configured list."),
    ] = None,
    extension: Annotated[
        list[str] | None,
        typer.Option("--extension", help="Media extension (repeatable); replaces the list."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Store every media URL in a JSON document and write the document back with those
    URLs replaced by permanent links. URLs that cannot be stored are left as they were and
    reported; the exit code is then 1. Without --output/--in-place the document goes to
    stdout (with --json: {document, replaced, failed})."""
    from ..integrations.persist import MediaMatcher

    if in_place and (output is not None or str(file) == "-"):
        raise typer.BadParameter("--in-place rewrites FILE; it cannot go with --output or -")
    try:
        raw = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
        document = json.loads(raw)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise typer.BadParameter(f"cannot read JSON from {file}: {exc}") from exc

    async def run(keep: MediaKeep) -> PersistReport:
        default = keep.media_matcher()
        matcher = MediaMatcher(
            hosts=tuple(host) if host else default.hosts,
            extensions=tuple(extension) if extension else default.extensions,
            exclude=default.exclude,
        )
        return await keep.persist_json(
            document, owner=owner, collection=collection, public=public, matcher=matcher
        )

    report = with_keep(run, as_json)
    target = file if in_place else output
    text = json.dumps(report.document, indent=2, ensure_ascii=False) + "\n"
    if target is not None:
        # Through a temporary file: an interrupted write never leaves half a document.
        tmp = target.with_name(f".{target.name}.mediakeep-tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
    if as_json:
        emit_json(report.to_dict())
    elif target is None:
        sys.stdout.write(text)
    for item in report.failed:
        if not as_json:
            error = item.get("error") or {}
            err.print(
                styled(
                    ("not stored", "red"), f" {item['path']}: {item['url']} ({error.get('code')})"
                )
            )
    if not as_json:
        err.print(f"{len(report.replaced)} replaced, {len(report.failed)} left as they were")
    if report.failed:
        raise typer.Exit(1)


@jobs_app.command("show")
def show(job_id: str, as_json: JsonOpt = False) -> None:
    """A job's status, attempts, last error and items."""

    async def run(keep: MediaKeep) -> dict[str, Any]:
        return keep.job_payload(await keep.get_job(job_id))

    data = with_keep(run, as_json)
    if as_json:
        emit_json(data)
        return
    out.print(f"job {data['id']}: {data['status']} (attempt {data['attempts']})")
    for item in data["items"]:
        tail = item["asset_id"] or (item["error"] or {}).get("code") or ""
        out.print(f"  {item['index']}: {item['status']} {item['source']} {tail}")


@jobs_app.command("ls")
def list_jobs(
    owner: OwnerOpt,
    status: Annotated[str | None, typer.Option("--status")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """An owner's jobs, newest first."""

    async def run(keep: MediaKeep) -> list[dict[str, Any]]:
        jobs = await keep.list_jobs(owner=owner, status=status, limit=limit)
        return [keep.job_payload(j) for j in jobs]

    data = with_keep(run, as_json)
    if as_json:
        emit_json(data)
        return
    for job in data:
        out.print(f"{job['id']} {job['status']} {job['counts']['total']} items")
