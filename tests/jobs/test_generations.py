"""Generations: fal results (URLs and data: URIs) stored as one record with its media in
order, media URLs with the provider fallback, storage validation and clean-up."""

from __future__ import annotations

import io
import time
import wave
from typing import Any

import httpx
import pytest

from mediakeep.errors import GenerationNotFailed, NotFound
from mediakeep.integrations import find_media
from mediakeep.jobs.sources import decode_data_uri
from tests.jobs.conftest import Keeps
from tests.jobs.support import (
    MediaServer,
    audio_result,
    data_uri,
    flux_result,
    png,
    video_result,
)
from tests.support.provider import Provider, payload_sha256, render_image


def wav_bytes() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x01" * 4000)
    return buf.getvalue()


def test_media_are_found_in_every_recorded_shape() -> None:
    result = {
        **flux_result(["https://v3.fal.media/files/a.png", data_uri(b"\x89PNG...")]),
        **video_result("https://v3.fal.media/files/v.mp4"),
        "image": {"url": "https://fal.media/files/single.jpg", "content_type": "image/jpeg"},
        "audio": {"url": "https://v3.fal.media/files/tts.mp3"},
        "audio_file": {"url": data_uri(wav_bytes(), "audio/wav"), "file_name": "a.wav"},
        "frames": [[{"url": "https://fal.media/f/0.png"}], [{"url": "https://fal.media/f/1.png"}]],
        "audio_url": "https://v3.fal.media/files/bare.wav",
        "seed": 12,
        "caption": "https://example.com/not-a-file-object",
    }
    refs = find_media(result)
    assert [r.path for r in refs] == [
        "/images/0",
        "/images/1",
        "/video",
        "/image",
        "/audio",
        "/audio_file",
        "/frames/0/0",
        "/frames/1/0",
        "/audio_url",
    ]
    assert refs[0].width == 40 and refs[0].content_type == "image/png"
    assert refs[1].url.startswith("data:image/png;base64,")
    assert refs[2].file_name == "output.mp4"
    assert refs[5].content_type is None and refs[5].file_name == "a.wav"


def test_data_uris_decode_to_their_bytes() -> None:
    data = png(3)
    mime, got = decode_data_uri(data_uri(data), 10_000)
    assert (mime, got) == ("image/png", data)
    assert decode_data_uri("data:text/plain,a%20b", 100) == ("text/plain", b"a b")


async def test_a_fal_result_becomes_one_generation_in_order(
    keeps: Keeps, provider: Provider, media: MediaServer, owner: str
) -> None:
    keep = await keeps.open()
    inline = png(11)
    url = provider.url(f"/img/{owner}-g.png?w=40&h=40")
    result = {
        **video_result(media.url(f"/big/300000.mp4?o={owner}")),
        **flux_result([url, data_uri(inline)]),
        **audio_result(data_uri(wav_bytes(), "audio/wav")),
    }
    gen = await keep.store_fal_result(
        result,
        owner=owner,
        endpoint="fal-ai/flux/dev",
        collection="shots",
        request={"prompt": "a lighthouse at dusk", "num_images": 2},
        request_id=f"req-{owner}",
    )
    assert gen.status == "completed" and gen.is_media_processed
    assert gen.provider == "fal" and gen.endpoint == "fal-ai/flux/dev"
    assert gen.request["num_images"] == 2 and gen.request_id == f"req-{owner}"
    # What the result said besides its media is kept.
    assert gen.metadata["seed"] == 196619188014358660
    assert gen.metadata["timings"] == {"inference": 1.37}
    assert [m.path for m in gen.media] == ["/video", "/images/0", "/images/1", "/audio_file"]
    assert [m.status for m in gen.media] == ["stored"] * 4
    assert gen.provider_urls[1] == url and gen.provider_urls[2].startswith("data:image/png (")
    sizes = []
    for m in gen.media:
        asset = await keep.get(m.asset_id or "", owner=owner)
        assert asset.collection == "shots"
        assert asset.metadata["generation_id"] == gen.id
        assert asset.metadata["prompt"] == "a lighthouse at dusk"
        sizes.append(asset.size)
    assert gen.total_size == sum(sizes)
    video = await keep.get(gen.media[0].asset_id or "", owner=owner)
    assert video.sha256 == payload_sha256(300000, "mp4")
    inline_asset = await keep.get(gen.media[2].asset_id or "", owner=owner)
    assert inline_asset.size == len(inline)


async def test_data_uris_are_never_fetched(keeps: Keeps, owner: str) -> None:
    # No host may be fetched, yet data: URIs are stored: decoded, never requested.
    keep = await keeps.open(allow_private_networks=False, allowed_hosts=("nowhere.invalid",))
    gen = await keep.store_fal_result(
        flux_result([data_uri(png(21)), data_uri(png(22))]), owner=owner
    )
    assert gen.status == "completed" and len(gen.media) == 2


def _get(c: httpx.Client, url: str) -> bytes:
    resp = c.get(url, follow_redirects=True)
    assert resp.status_code == 200, resp.text
    return resp.content


async def test_generation_routes(
    keeps: Keeps, services: Any, provider: Provider, owner: str
) -> None:
    svc = services()
    c = svc.client(owner)
    good = provider.url(f"/img/{owner}-r.png")
    lost = provider.url(f"/status/404?o={owner}")
    inline = png(31)
    body = {
        "provider": "fal",
        "endpoint": "fal-ai/flux/dev",
        "request": {"prompt": "p"},
        "result": flux_result([good, data_uri(inline), lost]),
    }
    resp = c.post("/v1/generations", json=body)
    assert resp.status_code == 201, resp.text
    gen = resp.json()
    assert gen["status"] == "partial" and gen["is_media_processed"]
    assert [m["status"] for m in gen["media"]] == ["stored", "stored", "failed"]
    assert gen["media"][2]["error"]["code"] == "upstream_status"
    assert c.get(f"/v1/generations/{gen['id']}").json()["id"] == gen["id"]
    assert svc.client(owner + "z").get(f"/v1/generations/{gen['id']}").status_code == 404

    urls = c.get(f"/v1/generations/{gen['id']}/media-urls", params={"expires_in": 120}).json()
    items = urls["items"]
    assert [i["source"] for i in items] == ["store", "store", "provider"]
    plain = httpx.Client(timeout=30, trust_env=False)
    assert _get(plain, items[0]["url"]) == render_image(f"{owner}-r", "png")
    assert _get(plain, items[1]["url"]) == inline
    assert items[0]["size"] == len(render_image(f"{owner}-r", "png"))
    assert items[0]["content_type"] == "image/png" and items[0]["width"] == 64
    assert items[2]["url"] == lost and items[2]["asset_id"] is None

    check = c.post(f"/v1/storage/validate/{gen['id']}").json()
    assert check == {"generation_id": gen["id"], "valid": True, "checked": 2, "problems": []}

    removed = c.delete(f"/v1/storage/cleanup/{gen['id']}")
    assert removed.status_code == 200 and removed.json()["removed"] == 2
    after = c.get(f"/v1/generations/{gen['id']}").json()
    assert after["status"] == "failed"
    assert [m["status"] for m in after["media"]] == ["removed", "removed", "failed"]
    gone = c.get(f"/v1/generations/{gen['id']}/media-urls").json()["items"]
    assert [i["source"] for i in gone] == ["provider"] * 3
    assert gone[1]["url"] is None  # a data: URI is not kept: nothing to fall back to
    assert c.get("/v1/assets").json()["items"] == []

    complete = c.post(
        "/v1/generations",
        json={"provider": "fal", "result": flux_result([good])},
        headers={"Idempotency-Key": "gen-1"},
    ).json()
    assert complete["status"] == "completed"
    again = c.post(
        "/v1/generations",
        json={"provider": "fal", "result": flux_result([good])},
        headers={"Idempotency-Key": "gen-1"},
    )
    assert again.json()["id"] == complete["id"]
    refused = c.delete(f"/v1/storage/cleanup/{complete['id']}")
    assert refused.status_code == 409 and refused.json()["code"] == "generation_not_failed"

    later = c.post(
        "/v1/generations",
        json={"provider": "fal", "async": True, "result": flux_result([good, good])},
    )
    assert later.status_code == 202
    pending = later.json()
    assert pending["status"] in ("pending", "processing", "completed")
    job = c.get(pending["job_url"]).json()
    for _ in range(600):
        if job["status"] == "completed":
            break
        time.sleep(0.05)
        job = c.get(pending["job_url"]).json()
    final = c.get(f"/v1/generations/{pending['id']}").json()
    assert final["status"] == "completed" and len(final["media"]) == 2
    assert {i["id"] for i in c.get("/v1/generations").json()["items"]} == {
        gen["id"],
        complete["id"],
        pending["id"],
    }


async def test_validation_finds_damaged_and_missing_objects(
    keeps: Keeps, provider: Provider, owner: str
) -> None:
    keep = await keeps.open()
    gen = await keep.store_fal_result(
        flux_result([provider.url(f"/img/{owner}-v1.png"), provider.url(f"/img/{owner}-v2.png")]),
        owner=owner,
    )
    first = await keep.get(gen.media[0].asset_id or "", owner=owner)
    second = await keep.get(gen.media[1].asset_id or "", owner=owner)
    # Same size, other bytes; and one object gone from under its record.
    original = b"".join([chunk async for chunk in keep.store.get(first.bucket, first.key)])
    await keep.store.delete(first.bucket, first.key)
    await keep.store.put(
        first.bucket,
        first.key,
        bytes(reversed(original)),
        content_type="image/png",
        cache_control="x",
    )
    await keep.store.delete(second.bucket, second.key)
    report = await keep.validate_generation(gen.id, owner=owner)
    assert not report["valid"] and report["checked"] == 2
    assert [(p["position"], p["problem"]) for p in report["problems"]] == [
        (0, "sha256_mismatch"),
        (1, "object_missing"),
    ]
    with pytest.raises(GenerationNotFailed):
        await keep.cleanup_generation(gen.id, owner=owner)
    with pytest.raises(NotFound):
        await keep.validate_generation(gen.id, owner=owner + "z")
