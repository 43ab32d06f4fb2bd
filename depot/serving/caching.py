"""``Cache-Control`` and ``Expires`` for served files, and the byte-bounded memo the serving code uses."""
from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Hashable, Optional, Tuple

from depot.utils import http_date

__all__ = ["cache_headers", "BoundedCache", "approximate_size", "NO_CACHE"]

#: ``Cache-Control`` when the middleware was given ``cache_max_age=None``.
NO_CACHE = "no-cache"

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


def cache_headers(
    max_age: Optional[int],
    link_remaining: Optional[int] = None,
    now: Optional[float] = None,
    make_date: Optional[Callable[[float], str]] = None,
) -> Tuple[str, str]:
    """``(Cache-Control, Expires)`` values.

    Files are ``public`` for ``max_age`` seconds, filedepot's
    ``max-age=<N>, public``.  A file reached through a signed link
    (``link_remaining`` seconds left) is ``private`` and is never cached
    past the link's expiry: a shared cache would otherwise keep serving it
    to anyone after the link stopped working.  ``max_age=None`` means "keep
    but revalidate every time" (``no-cache``, already expired).
    ``make_date`` formats the ``Expires`` time (a POSIX time) when a
    :class:`~depot.middleware.FileServeApp` subclass overrides it.
    """
    second = int(time.time() if now is None else now)
    if max_age is None:
        cache_control, max_age = NO_CACHE, 0
    elif link_remaining is None:
        cache_control = "max-age=%d, public" % max_age
    else:
        max_age = max(0, min(max_age, link_remaining))
        cache_control = "max-age=%d, private" % max_age
    expires = _expires_at(second, max_age) if make_date is None else make_date(second + max_age)
    return cache_control, expires


def approximate_size(*items: Any) -> int:
    """Bytes held by ``items`` (strings, numbers, tuples of them), as a cache entry costs."""
    total = 0
    for item in items:
        if isinstance(item, tuple):
            total += sys.getsizeof(item) + approximate_size(*item)
        elif item is not None:
            total += sys.getsizeof(item)
    return total


class BoundedCache:
    """A least-recently-used memo bounded by total bytes as well as by entries.

    An entry count alone bounds nothing when entries grow with their inputs
    (a 200,000-character file name makes a megabyte-sized header): the byte
    budget is what keeps a worker's memory flat.  An entry larger than the
    whole budget is never kept.  Thread-safe.
    """

    def __init__(self, max_bytes: int, max_entries: int) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.nbytes = 0
        self._entries: "OrderedDict[Hashable, Tuple[Any, int]]" = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> Any:
        """The value kept for ``key``, or ``None``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def peek(self, key: Hashable) -> Any:
        """The value kept for ``key``, or ``None``, leaving its age alone: no lock (one dict read)."""
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def put(self, key: Hashable, value: Any, size: int) -> None:
        """Keep ``value`` (costing ``size`` bytes, key included), forgetting the oldest entries as needed."""
        if size > self.max_bytes:
            return
        with self._lock:
            entries = self._entries
            old = entries.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            entries[key] = (value, size)
            self.nbytes += size
            while self.nbytes > self.max_bytes or len(entries) > self.max_entries:
                _, (_, dropped) = entries.popitem(last=False)
                self.nbytes -= dropped

    def pop(self, key: Hashable) -> None:
        """Forget ``key``, if kept."""
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self.nbytes -= entry[1]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nbytes = 0
