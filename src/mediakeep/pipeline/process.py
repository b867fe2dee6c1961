"""The media step of the pipeline: which filter a stream goes through, and the CPU work
(decode check, variants, placeholder, video probe) run off the event loop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from ..media.image import ImageReport, Preset, analyse
from ..media.strip import MetadataFilter, filter_for

# Formats Pillow decodes here; others (HEIC, SVG) are stored without a decode check.
DECODABLE = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp", "image/tiff"}
)


T = TypeVar("T")


@dataclass
class MediaConfig:
    enabled: bool = True
    presets: list[Preset] = field(default_factory=list)
    placeholders: bool = True
    decode_check: bool = False
    strip_metadata: bool = True
    keep_metadata_collections: tuple[str, ...] = ()
    video_posters: bool = True
    workers: int = 0

    @classmethod
    def from_settings(cls, s: Any) -> MediaConfig:
        presets = []
        if s.variants_enabled:
            for name, spec in s.variant_presets.items():
                presets.append(
                    Preset(
                        name=name,
                        width=int(spec["width"]),
                        height=int(spec.get("height", spec["width"])),
                        fit=str(spec.get("fit", "fit")),
                        format=str(spec.get("format", s.variant_format)),
                        quality=int(spec.get("quality", s.variant_quality)),
                    )
                )
        return cls(
            enabled=s.media_processing,
            presets=presets,
            placeholders=s.placeholders,
            decode_check=s.image_check == "decode",
            strip_metadata=s.strip_metadata,
            keep_metadata_collections=tuple(s.keep_metadata_collections),
            video_posters=s.video_posters,
            workers=s.media_workers,
        )


class MediaProcessor:
    def __init__(self, config: MediaConfig) -> None:
        self.config = config
        self._executor: ThreadPoolExecutor | None = None

    @property
    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            workers = self.config.workers or os.cpu_count() or 2
            # Bounded: image work uses every core, and excess work queues instead of
            # oversubscribing the machine while downloads continue on the loop.
            self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mk-media")
        return self._executor

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def metadata_filter(self, content_type: str, collection: str) -> MetadataFilter | None:
        cfg = self.config
        if not cfg.enabled or not cfg.strip_metadata:
            return None
        if collection in cfg.keep_metadata_collections:
            return None
        return filter_for(content_type)

    def wants_image_check(self, content_type: str) -> bool:
        return self.config.enabled and content_type in DECODABLE

    def wants_av_probe(self, content_type: str) -> bool:
        return self.config.enabled and content_type.split("/")[0] in ("video", "audio")

    async def analyse_image(
        self, source: Path | Callable[[], IO[bytes]], content_type: str
    ) -> ImageReport:
        """``source`` is a path, or what opens the bytes (called in the media thread)."""
        loop = asyncio.get_running_loop()
        presets, placeholders = self.config.presets, self.config.placeholders
        decode = self.config.decode_check

        def work() -> ImageReport:
            return analyse(
                source if isinstance(source, Path) else source(),
                content_type,
                presets,
                placeholders,
                decode,
            )

        return await loop.run_in_executor(self._pool, work)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Other CPU-bound media work (e.g. on-the-fly renditions) on the same bounded pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)

    async def probe_av(self, location: str, content_type: str) -> Any:
        from ..media.avprobe import probe

        poster = self.config.video_posters and content_type.startswith("video/")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: probe(location, poster=poster))
