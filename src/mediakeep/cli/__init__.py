"""The ``mediakeep`` command.

A command's start-up imports build ~100,000 objects that live as long as the process
(modules, classes, SQLAlchemy's and pydantic's tables) and make next to no garbage. The
cyclic collector would still scan them ~250 times during the imports and again, several
times over, while the interpreter shuts down: measured at ~0.08 and ~0.23 CPU-s, a third of
a short ``ingest``. So collection is off until the command has imported what it runs; then
``common.resume_collection`` freezes those objects out of every later scan (shutdown's
included) and turns it back on."""

import gc

gc.disable()
