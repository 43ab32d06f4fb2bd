"""Which stored file, if any, a request path names."""
from __future__ import annotations

import re
from typing import Optional, Tuple

__all__ = ["mount_prefix", "is_under_mount", "split_file_path", "FILE_ID_PATTERN"]

#: Every id a storage hands out (UUIDs, ObjectIds...) fits this; anything else
#: (dots first, slashes, NUL, percent signs, non-ASCII, overlong) is refused
#: before a storage sees it.
FILE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}\Z")
# Storage names are only looked up in the manager's dictionaries; the cap just
# keeps hostile paths from costing anything.
MAX_STORAGE_NAME = 255


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


def split_file_path(path: str, prefix: str) -> Optional[Tuple[str, str]]:
    """``(storage name, file id)`` for ``<prefix>/<storage>/<id>``, else ``None``.

    Exactly two segments must follow the mountpoint.  filedepot took the last
    two segments of any deeper path; refusing them means no odd path (``..``,
    extra segments, empty segments) reaches a storage.
    """
    rest = path[len(prefix) + 1:]
    name, sep, file_id = rest.partition("/")
    if not sep or not name or len(name) > MAX_STORAGE_NAME:
        return None
    if FILE_ID_PATTERN.match(file_id) is None:
        return None
    return name, file_id
