"""The console against a real service: one service per module on the embedded default
(SQLite, local store, the generated JWT secret, so the loopback mint is on), driven by
Debian's Chromium through Playwright. Every page a test opens is watched: a JavaScript
error, a CSP violation or a request to any origin but the service fails the test."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from mediakeep.auth import mint_token
from mediakeep.settings import Settings
from tests.conftest import Backend, ServiceThread, make_settings
from tests.support.netutil import free_port

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "console"
LAPTOP = {"width": 1366, "height": 860}
PHONE = {"width": 390, "height": 844}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
expect.set_options(timeout=15_000)


@dataclass
class Console:
    url: str
    settings: Settings
    service: ServiceThread
    clients: list[httpx.Client] = field(default_factory=list)

    def token(self, owner: str) -> str:
        secret = self.settings.resolved_jwt_secret()
        assert secret is not None
        return mint_token(secret, owner)

    def client(self, owner: str) -> httpx.Client:
        c = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.token(owner)}"},
            timeout=60,
            trust_env=False,
        )
        self.clients.append(c)
        return c


def new_owner() -> str:
    return f"u{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def console(request: pytest.FixtureRequest) -> Iterator[Console]:
    tmp = Path(tempfile.mkdtemp(prefix="mk-console-"))
    port = free_port()
    settings = make_settings(
        Backend("sqlite", "local"),
        tmp,
        request,
        base_url=f"http://127.0.0.1:{port}",
        sweep_interval=0,
        job_poll_interval=0.1,
    )
    svc = ServiceThread(settings, port).start()
    c = Console(svc.url, settings, svc)
    try:
        yield c
    finally:
        for client in c.clients:
            client.close()
        svc.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# Module scope, not session: Playwright's sync API marks an event loop as running in this
# thread while it is open, and pytest-asyncio cannot run any async test until it closes.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # Playwright gives every launch a fresh, throwaway user-data-dir.
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield b
    finally:
        b.close()


@dataclass
class Watched:
    """What a page did that it should not have."""

    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)


class Pages:
    def __init__(self, browser: Browser, console: Console) -> None:
        self.browser = browser
        self.console = console
        self.contexts: list[tuple[BrowserContext, Watched]] = []

    def open(self, viewport: dict[str, int] | None = None, **kw: Any) -> Page:
        # Reduced motion: screenshots catch no transition half-way.
        ctx = self.browser.new_context(
            viewport=viewport or LAPTOP,  # type: ignore[arg-type]
            reduced_motion="reduce",
            **kw,
        )
        watched = Watched()
        origin = self.console.url

        def on_request(req: Any) -> None:
            url = req.url
            if url.startswith(("data:", "blob:")):
                return
            parts = urlsplit(url)
            if f"{parts.scheme}://{parts.netloc}" != origin:
                watched.foreign.append(url)

        def on_console(msg: Any) -> None:
            # Failed loads (a 404 the page handles) are the page's business; script errors
            # and CSP refusals are not.
            if msg.type == "error" and "Failed to load resource" not in msg.text:
                watched.errors.append(msg.text)

        ctx.on("request", on_request)
        ctx.on("console", on_console)
        ctx.on("weberror", lambda e: watched.errors.append(str(e.error)))
        self.contexts.append((ctx, watched))
        return ctx.new_page()

    def signed_in(self, owner: str, viewport: dict[str, int] | None = None, hash: str = "") -> Page:
        page = self.open(viewport)
        page.goto(self.console.url + "/console")
        page.fill("#token", self.console.token(owner))
        page.click("#sign-in")
        expect(page.locator("#owner-name")).to_have_text(owner)
        if hash:
            page.evaluate("h => { location.hash = h }", hash)
        return page

    def check_and_close(self) -> None:
        problems: list[str] = []
        for ctx, watched in self.contexts:
            problems += [f"page error: {e}" for e in watched.errors]
            problems += [f"request to another origin: {u}" for u in watched.foreign]
            ctx.close()
        assert not problems, problems


@pytest.fixture
def pages(browser: Browser, console: Console) -> Iterator[Pages]:
    p = Pages(browser, console)
    try:
        yield p
    finally:
        p.check_and_close()


def shot(page: Page, name: str) -> Path:
    """A screenshot of the whole page for people to look at (artifacts/console/)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
