"""The PNG structure check that images get when nothing needs their pixels."""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable

import pytest
from PIL import Image

from mediakeep.media.png import check_png
from mediakeep.media.strip import CorruptMedia
from tests.media.test_strip_and_analyse import picture


def png(**options: object) -> bytes:
    mode = str(options.pop("mode", "RGB"))
    buf = io.BytesIO()
    picture((120, 80)).convert(mode).save(buf, "PNG", **options)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "1"])
def test_every_kind_of_png_an_encoder_writes_passes(mode: str) -> None:
    check_png(png(mode=mode))
    check_png(png(mode=mode, optimize=True))


def test_an_animated_png_passes() -> None:
    frames = [Image.new("RGB", (30, 20), (i * 60, 0, 0)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "PNG", save_all=True, append_images=frames[1:])
    check_png(buf.getvalue())


def _flip_crc(data: bytes) -> bytes:
    at = data.index(b"IDAT")
    length = struct.unpack(">I", data[at - 4 : at])[0]
    crc_at = at + 4 + length
    return data[:crc_at] + bytes([data[crc_at] ^ 1]) + data[crc_at + 1 :]


def _first_chunk(kind: bytes) -> bytes:
    body = b"\x00" * 13
    crc = struct.pack(">I", zlib.crc32(kind + body))
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + kind + body + crc


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "signature": lambda d: b"\x89PNX" + d[4:],
    "cut short": lambda d: d[: len(d) // 2],
    "IEND removed": lambda d: d[:-12],
    "a chunk's CRC": _flip_crc,
    "a chunk longer than the file": lambda d: d[:33] + b"\x7f\xff\xff\x00" + d[37:],
    "not starting with IHDR": lambda d: _first_chunk(b"tEXt") + d[33:],
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=list(DAMAGE))
def test_damage_is_refused(damage: Callable[[bytes], bytes]) -> None:
    with pytest.raises(CorruptMedia):
        check_png(damage(png()))


def test_random_damage_is_refused_whenever_pillow_verify_refuses_it() -> None:
    rng = random.Random(20261203)
    original = png(mode="RGBA")
    refused_by_pillow = 0
    for _ in range(300):
        data = bytearray(original)
        for _ in range(rng.choice((1, 4))):
            data[rng.randrange(8, len(data))] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[: rng.randrange(9, len(data))]
        sample = bytes(data)
        try:
            Image.open(io.BytesIO(sample)).verify()
            pillow_ok = True
        except Exception:
            pillow_ok = False
        try:
            check_png(sample)
            walk_ok = True
        except CorruptMedia:
            walk_ok = False
        refused_by_pillow += not pillow_ok
        assert walk_ok <= pillow_ok
    assert refused_by_pillow > 200  # a CRC covers every byte: nearly all damage is seen
