"""A copy of a stream's bytes for a check made after the upload (the image decode check).

Writing keeps a reference to each chunk instead of copying it: the chunks are the very
objects handed to the store. A body small enough to go to the store as one buffer does not
need the spool (the check reads that buffer, during the upload); for a longer one the
chunks are joined once, in the media thread that reads them. Past ``limit`` bytes the copy
rolls over to a temporary file, so memory stays bounded whatever the size."""

from __future__ import annotations

import io
import tempfile
from typing import IO


class Spool:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._chunks: list[bytes] = []
        self._size = 0
        self._file: IO[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._file is not None:
            self._file.write(data)
            return
        self._chunks.append(data)
        self._size += len(data)
        if self._size > self._limit:
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
            for chunk in self._chunks:
                self._file.write(chunk)
            self._chunks = []

    def reader(self) -> IO[bytes]:
        """The bytes written, from the start (call it where blocking is fine)."""
        if self._file is not None:
            self._file.seek(0)
            return self._file
        data = b"".join(self._chunks)
        self._chunks = [data]
        return io.BytesIO(data)

    def close(self) -> None:
        self._chunks = []
        if self._file is not None:
            self._file.close()
            self._file = None
