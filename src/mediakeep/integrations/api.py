"""Generations, fal.ai results and webhooks, and ``persist_json``: the provider-facing
part of ``MediaKeep``. Every file goes through the one store pipeline, via durable jobs
(generations) or ``store_many`` (persist_json).

Each integration's module is imported by the methods that use it: every ``MediaKeep`` has
these methods, most processes never see a generation, a webhook or a document."""

from __future__ import annotations

import builtins
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import Generation, GenerationMedia, Job, utcnow
from ..errors import (
    GenerationNotFailed,
    InvalidInput,
    NotFound,
    TicketOwnerMismatch,
)
from ..jobs.api import JobsMixin, content_url
from ..models import AssetInfo, IngestResult
from ..pipeline.keys import validate_name
from ..pipeline.sources import SourceLike

if TYPE_CHECKING:
    from ..jobs.types import JobInfo
    from . import tickets
    from .fal_webhook import FalWebhookVerifier, SignedHeaders
    from .generations import GenerationInfo
    from .persist import Matcher, MediaMatcher, PersistReport

FAL = "fal"


class _AlreadyStarted(Exception):
    """The pending generation got its result from a concurrent delivery."""


class IntegrationsMixin(JobsMixin):
    # Provided by MediaKeep itself.
    async def store_many(
        self,
        sources: Sequence[SourceLike],
        *,
        owner: str,
        collection: str | None = None,
        slot: str | None = None,
        public: bool = False,
        provider: str | None = None,
        metadata: dict[str, Any] | None = None,
        concurrency: int | None = None,
        progress: Any = None,
    ) -> builtins.list[IngestResult]:
        raise NotImplementedError

    async def delete(self, asset_id: str, *, owner: str | None = None) -> None:
        raise NotImplementedError

    async def _urls_for(self, assets: Sequence[AssetInfo], expires_in: int) -> dict[str, str]:
        raise NotImplementedError

    def _expires(self, expires_in: int | None) -> int:
        raise NotImplementedError

    @property
    def fal_verifier(self) -> FalWebhookVerifier:
        found: FalWebhookVerifier | None = getattr(self, "_fal_verifier", None)
        if found is None:
            from .fal_webhook import FalWebhookVerifier

            s = self.settings
            found = FalWebhookVerifier(
                s.fal_jwks_url, s.fal_jwks_cache_ttl, s.fal_webhook_tolerance
            )
            self._fal_verifier = found
        return found

    # -- generations ---------------------------------------------------------------------

    async def _start_generation(
        self,
        *,
        owner: str,
        provider: str,
        endpoint: str | None,
        result: Any,
        request: dict[str, Any] | None,
        request_id: str | None,
        collection: str | None,
        public: bool,
        callback_url: str | None,
        idempotency_key: str | None,
        run_now: bool,
        pending_id: str | None = None,
        extra_metadata: dict[str, Any] | None = None,
    ) -> tuple[GenerationInfo, JobInfo | None]:
        from . import generations as gens
        from .fal import asset_metadata, find_media, result_metadata

        _check_generation_fields(provider, endpoint, request_id)
        req = dict(request or {})
        refs = find_media(result)
        meta = {**result_metadata(result, refs), **(extra_metadata or {})}
        gen_id = pending_id or str(uuid.uuid4())
        options = self._options(
            owner=owner,
            collection=collection,
            slot=None,
            public=public,
            provider=provider,
            metadata=asset_metadata(
                generation_id=gen_id,
                provider=provider,
                endpoint=endpoint,
                request_id=request_id,
                request=req,
                metadata=meta,
            ),
        )
        col = options["collection"]

        async def record(s: AsyncSession, job: Job | None) -> None:
            if pending_id is not None:
                gen = (
                    await s.execute(
                        self.job_repo.for_update(
                            select(Generation).where(Generation.id == pending_id)
                        )
                    )
                ).scalar_one_or_none()
                if gen is None or gen.job_id is not None or gen.status != "pending":
                    raise _AlreadyStarted(pending_id)
                gen.endpoint = endpoint or gen.endpoint
                gen.request = req or gen.request
                gen.result_metadata = meta
                gen.updated_at = utcnow()
            else:
                gen = Generation(
                    id=gen_id,
                    owner=owner,
                    collection=col,
                    provider=provider,
                    endpoint=endpoint,
                    request=req,
                    status="pending",
                    provider_request_id=request_id,
                    result_metadata=meta,
                    provider_urls=[],
                    total_size=0,
                    is_media_processed=False,
                )
                s.add(gen)
                await s.flush()
            gen.job_id = job.id if job is not None else None
            gen.provider_urls = gens.add_media(s, gen_id, refs)
            if job is None:
                # Nothing to store: the generation is complete as it stands.
                gen.status = "completed"
                gen.is_media_processed = True
                gen.completed_at = utcnow()
            await s.flush()

        if not refs:
            async with self.repo.sessions.begin() as s:
                await record(s, None)
            return await self.get_generation(gen_id), None
        info, claimed = await self._submit(
            kind=gens.KIND,
            owner=owner,
            sources=[r.url for r in refs],
            options=options,
            callback_url=callback_url,
            idempotency_key=idempotency_key,
            hash_basis={
                "provider": provider,
                "endpoint": endpoint,
                "request": req,
                "request_id": request_id,
                "collection": col,
                "public": public,
            },
            generation_id=gen_id,
            before_commit=record,
            run_now=run_now,
        )
        job = info
        if claimed is not None:
            job = await self._run_now(claimed)
        assert job.generation_id is not None
        return await self.get_generation(job.generation_id), job

    async def store_generation(
        self,
        result: Any,
        *,
        owner: str,
        provider: str,
        endpoint: str | None = None,
        collection: str | None = None,
        public: bool = False,
        request: dict[str, Any] | None = None,
        request_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> GenerationInfo:
        """Store every media file of a provider result as one generation, now. Durable
        all the same: the work is recorded first, and what fails for a passing reason is
        retried by the workers (the generation then says ``processing``)."""
        gen, _job = await self._start_generation(
            owner=owner,
            provider=provider,
            endpoint=endpoint,
            result=result,
            request=request,
            request_id=request_id,
            collection=collection,
            public=public,
            callback_url=None,
            idempotency_key=idempotency_key,
            run_now=True,
        )
        return gen

    async def submit_generation(
        self,
        result: Any,
        *,
        owner: str,
        provider: str,
        endpoint: str | None = None,
        collection: str | None = None,
        public: bool = False,
        request: dict[str, Any] | None = None,
        request_id: str | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[GenerationInfo, JobInfo | None]:
        """Record the generation and a job for its media, and return at once."""
        return await self._start_generation(
            owner=owner,
            provider=provider,
            endpoint=endpoint,
            result=result,
            request=request,
            request_id=request_id,
            collection=collection,
            public=public,
            callback_url=callback_url,
            idempotency_key=idempotency_key,
            run_now=False,
        )

    async def store_fal_result(
        self, /, result: Any, *, owner: str, endpoint: str | None = None, **kw: Any
    ) -> GenerationInfo:
        """A fal.ai result (queue or sync mode: URLs and data: URIs alike) as a generation."""
        return await self.store_generation(
            result, owner=owner, provider=FAL, endpoint=endpoint, **kw
        )

    async def submit_fal_result(
        self, /, result: Any, *, owner: str, endpoint: str | None = None, **kw: Any
    ) -> tuple[GenerationInfo, JobInfo | None]:
        return await self.submit_generation(
            result, owner=owner, provider=FAL, endpoint=endpoint, **kw
        )

    async def register_generation(
        self,
        *,
        owner: str,
        provider: str,
        request_id: str,
        endpoint: str | None = None,
        request: dict[str, Any] | None = None,
        collection: str | None = None,
    ) -> GenerationInfo:
        """A generation whose result will come later (by webhook): ``pending`` until
        then. A request id already recorded answers with that generation."""
        from . import generations as gens

        _check_generation_fields(provider, endpoint, request_id)
        validate_name(owner, "owner")
        col = self.settings.default_collection if collection is None else collection
        validate_name(col, "collection")
        async with self.repo.reads() as s:
            existing = await gens.by_request(s, provider, request_id)
        if existing is not None:
            if existing.owner != owner:
                raise TicketOwnerMismatch("that provider request belongs to another owner")
            return await self.get_generation(existing.id)
        gen_id = str(uuid.uuid4())
        try:
            async with self.repo.sessions.begin() as s:
                s.add(
                    Generation(
                        id=gen_id,
                        owner=owner,
                        collection=col,
                        provider=provider,
                        endpoint=endpoint,
                        request=dict(request or {}),
                        status="pending",
                        provider_request_id=request_id,
                        result_metadata={},
                        provider_urls=[],
                        total_size=0,
                        is_media_processed=False,
                    )
                )
        except sa_exc.IntegrityError:
            return await self.register_generation(
                owner=owner,
                provider=provider,
                request_id=request_id,
                endpoint=endpoint,
                request=request,
                collection=collection,
            )
        return await self.get_generation(gen_id)

    async def get_generation(
        self, generation_id: str, *, owner: str | None = None
    ) -> GenerationInfo:
        from . import generations as gens

        async with self.repo.reads() as s:
            found = await gens.load(s, generation_id, owner)
        if found is None:
            raise NotFound("no such generation")
        return found

    async def list_generations(
        self, *, owner: str, limit: int = 50
    ) -> builtins.list[GenerationInfo]:
        from . import generations as gens

        async with self.repo.reads() as s:
            ids = list(
                (
                    await s.execute(
                        select(Generation.id)
                        .where(Generation.owner == owner)
                        .order_by(Generation.created_at.desc(), Generation.id.desc())
                        .limit(limit)
                    )
                ).scalars()
            )
            out = []
            for gid in ids:
                found = await gens.load(s, gid, owner)
                if found is not None:
                    out.append(found)
        return out

    async def generation_media_urls(
        self, generation_id: str, *, owner: str | None = None, expires_in: int | None = None
    ) -> builtins.list[dict[str, Any]]:
        """For each media file, in order: a signed URL with size, type and dimensions; for
        a file not (yet) stored, the provider's original URL (``"source": "provider"``)."""
        ttl = self._expires(expires_in)
        gen = await self.get_generation(generation_id, owner=owner)
        wanted = [m.asset_id for m in gen.media if m.asset_id and m.status == "stored"]
        assets = await self.repo.get_many(wanted, gen.owner)
        urls = await self._urls_for(list(assets.values()), ttl)
        expires = (datetime.now(UTC) + timedelta(seconds=ttl)).isoformat()
        out: list[dict[str, Any]] = []
        for m in gen.media:
            a = assets.get(m.asset_id or "")
            if a is not None:
                out.append(
                    {
                        "position": m.position,
                        "status": m.status,
                        "source": "store",
                        "asset_id": a.id,
                        "url": urls[a.id],
                        "expires_at": None if a.public else expires,
                        "size": a.size,
                        "content_type": a.content_type,
                        "width": a.width,
                        "height": a.height,
                    }
                )
            else:
                out.append(
                    {
                        "position": m.position,
                        "status": m.status,
                        "source": "provider",
                        "asset_id": None,
                        "url": m.provider_url if m.provider_url_usable else None,
                        "expires_at": None,
                        "size": None,
                        "content_type": m.content_type,
                        "width": m.width,
                        "height": m.height,
                    }
                )
        return out

    async def validate_generation(
        self, generation_id: str, *, owner: str | None = None
    ) -> dict[str, Any]:
        """Check every stored file of the generation: present in the store, with the
        recorded size and sha256 (the bytes are read and hashed)."""
        gen = await self.get_generation(generation_id, owner=owner)
        stored = [m for m in gen.media if m.status == "stored"]
        assets = await self.repo.get_many([m.asset_id for m in stored if m.asset_id], gen.owner)
        problems: list[dict[str, Any]] = []
        for m in stored:
            a = assets.get(m.asset_id or "")
            if a is None:
                problems.append(
                    {"position": m.position, "asset_id": m.asset_id, "problem": "asset_missing"}
                )
                continue
            problem = await self._check_object(a)
            if problem is not None:
                problems.append({"position": m.position, "asset_id": a.id, **problem})
        return {
            "generation_id": gen.id,
            "valid": not problems,
            "checked": len(stored),
            "problems": problems,
        }

    async def _check_object(self, asset: AssetInfo) -> dict[str, Any] | None:
        head = await self.store.head(asset.bucket, asset.key)
        if head is None:
            return {"problem": "object_missing"}
        if head.size != asset.size:
            return {"problem": "size_mismatch", "expected": asset.size, "actual": head.size}
        digest = hashlib.sha256()
        try:
            async for chunk in self.store.get(asset.bucket, asset.key):
                digest.update(chunk)
        except NotFound:
            return {"problem": "object_missing"}
        if digest.hexdigest() != asset.sha256:
            return {
                "problem": "sha256_mismatch",
                "expected": asset.sha256,
                "actual": digest.hexdigest(),
            }
        return None

    async def cleanup_generation(self, generation_id: str, *, owner: str | None = None) -> int:
        """Remove the stored files of a generation that did not complete (``failed`` or
        ``partial``); it ends ``failed``. Returns how many files were removed."""
        gen = await self.get_generation(generation_id, owner=owner)
        if gen.status not in ("failed", "partial"):
            raise GenerationNotFailed(f"the generation is {gen.status}, not failed")
        removed = 0
        for m in gen.media:
            if m.asset_id is None or m.status != "stored":
                continue
            try:
                await self.delete(m.asset_id, owner=gen.owner)
            except NotFound:
                pass  # already gone: nothing to remove, nothing to count
            else:
                removed += 1
        async with self.repo.sessions.begin() as s:
            row = await s.get(Generation, gen.id)
            if row is not None:
                row.status = "failed"
                row.total_size = 0
                row.updated_at = utcnow()
            for m in gen.media:
                media = await s.get(GenerationMedia, (gen.id, m.position))
                if media is not None and media.status == "stored":
                    media.status = "removed"
                    media.asset_id = None
        return removed

    # -- fal webhooks --------------------------------------------------------------------

    def fal_ticket(
        self,
        *,
        owner: str,
        collection: str | None = None,
        public: bool = False,
        endpoint: str | None = None,
        expires_in: int | None = None,
    ) -> tickets.IssuedTicket:
        """A signed ticket and the webhook URL carrying it, to hand to fal as the
        request's ``webhook_url``: its results are then stored for ``owner``."""
        from . import tickets

        s = self.settings
        return tickets.mint(
            s.resolved_webhook_secret(),
            owner=owner,
            collection=collection,
            public=public,
            endpoint=endpoint,
            expires_in=s.fal_ticket_expires if expires_in is None else expires_in,
            max_expires=s.fal_ticket_max_expires,
            base_url=s.base_url,
        )

    def precheck_fal_webhook(
        self, headers: Mapping[str, str], ticket: str | None
    ) -> tuple[SignedHeaders, tickets.Ticket]:
        """What can be checked before reading the body: the signature headers are there
        and fresh, and the ticket is valid. (So an anonymous sender cannot make us read a
        large body, or fetch keys.)"""
        from . import tickets
        from .fal_webhook import read_headers

        s = self.settings
        signed = read_headers(headers, s.fal_webhook_tolerance)
        return signed, tickets.verify(s.resolved_webhook_secret(), ticket)

    async def receive_fal_webhook(
        self, body: bytes, headers: Mapping[str, str], ticket: str | None
    ) -> dict[str, Any]:
        """Verify a fal webhook (signature, freshness, ticket) and record its result as a
        generation whose media a job stores. Raises before writing anything when it cannot
        be trusted; a replay of a request already recorded writes nothing again."""
        signed, claims = self.precheck_fal_webhook(headers, ticket)
        await self.fal_verifier.verify(signed, body)
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidInput("the webhook body is not JSON") from exc
        if not isinstance(payload, dict):
            raise InvalidInput("the webhook body is not a JSON object")
        body_id = payload.get("request_id")
        if body_id is not None and body_id != signed.request_id:
            raise InvalidInput("the body's request_id is not the signed one")
        request_id = signed.request_id
        existing = await self._generation_for_request(FAL, request_id)
        if existing is not None:
            if existing.owner != claims.owner:
                raise TicketOwnerMismatch("that fal request belongs to another owner")
            if existing.status != "pending" or existing.job_id is not None:
                return _receipt(existing.id, existing.job_id, existing.status, replayed=True)
        extra = {"fal_user_id": signed.user_id}
        gateway = payload.get("gateway_request_id")
        if isinstance(gateway, str):
            extra["gateway_request_id"] = gateway[:255]
        status = str(payload.get("status") or "").upper()
        result = payload.get("payload")
        try:
            if status != "OK" or not isinstance(result, dict):
                gen_id = await self._failed_generation(
                    claims, request_id, payload, existing.id if existing else None, extra
                )
                return _receipt(gen_id, None, "failed", replayed=False)
            gen, job = await self._start_generation(
                owner=claims.owner,
                provider=FAL,
                endpoint=claims.endpoint or (existing.endpoint if existing else None),
                result=result,
                request=None,
                request_id=request_id,
                collection=claims.collection if existing is None else existing.collection,
                public=claims.public,
                callback_url=None,
                idempotency_key=None,
                run_now=False,
                pending_id=existing.id if existing else None,
                extra_metadata=extra,
            )
        except (sa_exc.IntegrityError, _AlreadyStarted):
            # A concurrent delivery of the same request was first: this one is a replay.
            again = await self._generation_for_request(FAL, request_id)
            if again is None:
                raise
            if again.owner != claims.owner:
                raise TicketOwnerMismatch("that fal request belongs to another owner") from None
            return _receipt(again.id, again.job_id, again.status, replayed=True)
        return _receipt(gen.id, job.id if job else None, gen.status, replayed=False)

    async def _generation_for_request(self, provider: str, request_id: str) -> Generation | None:
        from . import generations as gens

        async with self.repo.reads() as s:
            return await gens.by_request(s, provider, request_id)

    async def _failed_generation(
        self,
        claims: tickets.Ticket,
        request_id: str,
        payload: dict[str, Any],
        pending_id: str | None,
        extra: dict[str, Any],
    ) -> str:
        reason = payload.get("error") or payload.get("payload_error") or "the request failed"
        error = {"code": "provider_error", "message": str(reason)[:500]}
        detail = payload.get("payload")
        meta = {**extra, **({"detail": detail} if isinstance(detail, dict | list) else {})}
        now = utcnow()
        async with self.repo.sessions.begin() as s:
            if pending_id is not None:
                gen = await s.get(Generation, pending_id)
                if gen is None or gen.status != "pending" or gen.job_id is not None:
                    raise _AlreadyStarted(pending_id)
            else:
                gen = Generation(
                    id=str(uuid.uuid4()),
                    owner=claims.owner,
                    collection=claims.collection or self.settings.default_collection,
                    provider=FAL,
                    endpoint=claims.endpoint,
                    request={},
                    provider_request_id=request_id,
                    provider_urls=[],
                    total_size=0,
                )
                s.add(gen)
            gen.status = "failed"
            gen.error = error
            gen.result_metadata = meta
            gen.is_media_processed = True
            gen.completed_at = now
            gen.updated_at = now
            await s.flush()
            return gen.id

    # -- persist_json --------------------------------------------------------------------

    def media_matcher(self) -> MediaMatcher:
        """The configured matcher (MEDIAKEEP_PERSIST_HOSTS / _EXTENSIONS)."""
        from .persist import MediaMatcher

        s = self.settings
        return MediaMatcher(
            hosts=s.persist_hosts,
            extensions=s.persist_extensions,
            exclude=(f"{s.base_url.rstrip('/')}/v1/assets/",),
        )

    async def persist_json(
        self,
        document: Any,
        *,
        owner: str,
        collection: str | None = None,
        public: bool = False,
        provider: str | None = None,
        metadata: dict[str, Any] | None = None,
        matcher: Matcher | None = None,
    ) -> PersistReport:
        """Store every media URL found in ``document`` and return a copy of it with those
        URLs replaced by permanent links. A URL that cannot be stored stays as it was and
        is reported in ``failed``. The same URL twice is stored once."""
        from .persist import PersistReport, find_urls, label, rewrite, sources_for

        validate_name(owner, "owner")
        if collection is not None:
            validate_name(collection, "collection")
        found = find_urls(document, matcher or self.media_matcher())
        unique = list(dict.fromkeys(url for _, url in found))
        sources, errors = sources_for(unique, self.settings.max_file_size)
        order = [u for u in unique if u in sources]
        results = await self.store_many(
            [sources[u] for u in order],
            owner=owner,
            collection=collection,
            public=public,
            provider=provider,
            metadata=metadata,
        )
        base = self.settings.base_url
        replacements: dict[str, str] = {}
        ids: dict[str, IngestResult] = {}
        for url, res in zip(order, results, strict=True):
            if res.ok and res.id is not None:
                replacements[url] = content_url(base, res.id)
                ids[url] = res
            else:
                errors[url] = res.error
        report = PersistReport(rewrite(document, replacements))
        for path, url in found:
            if url in replacements:
                res = ids[url]
                report.replaced.append(
                    {
                        "path": path,
                        "url": label(url),
                        "asset_id": res.id,
                        "content_url": replacements[url],
                        "status": res.status,
                    }
                )
            else:
                report.failed.append({"path": path, "url": label(url), "error": errors.get(url)})
        return report


def _receipt(
    generation_id: str, job_id: str | None, status: str, *, replayed: bool
) -> dict[str, Any]:
    return {
        "generation_id": generation_id,
        "job_id": job_id,
        "status": status,
        "replayed": replayed,
    }


def _check_generation_fields(provider: str, endpoint: str | None, request_id: str | None) -> None:
    if not provider or len(provider) > 64 or not provider.isprintable():
        raise InvalidInput("provider must be 1-64 printable characters")
    if endpoint is not None and (len(endpoint) > 255 or not endpoint.isprintable()):
        raise InvalidInput("endpoint must be at most 255 printable characters")
    if request_id is not None and (
        not request_id or len(request_id) > 255 or not request_id.isprintable()
    ):
        raise InvalidInput("request_id must be 1-255 printable characters")
