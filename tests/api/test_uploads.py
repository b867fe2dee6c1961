"""Direct multipart uploads and presigned uploads (plain HTTP PUT, no SDK), over real HTTP
on sqlite+local and postgres+s3 (SeaweedFS, which checks the signatures)."""

from __future__ import annotations

import hashlib
import io
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from mediakeep import MediaKeep
from mediakeep.stores.factory import build_store
from tests.api.conftest import API_BACKENDS, Api, ApiFactory, new_owner, plain
from tests.core.helpers import png_bytes
from tests.support.provider import iter_payload, render_image

MIB = 1024 * 1024


def presign(c: httpx.Client, data: bytes, **kw: Any) -> dict[str, Any]:
    body = {"content_type": "image/png", "size": len(data), **kw}
    r = c.post("/v1/uploads/presign", json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def put(p: dict[str, Any], data: bytes) -> httpx.Response:
    """The client's upload: one plain HTTP request to the presigned URL."""
    with plain() as h:
        return h.request(p["method"], p["upload_url"], content=data, headers=p["headers"])


def staging_exists(api: Api, owner: str, asset_id: str) -> bool:
    s = api.settings
    key = f"_staging/{owner}/{asset_id}"
    if s.store == "local":
        return (s.resolved_local_root / s.private_bucket / key).exists()
    url = build_store(s).sign_get(s.private_bucket, [key], 60)[0]
    with plain() as h:
        status = h.get(url).status_code
    assert status in (200, 404), status
    return status == 200


def test_presigned_upload_end_to_end(api: Api) -> None:
    owner = new_owner()
    c = api.client(owner)
    data = render_image("presigned", "png", 96, 80)
    p = presign(
        c, data, collection="direct", metadata={"k": "v"}, sha256=hashlib.sha256(data).hexdigest()
    )
    assert p["method"] == "PUT" and p["headers"] == {"Content-Type": "image/png"}
    if api.settings.store == "s3":
        assert p["upload_url"].startswith(api.settings.s3_endpoint or "")
        assert "X-Amz-Signature=" in p["upload_url"]
    else:
        assert p["upload_url"].startswith(api.url + "/v1/files/")
    assert put(p, data).status_code == 200
    assert staging_exists(api, owner, p["asset_id"])

    done = c.post(f"/v1/uploads/{p['asset_id']}/complete")
    assert done.status_code == 201, done.text
    assert done.json()["id"] == p["asset_id"] and done.json()["status"] == "stored"
    asset = c.get(f"/v1/assets/{p['asset_id']}").json()
    assert (asset["size"], asset["width"], asset["height"]) == (len(data), 96, 80)
    assert asset["collection"] == "direct" and asset["metadata"] == {"k": "v"}
    with plain() as h:
        assert h.get(done.json()["url"]).content == data
    assert not staging_exists(api, owner, p["asset_id"])

    replay = c.post(f"/v1/uploads/{p['asset_id']}/complete")
    assert (replay.status_code, replay.json()["code"]) == (409, "upload_not_pending")


def test_complete_rejects_wrong_type_and_deletes_it(api: Api) -> None:
    owner = new_owner()
    c = api.client(owner)
    jpeg = render_image("wrong-type", "jpg")
    p = presign(c, jpeg, content_type="image/png")
    assert put(p, jpeg).status_code == 200
    r = c.post(f"/v1/uploads/{p['asset_id']}/complete")
    assert (r.status_code, r.json()["code"]) == (415, "unsupported_media_type")
    assert r.headers["content-type"] == "application/problem+json"
    assert not staging_exists(api, owner, p["asset_id"])
    assert c.get(f"/v1/assets/{p['asset_id']}").status_code == 404
    assert c.post(f"/v1/uploads/{p['asset_id']}/complete").status_code == 409
    assert c.get("/v1/storage/stats").json()["objects"] == 0


def test_complete_rejects_wrong_size_and_deletes_it(api: Api) -> None:
    owner = new_owner()
    c = api.client(owner)
    data = png_bytes(80)
    p = presign(c, data + b"\0" * 10)  # promises 10 bytes more than it sends
    assert put(p, data).status_code == 200
    r = c.post(f"/v1/uploads/{p['asset_id']}/complete")
    assert (r.status_code, r.json()["code"]) == (422, "upload_size_mismatch")
    assert not staging_exists(api, owner, p["asset_id"])
    assert c.get(f"/v1/assets/{p['asset_id']}").status_code == 404


def test_complete_rejects_a_missing_object_and_can_be_retried(api: Api) -> None:
    c = api.client(new_owner())
    data = png_bytes(81)
    p = presign(c, data)
    r = c.post(f"/v1/uploads/{p['asset_id']}/complete")
    assert (r.status_code, r.json()["code"]) == (409, "upload_not_received")
    assert put(p, data).status_code == 200
    assert c.post(f"/v1/uploads/{p['asset_id']}/complete").status_code == 201


def test_complete_rejects_a_wrong_checksum(api: Api) -> None:
    owner = new_owner()
    c = api.client(owner)
    data = png_bytes(82)
    p = presign(c, data, sha256="0" * 64)
    assert put(p, data).status_code == 200
    r = c.post(f"/v1/uploads/{p['asset_id']}/complete")
    assert (r.status_code, r.json()["code"]) == (422, "upload_checksum_mismatch")
    assert c.get(f"/v1/assets/{p['asset_id']}").status_code == 404
    assert not staging_exists(api, owner, p["asset_id"])


def test_presign_refuses_what_the_pipeline_would(api: Api) -> None:
    c = api.client(new_owner())
    r = c.post("/v1/uploads/presign", json={"content_type": "text/html", "size": 10})
    assert (r.status_code, r.json()["code"]) == (415, "unsupported_media_type")
    too_big = api.settings.max_file_size + 1
    r = c.post("/v1/uploads/presign", json={"content_type": "image/png", "size": too_big})
    assert (r.status_code, r.json()["code"]) == (413, "file_too_large")
    r = c.post("/v1/uploads/presign", json={"content_type": "image/png", "size": 0})
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")


@pytest.mark.parametrize("backend", API_BACKENDS, ids=lambda b: b.id)
async def test_expired_uploads_are_swept(backend: Any, api_for: ApiFactory) -> None:
    api = api_for(backend, upload_url_expires=60)
    owner = new_owner()
    c = api.client(owner)
    data = png_bytes(83)
    p = presign(c, data)
    assert put(p, data).status_code == 200
    async with MediaKeep(api.settings) as keep:
        assert await keep.sweep_uploads() == 0  # not expired yet
        assert staging_exists(api, owner, p["asset_id"])
        later = datetime.now(UTC) + timedelta(hours=2)
        assert await keep.sweep_uploads(now=later) >= 1
    assert not staging_exists(api, owner, p["asset_id"])
    assert c.post(f"/v1/uploads/{p['asset_id']}/complete").status_code == 404


def test_local_upload_url_checks_signature_and_size(api_for: ApiFactory) -> None:
    api = api_for(API_BACKENDS[0])
    c = api.client(new_owner())
    data = png_bytes(84)
    p = presign(c, data)
    tampered = dict(p, upload_url=p["upload_url"].replace("sig=", "sig=x"))
    assert put(tampered, data).status_code == 403
    r = put(p, data + b"more bytes than promised")
    assert (r.status_code, r.json()["code"]) == (422, "upload_size_mismatch")
    assert put(p, data).status_code == 200
    assert c.post(f"/v1/uploads/{p['asset_id']}/complete").status_code == 201
    # Once completed, the URL takes nothing more.
    assert put(p, data).status_code == 409


def test_direct_upload_options_and_refusals(api: Api) -> None:
    c = api.client(new_owner())
    # Options as form fields before the file part.
    r = c.post(
        "/v1/uploads",
        data={"collection": "form", "slot": "s1", "metadata": '{"a": 1}', "public": "true"},
        files={"file": ("x.png", png_bytes(90), "application/octet-stream")},
    )
    assert r.status_code == 201, r.text
    a = c.get(f"/v1/assets/{r.json()['id']}").json()
    assert (a["collection"], a["slot"], a["metadata"], a["public"]) == (
        "form",
        "s1",
        {"a": 1},
        True,
    )

    html = c.post("/v1/uploads", files={"file": ("x.png", b"<html>not an image</html>")})
    assert (html.status_code, html.json()["code"]) == (415, "unsupported_media_type")
    no_file = c.post("/v1/uploads", data={"collection": "x"}, files={"other": ("", b"")})
    assert no_file.status_code in (400, 415)
    not_form = c.post("/v1/uploads", content=png_bytes(91), headers={"Content-Type": "image/png"})
    assert (not_form.status_code, not_form.json()["code"]) == (415, "unsupported_media_type")
    bad_name = c.post(
        "/v1/uploads", params={"collection": "a..b"}, files={"file": ("x.png", png_bytes(92))}
    )
    assert bad_name.status_code in (400, 422)
    assert [x["id"] for x in c.get("/v1/assets").json()["items"]] == [r.json()["id"]]


def test_direct_upload_enforces_the_size_limit_while_streaming(api_for: ApiFactory) -> None:
    api = api_for(API_BACKENDS[0], max_file_size=200_000)
    c = api.client(new_owner())
    big = b"".join(iter_payload(600_000, "mp4"))
    r = c.post("/v1/uploads", files={"file": ("big.mp4", big)})
    assert r.status_code == 413 and r.json()["code"] in ("file_too_large", "request_too_large")
    assert c.get("/v1/assets").json()["items"] == []
    assert c.get("/v1/storage/stats").json()["objects"] == 0


def test_direct_upload_streams_without_buffering_the_body(
    api_for: ApiFactory, tmp_path: Path
) -> None:
    api = api_for(API_BACKENDS[0], max_request_body=64 * 1024)
    c = api.client(new_owner())
    size = 32 * MIB
    src = tmp_path / "big.mp4"
    with src.open("wb") as fh:
        for chunk in iter_payload(size, "mp4"):
            fh.write(chunk)
    # The server runs in this process: its allocations are traced too.
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with src.open("rb") as fh:
            r = c.post("/v1/uploads", files={"file": ("big.mp4", fh, "video/mp4")})
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 201, r.text
    assert r.json()["size"] == size
    assert r.json()["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert peak < 12 * MIB, f"peak {peak / MIB:.1f} MiB for a {size // MIB} MiB upload"


def test_multipart_with_fields_after_the_file_still_stores_the_file(api: Api) -> None:
    c = api.client(new_owner())
    boundary = "mkboundary123"
    body = io.BytesIO()
    body.write(f"--{boundary}\r\n".encode())
    body.write(b'Content-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n')
    body.write(png_bytes(93))
    body.write(f"\r\n--{boundary}\r\n".encode())
    body.write(b'Content-Disposition: form-data; name="note"\r\n\r\nhello')
    body.write(f"\r\n--{boundary}--\r\n".encode())
    r = c.post(
        "/v1/uploads",
        content=body.getvalue(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["size"] == len(png_bytes(93))
    truncated = body.getvalue()[:-30]
    r = c.post(
        "/v1/uploads",
        content=truncated,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert (r.status_code, r.json()["code"]) == (400, "invalid_input")


async def test_orphan_sweep_keeps_staging_objects_of_live_uploads(api_for: ApiFactory) -> None:
    api = api_for(API_BACKENDS[1])
    owner = new_owner()
    c = api.client(owner)
    data = png_bytes(85)
    p = presign(c, data)
    assert put(p, data).status_code == 200
    async with MediaKeep(api.settings) as keep:
        # The staging object is in no asset record, but its upload record knows it.
        await keep.sweep(older_than=timedelta(0), orphans=True)
    assert staging_exists(api, owner, p["asset_id"])
    assert c.post(f"/v1/uploads/{p['asset_id']}/complete").status_code == 201
