"""Durable jobs (``/v1/jobs``, Server-Sent Events), generations and their storage checks,
fal.ai webhooks and their tickets, and ``/v1/persist-json``. Like every route, each one is
scoped to the acting owner; the fal webhook is the one route without a caller: it is
trusted by fal's signature plus a ticket mediakeep signed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from ..errors import InvalidInput, MediaKeepError
from ..integrations.generations import GenerationInfo
from ..integrations.persist import MediaMatcher
from ..keep import MAX_EXPIRES, MediaKeep
from ..settings import Settings
from ..waiting import event_within
from .deps import keep_of
from .ratelimit import RateLimiter
from .schemas import IngestRequest
from .schemas_jobs import (
    CleanupOut,
    GenerationCreate,
    GenerationList,
    GenerationOut,
    JobList,
    JobOut,
    JobStatus,
    MediaUrlsOut,
    PersistOut,
    PersistRequest,
    TicketOut,
    TicketRequest,
    ValidationOut,
    WebhookReceipt,
    job_out,
)
from .security import Caller, Owner, OwnerQuery

JobId = Annotated[UUID, Path(description="The job's id.")]
GenerationId = Annotated[UUID, Path(description="The generation's id.")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="The same key (per owner, within 24 h) returns the same job and "
        "stores nothing twice; reused for a different request it is refused (409).",
    ),
]
# An event stream is woken by this process's commits; it also reads every EVENTS_POLL
# seconds, for events another process (a separate worker) wrote. One stream lasts
# EVENTS_STREAM_MAX before the client reconnects (with Last-Event-ID, losing nothing).
EVENTS_POLL = 1.0
EVENTS_STREAM_MAX = 300.0
KEEPALIVE = 15.0
MAX_PERSIST_URLS = 1000
AUTH_ERRORS = (400, 401, 403, 422, 500)


def _doc(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"description": ""} for s in statuses}


def _base(keep: MediaKeep) -> str:
    return keep.settings.base_url.rstrip("/")


def generation_out(keep: MediaKeep, gen: GenerationInfo) -> GenerationOut:
    data = gen.to_dict()
    data["job_url"] = f"{_base(keep)}/v1/jobs/{gen.job_id}" if gen.job_id else None
    return GenerationOut(**data)


async def accept_ingest(
    keep: MediaKeep, body: IngestRequest, owner: str, idempotency_key: str | None
) -> JSONResponse:
    """``POST /v1/ingest`` with ``"async": true``: the job is in the database before this
    answers 202; the answer is the job, and ``Location`` its status URL."""
    job = await keep.submit_ingest(
        body.urls,
        owner=owner,
        collection=body.collection,
        slot=body.slot,
        public=body.public,
        provider=body.provider,
        metadata=body.metadata,
        callback_url=body.callback_url,
        idempotency_key=idempotency_key,
    )
    return _accepted(keep, job_out(keep, job), job.replayed)


def _accepted(keep: MediaKeep, job: JobOut, replayed: bool) -> JSONResponse:
    headers = {"Location": job.status_url}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(job.model_dump(mode="json"), status_code=202, headers=headers)


def build_jobs_router(settings: Settings) -> APIRouter:
    r = APIRouter(prefix="/v1")
    limiter = RateLimiter(settings.ingest_rate_limit)

    # -- jobs ------------------------------------------------------------------------

    @r.get("/jobs", tags=["jobs"], response_model=JobList, responses=_doc(*AUTH_ERRORS))
    async def list_jobs(
        request: Request,
        owner: Owner,
        status: JobStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> JobList:
        """The caller's jobs, newest first."""
        keep = keep_of(request)
        jobs = await keep.list_jobs(owner=owner, status=status, limit=limit)
        return JobList(items=[job_out(keep, j) for j in jobs])

    @r.get(
        "/jobs/{job_id}",
        tags=["jobs"],
        response_model=JobOut,
        responses=_doc(*AUTH_ERRORS, 404),
    )
    async def get_job(job_id: JobId, request: Request, owner: Owner) -> JobOut:
        """Status, attempts, the last error, and each item's result."""
        keep = keep_of(request)
        return job_out(keep, await keep.get_job(str(job_id), owner=owner))

    @r.get(
        "/jobs/{job_id}/events",
        tags=["jobs"],
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "Server-Sent Events: `queued`, `started`, `downloading` "
                "(`bytes_done`/`bytes_total`), `stored`, `failed`, `retrying`, `waiting`, "
                "and finally `done` or `failed` (without an `index`). Each event's `id` "
                "resumes the stream via Last-Event-ID.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            **_doc(*AUTH_ERRORS, 404),
        },
    )
    async def job_events(
        job_id: JobId,
        request: Request,
        owner: Owner,
        after: Annotated[
            int | None, Query(ge=0, le=2**62, description="Only events after this id.")
        ] = None,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=32)] = None,
    ) -> StreamingResponse:
        """The job's progress as it happens, from any server: events are read from the
        database. The stream ends after the job's final event."""
        keep = keep_of(request)
        jid = str(job_id)
        await keep.get_job(jid, owner=owner)
        start = after or 0
        if last_event_id and last_event_id.strip().isdigit():
            start = max(start, int(last_event_id.strip()))
        return StreamingResponse(
            _event_stream(keep, jid, start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # -- generations -----------------------------------------------------------------

    @r.post(
        "/generations",
        tags=["generations"],
        status_code=201,
        response_model=GenerationOut,
        responses={
            202: {"model": GenerationOut, "description": "Accepted (async): see `job_url`."},
            **_doc(*AUTH_ERRORS, 409, 413, 429),
        },
    )
    async def create_generation(
        body: GenerationCreate,
        request: Request,
        who: Caller,
        idempotency_key: IdempotencyKey = None,
        owner: OwnerQuery = None,
    ) -> Any:
        """Record a provider call and store its media: every media reference in `result`
        (URLs and data: URIs) becomes a file of the generation, in order; the result's
        other fields (seed, timings, ...) are kept as metadata. 201 once stored (a file
        that failed for a passing reason is retried by the workers: the generation then
        says `processing`); with `"async": true`, 202 at once."""
        acting = who.acting_for(body.owner or owner)
        request.state.owner = acting
        keep = keep_of(request)
        if body.result is None:
            if body.request_id is None:
                raise InvalidInput("a generation without a result needs its request_id")
            limiter.check(acting)
            gen = await keep.register_generation(
                owner=acting,
                provider=body.provider,
                request_id=body.request_id,
                endpoint=body.endpoint,
                request=body.request,
                collection=body.collection,
            )
            return generation_out(keep, gen)
        limiter.check(acting)
        common: dict[str, Any] = {
            "owner": acting,
            "provider": body.provider,
            "endpoint": body.endpoint,
            "collection": body.collection,
            "public": body.public,
            "request": body.request,
            "request_id": body.request_id,
            "idempotency_key": idempotency_key,
        }
        if body.run_async or body.callback_url is not None:
            gen, _job = await keep.submit_generation(
                body.result, callback_url=body.callback_url, **common
            )
            out = generation_out(keep, gen)
            headers = {"Location": f"{_base(keep)}/v1/generations/{gen.id}"}
            return JSONResponse(out.model_dump(mode="json"), status_code=202, headers=headers)
        gen = await keep.store_generation(body.result, **common)
        return generation_out(keep, gen)

    @r.get(
        "/generations",
        tags=["generations"],
        response_model=GenerationList,
        responses=_doc(*AUTH_ERRORS),
    )
    async def list_generations(
        request: Request, owner: Owner, limit: Annotated[int, Query(ge=1, le=200)] = 50
    ) -> GenerationList:
        keep = keep_of(request)
        gens = await keep.list_generations(owner=owner, limit=limit)
        return GenerationList(items=[generation_out(keep, g) for g in gens])

    @r.get(
        "/generations/{generation_id}",
        tags=["generations"],
        response_model=GenerationOut,
        responses=_doc(*AUTH_ERRORS, 404),
    )
    async def get_generation(
        generation_id: GenerationId, request: Request, owner: Owner
    ) -> GenerationOut:
        keep = keep_of(request)
        return generation_out(keep, await keep.get_generation(str(generation_id), owner=owner))

    @r.get(
        "/generations/{generation_id}/media-urls",
        tags=["generations"],
        response_model=MediaUrlsOut,
        responses=_doc(*AUTH_ERRORS, 404),
    )
    async def media_urls(
        generation_id: GenerationId,
        request: Request,
        owner: Owner,
        expires_in: Annotated[int | None, Query(ge=1, le=MAX_EXPIRES)] = None,
    ) -> MediaUrlsOut:
        """For each media file, in order: a signed URL (public URL for public files) with
        size, type and dimensions; a file not (yet) stored falls back to the provider's
        original URL, marked `"source": "provider"`."""
        keep = keep_of(request)
        items = await keep.generation_media_urls(
            str(generation_id), owner=owner, expires_in=expires_in
        )
        return MediaUrlsOut.model_validate({"generation_id": str(generation_id), "items": items})

    @r.post(
        "/storage/validate/{generation_id}",
        tags=["generations"],
        response_model=ValidationOut,
        responses=_doc(*AUTH_ERRORS, 404, 503),
    )
    async def validate(generation_id: GenerationId, request: Request, owner: Owner) -> Any:
        """Check that every stored file of the generation is in the store with the
        recorded size and sha256 (the bytes are read and hashed)."""
        keep = keep_of(request)
        report = await keep.validate_generation(str(generation_id), owner=owner)
        return ValidationOut.model_validate(report)

    @r.delete(
        "/storage/cleanup/{generation_id}",
        tags=["generations"],
        response_model=CleanupOut,
        responses=_doc(*AUTH_ERRORS, 404, 409, 503),
    )
    async def cleanup(generation_id: GenerationId, request: Request, owner: Owner) -> CleanupOut:
        """Remove the stored files of a generation that did not complete (`failed` or
        `partial`; it ends `failed`) and say how many were removed. Any other status
        answers 409 `generation_not_failed`."""
        keep = keep_of(request)
        removed = await keep.cleanup_generation(str(generation_id), owner=owner)
        return CleanupOut(generation_id=str(generation_id), removed=removed)

    # -- fal webhooks ----------------------------------------------------------------

    @r.post(
        "/webhooks/fal/tickets",
        tags=["webhooks"],
        status_code=201,
        response_model=TicketOut,
        responses=_doc(*AUTH_ERRORS, 429),
    )
    async def ticket(
        body: TicketRequest, request: Request, who: Caller, owner: OwnerQuery = None
    ) -> TicketOut:
        """A webhook URL for fal (its `webhook_url`/`fal_webhook`): it carries a ticket
        signed by this service saying whose media the webhook's results are."""
        acting = who.acting_for(body.owner or owner)
        request.state.owner = acting
        limiter.check(acting)
        issued = keep_of(request).fal_ticket(
            owner=acting,
            collection=body.collection,
            public=body.public,
            endpoint=body.endpoint,
            expires_in=body.expires_in,
        )
        return TicketOut(**issued.to_dict())

    @r.post(
        "/webhooks/fal",
        tags=["webhooks"],
        response_model=WebhookReceipt,
        responses=_doc(400, 401, 403, 413, 422, 500, 503),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "request_id": {"type": "string"},
                                "gateway_request_id": {"type": "string"},
                                "status": {"type": "string", "enum": ["OK", "ERROR"]},
                                "payload": {"type": ["object", "null"]},
                                "error": {"type": "string"},
                            },
                        }
                    }
                },
            }
        },
    )
    async def fal_webhook(
        request: Request,
        ticket: Annotated[
            str | None, Query(max_length=4096, description="From /v1/webhooks/fal/tickets.")
        ] = None,
    ) -> WebhookReceipt:
        """fal's queue webhook. Verified as fal documents it (Ed25519 over request id,
        user id, timestamp and the body's SHA-256; keys from fal's JWKS; timestamp within
        5 minutes) and by the URL's ticket; anything unsigned, stale, forged or without a
        valid ticket is refused and writes nothing. A replayed request id stores nothing
        twice. The media are stored by a job."""
        keep = keep_of(request)
        keep.precheck_fal_webhook(request.headers, ticket)
        body = await request.body()
        receipt = await keep.receive_fal_webhook(body, request.headers, ticket)
        return WebhookReceipt(**receipt)

    # -- persist-json ----------------------------------------------------------------

    @r.post(
        "/persist-json",
        tags=["ingest"],
        response_model=PersistOut,
        responses={
            207: {"model": PersistOut, "description": "Some URLs could not be stored."},
            **_doc(*AUTH_ERRORS, 413, 429),
        },
    )
    async def persist_json(
        body: PersistRequest,
        request: Request,
        response: Response,
        who: Caller,
        owner: OwnerQuery = None,
    ) -> PersistOut:
        """Store every media URL in `document` and return it with those URLs replaced by
        permanent links. URLs that cannot be stored are left as they were and listed in
        `failed` (then 207)."""
        acting = who.acting_for(body.owner or owner)
        request.state.owner = acting
        keep = keep_of(request)
        default = keep.media_matcher()
        matcher = MediaMatcher(
            hosts=tuple(body.hosts) if body.hosts is not None else default.hosts,
            extensions=(
                tuple(body.extensions) if body.extensions is not None else default.extensions
            ),
            exclude=default.exclude,
        )
        limiter.check(acting)
        report = await keep.persist_json(
            body.document,
            owner=acting,
            collection=body.collection,
            public=body.public,
            provider=body.provider,
            metadata=body.metadata,
            matcher=_bounded(matcher),
        )
        if report.failed:
            response.status_code = 207
        return PersistOut.model_validate(report.to_dict())

    return r


def _bounded(matcher: MediaMatcher) -> Any:
    """The matcher, refusing documents with more distinct URLs than one request should
    store (the library itself has no such limit)."""
    seen: set[str] = set()

    def match(value: str) -> bool:
        if not matcher(value):
            return False
        seen.add(value)
        if len(seen) > MAX_PERSIST_URLS:
            raise InvalidInput(f"at most {MAX_PERSIST_URLS} distinct media URLs per request")
        return True

    return match


async def _event_stream(keep: MediaKeep, job_id: str, after: int) -> AsyncIterator[str]:
    last = after
    started = idle = time.monotonic()
    # Reconnect after 2 s; the browser sends Last-Event-ID and loses nothing.
    yield "retry: 2000\n\n"
    while True:
        # Watching starts before the read, so events committed in between still wake us.
        with keep.job_signals.watch(job_id) as changed:
            try:
                events = await keep.job_events(job_id, after=last, limit=200)
            except MediaKeepError:
                return
            for event in events:
                yield event.sse()
                last = event.id
                if event.final:
                    return
            now = time.monotonic()
            if events:
                idle = now
                continue
            if (await keep.get_job(job_id)).terminal:
                # Finished (perhaps just now): send what came meanwhile; nothing more will.
                for event in await keep.job_events(job_id, after=last, limit=200):
                    yield event.sse()
                return
            if now - started > EVENTS_STREAM_MAX:
                return
            if now - idle > KEEPALIVE:
                idle = now
                yield ": keep-alive\n\n"
            # Woken at once by this process's commits; the timeout catches events that
            # another process (a separate worker) wrote.
            await event_within(changed, EVENTS_POLL)
