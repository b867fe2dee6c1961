"""Limits and hygiene: body limits, rate limits, CORS, request ids, metrics, and an OpenAPI
document that describes every route and error."""

from __future__ import annotations

import json
from collections.abc import Iterator

from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import API_BACKENDS, ApiFactory, new_owner, plain
from tests.core.helpers import png_bytes
from tests.support.provider import Provider, render_image

LOCAL = API_BACKENDS[0]


def test_json_bodies_are_limited(api_for: ApiFactory) -> None:
    api = api_for(LOCAL, max_request_body=2000)
    c = api.client(new_owner())
    big = {"urls": ["http://example.invalid/" + "a" * 3000]}
    r = c.post("/v1/ingest", json=big)
    assert (r.status_code, r.json()["code"]) == (413, "request_too_large")
    assert r.headers["content-type"] == "application/problem+json"

    def chunked() -> Iterator[bytes]:
        # No Content-Length: the limit is enforced while the body arrives.
        yield b'{"urls": ["http://example.invalid/'
        for _ in range(10):
            yield b"a" * 500
        yield b'"]}'

    r = c.post("/v1/ingest", content=chunked(), headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()["code"]) == (413, "request_too_large")
    # Uploads are bounded by the file size limit instead.
    up = c.post("/v1/uploads", files={"file": ("a.png", render_image("limits", "png", 128, 128))})
    assert up.status_code == 201 and up.json()["size"] > 2000


def test_invalid_requests_are_problems(api_for: ApiFactory) -> None:
    c = api_for(LOCAL).client(new_owner())
    r = c.post("/v1/ingest", json={})
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")
    assert r.json()["errors"][0]["loc"] == ["body", "urls"]
    r = c.post("/v1/ingest", json={"urls": ["http://a.invalid/x.png"], "colour": "red"})
    assert r.status_code == 422
    r = c.post("/v1/ingest", json={"urls": ["http://a.invalid/x.png"], "metadata": {"a": "\u0000"}})
    assert r.status_code == 422
    assert c.get("/v1/assets/not-a-uuid").status_code == 422
    assert c.get("/v1/assets", params={"cursor": "garbage"}).json()["code"] == "invalid_input"
    assert c.patch("/v1/assets").status_code == 405
    assert c.get("/v1/nothing-here").json()["code"] == "not_found"


def test_ingest_is_rate_limited_per_owner(api_for: ApiFactory, provider: Provider) -> None:
    api = api_for(LOCAL, ingest_rate_limit=2)
    alice, bob = api.client(new_owner()), api.client(new_owner())
    for i in range(2):
        assert (
            alice.post("/v1/uploads", files={"file": ("a.png", png_bytes(121 + i))}).status_code
            == 201
        )
    r = alice.post("/v1/ingest", json={"urls": [provider.url("/img/rl.png")]})
    assert r.status_code == 429
    assert r.json()["code"] == "rate_limited"
    assert int(r.headers["retry-after"]) >= 1 and r.json()["retry_after"] >= 1
    r = alice.post("/v1/uploads/presign", json={"content_type": "image/png", "size": 10})
    assert r.status_code == 429
    # Reads are not limited, and other owners have their own budget.
    assert alice.get("/v1/assets").status_code == 200
    assert bob.post("/v1/ingest", json={"urls": [provider.url("/img/rl.png")]}).status_code == 200


def test_cors(api_for: ApiFactory) -> None:
    api = api_for(LOCAL, cors_origins=("https://app.example",))
    with plain() as h:
        pre = h.options(
            api.url + "/v1/ingest",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://app.example"
        assert "authorization" in pre.headers["access-control-allow-headers"].lower()
        other = h.get(api.url + "/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        ok = h.get(api.url + "/healthz", headers={"Origin": "https://app.example"})
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-request-id" in ok.headers["access-control-expose-headers"].lower()
    off = api_for(LOCAL)
    with plain() as h:
        r = h.get(off.url + "/healthz", headers={"Origin": "https://app.example"})
        assert "access-control-allow-origin" not in r.headers


def test_request_ids(api_for: ApiFactory) -> None:
    api = api_for(LOCAL)
    with plain() as h:
        fresh = h.get(api.url + "/healthz").headers["x-request-id"]
        assert len(fresh) == 32
        assert (
            h.get(api.url + "/healthz", headers={"X-Request-Id": "abc-123"}).headers["x-request-id"]
            == "abc-123"
        )
        weird = h.get(api.url + "/healthz", headers={"X-Request-Id": "a b\tc" * 40})
        assert weird.headers["x-request-id"] != "a b\tc" * 40
        problem = h.get(api.url + "/v1/assets")
        assert problem.status_code == 401 and problem.headers["x-request-id"]


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics(api_for: ApiFactory, provider: Provider) -> None:
    api = api_for(LOCAL)
    c = api.client(new_owner())
    c.post("/v1/ingest", json={"urls": [provider.url("/img/m1.png"), provider.url("/html-as-png")]})
    up = c.post("/v1/uploads", files={"file": ("a.png", png_bytes(125))}).json()
    c.get(f"/v1/assets/{up['id']}")
    with plain() as h:
        r = h.get(api.url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    m = metric_values(r.text)
    req = "mediakeep_http_requests_total"
    assert m[(req, (("method", "POST"), ("route", "/v1/ingest"), ("status", "207")))] == 1
    # Route templates, never raw ids, so the label set stays bounded.
    assert m[(req, (("method", "GET"), ("route", "/v1/assets/{asset_id}"), ("status", "200")))] == 1
    items = "mediakeep_ingest_items_total"
    assert m[(items, (("status", "stored"), ("via", "url")))] == 1
    assert m[(items, (("status", "failed"), ("via", "url")))] == 1
    assert m[(items, (("status", "stored"), ("via", "upload")))] == 1
    fail = "mediakeep_ingest_failures_total"
    assert m[(fail, (("reason", "unsupported_media_type"), ("via", "url")))] == 1
    assert m[("mediakeep_ingest_bytes_total", (("via", "upload"),))] == len(png_bytes(125))
    hist = "mediakeep_http_request_duration_seconds_count"
    assert m[(hist, (("method", "POST"), ("route", "/v1/uploads")))] == 1


def test_openapi_documents_every_route_and_error(api_for: ApiFactory) -> None:
    api = api_for(LOCAL)
    with plain() as h:
        doc = h.get(api.url + "/openapi.json").json()
    ops = {(m.upper(), p): op for p, item in doc["paths"].items() for m, op in item.items()}
    expected = {
        ("POST", "/v1/ingest"),
        ("POST", "/v1/uploads"),
        ("POST", "/v1/uploads/presign"),
        ("POST", "/v1/uploads/{asset_id}/complete"),
        ("GET", "/v1/assets"),
        ("GET", "/v1/assets/{asset_id}"),
        ("DELETE", "/v1/assets/{asset_id}"),
        ("GET", "/v1/assets/{asset_id}/url"),
        ("POST", "/v1/signed-urls"),
        ("GET", "/v1/assets/{asset_id}/content"),
        ("PUT", "/v1/assets/{asset_id}/visibility"),
        ("GET", "/v1/storage/stats"),
        ("GET", "/v1/storage/history"),
        ("GET", "/v1/assets/{asset_id}/variants"),
        ("GET", "/v1/assets/{asset_id}/render"),
        ("POST", "/v1/assets/{asset_id}/render-url"),
        ("GET", "/v1/collections"),
        ("DELETE", "/v1/collections/{collection}"),
        ("GET", "/v1/collections/{collection}/slots"),
        ("GET", "/v1/collections/{collection}/slots/{slot}"),
        ("GET", "/v1/collections/{collection}/slots/{slot}/versions"),
        ("POST", "/v1/collections/{collection}/slots/{slot}/current"),
        ("GET", "/v1/collections/{collection}/slots/{slot}/content"),
        ("POST", "/v1/bundles"),
        ("GET", "/v1/bundles"),
        ("GET", "/v1/bundles/{bundle_id}"),
        ("GET", "/v1/bundles/{bundle_id}/download"),
        ("GET", "/v1/bundles/{bundle_id}/files/{path}"),
        ("GET", "/v1/jobs"),
        ("GET", "/v1/jobs/{job_id}"),
        ("GET", "/v1/jobs/{job_id}/events"),
        ("POST", "/v1/generations"),
        ("GET", "/v1/generations"),
        ("GET", "/v1/generations/{generation_id}"),
        ("GET", "/v1/generations/{generation_id}/media-urls"),
        ("POST", "/v1/storage/validate/{generation_id}"),
        ("DELETE", "/v1/storage/cleanup/{generation_id}"),
        ("POST", "/v1/webhooks/fal/tickets"),
        ("POST", "/v1/webhooks/fal"),
        ("POST", "/v1/persist-json"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
    }
    assert set(ops) == expected
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer" and schemes["apiKey"]["name"] == "X-API-Key"
    for (method, path), op in ops.items():
        assert op.get("description") or op.get("summary"), (method, path)
        errors = {int(s): r for s, r in op["responses"].items() if int(s) >= 400}
        assert 500 in errors, (method, path)
        for status, resp in errors.items():
            content = resp["content"]
            assert list(content) == ["application/problem+json"], (method, path, status)
            assert content["application/problem+json"]["schema"]["$ref"].endswith("/Problem")
            assert "`" in resp["description"]  # lists the problem codes
        if (method, path) == ("POST", "/v1/webhooks/fal"):
            # fal cannot sign in: its signature and a ticket in the URL stand for that.
            assert "security" not in op and 401 in errors and 403 in errors
        elif path.startswith("/v1/"):
            assert {"bearer": []} in op["security"] and {"apiKey": []} in op["security"]
            assert 401 in errors and 403 in errors, (method, path)
        if "{asset_id}" in path:
            assert 404 in errors, (method, path)
    assert "not_found" in ops[("GET", "/v1/assets/{asset_id}")]["responses"]["404"]["description"]
    assert "207" in ops[("POST", "/v1/ingest")]["responses"]
    assert "multipart/form-data" in ops[("POST", "/v1/uploads")]["requestBody"]["content"]
    assert "Problem" in doc["components"]["schemas"]
    assert "HTTPValidationError" not in json.dumps(doc)


def test_log_lines_are_json_and_scrub_secrets() -> None:
    import logging

    from mediakeep.api.observability import JsonFormatter
    from mediakeep.auth import mint_token

    token = mint_token("s" * 64, "alice")
    formatter = JsonFormatter(secrets=("super-secret-value",))
    record = logging.LogRecord(
        "mediakeep.test",
        logging.WARNING,
        __file__,
        1,
        "fetch %s failed with Bearer %s (secret super-secret-value, key mk_%s)",
        (
            "https://s3.example/b/k?X-Amz-Signature=abc123&X-Amz-Credential=AKIA/x&sig=zzz",
            token,
            "a" * 40,
        ),
        None,
    )
    record.category = "download"
    record.url = f"https://x/?token={token}"
    line = formatter.format(record)
    entry = json.loads(line)
    assert entry["category"] == "download" and entry["level"] == "warning"
    for leaked in (
        "abc123",
        "AKIA",
        "zzz",
        token,
        token.split(".")[2],
        "super-secret-value",
        "a" * 40,
    ):
        assert leaked not in line
