"""The ``mediakeep`` command. Every command takes ``--json`` for scripts.

Commands import what they run in their bodies (see ``common``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
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
    resume_collection,
    run_async,
    styled,
    with_keep,
)

if TYPE_CHECKING:
    from ..keep import MediaKeep
    from ..models import IngestResult, ItemProgress

app = typer.Typer(help="Keep AI-generated media for good.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


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

    bars, on_progress = _download_bars(not as_json and sys.stderr.isatty())

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

    with bars:
        results = with_keep(run, as_json)
    if as_json:
        emit_json([r.to_dict() for r in results])
    else:
        from rich.table import Table

        table = Table("status", "source", "id / error", "size", "type")
        for r in results:
            if r.ok:
                color = "green" if r.status == "stored" else "cyan"
                table.add_row(
                    styled((r.status, color)), r.source, r.id, str(r.size), r.content_type
                )
            else:
                e = r.error or {}
                table.add_row(
                    styled(("failed", "red")), r.source, f"{e.get('code')}: {e.get('message')}"
                )
        out.print(table)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


def _download_bars(
    shown: bool,
) -> tuple[AbstractContextManager[Any], Callable[[ItemProgress], None] | None]:
    """A bar per input on stderr, and the callback that moves them; when not ``shown``,
    neither (nor rich)."""
    if not shown:
        return nullcontext(), None
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err.console,
    )
    tasks: dict[int, Any] = {}

    def on_progress(p: ItemProgress) -> None:
        if p.index not in tasks:
            tasks[p.index] = progress.add_task(p.source[-50:], total=p.bytes_total)
        progress.update(tasks[p.index], completed=p.bytes_done, total=p.bytes_total)

    return progress, on_progress


@app.command("ls")
def list_assets(
    owner: OwnerOpt,
    collection: Annotated[str | None, typer.Option("--collection", "-c")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
    cursor: Annotated[str | None, typer.Option("--cursor")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List an owner's assets, newest first."""
    page = with_keep(
        lambda k: k.list(owner=owner, collection=collection, limit=limit, cursor=cursor), as_json
    )
    if as_json:
        emit_json({"items": [a.to_dict() for a in page.items], "next_cursor": page.next_cursor})
        return
    from rich.table import Table

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

    data = with_keep(run, as_json)
    if as_json:
        emit_json(data)
    else:
        out.print(data["url"], soft_wrap=True)


@app.command("rm")
def remove(asset_id: str, as_json: JsonOpt = False) -> None:
    """Delete an asset (its bytes go when no other asset shares them)."""
    with_keep(lambda k: k.delete(asset_id), as_json)
    if as_json:
        emit_json({"id": asset_id, "deleted": True})
    else:
        out.print(f"deleted {asset_id}")


@db_app.command("upgrade")
def db_upgrade(as_json: JsonOpt = False) -> None:
    """Apply database migrations."""
    from ..db import migrate
    from ..db.engine import create_engine

    async def run() -> str | None:
        engine = create_engine(load_settings().resolved_database_url)
        try:
            await migrate.upgrade(engine)
            return await migrate.current(engine)
        finally:
            await engine.dispose()

    revision = run_async(run())
    if as_json:
        emit_json({"revision": revision})
    else:
        out.print(f"database at revision {revision}")


def main() -> None:  # pragma: no cover
    app()


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8787,
    as_json: JsonOpt = False,
) -> None:
    """Run the HTTP service (logs go to stderr as JSON lines)."""
    import uvicorn

    from ..api.app import create_app
    from ..api.observability import configure_logging

    settings = load_settings()
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    base = f"http://{shown}:{port}"
    if "base_url" not in settings.model_fields_set:
        # The local store's signed URLs must point at where this server really listens.
        settings = settings.model_copy(update={"base_url": base})
    base = settings.base_url.rstrip("/")
    jwt_secret = settings.resolved_jwt_secret()
    token_cmd = f"{_self_command()} token --owner alice"
    if as_json:
        emit_json({"url": base, "docs": f"{base}/docs", "token_command": token_cmd})
    else:
        out.print(styled("mediakeep serving on ", (base, "bold")), soft_wrap=True)
        out.print(f"  API docs:    {base}/docs", soft_wrap=True)
        if jwt_secret:
            out.print(f"  get a token: {token_cmd}", soft_wrap=True)
            out.print(
                f'  then:        curl -H "Authorization: Bearer $TOKEN" {base}/v1/assets',
                soft_wrap=True,
            )
        else:
            out.print(
                "  bearer tokens are off: set MEDIAKEEP_JWT_SECRET (or use MEDIAKEEP_API_KEYS)",
                soft_wrap=True,
            )
    sys.stdout.flush()
    secrets = tuple(
        v
        for v in (
            jwt_secret,
            settings.signing_secret,
            settings.s3_secret_access_key,
            getattr(settings, "supabase_service_key", None),
        )
        if v
    )
    configure_logging(settings.log_level, secrets)
    service = create_app(settings)
    resume_collection()
    uvicorn.run(
        service,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        log_level=settings.log_level.lower(),
    )


def _self_command() -> str:
    """How the user ran us, so the hint can be pasted as is (e.g. .venv/bin/mediakeep)."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "mediakeep" and argv0.exists():
        try:
            return str(argv0.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(argv0)
    return "mediakeep"


@app.command()
def token(
    owner: Annotated[
        str | None, typer.Option("--owner", "-o", help="The owner the token acts for (sub).")
    ] = None,
    expires_in: Annotated[
        int, typer.Option("--expires-in", min=1, help="Lifetime in seconds.")
    ] = 3600,
    service_role: Annotated[
        bool, typer.Option("--service-role", help="May act for any owner (owner=...).")
    ] = False,
    api_key: Annotated[
        bool,
        typer.Option("--api-key", help="Make a new API key for --owner instead of a token."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print a bearer token for the API (HS256 with MEDIAKEEP_JWT_SECRET, Supabase-shaped).
    With --api-key, print a new API key and its MEDIAKEEP_API_KEYS entry."""
    from datetime import UTC, datetime, timedelta

    from ..auth import SERVICE_ROLE, USER_ROLE, api_key_entry, mint_token, new_api_key

    try:
        if api_key:
            if owner is None:
                raise typer.BadParameter("--api-key needs --owner")
            key = new_api_key()
            entry = api_key_entry(owner, key)
            if as_json:
                emit_json({"owner": owner, "api_key": key, "api_keys_entry": entry})
            else:
                out.print(key, soft_wrap=True)
                err.print(f"add to MEDIAKEEP_API_KEYS (comma-separated): {entry}")
            return
        if owner is None and not service_role:
            raise typer.BadParameter("--owner is required (or --service-role)")
        secret = load_settings().resolved_jwt_secret()
        if not secret:
            err.print(
                styled(("error", "red"), " set MEDIAKEEP_JWT_SECRET (the server's JWT secret)")
            )
            raise typer.Exit(1)
        role = SERVICE_ROLE if service_role else USER_ROLE
        value = mint_token(secret, owner, expires_in=expires_in, role=role)
    except MediaKeepError as exc:
        fail(exc, as_json)
        return
    if as_json:
        emit_json(
            {
                "token": value,
                "token_type": "bearer",
                "owner": owner,
                "role": role,
                "expires_in": expires_in,
                "expires_at": (datetime.now(UTC) + timedelta(seconds=expires_in)).isoformat(),
            }
        )
    else:
        # Bare on stdout, so TOKEN=$(mediakeep token --owner alice) works.
        sys.stdout.write(value + "\n")


def _register_subcommands() -> None:
    # Each feature's commands live in their own module and add themselves here.
    from . import bundles, jobs, maintenance

    for module in (bundles, maintenance, jobs):
        module.register(app)


_register_subcommands()
