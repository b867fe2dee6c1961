"""On-the-fly renditions: parameter normalisation, signatures, the one-decode renderer on
real images, and the cache in the store (made once, kept by gc, deleted with its object)."""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mediakeep import MediaKeep
from mediakeep.errors import ExpiredSignature, InvalidInput, InvalidSignature
from mediakeep.media import render as render_mod
from mediakeep.media.image import analyse
from mediakeep.media.render import (
    RENDITION_PREFIX,
    RenderPlan,
    RenderRequest,
    RenderSigner,
    Renditions,
    plan,
    render_image,
    rendition_key,
    rendition_prefix,
    rendition_source,
)
from tests.media.test_strip_and_analyse import DEFAULTS, gps_exif, picture


def image_bytes(fmt: str, size: tuple[int, int] = (400, 300), **save: Any) -> bytes:
    buf = io.BytesIO()
    img = picture(size)
    if fmt == "PNG":
        img = img.convert("RGBA")
    img.save(buf, fmt, **save)
    return buf.getvalue()


# -- normalisation ---------------------------------------------------------------------


def test_defaults_are_filled_and_irrelevant_parameters_dropped() -> None:
    r = RenderRequest.of(w=300)
    assert (r.fit, r.format, r.quality) == ("contain", "webp", 80)
    assert r == RenderRequest.of(w=300, fit="contain", format="webp", q=80)
    # cover needs both edges; with one it is contain.
    assert RenderRequest.of(w=300, fit="cover") == RenderRequest.of(w=300)
    # PNG has no quality, so any q names the same rendition.
    assert RenderRequest.of(w=10, format="png", q=5) == RenderRequest.of(w=10, format="png")
    assert RenderRequest.of(w=10, format="png").query() == "fit=contain&format=png&w=10"
    # One canonical order, whatever the caller's.
    assert RenderRequest.of(h=2, w=1, fit="cover", q=9).query() == (
        "fit=cover&format=webp&h=2&q=9&w=1"
    )


@pytest.mark.parametrize(
    "kw",
    [{"w": 0}, {"h": 4097}, {"q": 0}, {"q": 101}, {"fit": "fill"}, {"format": "gif"}],
)
def test_parameters_are_bounded(kw: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        RenderRequest.of(**kw)


def test_equivalent_requests_share_one_plan() -> None:
    src = (1024, 768)
    by_width = plan(RenderRequest.of(w=300), src)
    assert (by_width.width, by_width.height, by_width.crop) == (300, 225, False)
    assert plan(RenderRequest.of(w=300, h=4000), src) == by_width
    assert plan(RenderRequest.of(h=225), src) == by_width
    # A cover box of the image's own shape needs no crop: the same entry as contain.
    assert plan(RenderRequest.of(w=300, h=225, fit="cover"), src) == by_width
    # contain never enlarges: any box at least as big as the source is the source size.
    full = plan(RenderRequest.of(w=4096, h=4096), src)
    assert (full.width, full.height) == src
    assert plan(RenderRequest.of(), src) == full
    assert plan(RenderRequest.of(w=2000), src) == full


def test_cover_crops_and_never_enlarges() -> None:
    src = (1024, 768)
    square = plan(RenderRequest.of(w=100, h=100, fit="cover"), src)
    assert (square.width, square.height, square.crop) == (100, 100, True)
    big = plan(RenderRequest.of(w=2048, h=2048, fit="cover"), src)
    assert (big.width, big.height, big.crop) == (768, 768, True)
    assert big == plan(RenderRequest.of(w=4000, h=4000, fit="cover"), src)


def test_no_edge_given_is_bounded_by_the_maximum_edge() -> None:
    p = plan(RenderRequest.of(), (8000, 2000))
    assert (p.width, p.height) == (4096, 1024)


def test_rendition_keys_name_their_original() -> None:
    p = plan(RenderRequest.of(w=300, format="jpeg", q=70), (1024, 768))
    key = rendition_key("alice/c/abc.png", p)
    assert key == "_renditions/alice/c/abc.png/300x225-contain-q70.jpg"
    assert key.startswith(rendition_prefix("alice/c/abc.png"))
    assert rendition_source(key) == "alice/c/abc.png"
    assert rendition_source("alice/c/abc.png") is None
    assert rendition_source(f"{RENDITION_PREFIX}loose") is None


# -- signatures ------------------------------------------------------------------------


def test_signatures_cover_the_asset_the_parameters_and_the_expiry() -> None:
    signer = RenderSigner("s3cret")
    req = RenderRequest.of(w=300, h=200, fit="cover")
    query = dict(p.split("=", 1) for p in signer.query("a1", req, 2_000_000_000).split("&"))
    exp, sig = query["exp"], query["sig"]
    signer.verify("a1", req, exp, sig, now=1_999_999_999)
    # The same parameters written differently are the same request.
    signer.verify("a1", RenderRequest.of(h=200, w=300, fit="cover", q=80), exp, sig, now=0)
    with pytest.raises(InvalidSignature):
        signer.verify("a2", req, exp, sig, now=0)
    with pytest.raises(InvalidSignature):
        signer.verify("a1", RenderRequest.of(w=301, h=200, fit="cover"), exp, sig, now=0)
    with pytest.raises(InvalidSignature):
        signer.verify("a1", req, str(int(exp) + 1), sig, now=0)
    with pytest.raises(InvalidSignature):
        RenderSigner("other").verify("a1", req, exp, sig, now=0)
    with pytest.raises(InvalidSignature):
        signer.verify("a1", req, None, sig)
    with pytest.raises(ExpiredSignature):
        signer.verify("a1", req, exp, sig, now=2_000_000_001)


# -- the renderer on real files --------------------------------------------------------


@pytest.mark.parametrize("source_format", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize("out_format", ["webp", "jpeg", "png", "avif"])
def test_render_makes_exactly_the_planned_image(
    tmp_path: Path, source_format: str, out_format: str
) -> None:
    src = tmp_path / "src"
    src.write_bytes(image_bytes(source_format))
    for req in (
        RenderRequest.of(w=120, format=out_format),
        RenderRequest.of(w=64, h=64, fit="cover", format=out_format, q=50),
    ):
        p = plan(req, (400, 300))
        out = Image.open(io.BytesIO(render_image(src, p, 10**8)))
        assert (
            out.format == {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF"}[out_format]
        )
        assert out.size == (p.width, p.height)


def test_rotated_jpeg_is_rendered_as_seen(tmp_path: Path) -> None:
    src = tmp_path / "rotated.jpg"
    # Stored 400x300 with orientation 6: people see it 300x400.
    src.write_bytes(image_bytes("JPEG", exif=gps_exif(orientation=6)))
    report = analyse(src, "image/jpeg", [], False)
    assert (report.width, report.height) == (300, 400)
    with_variants = analyse(src, "image/jpeg", DEFAULTS, True)
    assert (with_variants.width, with_variants.height) == (300, 400)
    assert (with_variants.variants[0].width, with_variants.variants[0].height) == (192, 256)
    p = plan(RenderRequest.of(w=150), (report.width, report.height))
    assert (p.width, p.height) == (150, 200)
    out = Image.open(io.BytesIO(render_image(src, p, 10**8)))
    assert out.size == (150, 200)


def test_animated_gif_renders_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (80, 60), c) for c in ((255, 0, 0), (0, 0, 255))]
    src = tmp_path / "anim.gif"
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=50, loop=0)
    p = plan(RenderRequest.of(w=40, format="png"), (80, 60))
    out = Image.open(io.BytesIO(render_image(src, p, 10**8))).convert("RGB")
    assert out.size == (40, 30)
    r, _g, b = out.getpixel((20, 15))  # type: ignore[misc]
    assert r > 200 and b < 50


def test_render_refuses_images_over_the_pixel_limit(tmp_path: Path) -> None:
    src = tmp_path / "big.png"
    src.write_bytes(image_bytes("PNG"))
    p = RenderPlan(10, 10, False, "webp", 80)
    with pytest.raises(Exception, match="limit"):
        render_image(src, p, 1000)


# -- the cache in the store ------------------------------------------------------------


async def test_renditions_are_made_once_off_the_loop_and_kept(
    keep: MediaKeep, owner: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = await keep.put_bytes(image_bytes("PNG"), owner=owner)
    assert stored.asset is not None
    asset = stored.asset
    threads: list[str] = []

    def counting(*args: Any) -> bytes:
        threads.append(threading.current_thread().name)
        return render_image(*args)

    monkeypatch.setattr(render_mod, "render_image", counting)
    renditions = Renditions(keep.store, keep.media, keep.settings.max_image_pixels)
    p = plan(RenderRequest.of(w=100), (400, 300))
    keys = await asyncio.gather(*(renditions.ensure(asset, p) for _ in range(8)))
    assert set(keys) == {rendition_key(asset.key, p)}
    assert len(threads) == 1 and threads[0].startswith("mk-media")
    data = b"".join([c async for c in keep.store.get(asset.bucket, keys[0])])
    assert Image.open(io.BytesIO(data)).size == (100, 75)
    # Found in the store from now on, in this process or any other.
    again = Renditions(keep.store, keep.media, keep.settings.max_image_pixels)
    assert await again.ensure(asset, plan(RenderRequest.of(w=100, h=999), (400, 300))) == keys[0]
    assert len(threads) == 1


async def test_gc_keeps_renditions_of_live_objects_and_delete_removes_them(
    keep: MediaKeep, owner: str
) -> None:
    stored = await keep.put_bytes(image_bytes("PNG"), owner=owner)
    assert stored.asset is not None
    asset = stored.asset
    renditions = Renditions(keep.store, keep.media, keep.settings.max_image_pixels)
    made = [
        await renditions.ensure(asset, plan(RenderRequest.of(w=w), (400, 300))) for w in (50, 90)
    ]
    stray = f"{RENDITION_PREFIX}{owner}/gone/deleted.png/10x10-contain-q80.webp"
    await keep.store.put(
        asset.bucket, stray, b"x", content_type="image/webp", cache_control="private"
    )
    candidates = [*made, stray]
    assert await keep.repo.known_keys(asset.bucket, candidates) == set(made)
    # The orphan sweep's decision, on just these keys (the buckets are shared by tests).
    assert await keep._drop_unknown(asset.bucket, candidates) == 1
    assert await keep.store.head(asset.bucket, stray) is None
    for key in made:
        assert await keep.store.head(asset.bucket, key) is not None

    await keep.delete(asset.id, owner=owner)
    listed = [i.key async for i in keep.store.list_objects(asset.bucket, RENDITION_PREFIX)]
    assert not [k for k in listed if k.startswith(rendition_prefix(asset.key))]
    assert await keep.store.head(asset.bucket, asset.key) is None
