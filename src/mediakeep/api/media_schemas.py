"""Bodies of the variant, render, collection, slot and bundle routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..keep import MAX_EXPIRES
from ..media.render import MAX_EDGE, Fit, Format
from .schemas import AssetOut, Metadata, Name

MAX_BUNDLE_FILES = 10_000
BundlePath = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- variants and renditions -----------------------------------------------------------


class VariantItem(BaseModel):
    name: str = Field(description="The preset's name (e.g. thumb), or poster for videos.")
    status: Literal["stored", "failed"]
    content_type: str | None
    size: int | None
    width: int | None
    height: int | None
    sha256: str | None
    error: str | None = Field(description="Why it failed; null when stored.")
    url: str | None = Field(description="Signed or public URL; null when it failed.")


class VariantsOut(BaseModel):
    id: str
    variants: list[VariantItem] = Field(description="Every variant, failed ones included.")


class RenderUrlRequest(_Strict):
    w: int | None = Field(default=None, ge=1, le=MAX_EDGE)
    h: int | None = Field(default=None, ge=1, le=MAX_EDGE)
    fit: Fit | None = None
    format: Format | None = None
    q: int | None = Field(default=None, ge=1, le=100)
    expires_in: int | None = Field(
        default=None,
        ge=1,
        le=MAX_EXPIRES,
        description="Seconds; the default is the signed URL TTL.",
    )


class RenderUrlOut(BaseModel):
    id: str
    url: str = Field(description="Works without a token, for these parameters only.")
    params: str = Field(description="The normalised parameters the signature covers.")
    expires_at: datetime


# -- collections and slots -------------------------------------------------------------


class CollectionOut(BaseModel):
    collection: str
    assets: int
    bytes: int
    slots: int


class CollectionList(BaseModel):
    items: list[CollectionOut]


class DeletedAsset(BaseModel):
    id: str
    key: str
    slot: str | None
    version: int | None
    size: int
    content_type: str


class CollectionDeletion(BaseModel):
    collection: str
    dry_run: bool = Field(description="True: nothing was deleted; this is what would go.")
    count: int
    bytes: int
    assets: list[DeletedAsset]


class SlotOut(BaseModel):
    collection: str
    slot: str
    latest_version: int
    current_version: int | None
    current: AssetOut | None = Field(description="The current version; null if none is left.")
    content_url: str = Field(description="Permanent link that always serves the current version.")


class SlotList(BaseModel):
    collection: str
    items: list[SlotOut]


class SlotVersions(BaseModel):
    collection: str
    slot: str
    current_version: int | None
    items: list[AssetOut] = Field(description="Every stored version, newest first.")


class SetCurrentRequest(_Strict):
    version: int = Field(ge=1, le=2**31 - 1)


# -- bundles ---------------------------------------------------------------------------


class BundleCreate(_Strict):
    collection: Name
    name: Name = "bundle"
    version: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="Default: the next version of the name."
    )
    encoding: Literal["text", "base64"] = Field(
        default="text",
        description="How every value of `files` is written: `text` stores the string as "
        "UTF-8; `base64` decodes standard base64 (for binary files).",
    )
    files: dict[BundlePath, str] = Field(
        min_length=1,
        max_length=MAX_BUNDLE_FILES,
        description="Relative path (forward slashes, no `..`) to the file's content.",
    )
    metadata: Metadata = Field(default_factory=dict)


class BundleFile(BaseModel):
    path: str
    size: int
    sha256: str


class BundleSummary(BaseModel):
    id: str
    collection: str
    name: str
    version: int
    asset_id: str = Field(description="The archive (tar.gz) as an asset.")
    file_count: int
    total_size: int = Field(description="Sum of the files' sizes, uncompressed.")
    created_at: datetime


class BundleOut(BundleSummary):
    files: list[BundleFile] = Field(description="The manifest, sorted by path.")
    download_url: str = Field(description="Redirects to a signed URL of the archive.")


class BundleList(BaseModel):
    items: list[BundleSummary] = Field(description="Every version, newest first.")
