"""Only public destinations, unless the operator says otherwise."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from mediakeep import MediaKeep
from mediakeep.pipeline.netguard import NetworkPolicy, is_public_address, parse_ip_literal
from tests.conftest import Backend, make_settings
from tests.core.helpers import assert_nothing_stored
from tests.support.provider import Provider

LOCAL = Backend("sqlite", "local")


@pytest.fixture
async def guarded(tmp_path: Path, request: pytest.FixtureRequest) -> MediaKeep:
    # The provider on 127.0.0.2 stands in for a public CDN: trusted, while every other
    # private address stays refused.
    settings = make_settings(
        LOCAL,
        tmp_path,
        request,
        allow_private_networks=False,
        trusted_networks=("127.0.0.2/32",),
        max_retries=0,
    )
    keep = MediaKeep(settings)
    await keep.start()
    yield keep  # type: ignore[misc]
    await keep.close()


@pytest.fixture(scope="module")
def public_provider() -> Provider:
    with Provider(host="127.0.0.2") as p:
        yield p  # type: ignore[misc]


BLOCKED = [
    "http://127.0.0.1/x.png",
    "http://10.0.0.1/x.png",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/x.png",
    "http://[::ffff:127.0.0.1]/x.png",
    "http://[::ffff:7f00:1]/x.png",
    "http://2130706433/x.png",
    "http://0x7f.1/x.png",
    "http://0177.0.0.1/x.png",
    "http://192.168.1.1/x.png",
    "http://172.16.0.1/x.png",
    "http://100.64.0.1/x.png",
    "http://0.0.0.0/x.png",
    "http://224.0.0.1/x.png",
    "http://[fe80::1]/x.png",
    "http://[fc00::1]/x.png",
    "http://[64:ff9b::a9fe:a9fe]/x.png",
    "http://localhost/x.png",
]


@pytest.mark.parametrize("url", BLOCKED)
async def test_private_destinations_are_refused(guarded: MediaKeep, owner: str, url: str) -> None:
    result = await guarded.ingest_url(url, owner=owner)
    assert result.status == "failed"
    assert result.error and result.error["code"] == "blocked_destination", result.error
    await assert_nothing_stored(guarded, owner)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://127.0.0.1/",
        "ftp://example.com/x.png",
        "data:image/png;base64,iVBORw0KGgo=",
        "http://fal.media@127.0.0.1/x.png",
    ],
)
async def test_non_http_and_credential_urls_are_refused(
    guarded: MediaKeep, owner: str, url: str
) -> None:
    result = await guarded.ingest_url(url, owner=owner)
    assert result.status == "failed"
    assert result.error and result.error["code"] in ("invalid_url", "blocked_destination")


async def test_trusted_public_stand_in_works(
    guarded: MediaKeep, public_provider: Provider, owner: str
) -> None:
    result = await guarded.ingest_url(public_provider.url("/img/1.png"), owner=owner)
    assert result.status == "stored", result.error


@pytest.mark.parametrize(
    "target", ["http://127.0.0.1:9/x.png", "http://[::1]:9/x.png", "http://169.254.169.254/latest/"]
)
async def test_redirect_to_private_address_is_refused(
    guarded: MediaKeep, public_provider: Provider, owner: str, target: str
) -> None:
    for path in (f"/redirect?to={target}", f"/redirect-chain/3?to={target}"):
        result = await guarded.ingest_url(public_provider.url(path), owner=owner)
        assert result.error and result.error["code"] == "blocked_destination", result.error
    await assert_nothing_stored(guarded, owner)


async def test_redirect_loops_stop(
    guarded: MediaKeep, public_provider: Provider, owner: str
) -> None:
    final = public_provider.url("/img/2.png")
    result = await guarded.ingest_url(
        public_provider.url(f"/redirect-chain/9?to={final}"), owner=owner
    )
    assert result.error and result.error["code"] == "too_many_redirects"


async def test_allowed_hosts_restrict_fetching(
    tmp_path: Path, request: pytest.FixtureRequest, provider: Provider, owner: str
) -> None:
    settings = make_settings(LOCAL, tmp_path, request, allowed_hosts=("cdn.example",))
    async with MediaKeep(settings) as keep:
        result = await keep.ingest_url(provider.url("/img/3.png"), owner=owner)
    assert result.error and result.error["code"] == "blocked_destination"


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("::ffff:10.1.2.3", False),
        ("2002:7f00:1::", False),  # 6to4 wrapping loopback
        ("::127.0.0.1", False),
        ("ff02::1", False),
        ("240.0.0.1", False),
        ("198.18.0.1", False),
    ],
)
def test_address_classification(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


def test_ip_spellings_are_understood() -> None:
    assert parse_ip_literal("2130706433") == ipaddress.ip_address("127.0.0.1")
    assert parse_ip_literal("0x7f.1") == ipaddress.ip_address("127.0.0.1")
    assert parse_ip_literal("[::1]") == ipaddress.ip_address("::1")
    assert parse_ip_literal("example.com") is None


def test_peer_check_refuses_private_socket_address() -> None:
    policy = NetworkPolicy.build(False, (), ())
    with pytest.raises(Exception, match="not a public address"):
        policy.check_peer(("127.0.0.1", 80))
    policy.check_peer(("93.184.216.34", 80))
