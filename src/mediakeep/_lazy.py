"""Lazy re-exports for packages (PEP 562).

A package that re-exports names from its modules would otherwise import all of them the
moment any one of its modules is imported: ``import mediakeep.settings`` would load the
whole library, the CLI would load it to print ``--help``, and the facade would load the job
worker and the fal integration for a process that only stores files. With ``exports``,
``from mediakeep import MediaKeep`` imports ``mediakeep.keep`` and what it needs, no more.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def exports(
    package: str, where: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``. ``where`` maps each exported name
    to the module that defines it, relative to the package (``".keep"``), or to
    ``".module:attribute"`` when the name differs there."""

    def __getattr__(name: str) -> Any:
        target = where.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = target.partition(":")
        value = getattr(importlib.import_module(module, package), attribute or name)
        # Kept on the package: later lookups are plain attribute reads.
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__
