"""Providers that misbehave: slow, resetting, compressing, mislabelled."""

from __future__ import annotations

from tests.conftest import KeepFactory
from tests.core.helpers import assert_nothing_stored, png_bytes
from tests.support.provider import Provider


async def test_endless_slow_body_hits_the_total_deadline(
    keeps: KeepFactory, provider: Provider, owner: str
) -> None:
    # Each chunk arrives well within the read timeout; only the whole-transfer deadline
    # can stop a body that trickles forever.
    keep = await keeps.open(download_timeout=1.5, read_timeout=10, max_retries=0)
    result = await keep.ingest_url(
        provider.url("/slow?bytes=10000000&delay=0.2&chunk=100"), owner=owner
    )
    assert result.error and result.error["code"] == "download_timeout"
    await assert_nothing_stored(keep, owner)


async def test_gzip_bomb_is_never_inflated(
    keeps: KeepFactory, provider: Provider, owner: str
) -> None:
    keep = await keeps.open()
    result = await keep.ingest_url(provider.url("/gzip-bomb"), owner=owner)
    # The bytes are gzip, whatever the headers say: refused as a type, not expanded.
    assert result.error and result.error["code"] == "unsupported_media_type"
    assert "gzip" in result.error["message"]
    await assert_nothing_stored(keep, owner)


async def test_connection_reset_mid_body_is_retried_then_fails(
    keeps: KeepFactory, provider: Provider, owner: str
) -> None:
    keep = await keeps.open(max_retries=2)
    before = provider.hits("/reset")
    result = await keep.ingest_url(provider.raw_url("/reset?delay=0.05"), owner=owner)
    assert result.error and result.error["code"] == "download_failed"
    assert provider.hits("/reset") - before == 3  # the first try and two retries
    await assert_nothing_stored(keep, owner)


async def test_allowlists_per_collection_and_visibility(
    keeps: KeepFactory, provider: Provider, owner: str
) -> None:
    keep = await keeps.open(
        public_allowed_types=("image/webp",),
        collection_allowed_types={"jpegs-only": ("image/jpeg",)},
    )
    png = png_bytes(70)
    assert (await keep.put_bytes(png, owner=owner)).status == "stored"
    public = await keep.put_bytes(png, owner=owner, public=True)
    assert public.error and public.error["code"] == "unsupported_media_type"
    narrow = await keep.put_bytes(png, owner=owner, collection="jpegs-only")
    assert narrow.error and narrow.error["code"] == "unsupported_media_type"
    jpeg = await keep.ingest_url(provider.url("/img/71.jpg"), owner=owner, collection="jpegs-only")
    assert jpeg.status == "stored"


async def test_decompression_bomb_dimensions_refused_before_decoding(
    keeps: KeepFactory, provider: Provider, owner: str
) -> None:
    keep = await keeps.open(max_image_pixels=1000)
    result = await keep.ingest_url(provider.url("/img/72.png?w=64&h=64"), owner=owner)
    assert result.error and result.error["code"] == "image_too_large"
    await assert_nothing_stored(keep, owner)
