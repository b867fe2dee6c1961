"""The JPEG structure check that images get when nothing needs their pixels."""

from __future__ import annotations

import io
import random
import struct
import tempfile
from collections.abc import Callable

import pytest

from mediakeep.media.image import analyse
from mediakeep.media.jpeg import check_jpeg
from mediakeep.media.strip import CorruptMedia
from tests.media.test_strip_and_analyse import jpeg_with_gps, picture


def jpeg(**options: object) -> bytes:
    img = picture((240, 160))
    mode = options.pop("mode", "RGB")
    buf = io.BytesIO()
    img.convert(str(mode)).save(buf, "JPEG", **options)
    return buf.getvalue()


WRITTEN = {
    "baseline": {},
    "progressive": {"progressive": True},
    "optimized": {"optimize": True},
    "4:4:4": {"subsampling": 0, "quality": 95},
    "grayscale": {"mode": "L"},
    "cmyk": {"mode": "CMYK"},
    "restart markers": {"restart_marker_blocks": 1},
    "low quality": {"quality": 5},
}


@pytest.mark.parametrize("options", WRITTEN.values(), ids=list(WRITTEN))
def test_every_kind_of_jpeg_a_encoder_writes_passes(options: dict[str, object]) -> None:
    check_jpeg(jpeg(**options))


def test_jpeg_with_exif_and_trailing_bytes_after_eoi_passes() -> None:
    # Some cameras and tools append data after EOI; the image is still whole.
    check_jpeg(jpeg_with_gps(6) + b"\x00" * 40)


def _segment(data: bytes, marker: int) -> int:
    return data.index(bytes([0xFF, marker]))


def _with_dht_counts(counts: list[int], symbols: bytes) -> bytes:
    data = jpeg()
    at = _segment(data, 0xC4)
    length = struct.unpack(">H", data[at + 2 : at + 4])[0]
    table = bytes([0x00]) + bytes(counts) + symbols
    segment = b"\xff\xc4" + struct.pack(">H", 2 + len(table)) + table
    return data[:at] + segment + data[at + 2 + length :]


def _cut_entropy(data: bytes) -> bytes:
    sos = _segment(data, 0xDA)
    return data[: (sos + len(data)) // 2]


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "no SOI": lambda d: b"\x00\x00" + d[2:],
    "cut inside the image data": _cut_entropy,
    "cut inside a segment": lambda d: d[: _segment(d, 0xDB) + 20],
    "EOI removed": lambda d: d[: d.rindex(b"\xff\xd9")],
    "a reserved marker inside the image data": lambda d: (
        d[: (_segment(d, 0xDA) + len(d)) // 2]
        + b"\xff\x05"
        + d[(_segment(d, 0xDA) + len(d)) // 2 :]
    ),
    "a second SOI": lambda d: d[:2] + b"\xff\xd8" + d[2:],
    "broken segment length": lambda d: (
        d[: _segment(d, 0xDB) + 2] + b"\x00\x01" + d[_segment(d, 0xDB) + 4 :]
    ),
    "no frame header": lambda d: (
        d[: _segment(d, 0xC0)]
        + d[
            _segment(d, 0xC0)
            + 2
            + struct.unpack(">H", d[_segment(d, 0xC0) + 2 : _segment(d, 0xC0) + 4])[0] :
        ]
    ),
    "quantisation table of the wrong size": lambda d: (
        d[: _segment(d, 0xDB) + 2]
        + struct.pack(">H", 2 + 1 + 60)
        + d[_segment(d, 0xDB) + 4 : _segment(d, 0xDB) + 4 + 61]
        + d[_segment(d, 0xDB) + 4 + 65 :]
    ),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=list(DAMAGE))
def test_damage_is_refused(damage: Callable[[bytes], bytes]) -> None:
    with pytest.raises(CorruptMedia):
        check_jpeg(damage(jpeg()))


def test_huffman_tables_a_decoder_rejects_are_refused() -> None:
    # Two 1-bit codes would use the all-ones code, which JPEG reserves.
    with pytest.raises(CorruptMedia, match="code space"):
        check_jpeg(_with_dht_counts([2] + [0] * 15, b"\x00\x01"))
    # Counts that claim more codes than a table may hold (the test the pipeline runs).
    with pytest.raises(CorruptMedia):
        check_jpeg(_with_dht_counts([255] * 16, b""))
    # DC tables code magnitude categories 0-15 only.
    with pytest.raises(CorruptMedia, match="category"):
        check_jpeg(_with_dht_counts([0, 1] + [0] * 14, b"\x20"))


def test_a_scan_must_name_the_frames_components() -> None:
    data = jpeg(mode="L")
    sos = _segment(data, 0xDA)
    # Component selector 1 -> 9: the frame has only component 1.
    assert data[sos + 5] == 1
    bad = data[: sos + 5] + b"\x09" + data[sos + 6 :]
    with pytest.raises(CorruptMedia, match="component"):
        check_jpeg(bad)


def test_random_damage_is_refused_about_as_often_as_by_a_decode() -> None:
    """The structure check stands in for a full decode when no variant is made: on random
    damage it must refuse at least as much as libjpeg does, and fail only as CorruptMedia.
    (A decode does find some damage inside a progressive scan's bits that no walk can:
    one sample in this set.)"""
    rng = random.Random(20261203)
    originals = [jpeg(), jpeg(progressive=True), jpeg_with_gps(), jpeg(mode="L")]
    refused_by_decode = refused_by_walk = only_by_decode = 0
    for i in range(400):
        data = bytearray(originals[i % len(originals)])
        for _ in range(rng.choice((1, 3, 10))):
            data[rng.randrange(2, len(data))] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[: rng.randrange(4, len(data))]
        sample = bytes(data)
        try:
            check_jpeg(sample)
            walk_ok = True
        except CorruptMedia:
            walk_ok = False
        try:
            analyse(io.BytesIO(sample), "image/jpeg", [], False, decode=True)
            decode_ok = True
        except CorruptMedia:
            decode_ok = False
        refused_by_decode += not decode_ok
        refused_by_walk += not walk_ok
        only_by_decode += walk_ok and not decode_ok
    assert refused_by_decode > 80  # the damage was real, not all cosmetic
    assert refused_by_walk >= refused_by_decode
    assert only_by_decode <= refused_by_decode // 50


def test_structure_mode_reports_the_same_facts_as_a_decode() -> None:
    for data in (jpeg_with_gps(6), jpeg(progressive=True), jpeg(mode="CMYK")):
        walked = analyse(io.BytesIO(data), "image/jpeg", [], False)
        decoded = analyse(io.BytesIO(data), "image/jpeg", [], False, decode=True)
        assert walked == decoded
    # Orientation 6 turns a 320x200 picture on its side: the size people see.
    assert analyse(io.BytesIO(jpeg_with_gps(6)), "image/jpeg", [], False).width == 200


def test_a_jpeg_spooled_to_disk_is_checked_from_the_file() -> None:
    data = jpeg()
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.seek(0)
        report = analyse(f, "image/jpeg", [], False)
    assert (report.width, report.height) == (240, 160)
    with tempfile.TemporaryFile() as f:
        f.write(_cut_entropy(data))
        f.seek(0)
        with pytest.raises(CorruptMedia):
            analyse(f, "image/jpeg", [], False)
