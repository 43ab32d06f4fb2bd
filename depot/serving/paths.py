"""Which stored file, if any, a request path names."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Optional, Tuple
from urllib.parse import quote

if TYPE_CHECKING:
    from .signing import LinkSigner

__all__ = ["mount_prefix", "is_under_mount", "split_file_path", "quote_file_path", "mount_url"]

# Storage names are only looked up in the manager's dictionaries; the cap just
# keeps hostile paths from costing anything.
MAX_STORAGE_NAME = 255
# What can never be part of an id, whatever the storage: path separators, NUL
# and the other control characters (C0, DEL, C1).  Everything else (``user:42``,
# ``a+b``, spaces, non-ASCII...) is the storage's to accept or refuse.
_NEVER_IN_ID = re.compile(r"[/\\\x00-\x1f\x7f-\x9f]")
# Characters a path segment carries as they are (RFC 3986 pchar, minus ``%``):
# ids made of them appear in URLs unchanged, as filedepot wrote them.
_PCHAR_SAFE = "/!$&'()*+,;=:@-._~"


def mount_prefix(mountpoint: str) -> str:
    """The path prefix under which files are served, without a trailing ``/``.

    Raises ``ValueError('DepotMiddleware mountpoint must be an absolute path')``
    unless ``mountpoint`` starts with ``/``, as filedepot does.
    """
    if not isinstance(mountpoint, str) or not mountpoint.startswith("/"):
        raise ValueError("DepotMiddleware mountpoint must be an absolute path")
    return mountpoint.rstrip("/")


def is_under_mount(path: str, prefix: str) -> bool:
    """Whether ``path`` is the mountpoint itself or below it (``/depotx`` is not)."""
    return path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/")


def _text(segment: str) -> Optional[str]:
    # WSGI gives PATH_INFO as latin-1 code points of the raw bytes; URLs carry
    # names and ids as UTF-8 (see quote_file_path).
    try:
        return segment.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None


def split_file_path(path: str, prefix: str) -> Optional[Tuple[str, str]]:
    """``(storage name, file id)`` for ``<prefix>/<storage>/<id>``, else ``None``.

    Exactly two segments must follow the mountpoint; empty segments right
    after it are skipped, because filedepot 0.12 joined a mountpoint given
    with a trailing slash (``'/files/'``) into ``/files//<storage>/<id>`` and
    such URLs are stored in rows.  filedepot took the last two segments of
    any deeper path; refusing them means no odd path (``..``, extra
    segments) reaches a storage.  The id is refused only when it can never
    be one (:data:`_NEVER_IN_ID`, ``.`` and ``..``); the storage decides
    about the rest.
    """
    rest = path[len(prefix) + 1:].lstrip("/")
    name, sep, file_id = rest.partition("/")
    if not sep or not name or not file_id or len(name) > MAX_STORAGE_NAME:
        return None
    name_text, id_text = _text(name), _text(file_id)
    if name_text is None or id_text is None or id_text in (".", "..") or _NEVER_IN_ID.search(id_text):
        return None
    return name_text, id_text


def quote_file_path(path: str) -> str:
    """``'<storage>/<id>'`` as it goes into a URL: UTF-8, percent-encoded where a path needs it.

    Ids of the built-in storages (UUIDs, ObjectIds) come out unchanged; an id
    such as ``'a b?'`` becomes ``'a%20b%3F'``, which :func:`split_file_path`
    gets back once the server has decoded the URL.
    """
    return quote(path, safe=_PCHAR_SAFE)


def mount_url(prefix: str, path: str, signer: "Optional[LinkSigner]" = None) -> str:
    """The middleware's URL of ``'<storage>/<file id>'`` under ``prefix``; signed by ``signer`` if any.

    The inverse of :func:`split_file_path`.  Characters a URL path cannot
    carry are percent-encoded (filedepot encoded nothing; the ids of the
    built-in storages need no encoding).  Which URL a stored file gets (its
    storage's, this one, signed or not) is :class:`depot.links.Links`'s to decide.
    """
    url = "%s/%s" % (prefix, quote_file_path(path))
    if signer is not None:
        url = "%s?%s" % (url, signer.sign(path))
    return url
