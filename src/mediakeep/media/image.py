"""Everything the pipeline learns from an image's pixels, from ONE decode: a decode check,
dimensions, frames, colour mode, the variants and a tiny placeholder.

Runs in a worker thread: Pillow releases the GIL while it decodes, resizes and encodes, so
threads use every core without copying bytes between processes."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import mmap
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from PIL import Image, ImageOps

from .jpeg import check_jpeg
from .png import check_png
from .strip import CorruptMedia


@dataclass(frozen=True)
class Preset:
    name: str
    width: int
    height: int
    fit: str = "fit"  # "fit" (inside the box) or "cover" (fill it, centre-cropped)
    format: str = "webp"
    quality: int = 80


@dataclass
class VariantOut:
    preset: Preset
    data: bytes | None
    width: int
    height: int
    sha256: str
    error: str | None = None

    @property
    def content_type(self) -> str:
        return f"image/{self.preset.format}"


@dataclass
class ImageReport:
    format: str
    width: int
    height: int
    frames: int
    mode: str
    placeholder: str | None = None
    variants: list[VariantOut] = field(default_factory=list)


FORMATS = {"webp": "WEBP", "jpeg": "JPEG", "png": "PNG", "avif": "AVIF"}


def _target(src: tuple[int, int], preset: Preset) -> tuple[int, int]:
    w, h = src
    if preset.fit == "cover":
        return preset.width, preset.height
    scale = min(preset.width / w, preset.height / h, 1.0)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _resize(img: Image.Image, preset: Preset) -> Image.Image:
    if preset.fit == "cover":
        return ImageOps.fit(img, (preset.width, preset.height), Image.Resampling.LANCZOS)
    size = _target(img.size, preset)
    if size == img.size:
        return img
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)


def encode(img: Image.Image, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    pil_format = FORMATS[fmt]
    if pil_format == "JPEG" and img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    options: dict[str, object] = {"quality": quality}
    if pil_format == "WEBP":
        # method 2 encodes ~4x faster than the default 4 at a few % larger files (measured
        # on 256 px thumbnails here): thumbnails are made far more often than fetched twice.
        options["method"] = 2
    img.save(buf, pil_format, **options)
    return buf.getvalue()


def _needed_scale(presets: list[Preset], size: tuple[int, int]) -> tuple[int, int]:
    """The smallest decode size from which every preset can still be made."""
    w, h = size
    need = 0.0
    for p in presets:
        if p.fit == "cover":
            need = max(need, p.width / w, p.height / h)
        else:
            need = max(need, min(p.width / w, p.height / h))
    need = min(need, 1.0)
    return max(1, int(w * need + 0.999)), max(1, int(h * need + 0.999))


def analyse(
    path: Path | IO[bytes],
    content_type: str,
    presets: list[Preset],
    placeholder: bool,
    decode: bool = False,
) -> ImageReport:
    """Decode once, verify, and make every preset from that decode (largest first).

    When nothing needs the pixels (no presets, no placeholder) and ``decode`` is off, PNG
    and JPEG are checked for structure instead of decoded: every PNG chunk's CRC, every
    JPEG segment and table (see ``jpeg.check_jpeg``)."""
    try:
        with warnings.catch_warnings():
            # The pipeline enforced its own pixel limit from the header already.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
            fmt = img.format or "?"
            frames = int(getattr(img, "n_frames", 1))
            mode = img.mode
            size = img.size
            cheap = not presets and not placeholder and not decode
            if cheap and fmt in ("PNG", "JPEG"):
                with _bytes_of(path) as data:
                    (check_png if fmt == "PNG" else check_jpeg)(data)
            else:
                if fmt == "JPEG":
                    # DCT scaling: decode at (at least) the size the variants need; the
                    # entropy-coded data is still read in full, so damage is still found.
                    want = (
                        _needed_scale(presets, size)
                        if presets
                        else (max(1, size[0] // 8), max(1, size[1] // 8))
                    )
                    img.draft("RGB", want)
                img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise CorruptMedia(f"the image cannot be decoded: {exc}") from exc
    if not (cheap and fmt == "PNG") and img.getexif().get(0x0112) in (5, 6, 7, 8):
        # The size people see: viewers turn the image by the orientation tag we keep, and
        # layouts (and render's size arithmetic) need that size, not the stored one.
        size = (size[1], size[0])
    report = ImageReport(format=fmt, width=size[0], height=size[1], frames=frames, mode=mode)
    if not presets and not placeholder:
        return report
    # In place: without an orientation to apply, a copy would cost a full-size image.
    ImageOps.exif_transpose(img, in_place=True)
    base: Image.Image = img
    if base.mode not in ("RGB", "RGBA", "L", "LA"):
        base = base.convert("RGBA" if "transparency" in base.info else "RGB")
    ordered = sorted(presets, key=lambda p: p.width * p.height, reverse=True)
    current = base
    made: list[VariantOut] = []
    for preset in ordered:
        try:
            # Each preset is cut from the previous (larger) one: far cheaper than from the
            # full image, and the chain only ever shrinks.
            source = current if _fits(current.size, preset) else base
            out = _resize(source, preset)
            data = encode(out, preset.format, preset.quality)
            made.append(
                VariantOut(preset, data, out.width, out.height, hashlib.sha256(data).hexdigest())
            )
            if preset.fit == "fit":
                current = out
        except Exception as exc:  # one preset failing must not lose the others
            made.append(VariantOut(preset, None, 0, 0, "", error=f"{type(exc).__name__}: {exc}"))
    report.variants = [v for p in presets for v in made if v.preset is p]
    if placeholder:
        tiny = current.copy()
        tiny.thumbnail((16, 16))
        blob = encode(tiny, "webp", 30)
        report.placeholder = "data:image/webp;base64," + base64.b64encode(blob).decode()
    return report


@contextmanager
def _bytes_of(source: Path | IO[bytes]) -> Iterator[bytes | mmap.mmap]:
    """The whole file as one buffer: the one in memory, or a read-only map of the file
    (a body too large to be kept in memory was spooled to disk)."""
    if isinstance(source, io.BytesIO):
        yield source.getvalue()
        return
    with contextlib.ExitStack() as stack:
        f = stack.enter_context(source.open("rb")) if isinstance(source, Path) else source
        if os.fstat(f.fileno()).st_size == 0:
            yield b""
            return
        yield stack.enter_context(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))


def _fits(size: tuple[int, int], preset: Preset) -> bool:
    w, h = size
    if preset.fit == "cover":
        return w >= preset.width and h >= preset.height
    return w >= preset.width or h >= preset.height
