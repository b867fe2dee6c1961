"""A JPEG's structure, checked without decoding it: every marker segment, every table
the decoder would load, and the entropy-coded data's framing, through to EOI.

This is the check an image gets when nothing needs its pixels (no variants). Decoding a
1024x1024 q90 JPEG, even at 1/8 scale, reads all of its Huffman-coded data: ~2.7 ms here,
the largest CPU cost of a stored file. This walk costs ~0.1 ms and still refuses what goes
wrong in practice: a body cut short, bytes that are not JPEG past a valid header, broken
segment lengths, and tables a decoder rejects (a Huffman table whose code counts overflow
its code space, quantisation tables of the wrong size, a scan naming components the frame
does not have). What it cannot see is damage inside the entropy-coded bits themselves;
``MEDIAKEEP_IMAGE_CHECK=decode`` decodes every image for that.
"""

from __future__ import annotations

import mmap
import re

from .strip import CorruptMedia

# In entropy-coded data 0xFF is followed by 0x00 (a stuffed byte), a restart marker
# (D0-D7) or more 0xFF fill: anything else is the next marker.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
# Start-of-frame markers: the frame header carrying the size and components.
SOF_MARKERS = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)
_ARITHMETIC_SOF = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_DHT, _DQT, _DRI, _SOS, _EOI, _SOI, _DNL, _TEM = 0xC4, 0xDB, 0xDD, 0xDA, 0xD9, 0xD8, 0xDC, 0x01


def check_jpeg(data: bytes | mmap.mmap) -> None:
    """Raise CorruptMedia unless ``data`` is a structurally sound JPEG, SOI through EOI."""
    n = len(data)
    if data[:2] != b"\xff\xd8":
        raise CorruptMedia("JPEG does not start with SOI")
    pos = 2
    components: set[int] | None = None
    arithmetic = False
    scans = 0
    while True:
        if pos + 2 > n:
            raise CorruptMedia("JPEG ends before its end-of-image marker: the file is truncated")
        if data[pos] != 0xFF:
            raise CorruptMedia(f"JPEG segment structure is broken at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == _EOI:
            if scans == 0:
                raise CorruptMedia("JPEG ends before its image data")
            return
        if marker == _TEM:
            pos += 2
            continue
        if marker == _SOI or 0xD0 <= marker <= 0xD7 or marker < 0xC0:
            raise CorruptMedia(f"JPEG has a misplaced or reserved marker 0xFF{marker:02X}")
        if pos + 4 > n:
            raise CorruptMedia("JPEG ends inside a segment header: the file is truncated")
        length = (data[pos + 2] << 8) | data[pos + 3]
        end = pos + 2 + length
        if length < 2:
            raise CorruptMedia("JPEG segment length is invalid")
        if end > n:
            raise CorruptMedia("JPEG ends inside a segment: the file is truncated")
        body = data[pos + 4 : end]
        if marker in SOF_MARKERS:
            if components is not None:
                raise CorruptMedia("JPEG has more than one frame header")
            components = _frame_components(body)
            arithmetic = marker in _ARITHMETIC_SOF
        elif marker == _DHT:
            _check_huffman_tables(body)
        elif marker == _DQT:
            _check_quantisation_tables(body)
        elif marker in (_DRI, _DNL) and length != 4:
            raise CorruptMedia("JPEG restart interval or line count segment has the wrong size")
        elif marker == _SOS:
            if components is None:
                raise CorruptMedia("JPEG scan comes before its frame header")
            _check_scan_header(body, components, arithmetic)
            scans += 1
            # The scan's entropy-coded data runs up to the next marker.
            found = _NEXT_MARKER.search(data, end)
            if found is None:
                raise CorruptMedia("JPEG ends inside its image data: the file is truncated")
            pos = found.start()
            continue
        pos = end


def _frame_components(body: bytes) -> set[int]:
    if len(body) < 6:
        raise CorruptMedia("JPEG frame header is too short")
    precision, count = body[0], body[5]
    width = (body[3] << 8) | body[4]
    if precision not in (8, 12, 16) or width == 0:
        raise CorruptMedia("JPEG frame header has an invalid precision or width")
    if not 1 <= count <= 4 or len(body) != 6 + 3 * count:
        raise CorruptMedia("JPEG frame header has an invalid component count")
    ids: set[int] = set()
    for i in range(count):
        cid, sampling, table = body[6 + 3 * i : 9 + 3 * i]
        if not (1 <= sampling >> 4 <= 4 and 1 <= sampling & 0x0F <= 4) or table > 3:
            raise CorruptMedia("JPEG frame header has an invalid component")
        ids.add(cid)
    if len(ids) != count:
        raise CorruptMedia("JPEG frame header repeats a component")
    return ids


def _check_huffman_tables(body: bytes) -> None:
    """Each table's code counts must fit the canonical code space (the all-ones code is
    reserved), as a decoder builds it; DC tables code categories 0-15 only."""
    pos = 0
    while pos < len(body):
        if pos + 17 > len(body):
            raise CorruptMedia("JPEG Huffman table is cut short")
        kind, slot = body[pos] >> 4, body[pos] & 0x0F
        if kind > 1 or slot > 3:
            raise CorruptMedia("JPEG Huffman table has an invalid class or id")
        counts = body[pos + 1 : pos + 17]
        total = sum(counts)
        if total > 256 or pos + 17 + total > len(body):
            raise CorruptMedia("JPEG Huffman table has more codes than it holds")
        code = 0
        for bits, count in enumerate(counts, start=1):
            code += count
            if code >= 1 << bits:
                raise CorruptMedia("JPEG Huffman table's code counts overflow its code space")
            code <<= 1
        symbols = body[pos + 17 : pos + 17 + total]
        if kind == 0 and symbols and max(symbols) > 15:
            raise CorruptMedia("JPEG DC Huffman table codes an impossible category")
        pos += 17 + total


def _check_quantisation_tables(body: bytes) -> None:
    pos = 0
    while pos < len(body):
        precision, slot = body[pos] >> 4, body[pos] & 0x0F
        if precision > 1 or slot > 3:
            raise CorruptMedia("JPEG quantisation table has an invalid precision or id")
        pos += 1 + 64 * (precision + 1)
    if pos != len(body):
        raise CorruptMedia("JPEG quantisation table segment has the wrong size")


def _check_scan_header(body: bytes, components: set[int], arithmetic: bool) -> None:
    if not body or not 1 <= body[0] <= 4 or len(body) != 4 + 2 * body[0]:
        raise CorruptMedia("JPEG scan header has an invalid component count")
    for i in range(body[0]):
        cid, tables = body[1 + 2 * i], body[2 + 2 * i]
        if cid not in components:
            raise CorruptMedia("JPEG scan names a component its frame does not have")
        limit = 15 if arithmetic else 3
        if tables >> 4 > limit or tables & 0x0F > limit:
            raise CorruptMedia("JPEG scan names an invalid entropy table")
