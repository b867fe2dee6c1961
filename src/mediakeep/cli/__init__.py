"""The ``mediakeep`` command.

A command's start-up imports build ~100,000 objects that live as long as the process
(modules, classes, SQLAlchemy's and pydantic's tables) and make next to no garbage. The
cyclic collector would still scan them ~250 times during the imports and again, several
times over, while the interpreter shuts down: measured at ~0.08 and ~0.23 CPU-s, a third of
a short ``ingest``. So the console script (``main`` here) turns collection off before it
imports the commands; then ``common.resume_collection`` freezes those objects out of every
later scan (shutdown's included) and turns it back on. Importing this package in a process
of one's own (an app embedding the commands, a test) changes nothing about collection."""

import gc


def main() -> None:
    """The ``mediakeep`` console script."""
    gc.disable()
    from .main import app

    app(prog_name="mediakeep")
