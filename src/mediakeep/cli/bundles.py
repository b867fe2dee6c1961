"""``mediakeep bundle put|get``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import JsonOpt, OwnerOpt, emit_json, out, with_keep

if TYPE_CHECKING:
    from ..keep import MediaKeep

bundle_app = typer.Typer(help="Multi-file bundles.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(bundle_app, name="bundle")


@bundle_app.command("put")
def bundle_put(
    directory: Annotated[Path, typer.Argument(exists=True, file_okay=False, readable=True)],
    owner: OwnerOpt,
    collection: Annotated[str, typer.Option("--collection", "-c")],
    name: Annotated[str, typer.Option("--name")] = "bundle",
    version: Annotated[int | None, typer.Option("--version", min=1)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Store every file under DIRECTORY as one versioned bundle."""
    root = directory.resolve()
    # Symlinks are skipped: a bundle holds files, never pointers out of the directory.
    files = {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }
    info = with_keep(
        lambda k: k.save_bundle(owner, collection, files, name=name, version=version), as_json
    )
    if as_json:
        emit_json(info.to_dict())
    else:
        out.print(f"bundle {info.id}: {info.name} v{info.version}, {len(info.files)} files")


@bundle_app.command("get")
def bundle_get(
    bundle_id: str,
    dest: Annotated[Path, typer.Argument(file_okay=False)],
    as_json: JsonOpt = False,
) -> None:
    """Copy a bundle's files into DEST."""
    import asyncio
    import shutil

    async def run(keep: MediaKeep) -> dict[str, Any]:
        info = await keep.get_bundle(bundle_id)
        root = await keep.open_bundle(bundle_id)
        await asyncio.to_thread(shutil.copytree, root, dest, dirs_exist_ok=True)
        return {
            "id": info.id,
            "version": info.version,
            "dest": str(dest.resolve()),
            "files": [f.path for f in info.files],
        }

    data = with_keep(run, as_json)
    if as_json:
        emit_json(data)
    else:
        out.print(f"{len(data['files'])} files written to {data['dest']}")
