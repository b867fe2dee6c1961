"""Collections, slots (versioned names with one current version) and bundles (many files
as one versioned archive). Every lookup is scoped to the acting owner, like the asset routes."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import mimetypes
import shutil
import tempfile
from pathlib import Path as FsPath
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from pydantic import ValidationError

from ..bundles.api import BundleInfo
from ..bundles.archive import FileData, clean_path
from ..db import slots as slot_rows
from ..errors import InvalidInput, NotFound, RequestTooLarge, UnsupportedMediaType
from ..keep import MediaKeep
from ..models import AssetInfo
from ..settings import Settings
from .deps import keep_of
from .links import WindowedLinks
from .media_schemas import (
    MAX_BUNDLE_FILES,
    BundleCreate,
    BundleFile,
    BundleList,
    BundleOut,
    BundleSummary,
    CollectionDeletion,
    CollectionList,
    CollectionOut,
    DeletedAsset,
    SetCurrentRequest,
    SlotList,
    SlotOut,
    SlotVersions,
)
from .multipart import MultipartReader, boundary_of
from .routes_media import AUTH_ERRORS, bytes_responses, doc, serve_stored, variant_links
from .schemas import NAME_PATTERN, AssetOut, check_metadata, utc
from .security import Owner

CollectionName = Annotated[
    str, Path(pattern=NAME_PATTERN, max_length=128, description="The collection.")
]
SlotName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=128, description="The slot.")]
BundleId = Annotated[UUID, Path(description="The bundle's id.")]
# JSON bundles are parsed in memory; larger ones go as multipart (spooled to disk).
MAX_JSON_BUNDLE = 32 * 1024 * 1024
_FORM_FIELDS = frozenset({"collection", "name", "version", "metadata"})
_FIELD_LIMIT = 64 * 1024


def _base(keep: MediaKeep) -> str:
    return keep.settings.base_url.rstrip("/")


def slot_content_url(keep: MediaKeep, collection: str, slot: str) -> str:
    return f"{_base(keep)}/v1/collections/{collection}/slots/{slot}/content"


async def _assets_out(keep: MediaKeep, assets: list[AssetInfo]) -> list[AssetOut]:
    variants = await variant_links(keep, assets)
    return [AssetOut.of(a, keep.settings.base_url, variants.get(a.id)) for a in assets]


def _summary(b: BundleInfo) -> dict[str, Any]:
    return {
        "id": b.id,
        "collection": b.collection,
        "name": b.name,
        "version": b.version,
        "asset_id": b.asset_id,
        "file_count": len(b.files),
        "total_size": b.total_size,
        "created_at": utc(b.created_at),
    }


def build_versions_router(settings: Settings) -> APIRouter:
    r = APIRouter(prefix="/v1")
    links = WindowedLinks(settings.content_url_window)

    async def slot_out(keep: MediaKeep, owner: str, collection: str, slot: str) -> SlotOut:
        async with keep.repo.reads() as s:
            state = await slot_rows.get_slot(s, owner, collection, slot)
        if state.current_asset_id is None:
            raise NotFound("the slot has no current version")
        current = await keep.repo.get(state.current_asset_id, owner)
        return SlotOut(
            collection=collection,
            slot=slot,
            latest_version=state.latest_version,
            current_version=current.version,
            current=(await _assets_out(keep, [current]))[0],
            content_url=slot_content_url(keep, collection, slot),
        )

    # -- collections ---------------------------------------------------------------------

    @r.get(
        "/collections",
        tags=["collections"],
        response_model=CollectionList,
        responses=doc(*AUTH_ERRORS),
    )
    async def list_collections(request: Request, owner: Owner) -> CollectionList:
        """The caller's collections with their asset counts, bytes and slots."""
        found = await keep_of(request).collections(owner=owner)
        return CollectionList(
            items=[
                CollectionOut(collection=c.name, assets=c.assets, bytes=c.bytes, slots=c.slots)
                for c in found
            ]
        )

    @r.delete(
        "/collections/{collection}",
        tags=["collections"],
        response_model=CollectionDeletion,
        responses=doc(*AUTH_ERRORS, 404, 503),
    )
    async def delete_collection(
        collection: CollectionName,
        request: Request,
        owner: Owner,
        dry_run: Annotated[
            bool, Query(description="List what would be deleted; delete nothing.")
        ] = False,
    ) -> CollectionDeletion:
        """Delete every asset in the collection (bytes go when nothing else shares them).
        404 when the collection holds nothing."""
        gone = await keep_of(request).delete_collection(
            owner=owner, collection=collection, dry_run=dry_run
        )
        if not gone:
            raise NotFound("no such collection")
        return CollectionDeletion(
            collection=collection,
            dry_run=dry_run,
            count=len(gone),
            bytes=sum(a.size for a in gone),
            assets=[
                DeletedAsset(
                    id=a.id,
                    key=a.key,
                    slot=a.slot,
                    version=a.version,
                    size=a.size,
                    content_type=a.content_type,
                )
                for a in gone
            ],
        )

    # -- slots ---------------------------------------------------------------------------

    @r.get(
        "/collections/{collection}/slots",
        tags=["collections"],
        response_model=SlotList,
        responses=doc(*AUTH_ERRORS, 404),
    )
    async def list_slots(collection: CollectionName, request: Request, owner: Owner) -> SlotList:
        """Every slot of the collection with its current version. 404 when the
        collection holds nothing."""
        keep = keep_of(request)
        # A slot whose every version was deleted has nothing left to show.
        live = [s for s in await keep.slots(owner=owner, collection=collection) if s.current]
        if not live and not (await keep.list(owner=owner, collection=collection, limit=1)).items:
            raise NotFound("no such collection")
        outs = await _assets_out(keep, [s.current for s in live if s.current is not None])
        return SlotList(
            collection=collection,
            items=[
                SlotOut(
                    collection=collection,
                    slot=s.name,
                    latest_version=s.latest_version,
                    current_version=s.current_version,
                    current=out,
                    content_url=slot_content_url(keep, collection, s.name),
                )
                for s, out in zip(live, outs, strict=True)
            ],
        )

    @r.get(
        "/collections/{collection}/slots/{slot}",
        tags=["collections"],
        response_model=SlotOut,
        responses=doc(*AUTH_ERRORS, 404),
    )
    async def get_slot(
        collection: CollectionName, slot: SlotName, request: Request, owner: Owner
    ) -> SlotOut:
        """The slot and its current version."""
        return await slot_out(keep_of(request), owner, collection, slot)

    @r.get(
        "/collections/{collection}/slots/{slot}/versions",
        tags=["collections"],
        response_model=SlotVersions,
        responses=doc(*AUTH_ERRORS, 404),
    )
    async def slot_versions(
        collection: CollectionName, slot: SlotName, request: Request, owner: Owner
    ) -> SlotVersions:
        """The slot's history, newest first."""
        keep = keep_of(request)
        history = await keep.versions(owner=owner, collection=collection, slot=slot)
        async with keep.repo.reads() as s:
            state = await slot_rows.get_slot(s, owner, collection, slot)
        return SlotVersions(
            collection=collection,
            slot=slot,
            current_version=state.current_version,
            items=await _assets_out(keep, history),
        )

    @r.post(
        "/collections/{collection}/slots/{slot}/current",
        tags=["collections"],
        response_model=SlotOut,
        responses=doc(*AUTH_ERRORS, 404, 413),
    )
    async def set_current(
        collection: CollectionName,
        slot: SlotName,
        request: Request,
        owner: Owner,
        body: Annotated[SetCurrentRequest, Body()],
    ) -> SlotOut:
        """Make ``version`` the current one (roll back or forward). The slot's permanent
        link serves it from the next request on."""
        keep = keep_of(request)
        await keep.set_current(owner=owner, collection=collection, slot=slot, version=body.version)
        return await slot_out(keep, owner, collection, slot)

    async def slot_content(
        collection: CollectionName, slot: SlotName, request: Request, owner: Owner
    ) -> Response:
        """The slot's **permanent link**: always the current version. The slot is looked
        up on every request and the answer is not to be cached (revalidate with the ETag
        on the local store), so a rollback shows at once."""
        keep = keep_of(request)
        asset = await keep.slot(owner=owner, collection=collection, slot=slot)
        scope = "public" if asset.public else "private"
        return await serve_stored(
            request,
            keep,
            links,
            bucket=asset.bucket,
            key=asset.key,
            public=asset.public,
            content_type=asset.content_type,
            etag=asset.sha256,
            cache=f"{scope}, no-cache",
            redirect_cache="private, no-cache",
        )

    r.add_api_route(
        "/collections/{collection}/slots/{slot}/content",
        slot_content,
        methods=["GET"],
        tags=["collections"],
        response_class=Response,
        responses=bytes_responses(),
    )
    r.add_api_route(
        "/collections/{collection}/slots/{slot}/content",
        slot_content,
        methods=["HEAD"],
        response_class=Response,
        include_in_schema=False,
    )

    # -- bundles -------------------------------------------------------------------------

    multipart_schema = {
        "type": "object",
        "required": ["collection", "files"],
        "properties": {
            "collection": {"type": "string", "pattern": NAME_PATTERN, "maxLength": 128},
            "name": {"type": "string", "pattern": NAME_PATTERN, "maxLength": 128},
            "version": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
            "metadata": {"type": "string", "description": "A JSON object."},
            "files": {
                "type": "array",
                "items": {"type": "string", "format": "binary"},
                "description": "One part per file; its filename is the path in the bundle.",
            },
        },
    }

    @r.post(
        "/bundles",
        tags=["bundles"],
        status_code=201,
        response_model=BundleOut,
        responses=doc(*AUTH_ERRORS, 409, 413, 415, 503),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": BundleCreate.model_json_schema()},
                    "multipart/form-data": {"schema": multipart_schema},
                },
            }
        },
    )
    async def create_bundle(request: Request, owner: Owner) -> BundleOut:
        """Store many files as one versioned bundle (a tar.gz archive with a manifest).

        As **JSON**: ``files`` maps each path to its content, all written as ``encoding``:
        ``text`` (UTF-8, the default) or ``base64`` (for binary files); at most 32 MiB of
        JSON. As **multipart/form-data**: each part with a filename is a file, the filename
        its path (e.g. ``src/main.py``); the fields ``collection``, ``name``, ``version``
        and ``metadata`` (a JSON object) may come in any order; up to the file size limit.
        Paths are relative with forward slashes and no ``..``."""
        keep = keep_of(request)
        kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            info = await _save_multipart(keep, request, owner)
        elif kind in ("application/json", ""):
            body = await _read_json_body(request)
            info = await keep.save_bundle(
                owner,
                body.collection,
                _decode_files(body),
                name=body.name,
                version=body.version,
                metadata=body.metadata,
            )
        else:
            raise _unsupported(kind)
        return _bundle_out(keep, info)

    @r.get(
        "/bundles",
        tags=["bundles"],
        response_model=BundleList,
        responses=doc(*AUTH_ERRORS),
    )
    async def list_bundles(
        request: Request,
        owner: Owner,
        collection: Annotated[str, Query(pattern=NAME_PATTERN, max_length=128)],
        name: Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=128)] = None,
    ) -> BundleList:
        """Every version of the collection's bundles (or of one ``name``), newest first."""
        found = await keep_of(request).list_bundles(owner=owner, collection=collection, name=name)
        return BundleList(items=[BundleSummary(**_summary(b)) for b in found])

    @r.get(
        "/bundles/{bundle_id}",
        tags=["bundles"],
        response_model=BundleOut,
        responses=doc(*AUTH_ERRORS, 404),
    )
    async def get_bundle(bundle_id: BundleId, request: Request, owner: Owner) -> BundleOut:
        """The bundle with its manifest (path, size and sha256 of every file)."""
        keep = keep_of(request)
        return _bundle_out(keep, await keep.get_bundle(str(bundle_id), owner=owner))

    async def download_bundle(bundle_id: BundleId, request: Request, owner: Owner) -> Response:
        """The archive (tar.gz): a redirect to a signed URL of it, stable within a window
        (object stores), or the bytes (local store)."""
        keep = keep_of(request)
        bundle = await keep.get_bundle(str(bundle_id), owner=owner)
        asset = await keep.get(bundle.asset_id, owner=owner)
        return await serve_stored(
            request,
            keep,
            links,
            bucket=asset.bucket,
            key=asset.key,
            public=asset.public,
            content_type=asset.content_type,
            etag=asset.sha256,
        )

    r.add_api_route(
        "/bundles/{bundle_id}/download",
        download_bundle,
        methods=["GET"],
        tags=["bundles"],
        response_class=Response,
        responses=bytes_responses(),
    )

    @r.get(
        "/bundles/{bundle_id}/files/{path:path}",
        tags=["bundles"],
        response_class=FileResponse,
        responses={
            200: {
                "description": "The file's bytes.",
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            },
            **doc(*AUTH_ERRORS, 404, 503),
        },
    )
    async def bundle_file(
        bundle_id: BundleId,
        path: Annotated[str, Path(max_length=1024, description="The file's path in the bundle.")],
        request: Request,
        owner: Owner,
    ) -> FileResponse:
        """One file out of the bundle. Served sandboxed: an HTML file is shown, never run
        on this origin."""
        keep = keep_of(request)
        bundle = await keep.get_bundle(str(bundle_id), owner=owner)
        # The manifest answers for missing files: no download, and no file system call
        # with whatever the client put in the path.
        if clean_path(path) not in {f.path for f in bundle.files}:
            raise NotFound(f"no file {path!r} in the bundle")
        local = await keep.bundle_file(bundle.id, path, owner=owner)
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return FileResponse(
            local,
            media_type=content_type,
            headers={
                "Cache-Control": "private, max-age=31536000, immutable",
                "Content-Security-Policy": "sandbox; default-src 'none'",
                "X-Content-Type-Options": "nosniff",
                "Vary": "Authorization, X-API-Key",
            },
        )

    return r


def _bundle_out(keep: MediaKeep, b: BundleInfo) -> BundleOut:
    return BundleOut(
        **_summary(b),
        files=[BundleFile(path=f.path, size=f.size, sha256=f.sha256) for f in b.files],
        download_url=f"{_base(keep)}/v1/bundles/{b.id}/download",
    )


def _unsupported(kind: str) -> UnsupportedMediaType:
    return UnsupportedMediaType(
        "send the bundle as application/json or multipart/form-data", content_type=kind
    )


async def _read_json_body(request: Request) -> BundleCreate:
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_JSON_BUNDLE:
            raise RequestTooLarge(
                f"a JSON bundle is at most {MAX_JSON_BUNDLE} bytes; send larger ones as multipart"
            )
    try:
        return BundleCreate.model_validate_json(bytes(raw))
    except ValidationError as exc:
        # The same 422 problem FastAPI gives for any other invalid body.
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


def _decode_files(body: BundleCreate) -> dict[str, FileData]:
    files: dict[str, FileData] = {}
    for path, content in body.files.items():
        if body.encoding == "text":
            try:
                files[path] = content.encode("utf-8")
            except UnicodeEncodeError as exc:  # a lone surrogate escaped in the JSON
                raise InvalidInput(f"the content of {path!r} is not valid text") from exc
            continue
        try:
            files[path] = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput(f"the content of {path!r} is not valid base64") from exc
    return files


async def _save_multipart(keep: MediaKeep, request: Request, owner: str) -> BundleInfo:
    parts = MultipartReader(request.stream(), boundary_of(request.headers.get("content-type")))
    fields: dict[str, str] = {}
    files: dict[str, FileData] = {}
    spool = FsPath(tempfile.mkdtemp(prefix="mk-bundle-up-"))
    try:
        while (part := await parts.next_part()) is not None:
            if part.filename is None:
                value = (await part.read(_FIELD_LIMIT)).decode("utf-8", "replace")
                if part.name in _FORM_FIELDS:
                    fields[part.name] = value
                continue
            if part.filename in files:
                raise InvalidInput(f"the file {part.filename!r} is in the form twice")
            if len(files) >= MAX_BUNDLE_FILES:
                raise InvalidInput(f"a bundle holds at most {MAX_BUNDLE_FILES} files")
            # Stored under a counter, never under the client's path: the path is checked
            # by the archive builder, the file system never sees it.
            target = spool / str(len(files))
            with target.open("wb") as fh:
                async for chunk in part.chunks():
                    await asyncio.to_thread(fh.write, chunk)
            files[part.filename] = target
        opts = _form_options(fields)
        return await keep.save_bundle(
            owner,
            opts["collection"],
            files,
            name=opts["name"],
            version=opts["version"],
            metadata=opts["metadata"],
        )
    finally:
        shutil.rmtree(spool, ignore_errors=True)


def _form_options(fields: dict[str, str]) -> dict[str, Any]:
    if not fields.get("collection"):
        raise InvalidInput("the form needs a collection field")
    version: int | None = None
    if fields.get("version"):
        try:
            version = int(fields["version"])
        except ValueError as exc:
            raise InvalidInput("version must be a whole number") from exc
        if not 1 <= version < 2**31:
            raise InvalidInput("version must be between 1 and 2147483647")
    metadata: dict[str, Any] = {}
    if fields.get("metadata"):
        try:
            metadata = json.loads(fields["metadata"])
        except json.JSONDecodeError as exc:
            raise InvalidInput("metadata must be a JSON object") from exc
        if not isinstance(metadata, dict):
            raise InvalidInput("metadata must be a JSON object")
        try:
            check_metadata(metadata)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from exc
    return {
        "collection": fields["collection"],
        "name": fields.get("name") or "bundle",
        "version": version,
        "metadata": metadata,
    }
