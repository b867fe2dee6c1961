"""Variants in asset responses, /variants, and on-the-fly renditions over real HTTP, on
sqlite+local (streamed) and postgres+s3 (redirected)."""

from __future__ import annotations

import io
import time
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from PIL import Image

from mediakeep import MediaKeep
from mediakeep.maintenance.gc import collect_garbage
from mediakeep.media.render import rendition_prefix
from tests.api.conftest import API_BACKENDS, Api, ApiFactory, new_owner, plain
from tests.conftest import Backend
from tests.media.test_pipeline_media import wav_bytes
from tests.media.test_strip_and_analyse import picture

LOCAL, S3 = API_BACKENDS


def png(size: tuple[int, int] = (400, 300), seed: int = 0) -> bytes:
    img = picture(size)
    img.putpixel((0, 0), (seed % 256, 0, 0))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def upload(c: httpx.Client, data: bytes, name: str = "p.png", **params: str) -> dict[str, Any]:
    r = c.post("/v1/uploads", params=params, files={"file": (name, data)})
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def follow(c: httpx.Client, path: str, **params: Any) -> httpx.Response:
    """The response for a link that streams (local store) or redirects (object stores)."""
    r = c.get(path, params=params)
    if r.status_code == 302:
        with plain() as h:
            return h.get(r.headers["location"])
    return r


def image_of(r: httpx.Response) -> Image.Image:
    assert r.status_code == 200, r.text
    return Image.open(io.BytesIO(r.content))


async def rendition_keys(api: Api, bucket: str, key: str) -> list[str]:
    async with MediaKeep(api.settings) as keep:
        return [i.key async for i in keep.store.list_objects(bucket, rendition_prefix(key))]


def bucket_of(api: Api, asset: dict[str, Any]) -> str:
    public = asset.get("public", False)  # uploads here are private unless asked
    return api.settings.public_bucket if public else api.settings.private_bucket


# -- variants ----------------------------------------------------------------------------


def test_asset_responses_carry_variants_media_info_and_version(api: Api) -> None:
    c = api.client(new_owner())
    up = upload(c, png((1024, 768)), collection="gal", slot="hero")
    asset = c.get(f"/v1/assets/{up['id']}").json()
    assert asset["version"] == 1
    assert asset["media_info"]["format"] == "PNG"
    assert asset["media_info"]["placeholder"].startswith("data:image/webp;base64,")
    variants = asset["variants"]
    assert {k: (v["width"], v["height"]) for k, v in variants.items()} == {
        "thumb": (256, 192),
        "small": (112, 112),
        "tiny": (56, 56),
    }
    for v in variants.values():
        with plain() as h:
            got = h.get(v["url"])
        assert Image.open(io.BytesIO(got.content)).size == (v["width"], v["height"])
    listed = c.get("/v1/assets", params={"collection": "gal"}).json()["items"]
    assert listed[0]["variants"].keys() == variants.keys()
    moved = c.put(f"/v1/assets/{up['id']}/visibility", json={"public": True}).json()["asset"]
    assert moved["public"] and set(moved["variants"]) == set(variants)
    with plain() as h:
        assert h.get(moved["variants"]["thumb"]["url"]).status_code == 200


def test_a_list_signs_all_its_variant_urls_in_one_call(api: Api) -> None:
    c = api.client(new_owner())
    for i in range(4):
        upload(c, png((300, 200), seed=i), name=f"{i}.png")
    store = api.service.server.config.app.state.keep.store  # type: ignore[attr-defined]
    calls: list[int] = []
    original = store.sign_get_async

    async def counting(bucket: str, keys: Any, expires_in: int) -> list[str]:
        calls.append(len(keys))
        result: list[str] = await original(bucket, keys, expires_in)
        return result

    store.sign_get_async = counting
    try:
        items = c.get("/v1/assets").json()["items"]
    finally:
        del store.sign_get_async
    assert len(items) == 4 and all(len(a["variants"]) == 3 for a in items)
    assert calls == [12]


def test_variants_route_lists_failed_ones_too(api_for: ApiFactory) -> None:
    api = api_for(
        LOCAL,
        variant_presets={
            "good": {"width": 32, "height": 32},
            "bad": {"width": 0, "height": 0, "fit": "cover"},
        },
    )
    owner = new_owner()
    c = api.client(owner)
    up = upload(c, png())
    body = c.get(f"/v1/assets/{up['id']}/variants").json()
    by_name = {v["name"]: v for v in body["variants"]}
    assert by_name["good"]["status"] == "stored" and by_name["good"]["url"]
    assert (by_name["good"]["width"], by_name["good"]["height"]) == (32, 24)
    assert by_name["bad"]["status"] == "failed" and by_name["bad"]["error"]
    assert by_name["bad"]["url"] is None
    # Only stored ones are in the asset itself.
    assert set(c.get(f"/v1/assets/{up['id']}").json()["variants"]) == {"good"}
    other = api.client(new_owner())
    assert other.get(f"/v1/assets/{up['id']}/variants").status_code == 404


# -- rendering -------------------------------------------------------------------------


@pytest.mark.parametrize("backend", API_BACKENDS, ids=lambda b: b.id)
async def test_render_makes_caches_and_shares_renditions(
    backend: Backend, api_for: ApiFactory
) -> None:
    api = api_for(backend)
    c = api.client(new_owner())
    up = upload(c, png((400, 300)))
    path = f"/v1/assets/{up['id']}/render"

    first = c.get(path, params={"w": 100})
    assert first.status_code == (200 if backend is LOCAL else 302)
    img = image_of(follow(c, path, w=100))
    assert (img.format, img.size) == ("WEBP", (100, 75))
    # Equivalent requests: the same single cached rendition.
    for params in ({"w": 100, "h": 4000}, {"h": 75, "q": 80, "fit": "contain"}):
        assert image_of(follow(c, path, **params)).size == (100, 75)
    bucket = bucket_of(api, up)
    assert len(await rendition_keys(api, bucket, up["key"])) == 1

    cover = image_of(follow(c, path, w=64, h=64, fit="cover", format="jpeg", q=60))
    assert (cover.format, cover.size) == ("JPEG", (64, 64))
    # Never enlarged: a box bigger than the image is the image's own size.
    assert image_of(follow(c, path, w=4000, format="png")).size == (400, 300)
    assert image_of(follow(c, path, format="avif")).format == "AVIF"
    assert len(await rendition_keys(api, bucket, up["key"])) == 4

    # Deleted with the asset.
    assert c.delete(f"/v1/assets/{up['id']}").status_code == 204
    assert await rendition_keys(api, bucket, up["key"]) == []
    assert c.get(path, params={"w": 100}).status_code == 404

    # Public assets' renditions are public objects next to them.
    pub = upload(c, png((400, 300), seed=3), public="true")
    img = image_of(follow(c, f"/v1/assets/{pub['id']}/render", w=40, format="png"))
    assert img.size == (40, 30)
    assert len(await rendition_keys(api, api.settings.public_bucket, pub["key"])) == 1


def test_local_renditions_are_served_with_validators(api_for: ApiFactory) -> None:
    api = api_for(LOCAL)
    c = api.client(new_owner())
    up = upload(c, png())
    path = f"/v1/assets/{up['id']}/render"
    r = c.get(path, params={"w": 50, "format": "png"})
    assert r.headers["content-type"] == "image/png" and r.headers["etag"]
    assert "immutable" in r.headers["cache-control"]
    same = c.get(path, params={"format": "png", "h": 1000, "q": 3, "w": 50})
    assert same.headers["etag"] == r.headers["etag"] and same.content == r.content
    assert (
        c.get(
            path, params={"w": 50, "format": "png"}, headers={"If-None-Match": r.headers["etag"]}
        ).status_code
        == 304
    )
    head = c.head(path, params={"w": 50, "format": "png"})
    assert head.status_code == 200 and head.headers["content-length"] == str(len(r.content))


def test_render_refusals(api: Api) -> None:
    owner = new_owner()
    c = api.client(owner)
    up = upload(c, png())
    path = f"/v1/assets/{up['id']}/render"
    for params in ({"w": 4097}, {"h": 0}, {"q": 0}, {"q": 101}, {"fit": "fill"}, {"format": "gif"}):
        r = c.get(path, params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    sound = upload(c, wav_bytes(), name="a.wav")
    r = c.get(f"/v1/assets/{sound['id']}/render", params={"w": 10})
    assert r.status_code == 415 and r.json()["code"] == "unsupported_media_type"
    assert api.client().get(path, params={"w": 10}).status_code == 401
    assert api.client(new_owner()).get(path, params={"w": 10}).status_code == 404


# -- signed render URLs ----------------------------------------------------------------


def _with(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return parts._replace(query=urlencode(query)).geturl()


@pytest.mark.parametrize("backend", API_BACKENDS, ids=lambda b: b.id)
def test_signed_render_urls_need_no_token(backend: Backend, api_for: ApiFactory) -> None:
    api = api_for(backend)
    c = api.client(new_owner())
    up = upload(c, png((400, 300), seed=1))
    other = upload(c, png((400, 300), seed=2))
    minted = c.post(
        f"/v1/assets/{up['id']}/render-url",
        json={"w": 80, "h": 80, "fit": "cover", "format": "webp"},
    )
    assert minted.status_code == 200, minted.text
    body = minted.json()
    assert body["params"] == "fit=cover&format=webp&h=80&q=80&w=80"
    with plain() as h:
        got = h.get(body["url"], follow_redirects=True)
        assert Image.open(io.BytesIO(got.content)).size == (80, 80)
        # Tampered parameters, signature, expiry, or another asset: refused.
        for bad in (
            _with(body["url"], w="81"),
            _with(body["url"], sig="A" * 43),
            _with(body["url"], exp=str(int(time.time()) + 10**6)),
            body["url"].replace(up["id"], other["id"]),
        ):
            r = h.get(bad)
            assert r.status_code == 403, bad
            assert r.json()["code"] == "invalid_signature"
    # Unsigned, without a token: 401 as before.
    assert api.client().get(f"/v1/assets/{up['id']}/render", params={"w": 80}).status_code == 401


def test_signed_render_urls_expire(api_for: ApiFactory) -> None:
    api = api_for(LOCAL)
    c = api.client(new_owner())
    up = upload(c, png())
    url = c.post(f"/v1/assets/{up['id']}/render-url", json={"w": 30, "expires_in": 1}).json()["url"]
    deadline = time.monotonic() + 15
    with plain() as h:
        while (r := h.get(url)).status_code == 200:
            assert time.monotonic() < deadline, "the signed render URL never expired"
            time.sleep(0.25)
    assert r.status_code == 403 and r.json()["code"] == "expired_signature"


def test_render_url_refusals(api: Api) -> None:
    c = api.client(new_owner())
    up = upload(c, png())
    path = f"/v1/assets/{up['id']}/render-url"
    assert c.post(path, json={"w": 5000}).status_code == 422
    assert c.post(path, json={"expires_in": 0}).status_code == 422
    assert c.post(path, json={"fit": "cover", "extra": 1}).status_code == 422
    assert api.client(new_owner()).post(path, json={}).status_code == 404
    sound = upload(c, wav_bytes(), name="a.wav")
    assert c.post(f"/v1/assets/{sound['id']}/render-url", json={}).status_code == 415


async def test_gc_orphan_sweep_keeps_live_renditions(api_for: ApiFactory) -> None:
    api = api_for(LOCAL)
    c = api.client(new_owner())
    up = upload(c, png())
    path = f"/v1/assets/{up['id']}/render"
    first = c.get(path, params={"w": 40})
    bucket = bucket_of(api, up)
    async with MediaKeep(api.settings) as keep:
        # Renditions have no rows of their own; the sweep and gc must still know them.
        await keep.sweep(orphans=True)
        await collect_garbage(keep, grace=timedelta(0))
    assert len(await rendition_keys(api, bucket, up["key"])) == 1
    assert c.get(path, params={"w": 40}).content == first.content


def test_new_renditions_are_rate_limited_per_owner_and_made_ones_are_not(
    api_for: ApiFactory,
) -> None:
    api = api_for(LOCAL, render_rate_limit=2)
    owner = new_owner()
    c = api.client(owner)
    up = upload(c, png((400, 300), seed=3))
    path = f"/v1/assets/{up['id']}/render"
    assert image_of(follow(c, path, w=40)).size == (40, 30)
    assert image_of(follow(c, path, w=80)).size == (80, 60)
    # A third new size within the minute: refused before any decode, with when to retry.
    r = c.get(path, params={"w": 60})
    assert r.status_code == 429, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "rate_limited" and "rendition" in r.json()["detail"]
    assert int(r.headers["retry-after"]) >= 1
    # Renditions already made are served as often as asked.
    for _ in range(5):
        assert image_of(follow(c, path, w=40)).size == (40, 30)
    # Another owner has a budget of their own.
    other = api.client(new_owner())
    theirs = upload(other, png((400, 300), seed=4))
    assert follow(other, f"/v1/assets/{theirs['id']}/render", w=60).status_code == 200
