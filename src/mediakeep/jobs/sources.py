"""What a job item's source text becomes: a URL to fetch, or a ``data:`` URI decoded in
memory (never fetched: the bytes are already here)."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote_to_bytes, urlsplit

from ..errors import FileTooLarge, InvalidInput, InvalidUrl
from ..pipeline.sources import BytesSource, Source, UrlSource


def is_data_uri(value: str) -> bool:
    return value[:5].lower() == "data:"


def data_uri_type(value: str) -> str:
    head = value[5 : value.find(",")] if "," in value else ""
    mime = head.split(";", 1)[0].strip().lower()
    return mime or "text/plain"


def describe(value: str) -> str:
    """A short, loggable name: URLs as they are, data: URIs by type and size only."""
    if is_data_uri(value):
        comma = value.find(",")
        length = len(value) - comma - 1 if comma >= 0 else 0
        return f"data:{data_uri_type(value)} ({length} characters)"
    return value[:512]


def decode_data_uri(value: str, max_size: int) -> tuple[str, bytes]:
    """(declared type, bytes) of a data: URI; base64 or percent-encoded."""
    comma = value.find(",")
    if not is_data_uri(value) or comma < 0:
        raise InvalidInput("not a data: URI")
    head, payload = value[5:comma], value[comma + 1 :]
    params = [p.strip().lower() for p in head.split(";")]
    # Checked before decoding: base64 inflates by 4/3, so this bounds the work done.
    if len(payload) > max_size * 4 // 3 + 4:
        raise FileTooLarge(f"the data: URI holds more than the limit of {max_size} bytes")
    try:
        if "base64" in params[1:]:
            data = base64.b64decode("".join(payload.split()), validate=True)
        else:
            data = unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"the data: URI is not valid base64: {exc}") from exc
    if len(data) > max_size:
        raise FileTooLarge(f"the data: URI holds more than the limit of {max_size} bytes")
    return data_uri_type(value), data


def check_source(value: str) -> None:
    """Refuse, at submission, what no worker could ever store."""
    if is_data_uri(value):
        if "," not in value:
            raise InvalidInput("a data: URI needs a comma before its payload")
        return
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise InvalidUrl(f"only http(s) URLs and data: URIs can be ingested: {describe(value)}")


def source_for(value: str, max_size: int) -> Source:
    if is_data_uri(value):
        _mime, data = decode_data_uri(value, max_size)
        return BytesSource(data, describe(value))
    return UrlSource(value)
