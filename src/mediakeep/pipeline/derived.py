"""What the pipeline makes from stored bytes: variants (thumbnails, poster frames) and
video/audio facts. Never fails the original: a failure is recorded, not raised."""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

from ..db.repo import Finalized, Repository, VariantRow
from ..media.image import Preset, VariantOut
from ..stores.base import ObjectStore, cache_control
from ..stores.local import LocalStore

if TYPE_CHECKING:
    from .process import MediaProcessor

log = logging.getLogger("mediakeep.pipeline")
_POSTER = Preset("poster", 0, 0, "fit", "webp", 80)


def variant_key(original_key: str, preset: str, ext: str) -> str:
    """``a/b/{asset_id}.png`` → ``a/b/{asset_id}_{preset}.{ext}``: next to the original."""
    stem = (
        original_key.rsplit(".", 1)[0] if "." in original_key.rsplit("/", 1)[-1] else original_key
    )
    return f"{stem}_{preset}.{ext}"


class Derived:
    def __init__(
        self, store: ObjectStore, repo: Repository, media: MediaProcessor, public_bucket: str
    ) -> None:
        self.store = store
        self.repo = repo
        self.media = media
        self.public_bucket = public_bucket

    async def save_images(
        self, object_id: str, bucket: str, key: str, variants: list[VariantOut]
    ) -> list[VariantRow]:
        rows: list[VariantRow] = []
        public = bucket == self.public_bucket
        for v in variants:
            ext = "jpg" if v.preset.format == "jpeg" else v.preset.format
            vkey = variant_key(key, v.preset.name, ext)
            row = VariantRow(
                preset=v.preset.name,
                bucket=bucket,
                key=vkey,
                status="failed",
                content_type=v.content_type,
                error=v.error,
            )
            if v.data is not None:
                try:
                    await self.store.put(
                        bucket,
                        vkey,
                        v.data,
                        content_type=v.content_type,
                        cache_control=cache_control(public),
                    )
                    row.status, row.size, row.sha256 = "stored", len(v.data), v.sha256
                    row.width, row.height = v.width, v.height
                except Exception as exc:
                    row.error = f"upload failed: {type(exc).__name__}"
            rows.append(row)
        await self.repo.add_variants(object_id, rows)
        return rows

    async def probe_av(self, done: Finalized, content_type: str) -> Finalized:
        asset = done.asset
        try:
            if isinstance(self.store, LocalStore):
                location = str(self.store.path_for(asset.bucket, asset.key))
            else:
                location = (await self.store.sign_get_async(asset.bucket, [asset.key], 600))[0]
            report = await self.media.probe_av(location, content_type)
        except Exception as exc:
            # Unknown codecs and odd containers are still worth keeping.
            log.info("media probe failed", extra={"category": "validate", "error": str(exc)})
            return done
        info: dict[str, Any] = dict(asset.media_info or {})
        info.update(report.to_dict())
        updated = await self.repo.set_media_facts(
            asset.id,
            width=report.width,
            height=report.height,
            duration=report.duration,
            media_info=info,
        )
        if report.poster:
            poster = VariantOut(
                preset=_POSTER,
                data=report.poster,
                width=report.width or 0,
                height=report.height or 0,
                sha256=hashlib.sha256(report.poster).hexdigest(),
            )
            await self.save_images(done.object_id, asset.bucket, asset.key, [poster])
        return Finalized(updated, done.deduplicated, done.discard_key, done.object_id)
