"""The ``/v1`` routes. Every query is scoped to the acting owner: another owner's asset is
answered exactly like one that does not exist (404), on every route, batch routes included."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Path, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BeforeValidator

from ..db.repo import decode_cursor, encode_cursor
from ..errors import InvalidInput, MediaKeepError, NotFound
from ..keep import MAX_EXPIRES
from ..models import IngestResult
from ..pipeline.keys import validate_name
from ..pipeline.sources import UrlSource
from ..settings import Settings
from ..stores.base import cache_control
from ..stores.local import LocalStore
from .deps import keep_of
from .files import send_object
from .links import WindowedLinks
from .multipart import MultipartReader, boundary_of
from .observability import Metrics
from .problems import status_for_code
from .ratelimit import RateLimiter
from .routes_jobs import IdempotencyKey, accept_ingest
from .routes_media import variant_links
from .schemas import (
    NAME_PATTERN,
    AssetOut,
    AssetPage,
    IngestItem,
    IngestRequest,
    IngestResponse,
    ItemError,
    PresignRequest,
    PresignResponse,
    SignedUrlItem,
    SignedUrlsRequest,
    SignedUrlsResponse,
    StorageStatsOut,
    UrlOut,
    Usage,
    VisibilityRequest,
    VisibilityResponse,
    check_metadata,
)
from .schemas_jobs import JobOut
from .security import Caller, Owner, OwnerQuery

AssetId = Annotated[UUID, Path(description="The asset's id.")]
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_only(value: object) -> object:
    # Pydantic would also read "1700000000" as a Unix time; the schema promises RFC 3339.
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise ValueError("expected an RFC 3339 date-time, like 2026-01-31T12:00:00Z")
    return value


IsoDatetime = Annotated[datetime, BeforeValidator(_iso_only)]
NameQuery = Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=128)]
# Form fields of a direct upload that may precede the file part.
_UPLOAD_FIELDS = frozenset({"collection", "slot", "public", "provider", "metadata", "owner"})
_FIELD_LIMIT = 64 * 1024


def _doc(*statuses: int) -> dict[int | str, dict[str, Any]]:
    # Descriptions and the problem+json schema are filled in by openapi.finish().
    return {s: {"description": ""} for s in statuses}


AUTH_ERRORS = (400, 401, 403, 422, 500)


def _base(request: Request) -> str:
    settings: Settings = request.app.state.keep.settings
    return settings.base_url


def _aware(value: datetime | None, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except (OverflowError, ValueError) as exc:
        raise InvalidInput(f"{what} is out of range") from exc


def _check_cursor(cursor: str | None) -> str | None:
    """The cursor with its time in UTC: a client-made cursor must not carry values a
    database cannot compare (naive or far-out times, control characters)."""
    if cursor is None:
        return None
    ts, last_id = decode_cursor(cursor)
    if not last_id.isprintable() or len(last_id) > 64:
        raise InvalidInput("invalid cursor")
    aware = _aware(ts, "cursor")
    assert aware is not None
    return encode_cursor(aware, last_id)


def build_router(settings: Settings) -> APIRouter:
    r = APIRouter(prefix="/v1")
    limiter = RateLimiter(settings.ingest_rate_limit)
    links = WindowedLinks(settings.content_url_window)

    def metrics_of(request: Request) -> Metrics:
        m: Metrics = request.app.state.metrics
        return m

    # -- ingest ----------------------------------------------------------------------

    @r.post(
        "/ingest",
        tags=["ingest"],
        response_model=IngestResponse,
        responses={
            207: {"model": IngestResponse, "description": "Some items failed; see each item."},
            202: {"model": JobOut, "description": "Accepted as a durable job (async)."},
            **_doc(*AUTH_ERRORS, 409, 413, 429),
        },
    )
    async def ingest(
        body: IngestRequest,
        request: Request,
        response: Response,
        who: Caller,
        owner: OwnerQuery = None,
        idempotency_key: IdempotencyKey = None,
    ) -> IngestResponse | JSONResponse:
        """Download URLs into the store. Answers 200 when every item was stored (or was
        already there), 207 when any failed: each item carries its own status and error."""
        acting = who.acting_for(body.owner or owner)
        request.state.owner = acting
        keep = keep_of(request)
        if len(body.urls) > keep.settings.max_ingest_urls:
            raise InvalidInput(f"at most {keep.settings.max_ingest_urls} URLs per request")
        _names(body.collection, body.slot)
        limiter.check(acting, len(body.urls))
        if body.run_async:
            return await accept_ingest(keep, body, acting, idempotency_key)
        results = await keep.store_many(
            [UrlSource(u) for u in body.urls],
            owner=acting,
            collection=body.collection,
            slot=body.slot,
            public=body.public,
            provider=body.provider,
            metadata=body.metadata,
        )
        m = metrics_of(request)
        for res in results:
            _count(m, "url", res)
        items = [IngestItem.of(res, _base(request), status_for_code) for res in results]
        failed = sum(1 for i in items if i.status == "failed")
        if failed:
            response.status_code = 207
        return IngestResponse(
            results=items,
            stored=sum(1 for i in items if i.status == "stored"),
            deduplicated=sum(1 for i in items if i.status == "deduplicated"),
            failed=failed,
        )

    @r.post(
        "/uploads",
        tags=["ingest"],
        status_code=201,
        response_model=IngestItem,
        responses=_doc(*AUTH_ERRORS, 413, 415, 429, 503, 504),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file"],
                            "properties": {
                                "file": {"type": "string", "format": "binary"},
                            },
                        }
                    }
                },
            }
        },
    )
    async def upload(
        request: Request,
        who: Caller,
        owner: OwnerQuery = None,
        collection: NameQuery = None,
        slot: NameQuery = None,
        public: bool = False,
        provider: Annotated[str | None, Query(max_length=128)] = None,
        metadata: Annotated[
            str | None,
            Query(
                max_length=512,
                description="A JSON object. Larger metadata goes in a form field (64 KiB).",
            ),
        ] = None,
    ) -> IngestItem:
        """Upload a file as multipart/form-data (part name ``file``). The body streams
        through the same checks as ingest, straight to the store. Options come from the
        query string, or from form fields placed before the file part."""
        fields: dict[str, str] = {}
        parts = MultipartReader(request.stream(), boundary_of(request.headers.get("content-type")))
        while True:
            part = await parts.next_part()
            if part is None:
                raise InvalidInput("the form has no file part")
            if part.filename is not None or part.name == "file":
                break
            value = (await part.read(_FIELD_LIMIT)).decode("utf-8", "replace")
            if part.name in _UPLOAD_FIELDS:
                fields[part.name] = value
        opts = _upload_options(
            fields,
            owner=owner,
            collection=collection,
            slot=slot,
            public=public,
            provider=provider,
            metadata=metadata,
        )
        acting = who.acting_for(opts["owner"])
        request.state.owner = acting
        limiter.check(acting)
        keep = keep_of(request)
        name = (part.filename or "upload")[:255]
        m = metrics_of(request)
        try:
            result = await keep.put_stream_or_raise(
                part.chunks(),
                owner=acting,
                name=name,
                collection=opts["collection"],
                slot=opts["slot"],
                public=opts["public"],
                provider=opts["provider"],
                metadata=opts["metadata"],
            )
        except MediaKeepError as exc:
            m.item("upload", "failed", reason=exc.code)
            raise
        _count(m, "upload", result)
        await parts.drain()
        return IngestItem.of(result, _base(request), status_for_code)

    @r.post(
        "/uploads/presign",
        tags=["ingest"],
        status_code=201,
        response_model=PresignResponse,
        responses=_doc(*AUTH_ERRORS, 413, 415, 429),
    )
    async def presign(
        body: PresignRequest, request: Request, who: Caller, owner: OwnerQuery = None
    ) -> PresignResponse:
        """Reserve an asset and get a URL to upload its bytes to directly (to the object
        store, or to this service for the local store). Then call ``complete``."""
        acting = who.acting_for(body.owner or owner)
        request.state.owner = acting
        limiter.check(acting)
        keep = keep_of(request)
        up = await keep.presign_upload(
            owner=acting,
            content_type=body.content_type,
            size=body.size,
            collection=body.collection,
            slot=body.slot,
            public=body.public,
            metadata=body.metadata,
            sha256=body.sha256,
        )
        return PresignResponse(
            asset_id=up.asset_id,
            upload_url=up.upload_url,
            method=up.method,
            headers=up.headers,
            expires_at=up.expires_at,
            complete_url=f"{_base(request).rstrip('/')}/v1/uploads/{up.asset_id}/complete",
        )

    @r.post(
        "/uploads/{asset_id}/complete",
        tags=["ingest"],
        status_code=201,
        response_model=IngestItem,
        responses=_doc(*AUTH_ERRORS, 404, 409, 410, 413, 415, 503, 504),
    )
    async def complete(asset_id: AssetId, request: Request, owner: Owner) -> IngestItem:
        """Check what arrived at the upload URL (size, sniffed type, sha256 if promised) and
        record it. A mismatch is rejected and the upload deleted; nothing uploaded yet
        answers 409 ``upload_not_received`` and may be retried; a repeat answers 409
        ``upload_not_pending``."""
        keep = keep_of(request)
        m = metrics_of(request)
        try:
            result = await keep.complete_upload(str(asset_id), owner=owner)
        except MediaKeepError as exc:
            if not isinstance(exc, NotFound):
                m.item("presigned", "failed", reason=exc.code)
            raise
        _count(m, "presigned", result)
        return IngestItem.of(result, _base(request), status_for_code)

    # -- assets ----------------------------------------------------------------------

    @r.get(
        "/assets",
        tags=["assets"],
        response_model=AssetPage,
        responses=_doc(*AUTH_ERRORS),
    )
    async def list_assets(
        request: Request,
        owner: Owner,
        collection: NameQuery = None,
        slot: NameQuery = None,
        kind: Literal["image", "video", "audio", "other"] | None = None,
        created_after: Annotated[
            IsoDatetime | None, Query(description="Inclusive; without a zone, UTC.")
        ] = None,
        created_before: Annotated[
            IsoDatetime | None, Query(description="Exclusive; without a zone, UTC.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
    ) -> AssetPage:
        """The caller's assets, newest first. ``next_cursor`` is null only on the last page."""
        _names(collection, slot)
        page = await keep_of(request).list(
            owner=owner,
            collection=collection,
            slot=slot,
            kind=kind,
            created_after=_aware(created_after, "created_after"),
            created_before=_aware(created_before, "created_before"),
            limit=limit,
            cursor=_check_cursor(cursor),
        )
        base = _base(request)
        variants = await variant_links(keep_of(request), page.items)
        return AssetPage(
            items=[AssetOut.of(a, base, variants.get(a.id)) for a in page.items],
            next_cursor=page.next_cursor,
        )

    @r.get(
        "/assets/{asset_id}",
        tags=["assets"],
        response_model=AssetOut,
        responses=_doc(*AUTH_ERRORS, 404),
    )
    async def get_asset(asset_id: AssetId, request: Request, owner: Owner) -> AssetOut:
        keep = keep_of(request)
        asset = await keep.get(str(asset_id), owner=owner)
        variants = await variant_links(keep, [asset])
        return AssetOut.of(asset, _base(request), variants.get(asset.id))

    @r.delete(
        "/assets/{asset_id}",
        tags=["assets"],
        status_code=204,
        response_class=Response,
        responses=_doc(*AUTH_ERRORS, 404, 503),
    )
    async def delete_asset(asset_id: AssetId, request: Request, owner: Owner) -> Response:
        """Delete the asset; its bytes go when no other asset of the owner shares them."""
        await keep_of(request).delete(str(asset_id), owner=owner)
        return Response(status_code=204)

    @r.get(
        "/assets/{asset_id}/url",
        tags=["urls"],
        response_model=UrlOut,
        responses=_doc(*AUTH_ERRORS, 404),
    )
    async def asset_url(
        asset_id: AssetId,
        request: Request,
        owner: Owner,
        expires_in: Annotated[int | None, Query(ge=1, le=MAX_EXPIRES)] = None,
    ) -> UrlOut:
        """A URL for the bytes: public, or signed for ``expires_in`` seconds."""
        keep = keep_of(request)
        asset = await keep.get(str(asset_id), owner=owner)
        ttl = keep.settings.signed_url_expires if expires_in is None else expires_in
        url = await keep.url(asset.id, owner=owner, expires_in=ttl)
        return UrlOut(
            id=asset.id,
            url=url,
            public=asset.public,
            expires_at=None if asset.public else keep.expires_at(ttl),
        )

    @r.post(
        "/signed-urls",
        tags=["urls"],
        response_model=SignedUrlsResponse,
        responses={
            207: {"model": SignedUrlsResponse, "description": "Some ids were not found."},
            **_doc(*AUTH_ERRORS, 413),
        },
    )
    async def signed_urls(
        body: SignedUrlsRequest, request: Request, response: Response, owner: Owner
    ) -> SignedUrlsResponse:
        """URLs for up to 1,000 assets in one call. Ids that are unknown, or not the
        caller's, come back as 404 items; the response is then 207."""
        keep = keep_of(request)
        ids = list(dict.fromkeys(str(i) for i in body.ids))
        ttl = keep.settings.signed_url_expires if body.expires_in is None else body.expires_in
        assets = await keep.repo.get_many(ids, owner)
        urls = await keep.urls(list(assets), owner=owner, expires_in=ttl)
        expires = keep.expires_at(ttl)
        items: list[SignedUrlItem] = []
        for i in ids:
            a = assets.get(i)
            if a is None or i not in urls:
                items.append(
                    SignedUrlItem(
                        id=i,
                        status=404,
                        error=ItemError(code="not_found", message="no such asset", status=404),
                    )
                )
            else:
                items.append(
                    SignedUrlItem(
                        id=i,
                        status=200,
                        url=urls[i],
                        public=a.public,
                        expires_at=None if a.public else expires,
                    )
                )
        missing = sum(1 for it in items if it.status != 200)
        if missing:
            response.status_code = 207
        return SignedUrlsResponse(items=items, found=len(items) - missing, not_found=missing)

    content_responses: dict[int | str, dict[str, Any]] = {
        200: {
            "description": "The bytes (local store).",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        },
        206: {
            "description": "A byte range (local store).",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        },
        302: {"description": "Redirect to a signed (or public) URL, stable within a window."},
        304: {"description": "Not modified (If-None-Match)."},
        **_doc(*AUTH_ERRORS, 404, 416, 503),
    }

    async def content(asset_id: AssetId, request: Request, owner: Owner) -> Response:
        """The **permanent link**: save this URL; it never expires, and the bytes stay
        private. Redirects to a signed URL that stays the same within a time window (so
        caches keep hitting), or serves the bytes itself for the local store, with
        Content-Type, ETag, Cache-Control and Range support."""
        keep = keep_of(request)
        asset = await keep.locate(str(asset_id), owner=owner)
        if isinstance(keep.store, LocalStore):
            return await send_object(
                request,
                keep.store,
                asset.bucket,
                asset.key,
                content_type=asset.content_type,
                etag=asset.sha256,
                cache=cache_control(asset.public),
                extra_headers={"Vary": "Authorization, X-API-Key"},
            )
        now = time.time()
        if asset.public:
            target = keep.store.public_url(asset.bucket, asset.key)
            window_end = (int(now) // links.window + 1) * links.window
        else:
            signed = await links.signed(keep.store, asset.bucket, asset.key, now)
            target, window_end = signed.url, signed.window_end
        ttl = max(0, window_end - int(now))
        return RedirectResponse(
            target,
            status_code=302,
            headers={
                "Cache-Control": f"private, max-age={ttl}",
                "Vary": "Authorization, X-API-Key",
            },
        )

    r.add_api_route(
        "/assets/{asset_id}/content",
        content,
        methods=["GET"],
        tags=["urls"],
        response_class=Response,
        responses=content_responses,
    )
    r.add_api_route(
        "/assets/{asset_id}/content",
        content,
        methods=["HEAD"],
        response_class=Response,
        include_in_schema=False,
    )

    @r.put(
        "/assets/{asset_id}/visibility",
        tags=["assets"],
        response_model=VisibilityResponse,
        responses=_doc(*AUTH_ERRORS, 404, 413, 503),
    )
    async def visibility(
        asset_id: AssetId,
        request: Request,
        owner: Owner,
        body: Annotated[VisibilityRequest, Body()],
    ) -> VisibilityResponse:
        """Move the bytes to the public or the private bucket and return the new URL. The
        copy is made and checked before the record switches: an interruption loses nothing."""
        keep = keep_of(request)
        moved = await keep.set_visibility(str(asset_id), body.public, owner=owner)
        ttl = keep.settings.signed_url_expires
        url = await keep.url(moved.id, owner=owner, expires_in=ttl)
        variants = await variant_links(keep, [moved])
        return VisibilityResponse(
            asset=AssetOut.of(moved, _base(request), variants.get(moved.id)),
            url=url,
            expires_at=None if moved.public else keep.expires_at(ttl),
        )

    @r.get(
        "/storage/stats",
        tags=["assets"],
        response_model=StorageStatsOut,
        responses=_doc(*AUTH_ERRORS),
    )
    async def storage_stats(request: Request, owner: Owner) -> StorageStatsOut:
        """The caller's totals: bytes, objects, by kind and collection, and what dedup saved."""
        st = await keep_of(request).storage_stats(owner=owner)
        return StorageStatsOut(
            owner=st.owner,
            assets=st.assets,
            bytes=st.bytes,
            objects=st.objects,
            stored_bytes=st.stored_bytes,
            dedup_savings_bytes=st.dedup_savings_bytes,
            by_kind={k: Usage(assets=v.assets, bytes=v.bytes) for k, v in st.by_kind.items()},
            by_collection={
                k: Usage(assets=v.assets, bytes=v.bytes) for k, v in st.by_collection.items()
            },
        )

    return r


def _names(collection: str | None, slot: str | None) -> None:
    if collection is not None:
        validate_name(collection, "collection")
    if slot is not None:
        validate_name(slot, "slot")


def _count(m: Metrics, via: str, res: IngestResult) -> None:
    reason = None if res.error is None else res.error.get("code")
    m.item(via, res.status, res.size, reason)


def _upload_options(fields: dict[str, str], **query: Any) -> dict[str, Any]:
    """Form fields before the file part, over the query string."""
    opts = dict(query)
    for name in ("owner", "collection", "slot", "provider"):
        if name in fields:
            opts[name] = fields[name] or None
    if "public" in fields:
        value = fields["public"].strip().lower()
        if value not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise InvalidInput("public must be true or false")
        opts["public"] = value in ("true", "1", "yes", "on")
    raw = fields.get("metadata", opts.get("metadata"))
    meta: dict[str, Any] = {}
    if raw:
        try:
            meta = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidInput("metadata must be a JSON object") from exc
        if not isinstance(meta, dict):
            raise InvalidInput("metadata must be a JSON object")
        try:
            check_metadata(meta)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from exc
    opts["metadata"] = meta
    for name in ("collection", "slot"):
        if opts.get(name) is not None:
            validate_name(opts[name], name)
    if opts.get("provider") is not None and len(opts["provider"]) > 128:
        raise InvalidInput("provider is at most 128 characters")
    return opts
