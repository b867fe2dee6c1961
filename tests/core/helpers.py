"""Assertions about what is (not) left in the database and the store."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image
from sqlalchemy import func, select

from mediakeep import MediaKeep
from mediakeep.db.models import Asset, StoredObject

VARIANT_KEY = re.compile(r"_[a-z0-9-]+\.(webp|jpg|png|avif)$")


def png_bytes(seed: int, size: int = 48) -> bytes:
    img = Image.new("RGB", (size, size), (seed % 256, (seed * 7) % 256, (seed * 13) % 256))
    for i in range(size):
        img.putpixel((i, i), (255 - seed % 256, 0, 0))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


async def rows_for(keep: MediaKeep, owner: str) -> tuple[int, int]:
    """(asset rows, object rows) the owner has in any state."""
    async with keep.repo.sessions() as s:
        assets = await s.scalar(select(func.count()).where(Asset.owner == owner))
        objects = await s.scalar(select(func.count()).where(StoredObject.owner == owner))
    return int(assets or 0), int(objects or 0)


async def keys_in_store(keep: MediaKeep, owner: str, *, variants: bool = False) -> list[str]:
    """The owner's objects; originals only unless ``variants``."""
    keys: list[str] = []
    for bucket in (keep.settings.private_bucket, keep.settings.public_bucket):
        async for info in keep.store.list_objects(bucket, f"{owner}/"):
            if variants or not VARIANT_KEY.search(info.key):
                keys.append(f"{bucket}/{info.key}")
    return sorted(keys)


async def assert_nothing_stored(keep: MediaKeep, owner: str) -> None:
    assert await rows_for(keep, owner) == (0, 0)
    assert await keys_in_store(keep, owner, variants=True) == []


def loaded_after(code: str, modules: tuple[str, ...], cwd: Path | None = None) -> list[str]:
    """Which of ``modules`` a fresh interpreter has imported after running ``code``."""
    report = f"print(json.dumps([m for m in {modules!r} if m in sys.modules]))"
    script = f"import json, sys\n{code}\n{report}\n"
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=cwd,
    )
    found: list[str] = json.loads(out.stdout.splitlines()[-1])
    return found
