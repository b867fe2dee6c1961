"""The ``mediakeep`` command. Every command takes ``--json`` for scripts."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from ..errors import MediaKeepError
from ..keep import MediaKeep
from ..models import IngestResult, ItemProgress
from ..settings import Settings

app = typer.Typer(help="Keep AI-generated media for good.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")

out = Console()
err = Console(stderr=True)
T = TypeVar("T")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
OwnerOpt = Annotated[str, typer.Option("--owner", "-o", help="Owner (tenant) id.")]


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _fail(exc: MediaKeepError, as_json: bool) -> None:
    if as_json:
        _emit_json({"error": exc.to_dict()})
    else:
        err.print(f"[red]error[/red] [{exc.code}] {exc.message}")
    raise typer.Exit(1)


def _with_keep(fn: Callable[[MediaKeep], Awaitable[T]], as_json: bool) -> T:
    async def run() -> T:
        async with MediaKeep(Settings()) as keep:
            return await fn(keep)

    try:
        return asyncio.run(run())
    except MediaKeepError as exc:
        _fail(exc, as_json)
        raise AssertionError("unreachable") from exc


@app.command()
def ingest(
    sources: Annotated[list[str], typer.Argument(help="URLs or local file paths.")],
    owner: OwnerOpt,
    collection: Annotated[str | None, typer.Option("--collection", "-c")] = None,
    slot: Annotated[str | None, typer.Option("--slot")] = None,
    public: Annotated[bool, typer.Option("--public", help="Store in the public bucket.")] = False,
    provider: Annotated[str | None, typer.Option("--provider")] = None,
    metadata: Annotated[str | None, typer.Option("--metadata", help="JSON object.")] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", min=1, max=64)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Store URLs or files. Exit code 0 only if every input was stored or deduplicated."""
    meta: dict[str, Any] = {}
    if metadata:
        try:
            meta = json.loads(metadata)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"--metadata is not JSON: {exc}") from exc
        if not isinstance(meta, dict):
            raise typer.BadParameter("--metadata must be a JSON object")

    show_progress = not as_json and sys.stderr.isatty()
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        disable=not show_progress,
    )
    tasks: dict[int, Any] = {}

    def on_progress(p: ItemProgress) -> None:
        if not show_progress:
            return
        if p.index not in tasks:
            tasks[p.index] = progress.add_task(p.source[-50:], total=p.bytes_total)
        progress.update(tasks[p.index], completed=p.bytes_done, total=p.bytes_total)

    async def run(keep: MediaKeep) -> list[IngestResult]:
        return await keep.store_many(
            sources,
            owner=owner,
            collection=collection,
            slot=slot,
            public=public,
            provider=provider,
            metadata=meta,
            concurrency=concurrency,
            progress=on_progress,
        )

    with progress:
        results = _with_keep(run, as_json)
    if as_json:
        _emit_json([r.to_dict() for r in results])
    else:
        table = Table("status", "source", "id / error", "size", "type")
        for r in results:
            if r.ok:
                color = "green" if r.status == "stored" else "cyan"
                table.add_row(
                    f"[{color}]{r.status}[/]", r.source, r.id, str(r.size), r.content_type
                )
            else:
                e = r.error or {}
                table.add_row("[red]failed[/]", r.source, f"{e.get('code')}: {e.get('message')}")
        out.print(table)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@app.command("ls")
def list_assets(
    owner: OwnerOpt,
    collection: Annotated[str | None, typer.Option("--collection", "-c")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
    cursor: Annotated[str | None, typer.Option("--cursor")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List an owner's assets, newest first."""
    page = _with_keep(
        lambda k: k.list(owner=owner, collection=collection, limit=limit, cursor=cursor), as_json
    )
    if as_json:
        _emit_json({"items": [a.to_dict() for a in page.items], "next_cursor": page.next_cursor})
        return
    table = Table("id", "collection", "type", "size", "created")
    for a in page.items:
        table.add_row(a.id, a.collection, a.content_type, str(a.size), a.created_at.isoformat())
    out.print(table)
    if page.next_cursor:
        out.print(f"more: --cursor {page.next_cursor}")


@app.command()
def url(
    asset_id: str,
    expires_in: Annotated[int | None, typer.Option("--expires-in", min=1)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a URL for an asset: public, or signed for ``--expires-in`` seconds."""

    async def run(keep: MediaKeep) -> dict[str, Any]:
        asset = await keep.get(asset_id)
        value = await keep.url(asset_id, expires_in=expires_in)
        ttl = keep.settings.signed_url_expires if expires_in is None else expires_in
        expires = None if asset.public else keep.expires_at(ttl).isoformat()
        return {"id": asset_id, "url": value, "public": asset.public, "expires_at": expires}

    data = _with_keep(run, as_json)
    if as_json:
        _emit_json(data)
    else:
        out.print(data["url"], soft_wrap=True)


@app.command("rm")
def remove(asset_id: str, as_json: JsonOpt = False) -> None:
    """Delete an asset (its bytes go when no other asset shares them)."""
    _with_keep(lambda k: k.delete(asset_id), as_json)
    if as_json:
        _emit_json({"id": asset_id, "deleted": True})
    else:
        out.print(f"deleted {asset_id}")


@app.command()
def gc(
    older_than: Annotated[int, typer.Option("--older-than", help="Seconds.")] = 3600,
    orphans: Annotated[bool, typer.Option("--orphans", help="Also scan the buckets.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove what interrupted writes and failed deletes left behind."""
    report = _with_keep(
        lambda k: k.sweep(older_than=timedelta(seconds=older_than), orphans=orphans), as_json
    )
    if as_json:
        _emit_json(report.to_dict())
    else:
        for name, value in report.to_dict().items():
            out.print(f"{name}: {value}")


@db_app.command("upgrade")
def db_upgrade(as_json: JsonOpt = False) -> None:
    """Apply database migrations."""
    from ..db import migrate
    from ..db.engine import create_engine

    async def run() -> str | None:
        engine = create_engine(Settings().resolved_database_url)
        try:
            await migrate.upgrade(engine)
            return await migrate.current(engine)
        finally:
            await engine.dispose()

    revision = asyncio.run(run())
    if as_json:
        _emit_json({"revision": revision})
    else:
        out.print(f"database at revision {revision}")


def main() -> None:  # pragma: no cover
    app()


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8787,
    as_json: JsonOpt = False,
) -> None:
    """Run the HTTP service."""
    import uvicorn

    from ..api.app import create_app

    settings = Settings()
    base = f"http://{host}:{port}"
    if as_json:
        _emit_json({"url": base, "docs": f"{base}/docs"})
    else:
        out.print(f"mediakeep serving on [bold]{base}[/bold]  (docs: {base}/docs)")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
