"""Variants and on-the-fly renditions of an asset, and the helpers other routes share to
serve stored bytes (redirect for object stores, stream for the local store)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request, Response, Security
from fastapi.responses import RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials

from ..db.repo import VariantRow
from ..keep import MediaKeep
from ..media.render import (
    MAX_EDGE,
    Fit,
    Format,
    RenderRequest,
    RenderSigner,
    Renditions,
    display_size,
    plan,
    render_path,
)
from ..models import AssetInfo
from ..settings import Settings
from ..stores.base import cache_control
from ..stores.local import LocalStore
from .deps import keep_of
from .files import send_object
from .links import WindowedLinks
from .media_schemas import RenderUrlOut, RenderUrlRequest, VariantItem, VariantsOut
from .ratelimit import RateLimiter
from .schemas import VariantLink
from .security import Owner, OwnerQuery, api_key_scheme, bearer_scheme, principal

AssetId = Annotated[UUID, Path(description="The asset's id.")]
AUTH_ERRORS = (400, 401, 403, 422, 500)
VARY = "Authorization, X-API-Key"


def doc(*statuses: int) -> dict[int | str, dict[str, Any]]:
    # Descriptions and the problem+json schema are filled in by openapi.finish().
    return {s: {"description": ""} for s in statuses}


def bytes_responses(*errors: int) -> dict[int | str, dict[str, Any]]:
    """What a route answers that serves stored bytes like the permanent link does."""
    binary = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
    return {
        200: {"description": "The bytes (local store).", "content": binary},
        206: {"description": "A byte range (local store).", "content": binary},
        302: {"description": "Redirect to a signed (or public) URL."},
        304: {"description": "Not modified (If-None-Match)."},
        **doc(*AUTH_ERRORS, 404, 416, 503, *errors),
    }


async def variant_links(
    keep: MediaKeep,
    assets: Sequence[AssetInfo],
    rows: dict[str, list[VariantRow]] | None = None,
) -> dict[str, dict[str, VariantLink]]:
    """Stored variants' URLs by asset id and preset: one query (none if ``rows`` are
    given), and one signing call per bucket however many assets and variants."""
    if rows is None:
        rows = await keep.repo.variants_for([a.object_id for a in assets if a.object_id])
    out: dict[str, dict[str, VariantLink]] = {}
    to_sign: dict[str, list[tuple[str, VariantRow]]] = {}
    for a in assets:
        for v in rows.get(a.object_id, []):
            if v.status != "stored":
                continue
            if a.public:
                url = keep.store.public_url(v.bucket, v.key)
                out.setdefault(a.id, {})[v.preset] = VariantLink(
                    url=url, width=v.width, height=v.height
                )
            else:
                to_sign.setdefault(v.bucket, []).append((a.id, v))
    ttl = keep.settings.signed_url_expires
    for bucket, group in to_sign.items():
        keys = list(dict.fromkeys(v.key for _, v in group))
        signed = dict(zip(keys, await keep.store.sign_get_async(bucket, keys, ttl), strict=True))
        for asset_id, v in group:
            out.setdefault(asset_id, {})[v.preset] = VariantLink(
                url=signed[v.key], width=v.width, height=v.height
            )
    return out


async def serve_stored(
    request: Request,
    keep: MediaKeep,
    links: WindowedLinks,
    *,
    bucket: str,
    key: str,
    public: bool,
    content_type: str,
    etag: str,
    cache: str | None = None,
    redirect_cache: str | None = None,
    not_after: int | None = None,
) -> Response:
    """Stream (local store) or redirect to a signed URL stable within a window (or to the
    public URL). ``cache`` and ``redirect_cache`` override the default caching headers;
    ``not_after`` caps how long the redirect may be cached (a signed request's expiry)."""
    if isinstance(keep.store, LocalStore):
        return await send_object(
            request,
            keep.store,
            bucket,
            key,
            content_type=content_type,
            etag=etag,
            cache=cache or cache_control(public),
            extra_headers={"Vary": VARY},
        )
    now = time.time()
    if public:
        target = keep.store.public_url(bucket, key)
        window_end = (int(now) // links.window + 1) * links.window
    else:
        signed = await links.signed(keep.store, bucket, key, now)
        target, window_end = signed.url, signed.window_end
    ttl = max(0, window_end - int(now))
    if not_after is not None:
        ttl = max(0, min(ttl, not_after - int(now)))
    return RedirectResponse(
        target,
        status_code=302,
        headers={"Cache-Control": redirect_cache or f"private, max-age={ttl}", "Vary": VARY},
    )


class _Once:
    """Made on the first request: the keep is only reachable from one, and resolving the
    signing secret may create it in the data dir."""

    renditions: Renditions | None = None
    signer: RenderSigner | None = None


def build_media_router(settings: Settings) -> APIRouter:
    r = APIRouter(prefix="/v1")
    links = WindowedLinks(settings.content_url_window)
    once = _Once()
    # Each new rendition is a full decode and encode: the cheapest way to burn a server's
    # CPU is asking for one asset at every width. Made renditions are served freely.
    render_limiter = RateLimiter(settings.render_rate_limit, what="new renditions")

    def renditions(keep: MediaKeep) -> Renditions:
        if once.renditions is None:
            once.renditions = Renditions(keep.store, keep.media, keep.settings.max_image_pixels)
        return once.renditions

    def signer(keep: MediaKeep) -> RenderSigner:
        if once.signer is None:
            once.signer = RenderSigner(keep.settings.resolved_signing_secret())
        return once.signer

    @r.get(
        "/assets/{asset_id}/variants",
        tags=["assets"],
        response_model=VariantsOut,
        responses=doc(*AUTH_ERRORS, 404),
    )
    async def list_variants(asset_id: AssetId, request: Request, owner: Owner) -> VariantsOut:
        """Every variant made at ingest, failed ones with their error."""
        keep = keep_of(request)
        asset = await keep.get(str(asset_id), owner=owner)
        found = await keep.repo.variants_for([asset.object_id])
        rows = found.get(asset.object_id, [])
        links_by_name = (await variant_links(keep, [asset], found)).get(asset.id, {})
        return VariantsOut(
            id=asset.id,
            variants=[
                VariantItem(
                    name=v.preset,
                    status="stored" if v.status == "stored" else "failed",
                    content_type=v.content_type,
                    size=v.size,
                    width=v.width,
                    height=v.height,
                    sha256=v.sha256,
                    error=v.error,
                    url=links_by_name[v.preset].url if v.preset in links_by_name else None,
                )
                for v in rows
            ],
        )

    async def render(
        asset_id: AssetId,
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
        api_key: Annotated[str | None, Security(api_key_scheme)],
        w: Annotated[int | None, Query(ge=1, le=MAX_EDGE, description="Width, px.")] = None,
        h: Annotated[int | None, Query(ge=1, le=MAX_EDGE, description="Height, px.")] = None,
        fit: Annotated[Fit | None, Query(description="Default contain.")] = None,
        format: Annotated[Format | None, Query(description="Default webp.")] = None,
        q: Annotated[int | None, Query(ge=1, le=100, description="Default 80.")] = None,
        owner: OwnerQuery = None,
        exp: Annotated[
            str | None, Query(pattern=r"^[0-9]{1,12}$", description="Signed URLs: expiry.")
        ] = None,
        sig: Annotated[
            str | None, Query(max_length=128, description="Signed URLs: the signature.")
        ] = None,
    ) -> Response:
        """A resized rendition, made on first request (one decode, off the event loop),
        kept in the object store and served like the permanent link afterwards. Never
        enlarges: ``contain`` fits inside ``w`` by ``h``; ``cover`` fills the box and crops
        the middle. Equivalent requests share one cached rendition. With ``exp`` and
        ``sig`` (from ``POST /render-url``) no token is needed, for exactly those
        parameters until ``exp``."""
        keep = keep_of(request)
        req = RenderRequest.of(w, h, fit, format, q)
        not_after = None
        if exp is not None or sig is not None:
            signer(keep).verify(str(asset_id), req, exp, sig)
            asset = await keep.get(str(asset_id))
            request.state.owner = asset.owner
            not_after = int(exp or 0)
        else:
            who = await principal(request, bearer, api_key)
            acting = who.acting_for(owner)
            request.state.owner = acting
            asset = await keep.get(str(asset_id), owner=acting)
        p = plan(req, display_size(asset))
        key = await renditions(keep).ensure(asset, p, lambda: render_limiter.check(asset.owner))
        return await serve_stored(
            request,
            keep,
            links,
            bucket=asset.bucket,
            key=key,
            public=asset.public,
            content_type=p.content_type,
            etag=f"{asset.sha256[:32]}-{p.slug}.{p.ext}",
            not_after=not_after,
        )

    r.add_api_route(
        "/assets/{asset_id}/render",
        render,
        methods=["GET"],
        tags=["urls"],
        response_class=Response,
        responses=bytes_responses(415, 429),
    )
    r.add_api_route(
        "/assets/{asset_id}/render",
        render,
        methods=["HEAD"],
        response_class=Response,
        include_in_schema=False,
    )

    @r.post(
        "/assets/{asset_id}/render-url",
        tags=["urls"],
        response_model=RenderUrlOut,
        responses=doc(*AUTH_ERRORS, 404, 413, 415),
    )
    async def render_url(
        asset_id: AssetId, body: RenderUrlRequest, request: Request, owner: Owner
    ) -> RenderUrlOut:
        """A signed render URL to hand to a browser: it works without a token, for this
        asset and exactly these parameters, until it expires."""
        keep = keep_of(request)
        req = RenderRequest.of(body.w, body.h, body.fit, body.format, body.q)
        asset = await keep.get(str(asset_id), owner=owner)
        display_size(asset)  # refuse now what the URL could never render
        ttl = keep.settings.signed_url_expires if body.expires_in is None else body.expires_in
        expires = int(time.time()) + ttl
        query = signer(keep).query(asset.id, req, expires)
        return RenderUrlOut(
            id=asset.id,
            url=f"{keep.settings.base_url.rstrip('/')}{render_path(asset.id)}?{query}",
            params=req.query(),
            expires_at=datetime.fromtimestamp(expires, UTC),
        )

    return r
