"""Reading fal.ai results: where the media are, and what else the result says.

fal describes every output file as a *File* object, ``{"url", "content_type",
"file_name", "file_size", "width", "height"}``, found under keys such as ``images[]``,
``image``, ``video``, ``audio``, ``audio_file``, at any depth and inside lists. In sync
mode the ``url`` is a ``data:`` URI carrying the bytes themselves."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput
from ..jobs.sources import data_uri_type, is_data_uri

MAX_DEPTH = 64
# Keys whose plain-string value is a media URL (some endpoints return one bare).
_URL_KEYS = frozenset(
    {"image_url", "video_url", "audio_url", "mask_url", "file_url", "model_url", "url"}
)
_METADATA_LIMIT = 64 * 1024


@dataclass
class MediaRef:
    """One media reference in a result, in document order."""

    path: str  # JSON pointer (RFC 6901) to the File object or string
    url: str
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    file_name: str | None = None
    file_size: int | None = None


def pointer(parts: list[str | int]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _is_url(value: object) -> bool:
    if not isinstance(value, str) or len(value) < 8:
        return False
    lower = value[:8].lower()
    return lower.startswith(("http://", "https://")) or is_data_uri(value)


def _is_media_data_uri(value: str) -> bool:
    return is_data_uri(value) and data_uri_type(value).split("/")[0] in ("image", "video", "audio")


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object, limit: int = 255) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def find_media(result: Any) -> list[MediaRef]:
    """Every media reference in a fal result, in document order."""
    found: list[MediaRef] = []

    def walk(value: Any, path: list[str | int], key: str | None) -> None:
        if len(path) > MAX_DEPTH:
            raise InvalidInput("the result is nested too deeply")
        if isinstance(value, dict):
            url = value.get("url")
            if isinstance(url, str) and _is_url(url):
                found.append(
                    MediaRef(
                        path=pointer(path),
                        url=url,
                        content_type=_str(value.get("content_type"), 127),
                        width=_int(value.get("width")),
                        height=_int(value.get("height")),
                        file_name=_str(value.get("file_name")),
                        file_size=_int(value.get("file_size")),
                    )
                )
                return
            for k, v in value.items():
                walk(v, [*path, str(k)], str(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, [*path, i], key)
        elif isinstance(value, str) and (
            _is_media_data_uri(value) or (key in _URL_KEYS and _is_url(value))
        ):
            mime = data_uri_type(value) if is_data_uri(value) else None
            found.append(MediaRef(path=pointer(path), url=value, content_type=mime))

    walk(result, [], None)
    return found


def result_metadata(result: Any, refs: list[MediaRef]) -> dict[str, Any]:
    """What the result says besides its media: seed, timings, NSFW flags, the prompt as
    the model saw it... (top-level fields holding no media)."""
    if not isinstance(result, dict):
        return {}
    media_roots = {r.path.split("/")[1] for r in refs if r.path.count("/") >= 1}
    out = {k: v for k, v in result.items() if pointer([k]).split("/")[1] not in media_roots}
    # Kept whole if small; a huge field (an embedded blob) is not metadata.
    while out and len(json.dumps(out, default=str)) > _METADATA_LIMIT:
        biggest = max(out, key=lambda k: len(json.dumps(out[k], default=str)))
        out.pop(biggest)
    return out


def asset_metadata(
    *,
    generation_id: str,
    provider: str,
    endpoint: str | None,
    request_id: str | None,
    request: dict[str, Any],
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """What each stored file of a generation carries, small enough for every asset."""
    meta: dict[str, Any] = {"generation_id": generation_id, "provider": provider}
    if endpoint:
        meta["endpoint"] = endpoint
    if request_id:
        meta["request_id"] = request_id
    prompt = request.get("prompt", metadata.get("prompt"))
    if isinstance(prompt, str):
        meta["prompt"] = prompt[:2000]
    seed = metadata.get("seed", request.get("seed"))
    if isinstance(seed, int | str) and not isinstance(seed, bool):
        meta["seed"] = seed
    return meta
