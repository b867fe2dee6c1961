"""Range headers against a small reference model of RFC 9110's single byte range: for any
header and size, parse_range gives the model's range, None (serve it all) or the
unsatisfiable error, and every range it gives lies inside the object."""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from mediakeep.api.files import parse_range
from mediakeep.errors import InvalidInput
from mediakeep.stores.base import ByteRange
from tests.fuzz import fuzz

_SPEC = re.compile(r"([0-9]*)-([0-9]*)")


def model(header: str | None, size: int) -> ByteRange | type[InvalidInput] | None:
    """None: ignore the header; InvalidInput: answer 416."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    m = _SPEC.fullmatch(spec.strip())
    if m is None:
        return InvalidInput
    first, last = m.groups()
    if first == "":
        if last == "" or int(last) == 0 or size == 0:
            return InvalidInput
        return ByteRange(max(0, size - int(last)), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size or end < start:
        return InvalidInput
    return ByteRange(start, min(end, size - 1))


numbers = st.one_of(
    st.integers(0, 300).map(str),
    st.integers(0, 2**70).map(str),
    st.sampled_from(["", "+1", "-1", " 1", "1 ", "1_0", "0x10", "\u0661", "\u00b2", "1e3"]),
)
headers = st.one_of(
    st.none(),
    st.text(max_size=30),
    st.builds(
        "{}={}{}{}{}".format,
        st.sampled_from(["bytes", "BYTES", " bytes ", "items", ""]),
        st.sampled_from(["", " "]),
        numbers,
        st.sampled_from(["-", "", "--", "="]),
        numbers,
    ),
    st.builds("bytes={}-{},{}-".format, numbers, numbers, numbers),
)


@fuzz
@given(headers, st.integers(0, 1000))
@example("bytes=-5", 0)
@example("bytes=+1-", 100)
@example("bytes=1_0-2_0", 100)
@example("bytes=\u0661-", 100)
@example("bytes=\u00b2-", 100)
def test_parse_range_matches_the_model(header: str | None, size: int) -> None:
    expected = model(header, size)
    try:
        got = parse_range(header, size)
    except InvalidInput:
        assert expected is InvalidInput, f"{header!r} refused, model says {expected}"
        return
    assert got == expected
    if got is not None:
        assert 0 <= got.start <= got.end < size
