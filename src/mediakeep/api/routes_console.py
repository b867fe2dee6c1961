"""The media console: a hand-written single-page app shipped in ``mediakeep/console`` and
served at ``/console``, the two helpers it needs to sign in (may this client mint a token,
and minting one on loopback), and the storage history its storage page draws.

Everything else the console shows comes from the ordinary owner-scoped ``/v1`` routes,
called with the signed-in owner's bearer token."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from ..auth import USER_ROLE, mint_token
from ..db.models import Asset
from ..errors import MediaKeepError, NotFound
from ..keep import MediaKeep
from ..settings import Settings
from .deps import keep_of
from .routes_media import AUTH_ERRORS, doc
from .schemas import NAME_PATTERN, Usage
from .security import Owner

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
STATIC_PREFIX = "/console/static/"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
MINTED_TOKEN_TTL = 12 * 3600
# Headers a reverse proxy adds: a forwarded request only looks like loopback.
_FORWARDING = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost."})
# What may appear in a CSP source expression taken from configuration.
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+")
# Collections beyond this many (by bytes) are summed as one series in the history.
MAX_SERIES = 8
OTHER = "(other)"


class MintRefused(MediaKeepError):
    """The console may not mint a token for this client (not loopback, or minting is off)."""

    code = "mint_refused"
    status = 403


class ConsoleConfig(BaseModel):
    mint: bool = Field(description="Whether this client may mint a token (loopback only).")
    embedded: bool


class MintRequest(BaseModel):
    owner: str = Field(pattern=NAME_PATTERN, min_length=1, max_length=128)


class MintResponse(BaseModel):
    token: str
    token_type: str = "bearer"  # noqa: S105 - the scheme's name, not a secret
    owner: str
    expires_in: int


class HistoryDay(BaseModel):
    day: date
    added: Usage = Field(description="Assets created that day and still kept.")
    total: Usage = Field(description="Everything kept that was created up to that day.")
    by_kind: dict[str, Usage] = Field(description="Running totals by media kind.")
    by_collection: dict[str, Usage] = Field(
        description=f"Running totals by collection; beyond {MAX_SERIES} collections the "
        f"smaller ones are summed as `{OTHER}`."
    )


class StorageHistoryOut(BaseModel):
    owner: str
    days: int
    kinds: list[str]
    collections: list[str]
    series: list[HistoryDay] = Field(description="One entry per UTC day, oldest first.")


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def load_static(root: Path = CONSOLE_DIR) -> dict[str, StaticFile]:
    """The console's files, read once: they are small, and serving them from memory with
    a content hash as ETag makes every revisit a 304."""
    files: dict[str, StaticFile] = {}
    for path in sorted(root.iterdir()):
        kind = _TYPES.get(path.suffix)
        if kind is None or not path.is_file():
            continue
        body = path.read_bytes()
        files[path.name] = StaticFile(body, kind, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return files


def mint_enabled(settings: Settings) -> bool:
    """Minting from the console is the ``mediakeep token`` command over HTTP, so it is on
    where that command works without any secret being handed out: on the embedded
    default's generated secret (whoever is on the machine can read it anyway). With a
    configured secret it is off unless MEDIAKEEP_CONSOLE_TOKEN_MINT says otherwise."""
    if settings.resolved_jwt_secret() is None:
        return False
    auto = settings.jwt_secret is None and settings.is_embedded
    return auto or settings.console_token_mint


def _is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    name = host.strip().lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def from_loopback(request: Request) -> bool:
    """The request came straight from this machine, to a loopback name: not through a
    proxy, and not from a page on another site whose name was re-pointed at 127.0.0.1
    (DNS rebinding keeps that site's name in Host and Origin)."""
    if request.client is None or not _is_loopback_host(request.client.host):
        return False
    if any(h in request.headers for h in _FORWARDING):
        return False
    if not _is_loopback_host(urlsplit("//" + request.headers.get("host", "")).hostname):
        return False
    origin = request.headers.get("origin")
    return origin is None or _is_loopback_host(urlsplit(origin).hostname)


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    return origin if _ORIGIN.fullmatch(origin) else None


def media_origins(keep: MediaKeep) -> list[str]:
    """Where the console's images and players load bytes from: signed and public URLs of
    the configured store (on the embedded default, this service itself)."""
    s = keep.settings
    urls: list[str | None] = [s.base_url, s.public_base_url, s.s3_endpoint, s.supabase_url]
    try:
        urls.append(keep.store.public_url(s.public_bucket, "probe"))
        urls.extend(keep.store.sign_get(s.private_bucket, ["probe"], 60))
    except MediaKeepError:
        pass  # stores that sign on their server: their origin is configured above
    found = [o for o in (_origin(u) for u in urls) if o]
    return list(dict.fromkeys(found))


def content_security_policy(origins: list[str]) -> str:
    media = " ".join(["'self'", "blob:", "data:", *origins])
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {media}",
            f"media-src {media}",
            "connect-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def _not_modified(request: Request, etag: str) -> bool:
    given = request.headers.get("if-none-match", "")
    return any(tag.strip().removeprefix("W/") == etag for tag in given.split(","))


def build_console_router(settings: Settings) -> APIRouter:
    r = APIRouter()
    files = load_static()
    csp: list[str] = []

    def page_headers(request: Request) -> dict[str, str]:
        if not csp:
            csp.append(content_security_policy(media_origins(keep_of(request))))
        return {
            "Content-Security-Policy": csp[0],
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
        }

    def send(request: Request, f: StaticFile, extra: dict[str, str] | None = None) -> Response:
        # Names are not hashed (ES modules import each other by name), so clients
        # revalidate every time and get a 304 while the file is unchanged.
        headers = {"ETag": f.etag, "Cache-Control": "no-cache", **(extra or {})}
        headers.setdefault("X-Content-Type-Options", "nosniff")
        if _not_modified(request, f.etag):
            return Response(status_code=304, headers=headers)
        return Response(f.body, media_type=f.content_type, headers=headers)

    async def index(request: Request) -> Response:
        return send(request, files["index.html"], page_headers(request))

    for path in ("/console", "/console/"):
        r.add_api_route(path, index, methods=["GET", "HEAD"], include_in_schema=False)

    @r.get(STATIC_PREFIX + "{name}", include_in_schema=False)
    async def static(name: str, request: Request) -> Response:
        f = files.get(name)
        if f is None or name == "index.html":
            raise NotFound("no such console file")
        return send(request, f)

    @r.get("/console/{rest:path}", include_in_schema=False)
    async def deep_link(rest: str) -> Response:
        """Paths under /console are the console's own locations (``/console/assets/ID``):
        the app routes on the fragment, so send the browser there."""
        if rest.startswith("static/"):
            raise NotFound("no such console file")
        return RedirectResponse("/console#/" + quote(rest, safe="/-._~"), status_code=302)

    @r.get("/v1/console/config", include_in_schema=False)
    async def console_config(request: Request) -> ConsoleConfig:
        s = keep_of(request).settings
        return ConsoleConfig(
            mint=mint_enabled(s) and from_loopback(request), embedded=s.is_embedded
        )

    @r.post("/v1/console/token", include_in_schema=False)
    async def console_token(request: Request, body: Annotated[MintRequest, Body()]) -> MintResponse:
        """A token for ``owner``, for a browser on this machine: like ``mediakeep token``."""
        # The body is read as JSON only (other types are a 422), and a page on another
        # site cannot send JSON here without a CORS preflight, which is never granted.
        s = keep_of(request).settings
        if not mint_enabled(s):
            raise MintRefused(
                "minting tokens from the console is off here: use `mediakeep token --owner "
                "NAME` (or set MEDIAKEEP_CONSOLE_TOKEN_MINT=true)"
            )
        if not from_loopback(request):
            raise MintRefused("tokens are minted only for clients on this machine")
        secret = s.resolved_jwt_secret()
        assert secret is not None  # mint_enabled checked it
        token = mint_token(secret, body.owner, expires_in=MINTED_TOKEN_TTL, role=USER_ROLE)
        return MintResponse(token=token, owner=body.owner, expires_in=MINTED_TOKEN_TTL)

    @r.get(
        "/v1/storage/history",
        tags=["assets"],
        response_model=StorageHistoryOut,
        responses=doc(*AUTH_ERRORS),
    )
    async def storage_history(
        request: Request,
        owner: Owner,
        days: Annotated[int, Query(ge=1, le=366, description="How many UTC days, to today.")] = 30,
    ) -> StorageHistoryOut:
        """How the caller's storage grew: per day, what was added and the running totals
        by kind and by collection, for what is kept now (deleted assets are not counted)."""
        return await storage_history_of(keep_of(request), owner, days)

    return r


async def storage_history_of(
    keep: MediaKeep, owner: str, days: int, today: date | None = None
) -> StorageHistoryOut:
    end = today or datetime.now(UTC).date()
    start = end - timedelta(days=days - 1)
    async with keep.repo.reads() as s:
        if s.get_bind().dialect.name == "postgresql":
            day: Any = func.to_char(func.timezone("UTC", Asset.created_at), "YYYY-MM-DD")
        else:
            # SQLite keeps the UTC time as text; strftime reads its date part.
            day = func.strftime("%Y-%m-%d", Asset.created_at)
        rows = (
            await s.execute(
                select(
                    day,
                    Asset.media_kind,
                    Asset.collection,
                    func.count(),
                    func.coalesce(func.sum(Asset.size), 0),
                )
                .where(Asset.owner == owner, Asset.status == "stored")
                .group_by(day, Asset.media_kind, Asset.collection)
            )
        ).all()
    by_size: dict[str, int] = {}
    for _, _, collection, _, size in rows:
        by_size[collection] = by_size.get(collection, 0) + int(size or 0)
    ranked = sorted(by_size, key=lambda c: (-by_size[c], c))
    shown = set(ranked if len(ranked) <= MAX_SERIES else ranked[: MAX_SERIES - 1])
    collections = [c for c in ranked if c in shown] + ([OTHER] if len(shown) < len(ranked) else [])
    kinds = sorted({k or "other" for _, k, _, _, _ in rows})

    ordered = sorted(
        (
            date.fromisoformat(str(d)),
            k or "other",
            c if c in shown else OTHER,
            int(n or 0),
            int(b or 0),
        )
        for d, k, c, n, b in rows
    )
    total, by_kind, by_collection = Usage(assets=0, bytes=0), _zeros(kinds), _zeros(collections)
    series: list[HistoryDay] = []
    i = 0
    # Step -1 folds in everything created before the window: the totals' starting point.
    for step in range(-1, days):
        when = start + timedelta(days=step)
        added = Usage(assets=0, bytes=0)
        while i < len(ordered) and ordered[i][0] <= when:
            _, kind, collection, count, nbytes = ordered[i]
            for u in (added, total, by_kind[kind], by_collection[collection]):
                u.assets += count
                u.bytes += nbytes
            i += 1
        if step >= 0:
            series.append(
                HistoryDay(
                    day=when,
                    added=added,
                    total=total.model_copy(),
                    by_kind={k: v.model_copy() for k, v in by_kind.items()},
                    by_collection={k: v.model_copy() for k, v in by_collection.items()},
                )
            )
    return StorageHistoryOut(
        owner=owner, days=days, kinds=kinds, collections=collections, series=series
    )


def _zeros(names: list[str]) -> dict[str, Usage]:
    return {n: Usage(assets=0, bytes=0) for n in names}
