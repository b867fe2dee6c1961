"""The console in a real headless Chromium against a real service: what each page shows,
and what the API says after the page acted."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from tests.console.conftest import LAPTOP, PHONE, Console, Pages, new_owner, shot
from tests.core.helpers import png_bytes
from tests.media.test_pipeline_media import video, wav_bytes
from tests.support.provider import Provider, render_image


def upload(c: httpx.Client, data: bytes, name: str, **params: object) -> dict[str, object]:
    r = c.post("/v1/uploads", params=params, files={"file": (name, data)})
    assert r.status_code == 201, r.text
    body: dict[str, object] = r.json()
    return body


def drop_files(page: Page, selector: str, files: list[tuple[str, str, bytes]]) -> None:
    """Drop files on an element the way a user's drag and drop does: a drop event whose
    DataTransfer holds them."""
    payload = [(n, t, base64.b64encode(d).decode()) for n, t, d in files]
    transfer = page.evaluate_handle(
        """files => {
            const dt = new DataTransfer();
            for (const [name, type, b64] of files) {
                const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                dt.items.add(new File([bytes], name, { type }));
            }
            return dt;
        }""",
        payload,
    )
    page.dispatch_event(selector, "dragover", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def test_sign_in_with_a_pasted_token(pages: Pages, console: Console) -> None:
    owner = new_owner()
    page = pages.open()
    page.goto(console.url + "/console")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.fill("#token", "not-a-token")
    page.click("#sign-in")
    expect(page.locator("#signin-error")).to_contain_text("refused")
    expect(page.locator("#nav")).to_be_hidden()

    page.fill("#token", console.token(owner))
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#owner-name")).to_have_text(owner)
    expect(page.get_by_role("heading", name="Nothing stored yet")).to_be_visible()
    # Signing out forgets the token.
    page.click("#sign-out")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_the_mint_button_on_loopback_signs_in(pages: Pages, console: Console) -> None:
    owner = new_owner()
    console.client(owner).post("/v1/uploads", files={"file": ("a.png", png_bytes(3))})
    page = pages.open()
    page.goto(console.url + "/console")
    expect(page.locator("#mint")).to_be_visible()
    page.fill("#mint-owner", owner)
    page.click("#mint")
    expect(page.locator("#owner-name")).to_have_text(owner)
    # The minted token is the owner's: their collection is what the console shows.
    expect(page.locator("#collections a.collection[data-collection='default']")).to_contain_text(
        "1 asset"
    )


def test_drag_and_drop_upload_shows_progress_and_stores(pages: Pages, console: Console) -> None:
    owner = new_owner()
    page = pages.signed_in(owner, hash="#/upload")
    page.fill("#up-collection", "dropped")
    big = render_image("drop-big", "png", 900, 700)
    drop_files(
        page,
        "#dropzone",
        [("first.png", "image/png", big), ("second.png", "image/png", png_bytes(9))],
    )
    rows = page.locator("#uploads li.transfer")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator("progress")).to_have_attribute("value", "100")
    expect(rows.nth(0).locator(".state a")).to_have_text("stored: open")
    expect(rows.nth(1).locator(".state a")).to_have_text("stored: open")
    # A file picked with the file input goes the same way.
    page.set_input_files(
        "#file-input", files=[{"name": "t.wav", "mimeType": "audio/wav", "buffer": wav_bytes()}]
    )
    expect(rows).to_have_count(3)
    expect(rows.nth(2).locator(".state a")).to_have_text("stored: open")

    listed = console.client(owner).get("/v1/assets", params={"collection": "dropped"}).json()
    sizes = sorted(a["size"] for a in listed["items"])
    assert len(sizes) == 3 and len(big) in sizes
    # The row links to the stored asset.
    rows.nth(0).locator(".state a").click()
    expect(page.locator("#fact-dimensions")).to_have_text("900 \u00d7 700")


def test_url_ingest_streams_job_progress_to_completion(
    pages: Pages, console: Console, provider: Provider
) -> None:
    owner = new_owner()
    page = pages.signed_in(owner, hash="#/upload")
    page.fill("#up-collection", "from-urls")
    urls = [provider.url("/img/ingest-a.png?w=640&h=480"), provider.url("/img/ingest-b.jpg")]
    page.fill("#urls", "\n".join([*urls, provider.url("/status/404")]))
    page.click("#ingest")
    expect(page.locator("#job-status")).to_contain_text("partial (2 stored, 1 failed)")
    rows = page.locator("#ingests li.transfer")
    expect(rows.nth(0).locator(".state a")).to_have_text("stored: open")
    expect(rows.nth(1).locator(".state a")).to_have_text("stored: open")
    expect(rows.nth(2)).to_have_class(re.compile("failed"))
    listed = console.client(owner).get("/v1/assets", params={"collection": "from-urls"}).json()
    assert sorted(a["source_url"] for a in listed["items"]) == sorted(urls)


def test_grid_filters_and_scrolls_over_the_cursor_api(
    pages: Pages, console: Console, tmp_path: Path
) -> None:
    owner = new_owner()
    c = console.client(owner)
    for i in range(52):
        upload(c, png_bytes(1000 + i, 40), f"p{i}.png", collection="many")
    upload(c, video(tmp_path / "clip.mp4", "mpeg4", "mp4"), "clip.mp4", collection="many")
    upload(c, wav_bytes(), "tone.wav", collection="many")

    page = pages.signed_in(owner, viewport=PHONE)
    page.click("a.collection[data-collection='many']")
    grid = page.locator("#grid a.tile")
    expect(grid).to_have_count(48)  # the first page
    expect(page.locator("#grid-status")).to_contain_text("48 items so far")
    # Tiles far below start as their stored placeholder and load once scrolled to.
    last = grid.nth(47).locator("img")
    assert (last.get_attribute("src") or "").startswith("data:image/")
    page.locator("#load-more").scroll_into_view_if_needed()
    expect(grid).to_have_count(54)
    expect(page.locator("#grid-status")).to_have_text("54 items")
    expect(last).to_have_attribute(
        "src", re.compile(r"^http://127\.0\.0\.1:\d+/v1/files/.+_thumb\.webp\?")
    )

    page.select_option("#filter-kind", "video")
    expect(grid).to_have_count(1)
    expect(grid.first).to_have_attribute("data-kind", "video")
    assert "kind=video" in page.evaluate("location.hash")
    page.select_option("#filter-kind", "audio")
    expect(grid).to_have_count(1)
    page.select_option("#filter-kind", "")
    page.fill("#filter-to", "2001-01-01")
    page.dispatch_event("#filter-to", "change")
    expect(page.get_by_role("heading", name="Nothing matches these filters")).to_be_visible()
    page.click("form.filters button[type=reset]")
    expect(grid).to_have_count(48)

    # Arrow keys move between tiles.
    grid.first.focus()
    page.keyboard.press("ArrowRight")
    expect(grid.nth(1)).to_be_focused()
    page.keyboard.press("ArrowLeft")
    expect(grid.first).to_be_focused()


def test_slot_view_rolls_back_a_version(pages: Pages, console: Console) -> None:
    owner = new_owner()
    c = console.client(owner)
    for i in range(3):
        upload(
            c,
            render_image(f"ver-{i}", "png", 320, 200),
            f"v{i}.png",
            collection="site",
            slot="hero",
        )
    page = pages.signed_in(owner)
    page.click("a.collection[data-collection='site']")
    page.click("a.slot-link[data-slot='hero']")
    expect(page.locator("#slot-current")).to_contain_text("Current: version 3 of 3")
    expect(page.locator("#versions li")).to_have_count(3)
    expect(page.locator("li.version.current")).to_have_attribute("data-version", "3")

    page.get_by_role("button", name="Make version 1 current").click()
    expect(page.locator("#slot-current")).to_contain_text("Current: version 1 of 3")
    expect(page.locator("li.version.current")).to_have_attribute("data-version", "1")
    slot = c.get("/v1/collections/site/slots/hero").json()
    assert slot["current_version"] == 1 and slot["latest_version"] == 3


def test_asset_detail_copy_visibility_and_delete(pages: Pages, console: Console) -> None:
    owner = new_owner()
    c = console.client(owner)
    data = render_image("detail", "jpg", 800, 600)
    r = c.post(
        "/v1/uploads",
        params={"collection": "detail", "provider": "fal-ai"},
        data={"metadata": '{"prompt": "a lighthouse at dusk", "seed": 42}'},
        files={"file": ("d.jpg", data)},
    )
    assert r.status_code == 201, r.text
    asset = c.get(f"/v1/assets/{r.json()['id']}").json()
    page = pages.signed_in(owner, hash=f"#/assets/{asset['id']}")
    pages.contexts[-1][0].grant_permissions(["clipboard-read", "clipboard-write"])

    expect(page.locator("#prompt")).to_have_text("a lighthouse at dusk")
    expect(page.locator("#fact-dimensions")).to_have_text("800 \u00d7 600")
    expect(page.locator("#fact-type")).to_have_text("image/jpeg")
    expect(page.locator("#fact-sha256")).to_have_text(asset["sha256"])
    expect(page.locator("#fact-provider")).to_have_text("fal-ai")
    expect(page.locator("#fact-size")).to_contain_text(f"{asset['size']:,} bytes")
    expect(page.locator("#metadata")).to_contain_text('"seed": 42')
    expect(page.locator("#variants tbody tr")).to_have_count(len(asset["variants"]))
    preview = page.locator(".stage img.preview")
    expect(preview).to_have_js_property("naturalWidth", 800)

    page.click("#copy-permanent")
    expect(page.locator("#copy-permanent-value")).to_have_text(asset["content_url"])
    assert page.evaluate("navigator.clipboard.readText()") == asset["content_url"]
    page.click("#copy-signed")
    signed = page.locator("#copy-signed-value")
    expect(signed).to_contain_text("/files/")
    with httpx.Client(trust_env=False) as anonymous:
        got = anonymous.get(signed.inner_text())
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == asset["sha256"]

    page.click("#visibility")
    expect(page.locator("#visibility")).to_have_attribute("aria-checked", "true")
    expect(page.locator("#fact-visibility")).to_have_text("public")
    assert c.get(f"/v1/assets/{asset['id']}").json()["public"] is True

    # Esc closes the confirmation without deleting.
    page.click("#delete")
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.locator("#delete")).to_be_focused()
    assert c.get(f"/v1/assets/{asset['id']}").status_code == 200

    page.click("#delete")
    page.click("#confirm-ok")
    expect(page.locator("#toast")).to_have_text("Deleted")
    expect(page.get_by_role("heading", name="Nothing stored yet")).to_be_visible()
    assert c.get(f"/v1/assets/{asset['id']}").status_code == 404


def test_another_owners_ids_are_not_found(pages: Pages, console: Console) -> None:
    alice, bob = new_owner(), new_owner()
    bobs = upload(console.client(bob), png_bytes(77), "b.png", collection="secret", slot="s")
    page = pages.signed_in(alice, hash=f"#/assets/{bobs['id']}")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.locator("body")).not_to_contain_text(str(bobs["sha256"]))
    # The path form redirects into the console and answers the same.
    page.goto(console.url + f"/console/assets/{bobs['id']}")
    assert page.url.endswith(f"/console#/assets/{bobs['id']}")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    for where in ("#/collections/secret", "#/collections/secret/slots/s", "#/assets/nonsense"):
        page.evaluate("h => { location.hash = h }", where)
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()


def test_storage_page_charts_and_dedup(pages: Pages, console: Console) -> None:
    owner = new_owner()
    c = console.client(owner)
    same = render_image("twice", "png", 300, 300)
    upload(c, same, "a.png", collection="one")
    upload(c, same, "b.png", collection="two")
    upload(c, wav_bytes(), "t.wav", collection="two")
    stats = c.get("/v1/storage/stats").json()
    assert stats["dedup_savings_bytes"] == len(same)

    page = pages.signed_in(owner, hash="#/storage")
    expect(page.locator("#dedup")).to_contain_text("saved by dedup")
    expect(page.locator("#dedup .big")).not_to_have_text("0 B")
    charts = page.locator("#history-charts svg.chart")
    expect(charts).to_have_count(2)
    # One line per kind (image, audio) and per collection (one, two).
    expect(charts.nth(0).locator("polyline")).to_have_count(2)
    expect(charts.nth(1).locator("polyline")).to_have_count(2)
    expect(page.locator("#history-charts .legend").first).to_contain_text("image")
    page.select_option("#history-metric", "assets")
    expect(page.locator("#history-charts figcaption").first).to_have_text("Total assets by kind")
    expect(page.locator("#history-charts .legend").nth(1)).to_contain_text("two: 2")


def test_keyboard_focus_is_visible(pages: Pages, console: Console) -> None:
    owner = new_owner()
    upload(console.client(owner), png_bytes(5), "k.png")
    page = pages.signed_in(owner)
    # After signing in (and after each move), focus starts at the page's content.
    expect(page.locator("#view")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("a.collection.all")).to_be_focused()
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="default")).to_be_visible()
    expect(page.locator("#view")).to_be_focused()
    # A fresh load starts at the top: the skip link comes first.
    page.reload()
    expect(page.locator("#owner-name")).to_have_text(owner)
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()


def test_screenshots_at_laptop_and_phone_width(pages: Pages, console: Console) -> None:
    owner = new_owner()
    c = console.client(owner)
    first = None
    for i in range(10):
        a = upload(
            c,
            render_image(f"shot-{i}", "jpg", 640, 400 + 20 * i),
            f"s{i}.jpg",
            collection="gallery",
            provider="fal-ai",
            metadata=f'{{"prompt": "study number {i}"}}',
        )
        first = first or a
    for i in range(3):
        upload(
            c,
            render_image(f"slot-{i}", "png", 480, 320),
            "h.png",
            collection="gallery",
            slot="cover",
        )
    upload(c, wav_bytes(), "voice.wav", collection="podcasts")
    assert first is not None
    for label, viewport in (("laptop", LAPTOP), ("phone", PHONE)):
        page = pages.signed_in(owner, viewport=viewport)
        for name, where, ready in (
            ("collections", "#/", "#collections"),
            ("grid", "#/collections/gallery", "#grid a.tile >> nth=9"),
            ("slot", "#/collections/gallery/slots/cover", "#versions"),
            ("asset", f"#/assets/{first['id']}", "#facts"),
            ("upload", "#/upload", "#dropzone"),
            ("storage", "#/storage", "#history-charts svg >> nth=1"),
        ):
            page.evaluate("h => { location.hash = h }", where)
            expect(page.locator(ready)).to_be_visible()
            page.wait_for_load_state("networkidle")
            # Images due now (not the lazy ones still below the fold) have arrived.
            page.wait_for_function(
                "() => [...document.images].every(i => i.dataset.src && i.src !== i.dataset.src"
                " || i.complete && i.naturalWidth > 0)"
            )
            # Nothing sticks out sideways at this width.
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
            assert shot(page, f"{name}-{label}").stat().st_size > 0
