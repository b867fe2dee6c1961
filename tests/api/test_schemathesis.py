"""Property-based API testing: schemathesis generates requests from /openapi.json (valid and
invalid ones) against the real server and checks every response: no 5xx, and status,
content type, headers and body all as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.conftest import API_BACKENDS, ApiFactory, new_owner
from tests.conftest import Backend
from tests.core.helpers import png_bytes

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
# Positive-data acceptance is left out on purpose: the service judges uploads by their
# bytes (a "valid" multipart body of random bytes is rightly a 415), and cursors are
# opaque; no schema can express either.
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "ignored_auth",
    "use_after_free",
    "ensure_resource_availability",
]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("backend", API_BACKENDS, ids=lambda b: b.id)
def test_schemathesis_finds_no_errors(
    backend: Backend, api_for: ApiFactory, tmp_path: Path
) -> None:
    api = api_for(
        backend,
        # Generated URLs must never leave the machine: only "127.0.0.1" passes the host
        # list, and loopback is refused, so every fetch fails before any connection.
        allow_private_networks=False,
        allowed_hosts=("127.0.0.1",),
        ingest_rate_limit=0,
    )
    owner = new_owner()
    # Something real to find, so reads and deletes are exercised beyond 404.
    c = api.client(owner)
    for i in range(3):
        assert (
            c.post("/v1/uploads", files={"file": ("a.png", png_bytes(200 + i))}).status_code == 201
        )
    token = api.token(owner, expires_in=3600)
    proc = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{api.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            ",".join(CHECKS),
            "--max-examples",
            "50",
            "--workers",
            "1",
            "--seed",
            "20261122",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--request-timeout",
            "30",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=200,
        cwd=tmp_path,
    )
    out = proc.stdout[-8000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, out
    assert "No issues found" in proc.stdout or "passed" in proc.stdout, out
