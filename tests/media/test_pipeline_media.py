"""Media processing inside the store pipeline, on every database x store combination."""

from __future__ import annotations

import io
import math
import struct
import wave
import zlib
from fractions import Fraction
from pathlib import Path

import av
import pytest
from PIL import Image

from mediakeep import MediaKeep
from tests.conftest import KeepFactory
from tests.core.helpers import assert_nothing_stored, keys_in_store
from tests.media.test_strip_and_analyse import jpeg_with_gps, picture


async def read_back(keep: MediaKeep, bucket: str, key: str) -> bytes:
    return b"".join([c async for c in keep.store.get(bucket, key)])


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def video(path: Path, codec: str, fmt: str, frames: int = 12) -> bytes:
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=24)
        stream.width, stream.height = 160, 96  # type: ignore[union-attr]
        stream.pix_fmt = "yuv420p"  # type: ignore[union-attr]
        for i in range(frames):
            img = Image.new("RGB", (160, 96), (i * 20 % 256, 80, 160))
            frame = av.VideoFrame.from_image(img)
            for packet in stream.encode(frame):  # type: ignore[union-attr]
                out.mux(packet)
        for packet in stream.encode():  # type: ignore[union-attr]
            out.mux(packet)
    return path.read_bytes()


def wav_bytes(seconds: float = 0.5, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(
            b"".join(
                struct.pack("<h", int(8000 * math.sin(i / 10))) for i in range(int(rate * seconds))
            )
        )
    return buf.getvalue()


def mp3_bytes(path: Path) -> bytes:
    with av.open(str(path), "w", format="mp3") as out:
        stream = out.add_stream(
            "libmp3lame" if "libmp3lame" in av.codecs_available else "mp3", rate=22050
        )
        for i in range(20):
            frame = av.AudioFrame(format="s16", layout="mono", samples=1152)
            frame.planes[0].update(bytes(2304))
            frame.sample_rate = 22050
            frame.pts = i * 1152
            frame.time_base = Fraction(1, 22050)
            for packet in stream.encode(frame):  # type: ignore[union-attr]
                out.mux(packet)
        for packet in stream.encode():  # type: ignore[union-attr]
            out.mux(packet)
    return path.read_bytes()


async def test_gps_exif_is_not_stored(keep: MediaKeep, owner: str) -> None:
    data = jpeg_with_gps()
    r = await keep.put_bytes(data, owner=owner)
    assert r.status == "stored", r.error
    assert r.asset is not None
    stored = await read_back(keep, r.asset.bucket, r.asset.key)
    assert b"CameraMaker" not in stored
    assert Image.open(io.BytesIO(stored)).getexif().get(0x8825) is None
    # What we report is what we stored.
    import hashlib

    assert r.sha256 == hashlib.sha256(stored).hexdigest() and r.size == len(stored)
    assert (r.asset.media_info or {}).get("metadata_removed", 0) > 0


async def test_metadata_kept_where_configured(keeps: KeepFactory, owner: str) -> None:
    keep = await keeps.open(keep_metadata_collections=("archive",))
    r = await keep.put_bytes(jpeg_with_gps(), owner=owner, collection="archive")
    assert r.asset is not None
    assert b"CameraMaker" in await read_back(keep, r.asset.bucket, r.asset.key)


async def test_variants_are_made_recorded_and_stored(keep: MediaKeep, owner: str) -> None:
    buf = io.BytesIO()
    picture((1024, 768)).save(buf, "PNG")
    r = await keep.put_bytes(buf.getvalue(), owner=owner)
    assert r.status == "stored" and r.asset is not None
    assert (r.asset.width, r.asset.height) == (1024, 768)
    info = r.asset.media_info or {}
    assert info["format"] == "PNG" and info["frames"] == 1
    assert str(info["placeholder"]).startswith("data:image/webp;base64,")
    variants = (await keep.repo.variants_for([r.asset.object_id]))[r.asset.object_id]
    got = {v.preset: (v.status, v.width, v.height) for v in variants}
    assert got == {
        "thumb": ("stored", 256, 192),
        "small": ("stored", 112, 112),
        "tiny": ("stored", 56, 56),
    }
    for v in variants:
        assert v.key == (r.key or "").replace(".png", f"_{v.preset}.webp")
        data = await read_back(keep, v.bucket, v.key)
        assert Image.open(io.BytesIO(data)).size == (v.width, v.height)
    assert len(await keys_in_store(keep, owner, variants=True)) == 4
    await keep.delete(r.id or "", owner=owner)
    await assert_nothing_stored(keep, owner)


async def test_a_failing_variant_never_fails_the_original(keeps: KeepFactory, owner: str) -> None:
    keep = await keeps.open(
        variant_presets={
            "good": {"width": 32, "height": 32},
            "bad": {"width": 0, "height": 0, "fit": "cover"},
        }
    )
    buf = io.BytesIO()
    picture((200, 200)).save(buf, "PNG")
    r = await keep.put_bytes(buf.getvalue(), owner=owner)
    assert r.status == "stored" and r.asset is not None
    variants = {
        v.preset: v for v in (await keep.repo.variants_for([r.asset.object_id]))[r.asset.object_id]
    }
    assert variants["good"].status == "stored"
    assert variants["bad"].status == "failed" and variants["bad"].error


async def test_giant_png_header_is_refused_cheaply(keep: MediaKeep, owner: str) -> None:
    r = await keep.put_bytes(png_header_only(100_000, 100_000), owner=owner)
    assert r.error and r.error["code"] == "image_too_large"
    await assert_nothing_stored(keep, owner)


NO_PIXELS_NEEDED = {"variants_enabled": False, "placeholders": False}


@pytest.mark.parametrize("pixels", ["variants", "no variants"])
async def test_truncated_and_corrupt_jpegs_are_refused(
    keeps: KeepFactory, owner: str, pixels: str
) -> None:
    # With variants the image is decoded anyway; without, its structure is walked instead.
    keep = await keeps.open(**({} if pixels == "variants" else NO_PIXELS_NEEDED))
    buf = io.BytesIO()
    picture((400, 300)).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    cut = await keep.put_bytes(data[: len(data) // 2], owner=owner)
    assert cut.status == "failed"
    # Intact segments, a Huffman table whose code counts overflow.
    dht = data.index(b"\xff\xc4")
    garbled = data[: dht + 5] + b"\xff" * 16 + data[dht + 21 :]
    bad = await keep.put_bytes(garbled, owner=owner)
    assert bad.status == "failed"
    assert bad.error and bad.error["code"] in ("corrupt_media", "unsupported_media_type")
    await assert_nothing_stored(keep, owner)
    good = await keep.put_bytes(jpeg_with_gps(6), owner=owner)
    assert good.status == "stored" and good.asset is not None
    # Orientation 6: the size people see is the stored one turned on its side.
    assert (good.asset.width, good.asset.height) == (200, 320)
    assert (good.asset.media_info or {})["format"] == "JPEG"


def png_with_broken_pixels() -> bytes:
    """A PNG whose every chunk and CRC is sound but whose compressed pixels are not."""
    buf = io.BytesIO()
    picture((64, 64)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    at = data.index(b"IDAT")
    length = struct.unpack(">I", data[at - 4 : at])[0]
    data[at + 4 + length // 2 : at + 4 + length // 2 + 8] = b"\x00" * 8
    crc = zlib.crc32(bytes(data[at : at + 4 + length])) & 0xFFFFFFFF
    data[at + 4 + length : at + 8 + length] = struct.pack(">I", crc)
    return bytes(data)


async def test_image_check_decode_also_refuses_damage_inside_the_pixels(
    keeps: KeepFactory, owner: str
) -> None:
    walked = await keeps.open(**NO_PIXELS_NEEDED)
    kept = await walked.put_bytes(png_with_broken_pixels(), owner=owner)
    # The structure check keeps what the provider sent: every chunk is intact.
    assert kept.status == "stored", kept.error
    decoding = await keeps.open(**NO_PIXELS_NEEDED, image_check="decode")
    other = f"{owner}x"
    refused = await decoding.put_bytes(png_with_broken_pixels(), owner=other)
    assert refused.status == "failed"
    assert refused.error and refused.error["code"] == "corrupt_media"
    await assert_nothing_stored(decoding, other)


async def test_animated_gif_records_frames(keep: MediaKeep, owner: str) -> None:
    frames = [Image.new("RGB", (40, 30), (i * 50, 255 - i * 50, 0)) for i in range(4)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=60, loop=0)
    r = await keep.put_bytes(buf.getvalue(), owner=owner)
    assert r.content_type == "image/gif" and r.asset is not None
    assert (r.asset.media_info or {})["frames"] == 4


async def test_webp_and_avif_are_probed(keep: MediaKeep, owner: str) -> None:
    for fmt, mime in (("WEBP", "image/webp"), ("AVIF", "image/avif")):
        buf = io.BytesIO()
        picture((300, 200)).save(buf, fmt)
        r = await keep.put_bytes(buf.getvalue(), owner=owner)
        assert r.content_type == mime, r.error
        assert r.asset is not None and (r.asset.width, r.asset.height) == (300, 200)


async def test_videos_are_probed_with_a_poster(keep: MediaKeep, owner: str, tmp_path: Path) -> None:
    for codec, fmt, mime in (
        ("libx264" if "libx264" in av.codecs_available else "mpeg4", "mp4", "video/mp4"),
        ("libvpx", "webm", "video/webm"),
    ):
        data = video(tmp_path / f"clip.{fmt}", codec, fmt)
        r = await keep.put_bytes(data, owner=owner)
        assert r.content_type == mime, r.error
        assert r.asset is not None
        a = await keep.get(r.id or "")
        assert (a.width, a.height) == (160, 96)
        assert a.duration and 0.3 < a.duration < 1.0
        info = a.media_info or {}
        assert info["video_codec"] and info["fps"] == 24
        variants = (await keep.repo.variants_for([a.object_id]))[a.object_id]
        poster = [v for v in variants if v.preset == "poster"]
        assert poster and poster[0].status == "stored"
        img = Image.open(io.BytesIO(await read_back(keep, poster[0].bucket, poster[0].key)))
        assert img.size == (160, 96)


async def test_audio_is_probed(keep: MediaKeep, owner: str, tmp_path: Path) -> None:
    wav = await keep.put_bytes(wav_bytes(), owner=owner)
    assert wav.content_type == "audio/wav", wav.error
    a = await keep.get(wav.id or "")
    assert a.duration and abs(a.duration - 0.5) < 0.05
    assert (a.media_info or {})["audio_codec"] == "pcm_s16le"
    mp3 = await keep.put_bytes(mp3_bytes(tmp_path / "a.mp3"), owner=owner)
    assert mp3.content_type == "audio/mpeg", mp3.error
    b = await keep.get(mp3.id or "")
    assert b.duration and b.duration > 0.5
