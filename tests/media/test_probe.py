"""Dimensions from an image's first bytes: the header read that refuses decompression bombs
before anything is decoded."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable

import pytest
from PIL import Image

from mediakeep.media.probe import ImageTooLarge, probe_header
from mediakeep.pipeline.sniff import sniff
from tests.media.test_strip_and_analyse import jpeg_with_gps, picture

HEAD = 64 * 1024
LIMIT = 100_000_000


def encoded(fmt: str, size: tuple[int, int], **options: object) -> bytes:
    buf = io.BytesIO()
    picture(size).save(buf, fmt, **options)
    return buf.getvalue()


CASES = {
    "png": encoded("PNG", (321, 123)),
    "jpeg": encoded("JPEG", (200, 300)),
    "progressive jpeg": encoded("JPEG", (64, 48), progressive=True),
    "jpeg with exif": jpeg_with_gps(6),
    "jpeg with a long comment": encoded("JPEG", (90, 70), comment=b"x" * 20_000),
    "gif": encoded("GIF", (33, 44)),
    "webp": encoded("WEBP", (120, 80)),
}


@pytest.mark.parametrize("data", CASES.values(), ids=list(CASES))
def test_header_size_is_what_pillow_reads(data: bytes) -> None:
    info = probe_header(data[:HEAD], sniff(data[:HEAD]), LIMIT)
    assert (info.width, info.height) == Image.open(io.BytesIO(data)).size


def _png_claiming(width: int, height: int) -> bytes:
    data = bytearray(CASES["png"])
    data[16:24] = struct.pack(">II", width, height)
    return bytes(data)


def _jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(CASES["jpeg"])
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize("claim", [_png_claiming, _jpeg_claiming], ids=["png", "jpeg"])
def test_a_header_claiming_too_many_pixels_is_refused(claim: Callable[[int, int], bytes]) -> None:
    data = claim(30_000, 30_000)
    with pytest.raises(ImageTooLarge):
        probe_header(data[:HEAD], sniff(data), LIMIT)
    small = claim(300, 200)
    assert probe_header(small[:HEAD], sniff(small), LIMIT).width == 300


def test_a_frame_header_past_the_head_leaves_the_size_to_the_decode() -> None:
    data = encoded("JPEG", (50, 40), comment=b"x" * 65_000)
    info = probe_header(data[:1024], "image/jpeg", LIMIT)
    assert (info.width, info.height) == (None, None)
