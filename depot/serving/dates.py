"""HTTP-date parsing (RFC 9110 section 5.6.7)."""
from __future__ import annotations

from datetime import datetime
from email.utils import mktime_tz, parsedate_tz

from depot.utils import utcfromtimestamp_naive

__all__ = ["parse_http_date"]

# Dates longer than this are not dates; the cap keeps parsing cost bounded.
_MAX_DATE_LENGTH = 64


def parse_http_date(value: str) -> datetime:
    """Parse an HTTP-date into a naive UTC :class:`~datetime.datetime`.

    The three forms RFC 9110 requires recipients to accept (IMF-fixdate,
    RFC 850 and asctime) are understood, as are numeric zones.  Anything
    else raises :class:`ValueError`.
    """
    if len(value) > _MAX_DATE_LENGTH:
        raise ValueError("Not an HTTP date: too long")
    parsed = parsedate_tz(value)
    if parsed is None:
        raise ValueError("Not an HTTP date: %r" % (value,))
    try:
        return utcfromtimestamp_naive(mktime_tz(parsed))
    except (OverflowError, ValueError, OSError) as exc:
        # Years outside datetime's range (or the platform's time_t).
        raise ValueError("HTTP date out of range: %r" % (value,)) from exc
