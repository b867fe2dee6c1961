"""The permanent link, /v1/assets/{id}/content: it outlives every signed URL it hands out,
keeps one target per window (so caches hit), and serves local files like a CDN would."""

from __future__ import annotations

import time

import pytest

from tests.api.conftest import API_BACKENDS, ApiFactory, new_owner, plain
from tests.core.helpers import png_bytes

LOCAL, S3 = API_BACKENDS


def wait_until_rejected(url: str, limit: float = 15.0) -> None:
    """Poll (bounded) until a signed URL stops working."""
    deadline = time.monotonic() + limit
    with plain() as h:
        while h.get(url).status_code == 200:
            assert time.monotonic() < deadline, "the signed URL never expired"
            time.sleep(0.25)


def test_redirect_target_is_stable_within_a_window(api_for: ApiFactory) -> None:
    window = 3600
    api = api_for(S3, content_url_window=window)
    c = api.client(new_owner())
    asset = c.post("/v1/uploads", files={"file": ("a.png", png_bytes(110))}).json()
    before = time.time()
    first = c.get(f"/v1/assets/{asset['id']}/content")
    second = c.get(f"/v1/assets/{asset['id']}/content")
    after = time.time()
    assert first.status_code == second.status_code == 302
    max_age = int(first.headers["cache-control"].split("max-age=")[1])
    assert 0 < max_age <= window and first.headers["cache-control"].startswith("private")
    if int(before) // window == int(after) // window:
        assert first.headers["location"] == second.headers["location"]
    with plain() as h:
        got = h.get(first.headers["location"])
    assert (got.status_code, got.content) == (200, png_bytes(110))


def test_permanent_link_outlives_its_signed_urls(api_for: ApiFactory) -> None:
    # A one-second window: each signed target lives at most two seconds.
    api = api_for(S3, content_url_window=1)
    c = api.client(new_owner())
    asset = c.post("/v1/uploads", files={"file": ("a.png", png_bytes(111))}).json()
    link = f"/v1/assets/{asset['id']}/content"
    old = c.get(link).headers["location"]
    with plain() as h:
        assert h.get(old).status_code == 200
    wait_until_rejected(old)
    again = c.get(link)
    assert again.status_code == 302 and again.headers["location"] != old
    with plain() as h:
        got = h.get(again.headers["location"])
    assert (got.status_code, got.content) == (200, png_bytes(111))


def test_public_assets_redirect_to_their_public_url(api_for: ApiFactory) -> None:
    api = api_for(S3)
    c = api.client(new_owner())
    asset = c.post(
        "/v1/uploads", params={"public": "true"}, files={"file": ("a.png", png_bytes(112))}
    ).json()
    r = c.get(f"/v1/assets/{asset['id']}/content")
    assert r.status_code == 302 and "X-Amz-Signature" not in r.headers["location"]
    with plain() as h:
        assert h.get(r.headers["location"]).content == png_bytes(112)


def test_local_store_streams_with_http_caching_and_ranges(api_for: ApiFactory) -> None:
    api = api_for(LOCAL, signed_url_expires=1)
    c = api.client(new_owner())
    data = png_bytes(113)
    asset = c.post("/v1/uploads", files={"file": ("a.png", data)}).json()
    link = f"/v1/assets/{asset['id']}/content"
    r = c.get(link)
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == "image/png"
    assert r.headers["etag"] == f'"{asset["sha256"]}"'
    assert r.headers["cache-control"].startswith("private")
    assert r.headers["accept-ranges"] == "bytes"
    assert int(r.headers["content-length"]) == len(data)

    part = c.get(link, headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == data[:10]
    assert part.headers["content-range"] == f"bytes 0-9/{len(data)}"
    tail = c.get(link, headers={"Range": "bytes=-5"})
    assert tail.status_code == 206 and tail.content == data[-5:]
    bad = c.get(link, headers={"Range": f"bytes={len(data) + 10}-"})
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{len(data)}"
    cached = c.get(link, headers={"If-None-Match": r.headers["etag"]})
    assert cached.status_code == 304 and cached.content == b""
    head = c.head(link)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(data))

    # The signed URL it came with expires; the permanent link does not.
    wait_until_rejected(asset["url"])
    assert c.get(link).content == data
    assert api.client().get(link).status_code == 401


@pytest.mark.parametrize("backend", API_BACKENDS, ids=lambda b: b.id)
def test_content_link_follows_visibility_and_delete(api_for: ApiFactory, backend: object) -> None:
    api = api_for(backend)  # type: ignore[arg-type]
    c = api.client(new_owner())
    asset = c.post("/v1/uploads", files={"file": ("a.png", png_bytes(114))}).json()
    link = f"/v1/assets/{asset['id']}/content"
    assert c.put(f"/v1/assets/{asset['id']}/visibility", json={"public": True}).status_code == 200
    r = c.get(link, follow_redirects=False)
    if r.status_code == 302:
        with plain() as h:
            r = h.get(r.headers["location"])
    assert r.content == png_bytes(114)
    assert c.delete(f"/v1/assets/{asset['id']}").status_code == 204
    assert c.get(link).status_code == 404
