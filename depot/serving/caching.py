"""``Cache-Control`` and ``Expires`` for served files."""
from __future__ import annotations

import time
from typing import Optional, Tuple

from depot.utils import http_date

__all__ = ["cache_headers"]

# One formatted Expires per (second, max-age): formatting a date costs more
# than the rest of a small response's headers, and it changes once a second.
_last: Tuple[int, int, str] = (-1, -1, "")


def _expires_at(now: int, max_age: int) -> str:
    global _last
    last = _last
    if last[0] == now and last[1] == max_age:
        return last[2]
    value = http_date(now + max_age)
    _last = (now, max_age, value)  # one tuple assignment: safe across threads
    return value


def cache_headers(max_age: int, link_remaining: Optional[int] = None, now: Optional[float] = None) -> Tuple[str, str]:
    """``(Cache-Control, Expires)`` values.

    Files are ``public`` for ``max_age`` seconds, filedepot's
    ``max-age=<N>, public``.  A file reached through a signed link
    (``link_remaining`` seconds left) is ``private`` and is never cached
    past the link's expiry: a shared cache would otherwise keep serving it
    to anyone after the link stopped working.
    """
    second = int(time.time() if now is None else now)
    if link_remaining is None:
        return "max-age=%d, public" % max_age, _expires_at(second, max_age)
    max_age = max(0, min(max_age, link_remaining))
    return "max-age=%d, private" % max_age, _expires_at(second, max_age)
