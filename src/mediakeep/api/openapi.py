"""The OpenAPI document: every error response is an RFC 9457 problem with the codes it can
carry listed, and every operation says how to authenticate."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ..settings import Settings
from .problems import _TITLES, PROBLEM, codes_by_status
from .schemas import Problem

DESCRIPTION = """
Keep AI-generated media for good: downloads and uploads go through one pipeline that
streams, sniffs the real type, enforces limits, hashes and deduplicates, then stores the
bytes in your object store and records them in your database.

**Sign in** with `Authorization: Bearer <JWT>` (HS256; `sub` is the owner; Supabase Auth
tokens work) or `X-API-Key`. Locally: `mediakeep token --owner alice`.

**Tenancy:** every request acts for one owner. Another owner's asset is answered exactly
like a missing one (404), on every route.

**Errors** are `application/problem+json` (RFC 9457) with a stable `code` to branch on.

**URLs:** save `content_url` (`/v1/assets/{id}/content`), the permanent link. Signed URLs
from `/url` and `/signed-urls` expire.
"""


def finish(app: FastAPI, settings: Settings) -> None:
    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=DESCRIPTION,
            routes=app.routes,
            tags=[
                {"name": "ingest", "description": "Getting media in."},
                {"name": "assets", "description": "What you have stored."},
                {"name": "urls", "description": "Getting media out."},
                {"name": "ops", "description": "Probes and metrics."},
            ],
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(problem_schema.pop("$defs", {}))
        components["Problem"] = problem_schema
        codes = codes_by_status()
        for path_item in schema.get("paths", {}).values():
            for op in path_item.values():
                responses = op.setdefault("responses", {})
                # Any operation can fail unexpectedly; say what that looks like.
                responses.setdefault("500", {"description": ""})
                for status in list(responses):
                    if not str(status).isdigit() or int(status) < 400:
                        continue
                    n = int(status)
                    listed = ", ".join(f"`{c}`" for c in codes.get(n, ["http_error"]))
                    doc: dict[str, Any] = {
                        "description": f"{_TITLES.get(n, 'Error')}. Problem codes: {listed}.",
                        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                    }
                    if n == 401:
                        doc["headers"] = {
                            "WWW-Authenticate": {"schema": {"type": "string"}},
                        }
                    if n == 429:
                        doc["headers"] = {
                            "Retry-After": {
                                "description": "Seconds to wait.",
                                "schema": {"type": "integer"},
                            }
                        }
                    responses[status] = doc
        # Limits that come from the configuration, so clients (and fuzzers) see them.
        presign = components.get("PresignRequest", {}).get("properties", {})
        if presign:
            presign["content_type"]["enum"] = list(settings.allowed_types)
            presign["size"]["maximum"] = settings.max_file_size
        ingest = components.get("IngestRequest", {}).get("properties", {})
        if ingest:
            ingest["urls"]["maxItems"] = settings.max_ingest_urls
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        add_links(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = build  # type: ignore[method-assign]


# OpenAPI links: how a response's ids feed the next call, for clients and for stateful
# testing (schemathesis follows them to chain create -> read -> change -> delete).
_ASSET = {"asset_id": "$response.body#/id"}
_ON_ASSET = [
    ("GET", "/v1/assets/{asset_id}"),
    ("GET", "/v1/assets/{asset_id}/url"),
    ("GET", "/v1/assets/{asset_id}/content"),
    ("GET", "/v1/assets/{asset_id}/variants"),
    ("PUT", "/v1/assets/{asset_id}/visibility"),
    ("DELETE", "/v1/assets/{asset_id}"),
]
_LINKS: list[tuple[str, str, str, list[tuple[str, str]], dict[str, str]]] = [
    ("POST", "/v1/uploads", "201", _ON_ASSET, _ASSET),
    ("POST", "/v1/uploads/{asset_id}/complete", "201", _ON_ASSET, _ASSET),
    (
        "POST",
        "/v1/uploads/presign",
        "201",
        [("POST", "/v1/uploads/{asset_id}/complete")],
        {"asset_id": "$response.body#/asset_id"},
    ),
    ("POST", "/v1/ingest", "202", [("GET", "/v1/jobs/{job_id}")], {"job_id": "$response.body#/id"}),
    ("POST", "/v1/ingest", "200", _ON_ASSET, {"asset_id": "$response.body#/results/0/id"}),
    (
        "GET",
        "/v1/jobs/{job_id}",
        "200",
        [("GET", "/v1/assets/{asset_id}")],
        {"asset_id": "$response.body#/items/0/asset_id"},
    ),
    (
        "GET",
        "/v1/assets/{asset_id}",
        "200",
        [("GET", "/v1/collections/{collection}/slots")],
        {"collection": "$response.body#/collection"},
    ),
    (
        "GET",
        "/v1/collections",
        "200",
        [("GET", "/v1/collections/{collection}/slots")],
        {"collection": "$response.body#/items/0/collection"},
    ),
    (
        "GET",
        "/v1/collections/{collection}/slots",
        "200",
        [
            ("GET", "/v1/collections/{collection}/slots/{slot}"),
            ("GET", "/v1/collections/{collection}/slots/{slot}/versions"),
        ],
        {"collection": "$response.body#/collection", "slot": "$response.body#/items/0/slot"},
    ),
    (
        "POST",
        "/v1/bundles",
        "201",
        [("GET", "/v1/bundles/{bundle_id}"), ("GET", "/v1/bundles/{bundle_id}/download")],
        {"bundle_id": "$response.body#/id"},
    ),
    (
        "POST",
        "/v1/generations",
        "201",
        [("GET", "/v1/generations/{generation_id}")],
        {"generation_id": "$response.body#/id"},
    ),
]


def add_links(schema: dict[str, Any]) -> None:
    paths = schema.get("paths", {})

    def operation(method: str, path: str) -> dict[str, Any] | None:
        op: dict[str, Any] | None = paths.get(path, {}).get(method.lower())
        return op

    for method, path, status, targets, parameters in _LINKS:
        source = operation(method, path)
        response = (source or {}).get("responses", {}).get(status)
        if response is None:
            continue
        links = response.setdefault("links", {})
        for t_method, t_path in targets:
            target = operation(t_method, t_path)
            if target is None or "operationId" not in target:
                continue
            wanted = {p["name"] for p in target.get("parameters", []) if p.get("in") == "path"}
            links[target["operationId"]] = {
                "operationId": target["operationId"],
                "parameters": {k: v for k, v in parameters.items() if k in wanted},
            }
