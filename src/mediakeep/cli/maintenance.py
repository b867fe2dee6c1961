"""``mediakeep gc | verify | stats | doctor | status | migrate | import-urls``.

Each command imports the maintenance code it runs in its body (see ``common``): these
modules stay out of every other command's start-up."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from ..errors import InvalidInput, MediaKeepError
from .common import (
    JsonOpt,
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
    from rich.progress import Progress, ProgressColumn

    from ..keep import MediaKeep
    from ..maintenance.gc import GcReport
    from ..maintenance.import_urls import ImportItem, ImportReport
    from ..maintenance.migrate import MigrationReport
    from ..maintenance.stats import Stats
    from ..maintenance.verify import VerifyReport

OptionalOwner = Annotated[
    str | None, typer.Option("--owner", "-o", help="Only this owner (tenant).")
]
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
T = TypeVar("T")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def register(app: typer.Typer) -> None:
    app.command("gc")(gc)
    app.command("verify")(verify_cmd)
    app.command("stats")(stats_cmd)
    app.command("doctor")(doctor)
    app.command("status")(status)
    app.command("migrate")(migrate)
    app.command("import-urls")(import_urls)


def parse_duration(value: str) -> timedelta:
    """``90``, ``90s``, ``30m``, ``24h``, ``7d``, ``2w``."""
    m = _DURATION.match(value)
    if m is None:
        raise typer.BadParameter(f"{value!r} is not a duration (e.g. 90s, 30m, 24h, 7d)")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def _progress(as_json: bool, *columns: str | ProgressColumn) -> Progress:
    from rich.progress import Progress

    return Progress(*columns, console=err.console, disable=as_json or not sys.stderr.isatty())


def _run(coro_fn: Callable[[], Coroutine[Any, Any, T]], as_json: bool) -> T:
    try:
        return run_async(coro_fn())
    except MediaKeepError as exc:
        fail(exc, as_json)
        raise AssertionError("unreachable") from exc


# -- gc ----------------------------------------------------------------------------------


def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would go; change nothing.")
    ] = False,
    grace: Annotated[
        str | None,
        typer.Option(
            "--grace",
            help="Never touch anything younger (90s, 30m, 24h, 7d). "
            "Default: MEDIAKEEP_GC_GRACE (24h).",
        ),
    ] = None,
    older_than: Annotated[
        int | None,
        typer.Option("--older-than", help="Seconds. Old form: the sweep as before (see docs)."),
    ] = None,
    orphans: Annotated[
        bool, typer.Option("--orphans", help="Old form: the sweep as before, with a bucket scan.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete orphans, stale pending writes, expired uploads, versions past retention and
    files of failed generations; mark records whose object is missing. Nothing younger
    than the grace period goes."""
    from ..maintenance.gc import collect_garbage

    if (older_than is not None or orphans) and grace is None and not dry_run:
        # The first gc's interface, kept for scripts that use it.
        report = with_keep(
            lambda k: k.sweep(
                older_than=timedelta(seconds=3600 if older_than is None else older_than),
                orphans=orphans,
            ),
            as_json,
        )
        if as_json:
            emit_json(report.to_dict())
        else:
            for name, value in report.to_dict().items():
                out.print(f"{name}: {value}")
        return
    settings = load_settings()
    period = parse_duration(grace) if grace is not None else timedelta(seconds=settings.gc_grace)

    async def run(keep: MediaKeep) -> GcReport:
        return await collect_garbage(keep, grace=period, dry_run=dry_run)

    result = with_keep(run, as_json)
    if as_json:
        emit_json(result.to_dict())
    else:
        from rich.table import Table

        verb = "would remove" if dry_run else "removed"
        table = Table("", "count", "bytes", title=f"gc (grace {period}): {verb}")
        for label, count, size in (
            ("orphan objects", result.orphans, result.orphan_bytes),
            ("stale pending writes", result.pending, result.pending_bytes),
            ("unfinished deletes", result.deleting, result.deleting_bytes),
            ("unreferenced objects", result.unreferenced, result.unreferenced_bytes),
            ("expired uploads", result.expired_uploads, result.expired_upload_bytes),
            ("versions past retention", result.old_versions, result.old_version_bytes),
            (
                "files of failed generations",
                result.failed_generation_files,
                result.failed_generation_bytes,
            ),
            ("total", result.removed, result.removed_bytes),
        ):
            table.add_row(label, str(count), _size(size))
        out.print(table)
        out.print(f"finished jobs past retention: {result.old_jobs}")
        out.print(
            f"records marked missing: {result.missing_marked}, found again: "
            f"{result.missing_restored}; unknown objects younger than the grace: "
            f"{result.young_kept}"
        )
        for e in result.errors:
            err.print(styled(("error", "red"), f" {e}"))
    if result.errors:
        raise typer.Exit(1)


# -- verify, stats -----------------------------------------------------------------------


def verify_cmd(
    owner: OptionalOwner = None,
    sample: Annotated[
        int | None, typer.Option("--sample", min=1, help="Check N random objects.")
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=64)] = 4,
    as_json: JsonOpt = False,
) -> None:
    """Re-read objects (and their variants) and check size and sha256 against the records."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from ..maintenance.verify import planned, verify

    progress = _progress(
        as_json,
        TextColumn("verifying"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )

    async def run(keep: MediaKeep) -> VerifyReport:
        targets = await planned(keep, owner=owner, sample=sample)
        task = progress.add_task("verify", total=sum(t.size or 0 for t in targets))
        return await verify(
            keep,
            targets,
            concurrency=concurrency,
            on_bytes=lambda n: progress.advance(task, n),
        )

    with progress:
        report = with_keep(run, as_json)
    if as_json:
        emit_json(report.to_dict())
    else:
        out.print(f"checked {report.checked} objects ({_size(report.bytes_read)}): {report.ok} ok")
        if report.problems:
            from rich.table import Table

            table = Table("problem", "bucket/key", "expected", "found")
            for p in report.problems:
                expected = p.expected_sha256 or (
                    str(p.expected_size) if p.expected_size is not None else ""
                )
                found = p.actual_sha256 or (
                    str(p.actual_size) if p.actual_size is not None else p.detail or ""
                )
                table.add_row(styled((p.problem, "red")), f"{p.bucket}/{p.key}", expected, found)
            out.print(table)
    if report.problems:
        raise typer.Exit(1)


def stats_cmd(owner: OptionalOwner = None, as_json: JsonOpt = False) -> None:
    """Totals by owner, kind, collection and bucket, and the bytes dedup saves."""
    from ..maintenance.stats import collect_stats

    async def run(keep: MediaKeep) -> Stats:
        return await collect_stats(keep, owner=owner)

    result = with_keep(run, as_json)
    if as_json:
        emit_json(result.to_dict())
        return
    from rich.table import Table

    out.print(
        f"{result.assets} assets, {_size(result.bytes)}; stored {result.objects} objects, "
        f"{_size(result.stored_bytes)} (+{_size(result.variant_bytes)} variants); "
        f"dedup saves {_size(result.dedup_savings_bytes)}"
    )
    if result.missing_objects:
        out.print(
            styled((f"{result.missing_objects} objects are missing from the store", "yellow"))
        )
    table = Table("owner", "assets", "bytes", "stored", "dedup saves", title="by owner")
    for name, u in sorted(result.by_owner.items()):
        table.add_row(
            name,
            str(u.assets),
            _size(u.bytes),
            _size(u.stored_bytes),
            _size(u.dedup_savings_bytes),
        )
    out.print(table)
    for title, usage in (("by kind", result.by_kind), ("by collection", result.by_collection)):
        t = Table("name", "assets", "bytes", title=title)
        for name, entry in sorted(usage.items()):
            t.add_row(name, str(entry.assets), _size(entry.bytes))
        out.print(t)
    t = Table("bucket", "objects", "bytes", "variants", "variant bytes", title="by bucket")
    for name, b in sorted(result.by_bucket.items()):
        t.add_row(name, str(b.objects), _size(b.bytes), str(b.variants), _size(b.variant_bytes))
    out.print(t)


# -- doctor, status ----------------------------------------------------------------------


def doctor(as_json: JsonOpt = False) -> None:
    """Check the configuration and everything it points at; say what to fix."""
    from pydantic import ValidationError

    from ..maintenance.doctor import run_doctor

    try:
        settings = load_settings()
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        fail(InvalidInput(f"setting {where.upper()}: {problem['msg']}"), as_json)
        return
    checks = run_async(run_doctor(settings))
    if as_json:
        emit_json(
            {"ok": all(c.status != "fail" for c in checks), "checks": [c.to_dict() for c in checks]}
        )
    else:
        marks = {"ok": ("ok  ", "green"), "warn": ("warn", "yellow"), "fail": ("FAIL", "red")}
        for c in checks:
            out.print(styled(marks[c.status], f" {c.name}: {c.message}"), soft_wrap=True)
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)


def status(as_json: JsonOpt = False) -> None:
    """Where objects live, the database revision, and the hybrid replication backlog."""
    from ..db import migrate as db_migrate
    from ..db.engine import create_engine
    from ..maintenance.targets import describe
    from ..stores.factory import build_store
    from ..stores.hybrid import HybridStore

    settings = load_settings()

    async def run() -> dict[str, Any]:
        engine = create_engine(settings.resolved_database_url)
        try:
            revision = await db_migrate.current(engine)
        finally:
            await engine.dispose()
        data: dict[str, Any] = {
            "store": settings.store,
            "location": describe(settings),
            "database": engine.url.render_as_string(hide_password=True),
            "revision": revision,
            "replication": None,
        }
        store = build_store(settings)
        try:
            if isinstance(store, HybridStore):
                data["replication"] = (await store.status()).to_dict()
        finally:
            await store.close()
        return data

    data = _run(run, as_json)
    if as_json:
        emit_json(data)
        return
    out.print(f"store: {data['location']}", soft_wrap=True)
    out.print(f"database: {data['database']} at revision {data['revision']}", soft_wrap=True)
    rep = data["replication"]
    if rep is not None:
        out.print(
            f"replication to {rep['remote']}: {rep['backlog']} waiting "
            f"({rep['pending_puts']} copies, {_size(rep['pending_bytes'])}; "
            f"{rep['pending_deletes']} deletes), {rep['conflicts']} conflicts"
            + (f", oldest since {rep['oldest_queued_at']}" if rep["oldest_queued_at"] else "")
        )


# -- migrate, import-urls ----------------------------------------------------------------


def migrate(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="The target store: an env file with its settings, or local|s3|supabase|hybrid "
            "for this environment's settings of that store.",
        ),
    ],
    source: Annotated[
        str, typer.Option("--from", help="The source store (default: the configured one).")
    ] = "current",
    owner: OptionalOwner = None,
    collection: Annotated[str | None, typer.Option("--collection", "-c")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would move; change nothing.")
    ] = False,
    check: Annotated[
        bool, typer.Option("--verify", help="Read every copy back and check its sha256.")
    ] = False,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=64)] = 4,
    as_json: JsonOpt = False,
) -> None:
    """Copy every object to another store, check each copy, then switch its records.
    Resumable: run it again to finish an interrupted run."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from ..keep import MediaKeep
    from ..maintenance.migrate import Migration
    from ..maintenance.targets import load_target

    settings = load_settings()
    try:
        src = load_target(source, settings)
        dst = load_target(to, settings)
    except MediaKeepError as exc:
        fail(exc, as_json)
        return
    progress = _progress(
        as_json,
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )

    async def run() -> MigrationReport:
        async with MediaKeep(settings) as keep:
            job = Migration(
                keep,
                src,
                dst,
                owner=owner,
                collection=collection,
                dry_run=dry_run,
                verify=check,
                concurrency=concurrency,
            )
            count, size = await job.totals()
            objects = progress.add_task("objects", total=count)
            moved = progress.add_task("bytes", total=size)

            def done(n: int) -> None:
                progress.advance(objects)
                progress.advance(moved, n)

            job.on_object = done
            return await job.run()

    with progress:
        report: MigrationReport = _run(run, as_json)
    if as_json:
        emit_json(report.to_dict())
    else:
        out.print(f"{report.source} -> {report.target}", soft_wrap=True)
        if dry_run:
            out.print(
                f"would copy {report.would_copy} objects ({_size(report.would_copy_bytes)}); "
                f"{report.skipped} already there"
            )
        else:
            out.print(
                f"copied {report.copied} ({_size(report.copied_bytes)}), skipped "
                f"{report.skipped}, verified {report.verified}, switched {report.switched}, "
                f"failed {len(report.failed)}"
            )
        if report.failed:
            from rich.table import Table

            table = Table("object", "bucket/key", "reason")
            for f in report.failed:
                table.add_row(f.object_id, f"{f.bucket}/{f.key}", f.reason)
            out.print(table)
    if report.failed:
        raise typer.Exit(1)


def import_urls(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    owner: Annotated[
        str | None, typer.Option("--owner", "-o", help="For rows without an owner.")
    ] = None,
    collection: Annotated[
        str | None, typer.Option("--collection", "-c", help="For rows without a collection.")
    ] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", min=1, max=64)] = None,
    report_path: Annotated[
        Path | None,
        typer.Option("--report", help="Also write one JSON line per row here."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Backfill rows that still point at provider URLs (CSV, or JSON lines: url, owner,
    collection, slot, metadata, provider, public, ref). Resumable: stored URLs are skipped.
    Exit code 1 if any row failed for another reason than an expired URL."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from ..maintenance.import_urls import import_rows, read_rows

    rows, bad = read_rows(file, owner=owner, collection=collection)
    progress = _progress(
        as_json, TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
    )

    async def run(keep: MediaKeep) -> ImportReport:
        task = progress.add_task("import", total=len(rows))

        def tick(_item: ImportItem) -> None:
            progress.advance(task)

        return await import_rows(keep, rows, concurrency=concurrency, on_item=tick)

    with progress:
        report = with_keep(run, as_json)
    for item in bad:
        report.add(item)
    data = report.to_dict()
    if report_path is not None:
        report_path.write_text("".join(json.dumps(i) + "\n" for i in data["items"]))
    if as_json:
        emit_json(data)
    else:
        out.print(
            f"saved {report.saved}, skipped {report.skipped} (stored before), expired "
            f"{report.expired}, failed {report.failed}"
        )
        from rich.table import Table

        table = Table("line", "status", "url", "error")
        for i in data["items"]:
            if i["status"] in ("expired", "failed"):
                e = i["error"] or {}
                color = "yellow" if i["status"] == "expired" else "red"
                table.add_row(
                    str(i["line"]), styled((i["status"], color)), i["url"], e.get("message", "")
                )
        if table.row_count:
            out.print(table)
    if report.failed:
        raise typer.Exit(1)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
