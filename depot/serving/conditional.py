"""Conditional requests (RFC 9110 section 13) for GET and HEAD."""
from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Callable, Optional

from .dates import parse_http_date
from .etags import etag_list_matches, strong_match

__all__ = ["Outcome", "evaluate_preconditions", "if_range_holds"]


class Outcome(enum.Enum):
    """What the preconditions of a request allow."""

    PROCEED = 200
    NOT_MODIFIED = 304
    BAD_REQUEST = 400
    PRECONDITION_FAILED = 412


# Enum members read through the class cost a descriptor call each (Python
# 3.11); every request evaluates its preconditions, so plain names it is.
PROCEED, NOT_MODIFIED, BAD_REQUEST, PRECONDITION_FAILED = (
    Outcome.PROCEED, Outcome.NOT_MODIFIED, Outcome.BAD_REQUEST, Outcome.PRECONDITION_FAILED
)


def evaluate_preconditions(
    etag: str,
    last_modified: Optional[datetime],
    if_match: Optional[str] = None,
    if_unmodified_since: Optional[str] = None,
    if_none_match: Optional[str] = None,
    if_modified_since: Optional[str] = None,
    parse_date: Callable[[str], datetime] = parse_http_date,
) -> Outcome:
    """Evaluate the precondition headers of a GET or HEAD in RFC 9110's order (13.2.2).

    ``None`` means the header is absent.  ``If-Modified-Since`` is only looked
    at without ``If-None-Match``.  A malformed ``If-Modified-Since`` answers
    400, as filedepot did (RFC 9110 would ignore it); a malformed
    ``If-Unmodified-Since`` is ignored.  Dates compare to the second, and a
    file without a modification time never counts as unmodified by date.
    ``parse_date`` parses ``If-Modified-Since`` (``ValueError`` when it is no
    date); whatever else it raises goes to the caller.
    """
    if if_match is not None:
        if not etag_list_matches(if_match, etag, weak=False):
            return PRECONDITION_FAILED
    elif if_unmodified_since is not None and last_modified is not None:
        try:
            limit = parse_http_date(if_unmodified_since)
        except ValueError:
            limit = None
        if limit is not None and last_modified > limit:
            return PRECONDITION_FAILED
    if if_none_match is not None:
        if etag_list_matches(if_none_match, etag, weak=True):
            return NOT_MODIFIED
    elif if_modified_since is not None:
        try:
            since = parse_date(if_modified_since)
        except ValueError:
            return BAD_REQUEST
        if last_modified is not None and last_modified <= since:
            return NOT_MODIFIED
    return PROCEED


# A modification time is a strong validator only once the clock has moved past
# its second: another write within that second would carry the same time.
_STRONG_AFTER = timedelta(seconds=1)


def if_range_holds(
    value: str, etag: str, last_modified: Optional[datetime], now: datetime
) -> bool:
    """Whether ``If-Range: value`` lets the ``Range`` header apply (RFC 9110 13.1.5).

    An entity-tag must equal ``etag`` by strong comparison.  A date must equal
    ``last_modified`` exactly, and only counts when ``last_modified`` is at
    least a second older than ``now`` (a naive UTC time).  Anything else,
    malformed values included, means "send the whole file".
    """
    value = value.strip()
    if value.startswith('"') or value.startswith("W/"):
        return strong_match(value, etag)
    if last_modified is None or now - last_modified < _STRONG_AFTER:
        return False
    try:
        return parse_http_date(value) == last_modified
    except ValueError:
        return False
