"""What we can learn about an image from its first bytes, without decoding pixels."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

from ..errors import MediaKeepError


class ImageTooLarge(MediaKeepError):
    code = "image_too_large"
    status = 422


@dataclass
class HeaderInfo:
    width: int | None = None
    height: int | None = None


def probe_header(head: bytes, content_type: str, max_pixels: int) -> HeaderInfo:
    """Dimensions from the header; refuses decompression bombs before any decode."""
    if not content_type.startswith("image/") or content_type == "image/svg+xml":
        return HeaderInfo()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # open() parses the header only; pixel data is never touched here.
            with Image.open(io.BytesIO(head)) as img:
                width, height = img.size
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image is too large to decode safely: {exc}") from exc
    except (OSError, ValueError, SyntaxError):
        return HeaderInfo()
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
        )
    return HeaderInfo(width=width, height=height)
