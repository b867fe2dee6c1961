"""Loopback networking helpers shared by the test servers."""

from __future__ import annotations

import socket
import time
import urllib.request

LOOPBACK = "127.0.0.1"

# The helpers only ever talk to servers on this machine; an inherited
# http_proxy must not reroute loopback traffic somewhere else.
direct_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Return `count` distinct ports that were free a moment ago.

    All sockets stay bound until every port is chosen, so the kernel cannot
    hand out the same port twice within one call.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port(host: str = LOOPBACK) -> int:
    return free_ports(1, host)[0]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, timeout: float = 30.0, *, open_: bool = True) -> bool:
    """Poll until the port accepts (or, with open_=False, refuses) connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port) == open_:
            return True
        time.sleep(0.05)
    return False
