"""Providers and documents: generation records, fal.ai results and webhooks (with tickets
that say whose media a webhook carries), and ``persist_json``."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .fal import MediaRef, find_media
    from .generations import GenerationInfo, GenerationMediaInfo
    from .persist import MediaMatcher, PersistReport
    from .tickets import IssuedTicket
else:
    from .._lazy import exports

    # Loaded on first use: the facade imports integrations.api, which needs none of these
    # until a generation, a webhook or a document arrives.
    __getattr__, __dir__ = exports(
        __name__,
        {
            "GenerationInfo": ".generations",
            "GenerationMediaInfo": ".generations",
            "IssuedTicket": ".tickets",
            "MediaMatcher": ".persist",
            "MediaRef": ".fal",
            "PersistReport": ".persist",
            "find_media": ".fal",
        },
    )

__all__ = [
    "GenerationInfo",
    "GenerationMediaInfo",
    "IssuedTicket",
    "MediaMatcher",
    "MediaRef",
    "PersistReport",
    "find_media",
]
