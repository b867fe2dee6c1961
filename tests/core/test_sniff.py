"""Content types come from the bytes."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from mediakeep.pipeline.sniff import check_complete, sniff


def image(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [
        ("PNG", "image/png"),
        ("JPEG", "image/jpeg"),
        ("GIF", "image/gif"),
        ("WEBP", "image/webp"),
        ("BMP", "image/bmp"),
        ("TIFF", "image/tiff"),
    ],
)
def test_images_are_recognised_and_complete(fmt: str, mime: str) -> None:
    data = image(fmt)
    assert sniff(data[:4096]) == mime
    assert check_complete(mime, data[-1024:], len(data)) is None


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", "video/mp4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ", "video/quicktime"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", "image/avif"),
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic", "image/heic"),
        (b"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00M4A isom", "audio/mp4"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "video/webm"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska", "video/x-matroska"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00", "audio/mpeg"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "audio/wav"),
        (b"OggS\x00\x02", "audio/ogg"),
        (b"fLaC\x00\x00\x00\x22", "audio/flac"),
        (b"<!DOCTYPE html><html>", "text/html"),
        (b"  <html><script>", "text/html"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg">', "image/svg+xml"),
        (b"\x1f\x8b\x08\x00", "application/gzip"),
        (b"plain text", "application/octet-stream"),
    ],
)
def test_containers_and_impostors(head: bytes, mime: str) -> None:
    assert sniff(head) == mime


def test_truncated_images_are_detected() -> None:
    png = image("PNG")
    assert check_complete("image/png", png[:-20][-1024:], len(png) - 20) is not None
    jpg = image("JPEG")
    assert check_complete("image/jpeg", jpg[:200][-1024:], 200) is not None
