"""Serves the local store's objects: signed URLs for private ones, plain URLs for public
ones. Byte ranges, ETags and immutable caching, like an object store would."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from ..errors import InvalidInput, NotFound
from ..signing import quote_key
from ..stores.base import ByteRange
from ..stores.local import FILES_ROUTE, LocalStore
from .deps import keep_of
from .problems import problem

router = APIRouter(include_in_schema=False)


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """One ``bytes=`` range (start-end, start-, or -suffix). None means the whole body."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # multipart ranges are optional (RFC 9110); serve the whole body
    first, sep, last = spec.strip().partition("-")
    if not sep:
        raise InvalidInput("malformed Range header")
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                raise InvalidInput("unsatisfiable range")
            return ByteRange(max(0, size - n), size - 1)
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError as exc:
        raise InvalidInput("malformed Range header") from exc
    if start < 0 or start >= size or end < start:
        raise InvalidInput("unsatisfiable range")
    return ByteRange(start, min(end, size - 1))


@router.get(FILES_ROUTE + "/{bucket}/{key:path}")
@router.head(FILES_ROUTE + "/{bucket}/{key:path}")
async def get_file(bucket: str, key: str, request: Request) -> Response:
    keep = keep_of(request)
    store = keep.store
    if not isinstance(store, LocalStore):
        return problem(404, "not_found", "this service does not serve files for this store")
    s = keep.settings
    if bucket not in (s.private_bucket, s.public_bucket):
        return problem(404, "not_found", "no such object")
    if bucket == s.private_bucket:
        path = f"{FILES_ROUTE}/{bucket}/{quote_key(key)}"
        store.signer.verify(
            "GET", path, request.query_params.get("exp"), request.query_params.get("sig")
        )
    info = await store.head(bucket, key)
    if info is None:
        raise NotFound("no such object")
    content_type = await keep.repo.content_type_of(bucket, key) or "application/octet-stream"
    headers = {
        "ETag": f'"{info.etag}"',
        "Accept-Ranges": "bytes",
        "Cache-Control": ("public" if bucket == s.public_bucket else "private")
        + ", max-age=31536000, immutable",
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    try:
        byte_range = parse_range(request.headers.get("range"), info.size)
    except InvalidInput:
        return problem(
            416,
            "range_not_satisfiable",
            "the range is not satisfiable",
            headers={"Content-Range": f"bytes */{info.size}"},
        )
    status = 200
    length = info.size
    if byte_range is not None:
        status = 206
        length = byte_range.end - byte_range.start + 1
        headers["Content-Range"] = f"bytes {byte_range.start}-{byte_range.end}/{info.size}"
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=content_type)

    async def body() -> AsyncIterator[bytes]:
        async for chunk in store.get(bucket, key, byte_range):
            yield chunk

    return StreamingResponse(body(), status_code=status, headers=headers, media_type=content_type)
