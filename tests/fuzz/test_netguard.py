"""The SSRF guard under generated input: any URL either passes the static checks or is
refused with a typed error, and a private or loopback address is refused in every spelling
a resolver would accept (decimal, octal, hex, shortened, IPv6-embedded, full-width)."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from yarl import URL

from mediakeep.errors import BlockedDestination, InvalidUrl
from mediakeep.pipeline.fetch import Fetcher, FetchOptions
from mediakeep.pipeline.netguard import NetworkPolicy, is_public_address, parse_ip_literal
from tests.fuzz import fuzz
from tests.support.aio import run_sync

STRICT = NetworkPolicy.build(False, (), ())
# Only "127.0.0.1" passes the host list and loopback is refused: nothing can be fetched,
# so Fetcher.open can run on any input without a connection ever being made.
NOTHING_PASSES = NetworkPolicy.build(False, ("127.0.0.1",), ())

FULL_WIDTH = {ord(c): 0xFF10 + i for i, c in enumerate("0123456789")} | {ord("."): 0x3002}
PRIVATE_NETS = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/29",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
]


@st.composite
def private_ipv4(draw: st.DrawFn) -> ipaddress.IPv4Address:
    net = ipaddress.ip_network(draw(st.sampled_from(PRIVATE_NETS)))
    offset = draw(st.integers(0, net.num_addresses - 1))
    return ipaddress.IPv4Address(int(net.network_address) + offset)


def _num(value: int, style: str) -> str:
    if style == "hex":
        return hex(value)
    if style == "HEX":
        return "0X" + format(value, "X")
    if style == "oct":
        return "0" + format(value, "o")
    return str(value)


@st.composite
def ipv4_spelling(draw: st.DrawFn, ip: ipaddress.IPv4Address) -> str:
    """One of the inet_aton forms: a, a.b, a.b.c or a.b.c.d, each part in its own base."""
    b = ip.packed
    n = int(ip)
    shape = draw(st.sampled_from([1, 2, 3, 4]))
    values = {
        1: [n],
        2: [b[0], n & 0xFFFFFF],
        3: [b[0], b[1], n & 0xFFFF],
        4: list(b),
    }[shape]
    styles = st.sampled_from(["dec", "hex", "HEX", "oct"])
    return ".".join(_num(v, draw(styles)) for v in values)


@st.composite
def ipv6_embedding(draw: st.DrawFn, ip: ipaddress.IPv4Address) -> str:
    n = int(ip)
    hi, lo = n >> 16, n & 0xFFFF
    form = draw(st.sampled_from(["mapped", "mapped-hex", "nat64", "6to4", "compat", "teredo"]))
    text = {
        "mapped": f"::ffff:{ip}",
        "mapped-hex": f"::ffff:{hi:x}:{lo:x}",
        "nat64": f"64:ff9b::{hi:x}:{lo:x}",
        "6to4": f"2002:{hi:x}:{lo:x}::1",
        "compat": f"::{ip}",
        # Teredo keeps the client address inverted in the last 32 bits.
        "teredo": f"2001:0:4136:e378:8000:63bf:{hi ^ 0xFFFF:x}:{lo ^ 0xFFFF:x}",
    }[form]
    if draw(st.booleans()):
        text = str(ipaddress.IPv6Address(text)).upper()
    return f"[{text}]"


@st.composite
def private_host(draw: st.DrawFn) -> str:
    ip = draw(private_ipv4())
    if ip == ipaddress.IPv4Address("0.0.0.0") or draw(st.booleans()):
        host = draw(ipv4_spelling(ip))
        if draw(st.booleans()):
            # Full-width digits and dots: IDNA folds them back to ASCII.
            host = host.translate(FULL_WIDTH)
        return host
    return draw(ipv6_embedding(ip))


private_v6 = st.sampled_from(["::1", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "::"])


@fuzz
@given(private_host())
@example("0x7f.1")
@example("2130706433")
@example("0177.0.0.1")
@example("[::ffff:169.254.169.254]")
def test_private_ipv4_in_any_spelling_is_blocked(host: str) -> None:
    try:
        url = URL(f"http://{host}/x.png", encoded=False)
    except ValueError:
        return  # not a URL at all: Fetcher.open refuses it as InvalidUrl
    with pytest.raises((BlockedDestination, InvalidUrl)):
        STRICT.check_url(url)


@fuzz
@given(private_v6, st.sampled_from(["", "%eth0", "%25lo"]))
def test_private_ipv6_is_blocked(ip: str, zone: str) -> None:
    try:
        url = URL(f"http://[{ip}{zone}]/x", encoded=False)
    except ValueError:
        return
    with pytest.raises((BlockedDestination, InvalidUrl)):
        STRICT.check_url(url)


@fuzz
@given(st.integers(0, 2**32 - 1), st.data())
def test_literal_parsing_agrees_with_the_system_resolver(n: int, data: st.DataObject) -> None:
    """What parse_ip_literal reads is exactly the address getaddrinfo would connect to, so
    a spelling the guard does not recognise cannot reach a private address either."""
    ip = ipaddress.IPv4Address(n)
    host = data.draw(st.one_of(ipv4_spelling(ip), st.text("0123456789abcdefxX.", max_size=20)))
    try:
        info = socket.getaddrinfo(host, 80, socket.AF_INET, 0, 0, socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        resolved = None
    else:
        resolved = ipaddress.ip_address(info[0][4][0])
    parsed = parse_ip_literal(host)
    if resolved is not None:
        assert parsed == resolved
    if parsed is not None and not is_public_address(parsed):
        with pytest.raises(BlockedDestination):
            STRICT.check_url(URL.build(scheme="http", host=host, path="/"))


url_text = st.one_of(
    st.text(max_size=60),
    st.builds(
        "{}://{}{}{}".format,
        st.sampled_from(["http", "https", "ftp", "file", "HTTP", "javascript", ""]),
        st.sampled_from(["", "user:pw@", "@", "a@b@"]),
        st.one_of(private_host(), st.text(max_size=20), st.sampled_from(["127.0.0.1", "[::1]"])),
        st.sampled_from(["", "/", ":80/x", ":0", ":99999/", "/%00", "?a=b", "#f", "\\..\\"]),
    ),
)


@settings(fuzz, max_examples=150)
@given(url_text)
@example("http://127.0.0.1:99999/")
@example("http://[::1")
@example("http://a b/")
@example("http://\x00/")
def test_fetch_refuses_anything_it_cannot_fetch_with_a_typed_error(text: str) -> None:
    async def attempt() -> None:
        async with Fetcher(NOTHING_PASSES, FetchOptions(max_retries=0)) as fetcher:
            download = await fetcher.open(text)
            download.close()

    with pytest.raises((InvalidUrl, BlockedDestination)):
        run_sync(attempt())
