"""Streaming removal of privacy-sensitive metadata (EXIF with GPS, XMP, IPTC, text chunks)
from images, without re-encoding pixels.

Filters take the byte stream chunk by chunk and give back what should be stored, so the
original never has to sit in memory whole. JPEG orientation survives as a minimal EXIF
block holding only the Orientation tag: viewers keep rotating the image as intended.
"""

from __future__ import annotations

import struct
import tempfile
from typing import Protocol

from ..errors import UnsupportedMediaType


class CorruptMedia(UnsupportedMediaType):
    code = "corrupt_media"
    status = 422


class MetadataFilter(Protocol):
    removed: int

    def feed(self, chunk: bytes) -> bytes: ...

    def close(self) -> bytes: ...


def orientation_exif(orientation: int) -> bytes:
    """An APP1 segment whose EXIF holds only the Orientation tag (big-endian TIFF)."""
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8)
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    ifd += struct.pack(">I", 0)
    payload = b"Exif\x00\x00" + tiff + ifd
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def exif_orientation(payload: bytes) -> int | None:
    """Orientation (1-8) from an APP1 Exif payload, or None."""
    if not payload.startswith(b"Exif\x00\x00") or len(payload) < 14:
        return None
    tiff = payload[6:]
    order = tiff[:2]
    if order == b"II":
        end = "<"
    elif order == b"MM":
        end = ">"
    else:
        return None
    try:
        (ifd_off,) = struct.unpack(end + "I", tiff[4:8])
        (count,) = struct.unpack(end + "H", tiff[ifd_off : ifd_off + 2])
        for i in range(count):
            entry = tiff[ifd_off + 2 + 12 * i : ifd_off + 14 + 12 * i]
            tag, typ, _n = struct.unpack(end + "HHI", entry[:8])
            if tag == 0x0112 and typ == 3:
                (value,) = struct.unpack(end + "H", entry[8:10])
                return value if 1 <= value <= 8 else None
    except struct.error:
        return None
    return None


# Segments that describe the image for people, not pixels for decoders.
_JPEG_DROP = {0xE1, 0xED, 0xFE}  # APP1 (EXIF, XMP), APP13 (IPTC), COM


class JpegFilter:
    """Drops APP1/APP13/COM segments before the first scan; passes the rest untouched."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._started = False
        self._in_scan = False
        self._orientation: int | None = None
        self.removed = 0

    def feed(self, chunk: bytes) -> bytes:
        if self._in_scan:
            return chunk
        self._buf += chunk
        out = bytearray()
        buf = self._buf
        pos = 0
        if not self._started:
            if len(buf) < 2:
                return b""
            if buf[:2] != b"\xff\xd8":
                raise CorruptMedia("JPEG does not start with SOI")
            out += buf[:2]
            pos = 2
            self._started = True
        while True:
            if len(buf) - pos < 4:
                break
            if buf[pos] != 0xFF:
                raise CorruptMedia("JPEG segment structure is broken")
            marker = buf[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            (length,) = struct.unpack(">H", buf[pos + 2 : pos + 4])
            if length < 2:
                raise CorruptMedia("JPEG segment length is invalid")
            if marker == 0xDA:  # start of scan: everything after is entropy-coded data
                self._in_scan = True
                if self._orientation not in (None, 1):
                    out += orientation_exif(self._orientation or 1)
                    self._orientation = None
                out += buf[pos:]
                self._buf = bytearray()
                return bytes(out)
            end = pos + 2 + length
            if len(buf) < end:
                break
            segment = bytes(buf[pos:end])
            if marker in _JPEG_DROP:
                if marker == 0xE1 and self._orientation is None:
                    self._orientation = exif_orientation(segment[4:])
                self.removed += len(segment)
            else:
                if not 0xE0 <= marker <= 0xEF and self._orientation not in (None, 1):
                    # Put the orientation back after the APPn run, where readers look.
                    out += orientation_exif(self._orientation or 1)
                    self._orientation = None
                out += segment
            pos = end
        self._buf = bytearray(buf[pos:])
        return bytes(out)

    def close(self) -> bytes:
        if not self._in_scan:
            raise CorruptMedia("JPEG ends before its image data")
        rest = bytes(self._buf)
        self._buf = bytearray()
        return rest


_PNG_DROP = {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"}
_PNG_SIG = b"\x89PNG\r\n\x1a\n"


class PngFilter:
    """Drops text, EXIF and time chunks; image chunks pass through unchanged."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._sig = False
        self._skip = 0  # bytes left of a dropped chunk
        self._copy = 0  # bytes left of a kept chunk
        self.removed = 0

    def feed(self, chunk: bytes) -> bytes:
        # Kept bytes are passed on as runs of the input, not copied chunk by chunk: image
        # data is nearly all of a PNG, so most inputs come back as the very same object.
        view = memoryview(chunk)
        n = len(chunk)
        pos = 0
        start = 0  # where the current run of kept input bytes began
        pieces: list[bytes | memoryview] = []
        while pos < n:
            if self._copy:
                k = min(self._copy, n - pos)
                self._copy -= k
                pos += k
                continue
            if self._skip:
                if start < pos:
                    pieces.append(view[start:pos])
                k = min(self._skip, n - pos)
                self.removed += k
                self._skip -= k
                pos += k
                start = pos
                continue
            header_at = pos
            if not self._buf and n - pos >= 8:
                head = chunk[pos : pos + 8]
                pos += 8
                split = False
            else:
                # A header cut by the input's boundary waits in _buf for the rest.
                if start < pos:
                    pieces.append(view[start:pos])
                take = min(8 - len(self._buf), n - pos)
                self._buf += view[pos : pos + take]
                pos += take
                start = pos
                if len(self._buf) < 8:
                    break
                head = bytes(self._buf)
                self._buf = bytearray()
                split = True
            if not self._sig:
                if head != _PNG_SIG:
                    raise CorruptMedia("PNG signature is wrong")
                self._sig = True
                if split:
                    pieces.append(head)
                continue
            length = int.from_bytes(head[:4], "big")
            if head[4:8] in _PNG_DROP:
                if not split and start < header_at:
                    pieces.append(view[start:header_at])
                self.removed += 8
                self._skip = length + 4  # data + CRC
                start = pos
            else:
                if split:
                    pieces.append(head)
                self._copy = length + 4
        if start < pos:
            if not pieces and start == 0 and pos == n:
                return chunk
            pieces.append(view[start:pos])
        return b"".join(pieces)

    def close(self) -> bytes:
        if self._buf or self._copy or self._skip:
            raise CorruptMedia("PNG ends inside a chunk")
        return b""


_WEBP_DROP = {b"EXIF", b"XMP "}
_SPOOL_LIMIT = 8 * 1024 * 1024


class WebpFilter:
    """WebP keeps EXIF/XMP at the end and its header counts every byte, so the file is
    spooled (memory up to 8 MiB, then disk) and rewritten at the end."""

    def __init__(self) -> None:
        self._spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_LIMIT)  # noqa: SIM115
        self.removed = 0

    def feed(self, chunk: bytes) -> bytes:
        self._spool.write(chunk)
        return b""

    def close(self) -> bytes:
        spool = self._spool
        spool.seek(0)
        header = spool.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WEBP":
            raise CorruptMedia("WebP header is broken")
        chunks: list[bytes] = []
        vp8x_index: int | None = None
        while True:
            head = spool.read(8)
            if not head:
                break
            if len(head) < 8:
                raise CorruptMedia("WebP ends inside a chunk header")
            ctype = head[:4]
            (size,) = struct.unpack("<I", head[4:])
            body = spool.read(size + (size & 1))
            if len(body) < size:
                raise CorruptMedia("WebP ends inside a chunk")
            if ctype in _WEBP_DROP:
                self.removed += 8 + len(body)
                continue
            if ctype == b"VP8X":
                vp8x_index = len(chunks)
            chunks.append(head + body)
        if vp8x_index is not None:
            vp8x = bytearray(chunks[vp8x_index])
            vp8x[8] &= ~(0x08 | 0x04) & 0xFF  # clear the EXIF and XMP flags
            chunks[vp8x_index] = bytes(vp8x)
        payload = b"".join(chunks)
        spool.close()
        return b"RIFF" + struct.pack("<I", 4 + len(payload)) + b"WEBP" + payload


def filter_for(content_type: str) -> MetadataFilter | None:
    if content_type == "image/jpeg":
        return JpegFilter()
    if content_type == "image/png":
        return PngFilter()
    if content_type == "image/webp":
        return WebpFilter()
    return None
