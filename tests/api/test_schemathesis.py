"""Property-based API testing: schemathesis generates requests from /openapi.json (valid and
invalid ones) against the real server and checks every response: no 5xx, and status,
content type, headers and body all as documented."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import schemathesis

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
            # 25 keeps the two backends' runs near 50 s each on 2 cores (50 took ~100 s, a
            # third of the suite); a deeper search is one variable away.
            os.environ.get("MEDIAKEEP_SCHEMATHESIS_EXAMPLES", "25"),
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


# -- stateful: chains of calls along the schema's OpenAPI links ---------------------------


@pytest.mark.timeout(180)
def test_stateful_links_find_no_errors(api_for: ApiFactory) -> None:
    """schemathesis chains calls along the links in /openapi.json (upload -> read, sign,
    change visibility, delete; async ingest -> job; asset -> collection -> slots) and
    checks every answer: no 5xx, and status and body as documented."""
    from hypothesis import HealthCheck, Phase
    from hypothesis import settings as hsettings
    from hypothesis.stateful import run_state_machine_as_test
    from schemathesis.checks import (
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    api = api_for(
        API_BACKENDS[0],
        allow_private_networks=False,
        allowed_hosts=("127.0.0.1",),
        ingest_rate_limit=0,
    )
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    links = [
        link
        for path in schema.raw_schema["paths"].values()
        for op in path.values()
        for response in op.get("responses", {}).values()
        for link in response.get("links", {})
    ]
    assert len(links) >= 15, links

    @schema.hook
    def map_body(context: Any, body: Any) -> Any:
        # Random bytes are rightly refused as unknown media (415): give most uploads a
        # real image so the chains that start from a stored asset get going.
        op = context.operation
        if op.method.upper() == "POST" and op.path == "/v1/uploads" and isinstance(body, dict):
            return {**body, "file": png_bytes(random.randrange(1 << 30))}
        return body

    @schema.hook
    def map_query(context: Any, query: Any) -> Any:
        # "owner" is for the service role; from a user's token it is rightly a 403, which
        # would end most chains before they start.
        if isinstance(query, dict):
            query.pop("owner", None)
        return query

    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]
    seen: Counter[tuple[str, int]] = Counter()

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        token = ""

        def setup(self) -> None:
            # A fresh owner per run: the same choices then meet the same (empty) world,
            # which hypothesis needs to replay and shrink a failing sequence.
            super().setup()
            self.token = api.token(new_owner(), expires_in=3600)

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": {"Authorization": f"Bearer {self.token}"}, "timeout": 30}

        def after_call(self, response: Any, case: Any) -> None:
            seen[(f"{case.method.upper()} {case.path}", response.status_code)] += 1

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=checks)

    run_state_machine_as_test(
        Machine,
        settings=hsettings(
            max_examples=int(os.environ.get("MEDIAKEEP_STATEFUL_EXAMPLES", "40")),
            stateful_step_count=8,
            deadline=None,
            derandomize=True,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        ),
    )
    # The chains really ran: an uploaded asset's id reached a later call that found it.
    on_asset = [
        (f"{method} /v1/assets/{{asset_id}}{tail}", status)
        for method, tail, status in [
            ("GET", "", 200),
            ("GET", "/url", 200),
            ("GET", "/content", 200),
            ("GET", "/variants", 200),
            ("PUT", "/visibility", 200),
            ("DELETE", "", 204),
        ]
    ]
    assert sum(seen[k] for k in on_asset) > 0, seen
