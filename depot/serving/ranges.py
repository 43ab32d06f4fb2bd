"""The ``Range`` request header (RFC 9110 section 14), bytes unit, one range."""
from __future__ import annotations

import enum
import re
from typing import Final, Optional, Tuple, Union

__all__ = ["UNSATISFIABLE", "parse_range", "content_range"]


class _Unsatisfiable(enum.Enum):
    """Marker: the header is valid but no byte of the file is in it (416).

    A one-member enum so that type checkers narrow ``x is UNSATISFIABLE``.
    """

    UNSATISFIABLE = "UNSATISFIABLE"

    def __repr__(self) -> str:
        return "UNSATISFIABLE"


UNSATISFIABLE: Final = _Unsatisfiable.UNSATISFIABLE

# A single range with two 19-digit positions fits many times over; longer
# headers are ignored unparsed, which bounds the work a request can cause.
MAX_HEADER_LENGTH = 200
_SPEC = re.compile(r"[ \t]*([0-9]*)-([0-9]*)[ \t]*\Z")
_UNIT = re.compile(r"[ \t]*bytes[ \t]*=", re.IGNORECASE)


def parse_range(
    value: str, size: Optional[int]
) -> Union[None, Tuple[int, int], _Unsatisfiable]:
    """Decide what ``Range: value`` asks of a file of ``size`` bytes.

    Returns ``(start, stop)`` for one satisfiable range (bytes ``[start,
    stop)``, ``stop`` clipped to ``size``), :data:`UNSATISFIABLE` when the
    range lies wholly past the end, and ``None`` when the header must be
    ignored and the whole file sent: a malformed or overlong header, another
    unit, several ranges (RFC 9110 lets a server ignore ``Range``, and a
    multipart answer would let thousands of small ranges burn CPU), an
    unknown size, or an empty file (where no range is satisfiable yet a 416
    would make a plain download fail).
    """
    if size is None or size <= 0 or len(value) > MAX_HEADER_LENGTH:
        return None
    unit = _UNIT.match(value)
    if unit is None:
        return None
    specs = [spec for spec in value[unit.end():].split(",") if spec.strip()]
    if len(specs) != 1:
        return None
    match = _SPEC.match(specs[0])
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0:
            return UNSATISFIABLE
        return max(0, size - suffix), size
    start = int(first)
    if last and int(last) < start:
        return None  # invalid by the grammar: ignored, not unsatisfiable
    if start >= size:
        return UNSATISFIABLE
    stop = size if not last else min(int(last) + 1, size)
    return start, stop


def content_range(start: int, stop: int, size: int) -> str:
    """The ``Content-Range`` value of a 206 carrying bytes ``[start, stop)``."""
    return "bytes %d-%d/%d" % (start, stop - 1, size)
