"""multipart/form-data read part by part as the request body arrives: a file part is an
async stream of chunks, never held whole in memory (python-multipart's push parser)."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ..errors import InvalidInput, UnsupportedMediaType

_Event = tuple[str, object]


def boundary_of(content_type: str | None) -> bytes:
    kind, params = parse_options_header(content_type or "")
    if kind != b"multipart/form-data":
        raise UnsupportedMediaType(
            "send the file as multipart/form-data", content_type=kind.decode("latin-1")
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidInput("the multipart/form-data content type has no boundary")
    return boundary


@dataclass
class Part:
    headers: dict[str, str]
    name: str | None
    filename: str | None
    _reader: MultipartReader = field(repr=False)

    def chunks(self) -> AsyncIterator[bytes]:
        return self._reader._part_data()

    async def read(self, limit: int) -> bytes:
        out = bytearray()
        async for chunk in self.chunks():
            out += chunk
            if len(out) > limit:
                raise InvalidInput(f"form field {self.name!r} is longer than {limit} bytes")
        return bytes(out)


class MultipartReader:
    def __init__(self, body: AsyncIterator[bytes], boundary: bytes) -> None:
        self._body = body
        self._events: deque[_Event] = deque()
        self._ended = False
        self._in_part = False
        self._headers: list[tuple[bytes, bytes]] = []
        self._field = b""
        self._value = b""
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
        )

    # The parser's callbacks turn into a queue of events the readers below consume.
    def _on_part_begin(self) -> None:
        self._headers = []

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers.append((self._field, self._value))
        self._field = self._value = b""

    def _on_headers_finished(self) -> None:
        self._events.append(("part", list(self._headers)))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self._events.append(("data", bytes(data[start:end])))

    def _on_part_end(self) -> None:
        self._events.append(("end", None))

    def _on_end(self) -> None:
        self._ended = True

    async def _next_event(self) -> _Event | None:
        while not self._events:
            if self._ended:
                return None
            try:
                chunk = await anext(self._body)
            except StopAsyncIteration:
                self._parser.finalize()
                if not self._events and not self._ended:
                    raise InvalidInput(
                        "the multipart body ended before its last boundary"
                    ) from None
                continue
            if not chunk:
                continue
            try:
                self._parser.write(chunk)
            except MultipartParseError as exc:
                raise InvalidInput(f"malformed multipart body: {exc}") from None
        return self._events.popleft()

    async def next_part(self) -> Part | None:
        # Skip whatever the caller left unread of the previous part.
        while True:
            event = await self._next_event()
            if event is None:
                return None
            kind, value = event
            if kind == "part":
                self._in_part = True
                assert isinstance(value, list)
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in value}
                _disp, params = parse_options_header(headers.get("content-disposition", ""))
                name = params.get(b"name")
                filename = params.get(b"filename")
                return Part(
                    headers=headers,
                    name=None if name is None else name.decode("utf-8", "replace"),
                    filename=None if filename is None else filename.decode("utf-8", "replace"),
                    _reader=self,
                )

    async def _part_data(self) -> AsyncIterator[bytes]:
        while self._in_part:
            event = await self._next_event()
            if event is None:
                raise InvalidInput("the multipart body ended inside a part")
            kind, value = event
            if kind == "data":
                assert isinstance(value, bytes)
                yield value
            elif kind == "end":
                self._in_part = False
            else:  # pragma: no cover - the parser always ends a part before the next
                raise InvalidInput("malformed multipart body")

    async def drain(self) -> None:
        """Read the rest of the body, so the connection can serve the next request."""
        while await self._next_event() is not None:
            pass
