"""Which network destinations we are willing to fetch from.

The check runs on the addresses the resolver hands to the connector, so the address we
connect to is the address we checked: a DNS answer that changes between check and
connect (rebinding) cannot slip through, and every redirect hop is checked again.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from ..errors import BlockedDestination, InvalidUrl

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# NAT64 embeds an IPv4 address in the low 32 bits; treat it like the address it maps to.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    # IPv4-compatible (deprecated) ::a.b.c.d
    if int(ip) >> 32 == 0 and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip))
    return None


def is_public_address(ip: IPAddress) -> bool:
    """True only for globally routable unicast addresses."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            return is_public_address(inner)
    return bool(
        ip.is_global
        and not ip.is_multicast
        and not ip.is_reserved
        and not ip.is_loopback
        and not ip.is_link_local
        and not ip.is_private
        and not ip.is_unspecified
    )


@dataclass(frozen=True)
class NetworkPolicy:
    allow_private: bool = False
    allowed_hosts: tuple[str, ...] = ()
    trusted_networks: tuple[IPNetwork, ...] = field(default_factory=tuple)

    @classmethod
    def build(
        cls, allow_private: bool, allowed_hosts: Iterable[str], trusted_networks: Iterable[str]
    ) -> NetworkPolicy:
        return cls(
            allow_private=allow_private,
            allowed_hosts=tuple(h.lower().strip() for h in allowed_hosts if h.strip()),
            trusted_networks=tuple(
                ipaddress.ip_network(n, strict=False) for n in trusted_networks if n.strip()
            ),
        )

    def address_allowed(self, ip: IPAddress) -> bool:
        if self.allow_private or is_public_address(ip):
            return True
        return any(ip in net for net in self.trusted_networks if net.version == ip.version)

    def host_allowed(self, host: str) -> bool:
        if not self.allowed_hosts:
            return True
        host = host.lower().rstrip(".")
        for entry in self.allowed_hosts:
            # ".example.com" admits subdomains; "example.com" only itself.
            if entry.startswith("."):
                if host.endswith(entry) or host == entry[1:]:
                    return True
            elif host == entry:
                return True
        return False

    def check_url(self, url: URL) -> None:
        """Static checks on a URL before any connection: scheme, credentials, host."""
        if url.scheme not in ("http", "https"):
            raise InvalidUrl(f"only http and https URLs can be fetched, not {url.scheme or '?'}:")
        if url.user is not None or url.password is not None:
            raise InvalidUrl("URLs with credentials (user@host) are not accepted")
        host = url.raw_host
        if not host:
            raise InvalidUrl("the URL has no host")
        if not self.host_allowed(host):
            raise BlockedDestination(f"host {host!r} is not in the allowed hosts list")
        literal = parse_ip_literal(host)
        if literal is not None and not self.address_allowed(literal):
            raise BlockedDestination(f"{host} is not a public address")

    def check_peer(self, peer: Any) -> None:
        """Last line of defence: the socket's actual remote address."""
        if not peer:
            return
        ip = ipaddress.ip_address(peer[0].split("%", 1)[0])
        if not self.address_allowed(ip):
            raise BlockedDestination(f"connected to {ip}, which is not a public address")


def parse_ip_literal(host: str) -> IPAddress | None:
    """Parse a host that is an IP address in any spelling a resolver would accept."""
    h = host.strip("[]")
    try:
        return ipaddress.ip_address(h.split("%", 1)[0])
    except ValueError:
        pass
    # inet_aton accepts decimal, octal and hex forms (2130706433, 0x7f.1, 0177.0.0.1)
    # exactly as getaddrinfo would, so ask it instead of re-implementing it.
    try:
        return ipaddress.IPv4Address(socket.inet_aton(h))
    except (OSError, ValueError):
        return None


class GuardedResolver(AbstractResolver):
    """Resolves with getaddrinfo and drops every address the policy refuses."""

    def __init__(self, policy: NetworkPolicy) -> None:
        self._policy = policy
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [
            r for r in results if self._policy.address_allowed(ipaddress.ip_address(r["host"]))
        ]
        if not allowed:
            raise BlockedDestination(f"host {host!r} resolves only to non-public addresses")
        return allowed

    async def close(self) -> None:
        await self._inner.close()
