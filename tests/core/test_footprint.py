"""What a process that only stores files pays for the library: the service, the webhook
verifier, the video prober and the remote stores load when they are used, not before."""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.core.helpers import loaded_after, png_bytes

# Each is several MB of RSS and tens of ms of start-up: OpenSSL's bindings (fal webhook
# signatures), PyJWT (bearer tokens), FastAPI (the HTTP service), PyAV (FFmpeg's libraries),
# obstore (the S3 store; this process uses the local one).
DEFERRED_PACKAGES = ("cryptography", "jwt", "fastapi", "av", "obstore")
# The library's own features that storing a file never uses: the job queue, runner and
# worker, the integrations, bundle archives (tarfile, gzip), maintenance, the other stores,
# the CLI and the HTTP service. Together ~16 ms of CPU and ~5 MB of RSS per process.
DEFERRED_MODULES = (
    "mediakeep.api.app",
    "mediakeep.bundles.archive",
    "mediakeep.bundles.cache",
    "mediakeep.cli.main",
    "mediakeep.integrations.fal",
    "mediakeep.integrations.fal_webhook",
    "mediakeep.integrations.generations",
    "mediakeep.integrations.persist",
    "mediakeep.integrations.tickets",
    "mediakeep.jobs.callbacks",
    "mediakeep.jobs.repo",
    "mediakeep.jobs.runner",
    "mediakeep.jobs.signals",
    "mediakeep.jobs.types",
    "mediakeep.jobs.worker",
    "mediakeep.maintenance.gc",
    "mediakeep.maintenance.tick",
    "mediakeep.stores.hybrid",
    "mediakeep.stores.s3",
    "mediakeep.stores.supabase",
    "mediakeep.sync",
)
DEFERRED = DEFERRED_PACKAGES + DEFERRED_MODULES


def test_a_keep_on_the_local_store_defers_what_only_some_callers_need(tmp_path: Path) -> None:
    code = (
        "from mediakeep import MediaKeep, Settings\n"
        f"keep = MediaKeep(Settings(data_dir={str(tmp_path)!r}))\n"
    )
    assert loaded_after(code, DEFERRED, tmp_path) == []


LAZY_PACKAGES = ("mediakeep", "mediakeep.jobs", "mediakeep.integrations")


def _declared(package: str) -> tuple[dict[str, str], dict[str, str]]:
    """What the package's ``TYPE_CHECKING`` imports say (for mypy) and what its runtime
    ``exports`` table says, each as name -> ".module:attribute"."""
    module = importlib.import_module(package)
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text())
    branch = next(n for n in tree.body if isinstance(n, ast.If))
    typed = {
        alias.asname or alias.name: f"{'.' * node.level}{node.module}:{alias.name}"
        for node in branch.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    call = next(
        n
        for n in ast.walk(ast.Module(body=branch.orelse, type_ignores=[]))
        if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "exports"
    )
    table: dict[str, str] = ast.literal_eval(call.args[1])
    runtime = {name: t if ":" in t else f"{t}:{name}" for name, t in table.items()}
    return typed, runtime


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_lazy_exports_are_what_the_type_checker_sees(package: str) -> None:
    typed, runtime = _declared(package)
    assert typed == runtime
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(runtime)
    for name, target in runtime.items():
        where, _, attribute = target.partition(":")
        expected = getattr(importlib.import_module(where, package), attribute)
        assert getattr(module, name) is expected
        assert name in dir(module)
    with pytest.raises(AttributeError):
        _ = module.no_such_name


def test_a_job_kind_finds_its_hooks_in_a_process_that_never_imported_them(
    tmp_path: Path,
) -> None:
    # Generation jobs update their generation through hooks that register on import; a
    # worker process may meet such a job before anything imported the integrations.
    code = (
        "from mediakeep.jobs.hooks import hooks_for\n"
        "assert 'mediakeep.integrations.generations' not in sys.modules\n"
        "assert hooks_for('generation').on_start is not None\n"
        "assert hooks_for('ingest').on_start is None\n"
    )
    assert loaded_after(code, ("mediakeep.integrations.generations",), tmp_path) == [
        "mediakeep.integrations.generations"
    ]


# What the command loads, by what it does: --help needs none of the library (pydantic is
# left out: typer itself coerces a command's options with it); an ingest that prints JSON
# needs the library's ingest path and nothing of the other commands, nor rich.
LIBRARY = ("sqlalchemy", "aiohttp", "PIL", "mediakeep.keep", "mediakeep.settings")
NOT_FOR_INGEST = (
    "rich",
    *(m for m in DEFERRED if m != "mediakeep.cli.main"),
    "mediakeep.maintenance.doctor",
    "mediakeep.maintenance.import_urls",
    "mediakeep.maintenance.migrate",
    "mediakeep.maintenance.verify",
)


def cli_at_exit(args: list[str], expression: str, tmp: Path) -> Any:
    """The value of ``expression`` (JSON) when the ``mediakeep`` command exits."""
    report = tmp / "at-exit.json"
    code = (
        "import atexit, gc\n"
        f"atexit.register(lambda: open({str(report)!r}, 'w').write(json.dumps({expression})))\n"
        f"sys.argv = ['mediakeep', *{args!r}]\n"
        "from mediakeep.cli import main\n"
        "main()\n"
    )
    subprocess.run(
        [sys.executable, "-c", f"import json, sys\n{code}"],
        capture_output=True,
        check=True,
        timeout=60,
        cwd=tmp,
        env={**os.environ, "MEDIAKEEP_DATA_DIR": str(tmp / "data")},
    )
    return json.loads(report.read_text())


def cli_loaded(args: list[str], modules: tuple[str, ...], tmp: Path) -> list[str]:
    """Which of ``modules`` the ``mediakeep`` command has imported when it exits."""
    found: list[str] = cli_at_exit(args, f"[m for m in {modules!r} if m in sys.modules]", tmp)
    return found


def test_the_cli_help_loads_none_of_the_library(tmp_path: Path) -> None:
    assert cli_loaded(["--help"], LIBRARY, tmp_path) == []
    assert cli_loaded(["ingest", "--help"], LIBRARY, tmp_path) == []


def test_a_cli_ingest_with_json_loads_only_the_ingest_path(tmp_path: Path) -> None:
    picture = tmp_path / "picture.png"
    picture.write_bytes(png_bytes(8))
    args = ["ingest", str(picture), "--owner", "alice", "--json"]
    # The first call makes the database (from the models: no Alembic), the second finds it.
    assert cli_loaded(args, ("alembic", *NOT_FOR_INGEST), tmp_path) == []
    assert cli_loaded(args, ("alembic", *NOT_FOR_INGEST), tmp_path) == []


def test_a_cli_command_collects_garbage_once_its_imports_are_done(tmp_path: Path) -> None:
    # The console script turns collection off for start-up (mediakeep.cli); the command's
    # run resumes it with
    # the start-up objects frozen, which also spares them the scans at interpreter exit.
    # Importing the commands in one's own process leaves collection alone.
    picture = tmp_path / "picture.png"
    picture.write_bytes(png_bytes(9))
    args = ["ingest", str(picture), "--owner", "alice", "--json"]
    enabled, frozen = cli_at_exit(args, "[gc.isenabled(), gc.get_freeze_count()]", tmp_path)
    assert enabled
    assert frozen > 10_000
    probe = "import gc, mediakeep.cli.main; print(gc.isenabled())"
    embedded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert embedded.stdout.strip() == "True"
