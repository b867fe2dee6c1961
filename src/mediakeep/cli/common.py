"""What every CLI command shares: output, errors, and a MediaKeep for one command.

Commands import what they run inside their own bodies, and the module level holds only
typer and the options: ``mediakeep --help`` then loads neither the library nor its
database and HTTP stacks, and each command loads what it uses (an ``ingest --json`` never
loads rich, the maintenance code or the job worker)."""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from ..errors import MediaKeepError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from ..keep import MediaKeep
    from ..settings import Settings

T = TypeVar("T")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
OwnerOpt = Annotated[str, typer.Option("--owner", "-o", help="Owner (tenant) id.")]


class Output:
    """Standard output or error through a rich console, made on the first print: a
    command that prints only JSON never imports rich (~40 ms of start-up CPU).

    Markup is off: what we print is full of URLs, keys and error messages, and rich would
    take anything in them like ``[not_found]`` for a style and drop it. Colour goes
    through ``styled``."""

    def __init__(self, *, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr, markup=False)
        return self._console

    def print(self, *objects: Any, **options: Any) -> None:
        self.console.print(*objects, **options)


out = Output()
err = Output(stderr=True)


def styled(*parts: str | tuple[str, str]) -> Text:
    """One line from plain parts and (text, style) parts, none of them read as markup."""
    from rich.text import Text

    return Text.assemble(*parts)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def fail(exc: MediaKeepError, as_json: bool) -> None:
    if as_json:
        emit_json({"error": exc.to_dict()})
    else:
        err.print(styled(("error", "red"), f" [{exc.code}] {exc.message}"))
    raise typer.Exit(1)


def load_settings() -> Settings:
    """The settings from the environment and ``.env``."""
    from ..settings import Settings

    return Settings()


def resume_collection() -> None:
    """The command has imported what it runs: what exists now lives until exit, so it is
    frozen out of the collector's scans, and collection (off since start-up: see the
    package's docstring) resumes. Every command that runs for long calls this first."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, on uvloop where it is installed: measured here at ~12% less CPU per
    stored file than the stock loop, which matters for long ingests and workers."""
    import asyncio

    resume_collection()

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is not built for every platform
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def with_keep(fn: Callable[[MediaKeep], Awaitable[T]], as_json: bool) -> T:
    from ..keep import MediaKeep

    async def run() -> T:
        async with MediaKeep(load_settings()) as keep:
            return await fn(keep)

    try:
        return run_async(run())
    except MediaKeepError as exc:
        fail(exc, as_json)
        raise AssertionError("unreachable") from exc
