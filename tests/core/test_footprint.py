"""What importing the library costs a process that only stores files: the service, the
webhook verifier and the video prober load when they are used, not before."""

from __future__ import annotations

import json
import subprocess
import sys

# Each is several MB of RSS and tens of ms of start-up: OpenSSL's bindings (fal webhook
# signatures), PyJWT (bearer tokens), FastAPI (the HTTP service), PyAV (FFmpeg's libraries).
DEFERRED = ("cryptography", "jwt", "fastapi", "av")


def test_importing_the_library_defers_what_only_some_callers_need() -> None:
    code = (
        "import json, sys\n"
        "from mediakeep import MediaKeep, Settings\n"
        f"print(json.dumps([m for m in {DEFERRED!r} if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == []
