"""On-the-fly transforms (``/v1/assets/{id}/render``): bounded, normalised parameters, one
decode per rendition on the media pool, and a deterministic cache key in the object store.

Two levels of normalisation:

- ``RenderRequest`` is what the caller asked for with the defaults filled in and the
  parameters that cannot matter dropped (quality for PNG, ``cover`` with one edge). It needs
  no knowledge of the image, so signatures cover it and can be checked before any lookup.
- ``RenderPlan`` is what will be made from a given source: the exact output size and whether
  it is cropped. Every request with the same plan shares one cache entry, e.g. ``w=300`` and
  ``w=300&h=5000`` on a landscape image, or any ``contain`` box larger than the source.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import tempfile
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast
from urllib.parse import urlencode

from PIL import Image, ImageOps

from ..errors import InvalidInput, ObjectExists, UnsupportedMediaType
from ..models import AssetInfo
from ..pipeline.process import DECODABLE, MediaProcessor
from ..signing import UrlSigner
from ..stores.base import ObjectStore, cache_control
from ..stores.local import LocalStore
from .image import encode
from .probe import ImageTooLarge
from .strip import CorruptMedia

MAX_EDGE = 4096
Fit = Literal["cover", "contain"]
Format = Literal["webp", "avif", "jpeg", "png"]
FITS: tuple[Fit, ...] = ("cover", "contain")
RENDER_FORMATS: tuple[Format, ...] = ("webp", "avif", "jpeg", "png")
DEFAULT_FIT: Fit = "contain"
DEFAULT_FORMAT: Format = "webp"
DEFAULT_QUALITY = 80
# Outside every owner's key space (names cannot start with "_"), so a rendition can never
# collide with an original, and the original's key can be read back out of the rendition's.
RENDITION_PREFIX = "_renditions/"
_ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


@dataclass(frozen=True)
class RenderRequest:
    w: int | None
    h: int | None
    fit: Fit
    format: Format
    quality: int | None  # None where the format has no quality (PNG)

    @classmethod
    def of(
        cls,
        w: int | None = None,
        h: int | None = None,
        fit: str | None = None,
        format: str | None = None,
        q: int | None = None,
    ) -> RenderRequest:
        for name, edge in (("w", w), ("h", h)):
            if edge is not None and not 1 <= edge <= MAX_EDGE:
                raise InvalidInput(f"{name} must be between 1 and {MAX_EDGE}")
        if q is not None and not 1 <= q <= 100:
            raise InvalidInput("q must be between 1 and 100")
        chosen_fit = fit or DEFAULT_FIT
        if chosen_fit not in FITS:
            raise InvalidInput(f"fit must be one of {', '.join(FITS)}")
        chosen_format = format or DEFAULT_FORMAT
        if chosen_format not in RENDER_FORMATS:
            raise InvalidInput(f"format must be one of {', '.join(RENDER_FORMATS)}")
        if w is None or h is None:
            chosen_fit = "contain"  # with one edge (or none) there is nothing to crop
        quality = None if chosen_format == "png" else (DEFAULT_QUALITY if q is None else q)
        return cls(w, h, cast(Fit, chosen_fit), chosen_format, quality)

    def query(self) -> str:
        """The canonical query string: defaults filled, keys in alphabetical order."""
        params: list[tuple[str, str | int]] = [("fit", self.fit), ("format", self.format)]
        if self.h is not None:
            params.append(("h", self.h))
        if self.quality is not None:
            params.append(("q", self.quality))
        if self.w is not None:
            params.append(("w", self.w))
        return urlencode(params)


@dataclass(frozen=True)
class RenderPlan:
    width: int
    height: int
    crop: bool
    format: Format
    quality: int | None

    @property
    def ext(self) -> str:
        return "jpg" if self.format == "jpeg" else self.format

    @property
    def content_type(self) -> str:
        return f"image/{self.format}"

    @property
    def slug(self) -> str:
        mode = "cover" if self.crop else "contain"
        q = "" if self.quality is None else f"-q{self.quality}"
        return f"{self.width}x{self.height}-{mode}{q}"


def _contain(src: tuple[int, int], box_w: float, box_h: float) -> tuple[int, int]:
    w, h = src
    scale = min(box_w / w, box_h / h, 1.0)  # never enlarge
    return max(1, round(w * scale)), max(1, round(h * scale))


def plan(req: RenderRequest, source: tuple[int, int]) -> RenderPlan:
    """The output for ``req`` from an image of ``source`` (display) size."""
    sw, sh = source
    if sw < 1 or sh < 1:
        raise UnsupportedMediaType("the image has no size to render from")
    if req.w is None and req.h is None:
        size = _contain(source, MAX_EDGE, MAX_EDGE)
        return RenderPlan(size[0], size[1], False, req.format, req.quality)
    if req.fit == "contain" or req.w is None or req.h is None:
        box_w = math.inf if req.w is None else req.w
        box_h = math.inf if req.h is None else req.h
        size = _contain(source, box_w, box_h)
        return RenderPlan(size[0], size[1], False, req.format, req.quality)
    bw, bh = req.w, req.h
    scale = max(bw / sw, bh / sh)
    if scale > 1:
        # A box larger than the image: crop the box's shape at the image's own scale
        # instead of enlarging (like imgproxy without enlarge).
        bw, bh = max(1, min(sw, round(bw / scale))), max(1, min(sh, round(bh / scale)))
    # A box of the image's own shape needs no crop: share the plain resize's entry.
    crop = _contain(source, bw, bh) != (bw, bh)
    return RenderPlan(bw, bh, crop, req.format, req.quality)


def rendition_key(object_key: str, p: RenderPlan) -> str:
    return f"{rendition_prefix(object_key)}{p.slug}.{p.ext}"


def rendition_prefix(object_key: str) -> str:
    """Every rendition of the object at ``object_key`` (in its bucket) starts with this."""
    return f"{RENDITION_PREFIX}{object_key}/"


def rendition_source(key: str) -> str | None:
    """The original's key for a rendition key; None for any other key."""
    if not key.startswith(RENDITION_PREFIX):
        return None
    source, sep, _name = key[len(RENDITION_PREFIX) :].rpartition("/")
    return source if sep and source else None


def display_size(asset: AssetInfo) -> tuple[int, int]:
    """The size to plan from; refuses what cannot be rendered."""
    if asset.content_type not in DECODABLE:
        raise UnsupportedMediaType(
            f"{asset.content_type} cannot be rendered", content_type=asset.content_type
        )
    if not asset.width or not asset.height:
        raise UnsupportedMediaType("the image's dimensions are unknown; it cannot be rendered")
    return asset.width, asset.height


# -- signed render URLs ---------------------------------------------------------------


def render_path(asset_id: str) -> str:
    return f"/v1/assets/{asset_id}/render"


class RenderSigner:
    """``exp``/``sig`` for a render URL: good for one asset and exactly one (canonical)
    set of parameters until ``exp``, without a token. The signed path differs from every
    file URL's, so neither kind of signature is accepted for the other."""

    def __init__(self, secret: str) -> None:
        self._signer = UrlSigner(secret)

    def query(self, asset_id: str, req: RenderRequest, expires: int) -> str:
        """The whole query string of the signed URL."""
        canonical = req.query()
        signed = self._signer.sign("GET", f"{render_path(asset_id)}?{canonical}", expires)
        return f"{canonical}&{signed}"

    def verify(
        self,
        asset_id: str,
        req: RenderRequest,
        exp: str | None,
        sig: str | None,
        now: float | None = None,
    ) -> None:
        """Raises InvalidSignature (tampered, or for other parameters) or ExpiredSignature."""
        path = f"{render_path(asset_id)}?{req.query()}"
        self._signer.verify("GET", path, exp, sig, now)


# -- the CPU part (runs on the media pool) -------------------------------------------------


def render_image(source: Path, p: RenderPlan, max_pixels: int) -> bytes:
    """Decode ``source`` once (reduced-size where the format allows), then resize or crop
    to the plan and encode."""
    try:
        with warnings.catch_warnings():
            # Our own pixel limit is checked from the header below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise ImageTooLarge(
                        f"image is {w}x{h} = {w * h} pixels; the limit is {max_pixels}"
                    )
                if img.format == "JPEG":
                    img.draft("RGB", _decode_size(img, p))
                img.load()
                ImageOps.exif_transpose(img, in_place=True)  # no full-size copy
                base: Image.Image = img
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise CorruptMedia(f"the image cannot be decoded: {exc}") from exc
    if base.mode not in ("RGB", "RGBA", "L", "LA"):
        base = base.convert("RGBA" if "transparency" in base.info else "RGB")
    size = (p.width, p.height)
    if p.crop:
        out = ImageOps.fit(base, size, Image.Resampling.LANCZOS)
    elif base.size != size:
        out = base.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
    else:
        out = base
    return encode(out, p.format, 100 if p.quality is None else p.quality)


def _decode_size(img: Image.Image, p: RenderPlan) -> tuple[int, int]:
    """The smallest raw size the plan can be cut from (DCT scaling picks at least this)."""
    w, h = img.size
    exif = img.getexif()
    rotated = exif.get(0x0112) in _ROTATED
    dw, dh = (h, w) if rotated else (w, h)
    scale = max(p.width / dw, p.height / dh) if p.crop else min(p.width / dw, p.height / dh)
    scale = min(scale, 1.0)
    need_w, need_h = max(1, math.ceil(dw * scale)), max(1, math.ceil(dh * scale))
    return (need_h, need_w) if rotated else (need_w, need_h)


# -- the cache in the object store ------------------------------------------------------


class Renditions:
    """Makes renditions on first request and finds them afterwards. Concurrent first
    requests for one rendition in this process share one decode."""

    def __init__(self, store: ObjectStore, media: MediaProcessor, max_pixels: int) -> None:
        self.store = store
        self.media = media
        self.max_pixels = max_pixels
        self._inflight: dict[tuple[str, str], asyncio.Future[None]] = {}

    async def ensure(
        self, asset: AssetInfo, p: RenderPlan, admit: Callable[[], None] | None = None
    ) -> str:
        """The rendition's key in the asset's bucket, made first if it is not there.
        ``admit`` is asked before a new one is made (it raises to refuse, e.g. a rate
        limit); finding a made one, or joining one being made, costs nothing."""
        display_size(asset)
        key = rendition_key(asset.key, p)
        if await self.store.head(asset.bucket, key) is not None:
            return key
        slot = (asset.bucket, key)
        job = self._inflight.get(slot)
        if job is None:
            if admit is not None:
                admit()
            job = asyncio.ensure_future(self._make(asset, p, key))
            self._inflight[slot] = job
            job.add_done_callback(lambda done: self._finished(slot, done))
        # Shielded: one caller hanging up must not cancel the work the others wait for.
        await asyncio.shield(job)
        return key

    def _finished(self, slot: tuple[str, str], job: asyncio.Future[None]) -> None:
        self._inflight.pop(slot, None)
        if not job.cancelled():
            job.exception()  # retrieved, so an abandoned failure is not logged as unseen

    async def _make(self, asset: AssetInfo, p: RenderPlan, key: str) -> None:
        async with self._source(asset) as path:
            data = await self.media.run(render_image, path, p, self.max_pixels)
        # Another server may have made it first: same key, same parameters, same bytes.
        with contextlib.suppress(ObjectExists):
            await self.store.put(
                asset.bucket,
                key,
                data,
                content_type=p.content_type,
                cache_control=cache_control(asset.public),
            )

    @contextlib.asynccontextmanager
    async def _source(self, asset: AssetInfo) -> AsyncIterator[Path]:
        if isinstance(self.store, LocalStore):
            path = self.store.path_for(asset.bucket, asset.key)
            # A caching store (hybrid) may hold no local copy: then read it like any other.
            if await asyncio.to_thread(path.is_file):
                yield path
                return
        fd, name = tempfile.mkstemp(prefix="mk-render-")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                async for chunk in self.store.get(asset.bucket, asset.key):
                    await asyncio.to_thread(fh.write, chunk)
            yield path
        finally:
            path.unlink(missing_ok=True)
