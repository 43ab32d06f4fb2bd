"""Markers of direct uploads in object stores (S3, GCS): one small object under a reserved name.

A marker of the upload ``<id>`` is the object ``<prefix>.depot-pending/<id>``
beside the files (``<prefix><id>``).  File ids never start with a dot, so
the name can be neither a file nor hidden among them; :meth:`list` and the
fsck walkers drop it with :func:`visible`.  The object stores' methods call
these helpers, which only need the store's own put/get/delete/list of raw
objects (``_raw_put``, ``_raw_get``, ``_raw_delete``, ``_raw_list``).
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, List, Optional, Tuple

__all__ = ["PENDING_DIR", "marker_name", "is_marker_name", "visible", "pending_put", "pending_get",
           "pending_delete", "pending_list"]

#: The reserved "folder" of markers, below the storage's prefix.
PENDING_DIR = ".depot-pending/"


def marker_name(file_id: str) -> str:
    """The object name (below the storage prefix) of the marker of ``file_id``."""
    return PENDING_DIR + file_id


def is_marker_name(name: str) -> bool:
    """Whether ``name`` (below the storage prefix) is a marker rather than a file."""
    return name.startswith(PENDING_DIR)


def visible(names: Iterable[str]) -> List[str]:
    """The names of files among ``names``: markers left out."""
    return [name for name in names if not name.startswith(PENDING_DIR)]


def pending_put(storage: Any, file_id: str, data: bytes) -> None:
    storage._check_file_id(file_id)
    storage._raw_put(marker_name(file_id), bytes(data))


def pending_get(storage: Any, file_id: str) -> Optional[bytes]:
    storage._check_file_id(file_id)
    return storage._raw_get(marker_name(file_id))


def pending_delete(storage: Any, file_id: str) -> None:
    storage._check_file_id(file_id)
    storage._raw_delete(marker_name(file_id))


def pending_list(storage: Any) -> Iterator[Tuple[str, float]]:
    """``(file_id, written)`` of every marker; ``written`` is the object's modification time."""
    cut = len(PENDING_DIR)
    for name, modified in storage._raw_list(PENDING_DIR):
        file_id = name[cut:]
        if file_id and "/" not in file_id:
            yield file_id, modified
