"""Small helpers shared by every layer: naive UTC times, Content-Disposition, option coercion."""
from __future__ import annotations

import calendar
import datetime as _dt
import time
import unicodedata
from email.utils import formatdate
from typing import Any
from urllib.parse import quote

try:  # anyascii transliterates every script; without it we fall back to accent stripping
    from anyascii import anyascii as _anyascii
except ImportError:  # pragma: no cover - exercised only where anyascii is absent
    _anyascii = None  # type: ignore[assignment]  # optional dependency, checked before use

__all__ = [
    "utcnow_naive",
    "utcfromtimestamp_naive",
    "make_content_disposition",
    "ascii_filename",
    "asbool",
    "asint",
    "http_date",
]

# Characters RFC 5987 allows unescaped in an ext-value (attr-char minus the ones
# filedepot never left bare); kept identical so headers stay byte-for-byte compatible.
_RFC5987_SAFE = "!#$&+-.^_`|~"


def utcnow_naive() -> _dt.datetime:
    """The current UTC time as a naive :class:`datetime.datetime`."""
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


def utcfromtimestamp_naive(ts: float) -> _dt.datetime:
    """Convert a POSIX timestamp to a naive UTC :class:`datetime.datetime`."""
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).replace(tzinfo=None)


def ascii_filename(fname: str) -> str:
    """Transliterate ``fname`` to printable ASCII for the legacy ``filename=`` parameter.

    Quotes and backslashes are escaped and control characters dropped, so the
    result can always be embedded in a quoted-string (RFC 9110 section 5.6.4).
    """
    if _anyascii is not None:
        text = _anyascii(fname)
    else:
        text = unicodedata.normalize("NFKD", fname).encode("ascii", "ignore").decode("ascii")
    text = "".join(ch for ch in text if 0x20 <= ord(ch) < 0x7F)
    return text.replace("\\", "\\\\").replace('"', '\\"')


def make_content_disposition(disposition: str, fname: str) -> str:
    """Build a Content-Disposition value carrying ``fname`` in both RFC 6266 forms.

    ``disposition`` is ``'inline'`` or ``'attachment'``.  The result is
    ``'<disposition>;filename="<ascii>";filename*=utf-8\\'\\'<percent-encoded>'``,
    which is the exact form filedepot 0.12 produced for ordinary names.  Unlike
    filedepot, a quote, backslash or control character in ``fname`` cannot
    break the header.
    """
    fname = "".join(ch for ch in fname if ch >= " " and ch != "\x7f")
    encoded = quote(fname, safe=_RFC5987_SAFE, encoding="utf-8", errors="strict")
    return "%s;filename=\"%s\";filename*=utf-8''%s" % (disposition, ascii_filename(fname), encoded)


_TRUE = frozenset(("true", "yes", "on", "y", "t", "1"))
_FALSE = frozenset(("false", "no", "off", "n", "f", "0", ""))


def asbool(value: Any) -> bool:
    """Interpret a configuration value (possibly a string from an INI file) as a bool.

    ``'false'``, ``'0'``, ``'off'`` and friends are false, which plain ``bool()``
    would get wrong.  Unrecognised strings raise :class:`ValueError`.
    """
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError("Cannot interpret %r as a boolean" % (value,))
    return bool(value)


def asint(value: Any, name: str = "value") -> int:
    """Interpret a configuration value as an int, naming the option when it is not one."""
    if isinstance(value, bool):
        raise ValueError("%s must be an integer, got %r" % (name, value))
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError("%s must be an integer, got %r" % (name, value)) from None


def http_date(value: "float | _dt.datetime | None" = None) -> str:
    """Format a naive-UTC datetime or a POSIX time (``None``: now) as an RFC 9110 HTTP-date."""
    # email.utils is locale-independent, unlike time.strftime("%a ...").
    if isinstance(value, _dt.datetime):
        value = calendar.timegm(value.utctimetuple())
    return formatdate(time.time() if value is None else value, usegmt=True)
