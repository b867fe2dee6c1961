"""Metadata stripping and one-decode analysis, on real files made here."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from mediakeep.media.image import Preset, analyse
from mediakeep.media.strip import CorruptMedia, JpegFilter, PngFilter, WebpFilter, filter_for

DEFAULTS = [
    Preset("thumb", 256, 256, "fit"),
    Preset("small", 112, 112, "cover"),
    Preset("tiny", 56, 56, "cover"),
]


def gps_exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "CameraMaker"
    gps = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}
    exif[0x8825] = gps
    return exif


def picture(size: tuple[int, int] = (320, 200)) -> Image.Image:
    img = Image.new("RGB", size, (20, 40, 60))
    for x in range(0, size[0], 7):
        for y in range(0, size[1], 5):
            img.putpixel((x, y), (x % 256, y % 256, 128))
    return img


def jpeg_with_gps(orientation: int = 1) -> bytes:
    buf = io.BytesIO()
    picture().save(buf, "JPEG", exif=gps_exif(orientation), quality=90)
    return buf.getvalue()


def run_filter(flt: JpegFilter | PngFilter | WebpFilter, data: bytes, step: int) -> bytes:
    out = bytearray()
    for i in range(0, len(data), step):
        out += flt.feed(data[i : i + step])
    out += flt.close()
    return bytes(out)


@pytest.mark.parametrize("step", [1, 7, 4096, 10**7])
def test_jpeg_gps_is_removed_whatever_the_chunking(step: int) -> None:
    data = jpeg_with_gps()
    assert 0x8825 in Image.open(io.BytesIO(data)).getexif()
    flt = JpegFilter()
    out = run_filter(flt, data, step)
    img = Image.open(io.BytesIO(out))
    assert img.getexif().get(0x8825) is None
    assert img.getexif().get(0x010F) is None
    assert b"CameraMaker" not in out
    assert flt.removed > 0
    img.load()
    assert img.size == (320, 200)


def test_jpeg_orientation_survives_alone() -> None:
    out = run_filter(JpegFilter(), jpeg_with_gps(orientation=6), 1000)
    exif = Image.open(io.BytesIO(out)).getexif()
    assert exif.get(0x0112) == 6
    assert exif.get(0x8825) is None and b"CameraMaker" not in out


def test_png_text_and_exif_chunks_are_removed() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "secret location")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>gps</x:xmpmeta>")
    buf = io.BytesIO()
    picture().save(buf, "PNG", pnginfo=info, exif=gps_exif())
    data = buf.getvalue()
    out = run_filter(PngFilter(), data, 333)
    assert b"secret location" not in out and b"xmpmeta" not in out and b"eXIf" not in out
    img = Image.open(io.BytesIO(out))
    img.load()
    assert img.size == (320, 200)


def png_chunks_kept(data: bytes) -> bytes:
    """What the filter must produce: the signature and every chunk but the metadata ones."""
    out, pos = bytearray(data[:8]), 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        end = pos + 12 + length
        if data[pos + 4 : pos + 8] not in (b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"):
            out += data[pos:end]
        pos = end
    return bytes(out)


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=40_000), max_size=12))
def test_png_filter_output_does_not_depend_on_where_the_input_is_cut(cuts: list[int]) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "secret location")
    buf = io.BytesIO()
    picture((400, 300)).save(buf, "PNG", pnginfo=info, exif=gps_exif(), compress_level=0)
    data = buf.getvalue()
    flt = PngFilter()
    out = bytearray()
    for a, b in itertools.pairwise([0, *sorted(set(cuts)), len(data)]):
        if a < b <= len(data):
            out += flt.feed(data[a:b])
    out += flt.close()
    assert bytes(out) == png_chunks_kept(data)
    assert flt.removed == len(data) - len(out)


def test_png_filter_passes_image_data_through_without_copying() -> None:
    buf = io.BytesIO()
    picture((400, 300)).save(buf, "PNG", compress_level=0)
    data = buf.getvalue()
    flt = PngFilter()
    flt.feed(data[:100])
    # A piece that lies inside one kept chunk comes back as the same object.
    middle = data[100:5000]
    assert flt.feed(middle) is middle


def test_webp_exif_is_removed() -> None:
    buf = io.BytesIO()
    picture().save(buf, "WEBP", exif=gps_exif(), quality=80)
    data = buf.getvalue()
    assert b"CameraMaker" in data
    out = run_filter(WebpFilter(), data, 500)
    assert b"CameraMaker" not in out
    img = Image.open(io.BytesIO(out))
    img.load()
    assert img.size == (320, 200)


def test_broken_structure_is_refused() -> None:
    with pytest.raises(CorruptMedia):
        run_filter(JpegFilter(), b"\xff\xd8\xff\xe1\x00", 10)
    with pytest.raises(CorruptMedia):
        run_filter(PngFilter(), b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00", 10)
    assert filter_for("image/gif") is None


def test_one_decode_makes_every_variant(tmp_path: Path) -> None:
    src = tmp_path / "in.jpg"
    picture((1024, 768)).save(src, "JPEG", quality=90)
    report = analyse(src, "image/jpeg", DEFAULTS, placeholder=True)
    assert (report.width, report.height, report.frames, report.format) == (1024, 768, 1, "JPEG")
    sizes = {v.preset.name: (v.width, v.height) for v in report.variants}
    assert sizes == {"thumb": (256, 192), "small": (112, 112), "tiny": (56, 56)}
    for v in report.variants:
        assert v.data is not None and Image.open(io.BytesIO(v.data)).format == "WEBP"
    assert report.placeholder and report.placeholder.startswith("data:image/webp;base64,")
    assert len(report.placeholder) < 600


def test_animated_gif_frames_are_counted(tmp_path: Path) -> None:
    src = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (40, 40), (i * 50, 255 - i * 50, 0)) for i in range(5)]
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=50, loop=0)
    report = analyse(src, "image/gif", DEFAULTS, placeholder=False)
    assert report.frames == 5


def test_truncated_images_fail_the_decode_check(tmp_path: Path) -> None:
    for fmt, suffix in (("JPEG", "jpg"), ("PNG", "png")):
        buf = io.BytesIO()
        picture((600, 600)).save(buf, fmt)
        data = buf.getvalue()
        src = tmp_path / f"cut.{suffix}"
        src.write_bytes(data[: len(data) // 2])
        with pytest.raises(CorruptMedia):
            analyse(src, f"image/{fmt.lower()}", [], placeholder=False)
        with pytest.raises(CorruptMedia):
            analyse(src, f"image/{fmt.lower()}", DEFAULTS, placeholder=True)
