"""What a process that only stores files pays for the library: the service, the webhook
verifier, the video prober and the remote stores load when they are used, not before."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Each is several MB of RSS and tens of ms of start-up: OpenSSL's bindings (fal webhook
# signatures), PyJWT (bearer tokens), FastAPI (the HTTP service), PyAV (FFmpeg's libraries),
# obstore (the S3 store; this process uses the local one).
DEFERRED = ("cryptography", "jwt", "fastapi", "av", "obstore")


def loaded_after(code: str, modules: tuple[str, ...], cwd: Path) -> list[str]:
    """Which of ``modules`` a fresh interpreter has imported after running ``code``."""
    report = f"print(json.dumps([m for m in {modules!r} if m in sys.modules]))"
    script = f"import json, sys\n{code}\n{report}\n"
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=cwd,
    )
    found: list[str] = json.loads(out.stdout.splitlines()[-1])
    return found


def test_a_keep_on_the_local_store_defers_what_only_some_callers_need(tmp_path: Path) -> None:
    code = (
        "from mediakeep import MediaKeep, Settings\n"
        f"keep = MediaKeep(Settings(data_dir={str(tmp_path)!r}))\n"
    )
    assert loaded_after(code, DEFERRED, tmp_path) == []
