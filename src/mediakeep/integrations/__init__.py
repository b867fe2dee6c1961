"""Providers and documents: generation records, fal.ai results and webhooks (with tickets
that say whose media a webhook carries), and ``persist_json``."""

from .fal import MediaRef, find_media
from .generations import GenerationInfo, GenerationMediaInfo
from .persist import MediaMatcher, PersistReport
from .tickets import IssuedTicket

__all__ = [
    "GenerationInfo",
    "GenerationMediaInfo",
    "IssuedTicket",
    "MediaMatcher",
    "MediaRef",
    "PersistReport",
    "find_media",
]
