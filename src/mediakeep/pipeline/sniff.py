"""Content type from magic bytes. The server's Content-Type and the URL's extension are
never consulted: they are what an attacker controls."""

from __future__ import annotations

SNIFF_BYTES = 4096

EXTENSIONS: dict[str, str] = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/avif": "avif",
    "image/heic": "heic",
    "image/bmp": "bmp",
    "image/tiff": "tiff",
    "image/svg+xml": "svg",
    "video/mp4": "mp4",
    "video/quicktime": "mov",
    "video/webm": "webm",
    "video/x-matroska": "mkv",
    "audio/mpeg": "mp3",
    "audio/wav": "wav",
    "audio/ogg": "ogg",
    "audio/flac": "flac",
    "audio/mp4": "m4a",
    "audio/webm": "weba",
    "application/pdf": "pdf",
    "application/zip": "zip",
    "application/gzip": "gz",
    "text/html": "html",
    "application/octet-stream": "bin",
}

_FTYP_BRANDS: dict[bytes, str] = {
    b"avif": "image/avif",
    b"avis": "image/avif",
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"mif1": "image/heic",
    b"msf1": "image/heic",
    b"qt  ": "video/quicktime",
    b"M4A ": "audio/mp4",
    b"M4B ": "audio/mp4",
    b"F4A ": "audio/mp4",
}


def _ftyp(head: bytes) -> str:
    brand = head[8:12]
    if brand in _FTYP_BRANDS:
        return _FTYP_BRANDS[brand]
    # HEIF files often carry a generic major brand; the compatible brands decide.
    size = int.from_bytes(head[0:4], "big")
    compat = head[16 : min(size, len(head), 256)]
    for i in range(0, len(compat) - 3, 4):
        b = compat[i : i + 4]
        if b in (b"avif", b"avis"):
            return "image/avif"
        if b in (b"heic", b"heix"):
            return "image/heic"
    return "video/mp4"


def _ebml(head: bytes) -> str:
    # The DocType element names the flavour; webm and matroska share the container.
    if b"webm" in head[:64]:
        return "video/webm"
    return "video/x-matroska"


def _looks_like_markup(head: bytes) -> str | None:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<?xml") or text.startswith(b"<svg"):
        return "image/svg+xml" if b"<svg" in text[:1024] else "text/html"
    for tag in (b"<!doctype html", b"<html", b"<head", b"<body", b"<script", b"<iframe"):
        if text.startswith(tag):
            return "text/html"
    return None


def sniff(head: bytes) -> str:
    """Return the MIME type the bytes really are, or application/octet-stream."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return _ftyp(head)
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return _ebml(head)
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    if head.startswith(b"BM") and len(head) >= 14:
        return "image/bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"PK\x03\x04"):
        return "application/zip"
    if head.startswith(b"\x1f\x8b"):
        return "application/gzip"
    markup = _looks_like_markup(head)
    if markup:
        return markup
    return "application/octet-stream"


def media_kind(content_type: str) -> str:
    major = content_type.split("/", 1)[0]
    return major if major in ("image", "video", "audio") else "other"


def extension_for(content_type: str) -> str:
    return EXTENSIONS.get(content_type, "bin")


def check_complete(content_type: str, tail: bytes, size: int) -> str | None:
    """Cheap structural check on the last bytes: catches bodies cut short (or a server that
    announced fewer bytes than the file has). Returns a reason when the file is truncated."""
    if content_type == "image/png":
        if size < 57 or not tail.endswith(b"IEND\xaeB`\x82"):
            return "PNG has no IEND chunk: the file is truncated"
    elif content_type == "image/jpeg":
        if size < 125 or b"\xff\xd9" not in tail:
            return "JPEG has no end-of-image marker: the file is truncated"
    elif content_type == "image/gif":
        if not tail.rstrip(b"\x00").endswith(b";"):
            return "GIF has no trailer: the file is truncated"
    elif content_type in ("image/webp", "audio/wav") and size < 16:
        return "RIFF file is too short"
    return None
