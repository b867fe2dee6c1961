"""The console's HTTP side without a browser: its pages' headers and caching, what its
files may reference, the loopback token mint and who may use it, and the storage history."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import update

from mediakeep import MediaKeep
from mediakeep.api.app import create_app
from mediakeep.api.routes_console import CONSOLE_DIR, MAX_SERIES, OTHER
from mediakeep.db.models import Asset
from mediakeep.settings import Settings
from tests.conftest import Backend
from tests.console.conftest import Console, new_owner
from tests.core.helpers import png_bytes
from tests.media.test_pipeline_media import wav_bytes
from tests.support.aio import run_sync
from tests.support.netutil import free_port

SQLITE_LOCAL = Backend("sqlite", "local")
CONFIGURED_SECRET = "console-test-jwt-secret-long-enough-for-hs256-0123456789abcdef"
# Namespace names, not addresses: nothing is ever fetched from them.
XML_NAMESPACES = {"http://www.w3.org/2000/svg"}


def plain(url: str, **headers: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers=headers, timeout=30, trust_env=False)


def upload(c: httpx.Client, data: bytes, name: str, **params: object) -> dict[str, Any]:
    r = c.post("/v1/uploads", params=params, files={"file": (name, data)})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


# -- pages and files ----------------------------------------------------------------------


def test_console_page_has_a_strict_csp_and_revalidates(console: Console) -> None:
    with plain(console.url) as c:
        r = c.get("/console")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        csp = dict(
            part.strip().split(" ", 1) for part in r.headers["content-security-policy"].split(";")
        )
        assert csp["default-src"] == "'self'"
        assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
        assert "unsafe" not in r.headers["content-security-policy"]
        # Signed URLs of the embedded default point at the service itself.
        assert csp["img-src"].split() == ["'self'", "blob:", "data:", console.url]
        assert csp["media-src"] == csp["img-src"]
        assert csp["frame-ancestors"] == "'none'" and csp["object-src"] == "'none'"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["cache-control"] == "no-cache"
        etag = r.headers["etag"]
        again = c.get("/console/", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert "content-security-policy" in again.headers

        js = c.get("/console/static/app.js")
        assert js.status_code == 200
        assert js.headers["content-type"] == "text/javascript; charset=utf-8"
        assert js.content == (CONSOLE_DIR / "app.js").read_bytes()
        assert (
            c.get(
                "/console/static/app.js", headers={"If-None-Match": js.headers["etag"]}
            ).status_code
            == 304
        )
        assert (
            c.get("/console/static/app.js", headers={"If-None-Match": '"other"'}).status_code == 200
        )
        assert c.get("/console/static/app.css").headers["content-type"].startswith("text/css")

        for missing in ("nope.js", "index.html", "..%2Fapi%2Fapp.py", "%2E%2E"):
            gone = c.get(f"/console/static/{missing}")
            assert gone.status_code == 404, missing
            assert gone.headers["content-type"] == "application/problem+json"

        # Deep links into the console land on its router.
        deep = c.get("/console/assets/0b5e6a4e-2a5f-4c53-9b1f-6a3f1c9d7e11")
        assert deep.status_code == 302
        assert deep.headers["location"] == "/console#/assets/0b5e6a4e-2a5f-4c53-9b1f-6a3f1c9d7e11"
        odd = c.get("/console/collections/a%20b%22%3E")
        assert odd.headers["location"] == "/console#/collections/a%20b%22%3E"


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.inline_scripts = 0
        self.inline_styles = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for name in ("src", "href", "action", "poster", "data"):
            if found.get(name):
                self.refs.append(found[name] or "")
        if tag == "script":
            self._in_script = True
            if "src" not in found:
                self.inline_scripts += 1
        if tag == "style" or "style" in found or any(a.startswith("on") for a in found):
            self.inline_styles += 1

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False if tag == "script" else self._in_script

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1


def test_console_files_reference_no_external_origin() -> None:
    files = sorted(p for p in CONSOLE_DIR.iterdir() if p.is_file())
    assert {p.suffix for p in files} >= {".html", ".js", ".css"}
    for path in files:
        text = path.read_text()
        urls = set(re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s\"'`)]*", text))
        assert urls <= XML_NAMESPACES, (path.name, urls - XML_NAMESPACES)
        if path.suffix == ".html":
            parser = _Refs()
            parser.feed(text)
            assert parser.refs and all(
                (r.startswith("/") and not r.startswith("//")) or r.startswith("#")
                for r in parser.refs
            ), parser.refs
            assert parser.inline_scripts == 0 and parser.inline_styles == 0
        if path.suffix == ".js":
            imports = re.findall(r"^import\b[^;]*?[\"']([^\"']+)[\"'];", text, re.M | re.S)
            assert imports or path.name in ("api.js", "dom.js"), path.name
            assert "import(" not in text
            for spec in imports:
                assert spec.startswith("./") and (CONSOLE_DIR / spec[2:]).is_file(), spec
            # The CSP forbids inline code, and the console must not need it.
            assert not re.search(
                r"\.(inner|outer)HTML\b|insertAdjacentHTML|\beval\(|new Function", text
            )
            assert 'setAttribute("style"' not in text
        if path.suffix == ".css":
            assert "@import" not in text
            assert all(
                u.startswith(("data:", "/")) for u in re.findall(r"url\(\s*['\"]?([^'\")]+)", text)
            )


# -- the token mint -----------------------------------------------------------------------


def mint(url: str, owner: str = "alice", **headers: str) -> httpx.Response:
    with plain(url, **headers) as c:
        return c.post("/v1/console/token", json={"owner": owner})


def config(url: str, **headers: str) -> dict[str, Any]:
    with plain(url, **headers) as c:
        body: dict[str, Any] = c.get("/v1/console/config").json()
        return body


def test_mint_on_the_embedded_default_from_loopback(console: Console) -> None:
    assert config(console.url) == {"mint": True, "embedded": True}
    owner = new_owner()
    r = mint(console.url, owner)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["owner"] == owner and body["expires_in"] == 12 * 3600
    with plain(console.url, Authorization=f"Bearer {body['token']}") as c:
        assert c.get("/v1/storage/stats").json()["owner"] == owner
        # A minted token is an ordinary owner's: it cannot act for anyone else.
        other = c.get("/v1/assets", params={"owner": new_owner()})
        assert other.status_code == 403 and other.json()["code"] == "owner_not_allowed"

    with plain(console.url) as c:
        # What a page on another site could send without a CORS preflight.
        form = c.post("/v1/console/token", data={"owner": owner})
        assert form.status_code == 422 and "token" not in form.json()
        simple = c.post(
            "/v1/console/token",
            content=f'{{"owner": "{owner}"}}',
            headers={"Content-Type": "text/plain"},
        )
        assert simple.status_code == 422 and "token" not in simple.json()
        bad = c.post("/v1/console/token", json={"owner": "../etc"})
        assert bad.status_code == 422
        assert c.get("/v1/console/token").status_code == 405


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "203.0.113.9"},
        {"Forwarded": "for=203.0.113.9"},
        {"X-Real-IP": "203.0.113.9"},
        # A page on another site whose name now resolves to 127.0.0.1 (DNS rebinding).
        {"Host": "attacker.example"},
        {"Origin": "http://attacker.example"},
    ],
    ids=["x-forwarded-for", "forwarded", "x-real-ip", "host", "origin"],
)
def test_mint_refuses_what_only_looks_like_loopback(
    console: Console, headers: dict[str, str]
) -> None:
    r = mint(console.url, **headers)
    assert r.status_code == 403 and r.json()["code"] == "mint_refused"
    assert config(console.url, **headers)["mint"] is False


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            # No packet is sent: this only asks the kernel which address it would use.
            s.connect(("198.51.100.1", 9))
        except OSError:
            return None
        address: str = s.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


@pytest.fixture
def on_interface(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The service on this machine's non-loopback address: requests to it come from that
    address, not from 127.0.0.1."""
    from tests.conftest import make_settings

    address = _non_loopback_address()
    if address is None:
        pytest.skip("no non-loopback address to serve on")
    port = free_port(address)
    settings = make_settings(SQLITE_LOCAL, tmp_path, request, base_url=f"http://{address}:{port}")
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host=address, port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        threading.Event().wait(0.05)
    try:
        yield f"http://{address}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_mint_refuses_clients_on_another_address(on_interface: str) -> None:
    assert config(on_interface) == {"mint": False, "embedded": True}
    # Even with a Host header naming loopback: the peer address is what counts.
    r = mint(on_interface, Host="127.0.0.1")
    assert r.status_code == 403 and r.json()["code"] == "mint_refused"
    assert "this machine" in r.json()["detail"]


def test_mint_is_off_with_a_configured_secret_unless_allowed(service_for: Any) -> None:
    svc, _ = service_for(SQLITE_LOCAL, jwt_secret=CONFIGURED_SECRET)
    assert config(svc.url)["mint"] is False
    r = mint(svc.url)
    assert r.status_code == 403 and "off here" in r.json()["detail"]

    svc, _ = service_for(SQLITE_LOCAL, jwt_secret=CONFIGURED_SECRET, console_token_mint=True)
    assert config(svc.url)["mint"] is True
    r = mint(svc.url, "bob")
    assert r.status_code == 200
    with plain(svc.url, Authorization=f"Bearer {r.json()['token']}") as c:
        assert c.get("/v1/storage/stats").json()["owner"] == "bob"


def test_mint_is_off_where_tokens_are_not_accepted(service_for: Any) -> None:
    # Not the embedded default and no secret configured: no bearer tokens at all.
    svc, _ = service_for(Backend("postgres", "local"), console_token_mint=True)
    assert config(svc.url) == {"mint": False, "embedded": False}
    assert mint(svc.url).status_code == 403


# -- the storage history --------------------------------------------------------------------


def test_storage_history_auth_and_validation(console: Console) -> None:
    with plain(console.url) as anonymous:
        r = anonymous.get("/v1/storage/history")
        assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    with plain(console.url, Authorization="Bearer nonsense") as bad:
        assert bad.get("/v1/storage/history").json()["code"] == "invalid_token"
    c = console.client(new_owner())
    for days in ("0", "367", "x"):
        assert c.get("/v1/storage/history", params={"days": days}).status_code == 422
    other = c.get("/v1/storage/history", params={"owner": new_owner()})
    assert other.status_code == 403 and other.json()["code"] == "owner_not_allowed"
    empty = c.get("/v1/storage/history", params={"days": 3}).json()
    assert empty["kinds"] == [] and empty["collections"] == []
    assert [d["total"] for d in empty["series"]] == [{"assets": 0, "bytes": 0}] * 3
    today = datetime.now(UTC).date()
    assert [d["day"] for d in empty["series"]] == [
        str(today - timedelta(days=n)) for n in (2, 1, 0)
    ]


def backdate(settings: Settings, asset_id: str, days: int) -> None:
    """Move an asset's creation back in time, in the database itself. On a thread of its
    own: the browser tests' driver keeps an event loop on the test thread."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            run_sync(_backdate(settings, asset_id, days))
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(60)
    if failure:
        raise failure[0]


async def _backdate(settings: Settings, asset_id: str, days: int) -> None:
    keep = MediaKeep(settings)
    await keep.start()
    try:
        async with keep.repo.sessions.begin() as s:
            await s.execute(
                update(Asset)
                .where(Asset.id == asset_id)
                .values(created_at=datetime.now(UTC) - timedelta(days=days))
            )
    finally:
        await keep.close()


def check_history(url: str, settings: Settings, token_for: Any) -> None:
    alice, bob = new_owner(), new_owner()
    a = plain(url, Authorization=f"Bearer {token_for(alice)}")
    b = plain(url, Authorization=f"Bearer {token_for(bob)}")
    with a, b:
        old = upload(a, png_bytes(1, 64), "old.png", collection="art")
        upload(a, png_bytes(2, 64), "new.png", collection="art")
        upload(a, wav_bytes(), "t.wav", collection="sound")
        upload(b, png_bytes(3, 64), "bob.png", collection="art")
        backdate(settings, old["id"], 5)

        week = a.get("/v1/storage/history", params={"days": 7}).json()
        assert week["owner"] == alice and len(week["series"]) == 7
        assert week["kinds"] == ["audio", "image"]
        assert sorted(week["collections"]) == ["art", "sound"]
        by_day = {d["day"]: d for d in week["series"]}
        today = str(datetime.now(UTC).date())
        five_ago = str(datetime.now(UTC).date() - timedelta(days=5))
        assert by_day[five_ago]["added"] == {"assets": 1, "bytes": old["size"]}
        assert by_day[today]["added"]["assets"] == 2
        # Running totals: the day before the old one had nothing, today has everything.
        assert week["series"][0]["total"] == {"assets": 0, "bytes": 0}
        stats = a.get("/v1/storage/stats").json()
        last = week["series"][-1]
        assert last["total"] == {"assets": stats["assets"], "bytes": stats["bytes"]}
        assert last["by_kind"] == stats["by_kind"]
        assert last["by_collection"] == stats["by_collection"]
        assert last["by_collection"]["art"]["assets"] == 2  # bob's is not counted

        # A window that starts after the old asset counts it in from the first day.
        two = a.get("/v1/storage/history", params={"days": 2}).json()
        assert two["series"][0]["total"]["assets"] == 1
        assert two["series"][0]["by_kind"]["image"]["assets"] == 1
        assert two["series"][-1]["total"] == last["total"]

        # Deleted assets leave the history.
        a.delete(f"/v1/assets/{old['id']}")
        after = a.get("/v1/storage/history", params={"days": 7}).json()
        assert after["series"][-1]["total"]["assets"] == 2


def test_storage_history_counts_what_is_kept(console: Console) -> None:
    check_history(console.url, console.settings, console.token)


def test_storage_history_on_postgres(service_for: Any) -> None:
    from mediakeep.auth import mint_token

    svc, settings = service_for(Backend("postgres", "local"), jwt_secret=CONFIGURED_SECRET)
    check_history(svc.url, settings, lambda owner: mint_token(CONFIGURED_SECRET, owner))


def test_storage_history_sums_small_collections(console: Console) -> None:
    c = console.client(new_owner())
    names = [f"c{i:02d}" for i in range(MAX_SERIES + 2)]
    for i, name in enumerate(names):
        # Each collection a little larger than the one before.
        upload(c, png_bytes(40 + i, 20 + 4 * i), f"{name}.png", collection=name)
    h = c.get("/v1/storage/history", params={"days": 1}).json()
    assert len(h["collections"]) == MAX_SERIES and h["collections"][-1] == OTHER
    day = h["series"][0]
    assert sum(u["assets"] for u in day["by_collection"].values()) == len(names)
    assert day["by_collection"][OTHER]["assets"] == 3
    assert "c00" not in day["by_collection"] and names[-1] in day["by_collection"]
