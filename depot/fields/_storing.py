"""Store content and learn the facts an upload records, without reading the file back.

filedepot fetched every file it had just written (``depot.get(file_id)``) to
learn its filename, content type, modification time and public URL: one
extra storage round trip per upload, which on S3 or GridFS is a network
request.  The facts are known beforehand though: the filename and content
type are what :meth:`FileStorage.fileinfo` resolves (the very function the
storages call), and the storages stamp ``last_modified`` with
:func:`depot.io.utils.timestamp` while writing, so two stamps taken around
``create`` that agree give the stored value to the second.

A storage is trusted to follow these rules only after it has been checked:
the first upload to each storage class is read back and compared with the
prediction, and only a storage whose files never carry a public URL and
whose facts matched skips the read afterwards.  Any other storage (S3 with
public files, a third-party backend with its own clock) keeps the read.
"""
from __future__ import annotations

import threading
from datetime import datetime
from typing import Any, Dict, NamedTuple, Optional, Tuple

from depot.io import utils
from depot.io.interfaces import FileStorage, StoredFile
from depot.utils import utcnow_naive

__all__ = ["StoredFacts", "store"]


class StoredFacts(NamedTuple):
    """What an upload records about a file it has just stored."""

    file_id: str
    filename: Optional[str]
    content_type: Optional[str]
    uploaded_at: Optional[str]
    public_url: Optional[str]


# storage class -> whether its uploads can be described without reading them back
_predictable: Dict[type, bool] = {}
_lock = threading.Lock()


_TIMESTAMP = utils.timestamp
_last_second: Tuple[datetime, str] = (datetime.min, "")


def _utc_second() -> datetime:
    # The clock and rounding of depot.utils.utcnow_naive(), which timestamp() formats.
    return utcnow_naive().replace(microsecond=0)


def _format_second(second: datetime) -> str:
    """``utils.timestamp()``'s string for ``second`` (the last one is cached)."""
    global _last_second
    cached, text = _last_second
    if cached != second:
        text = second.strftime(utils.TIMESTAMP_FORMAT)
        _last_second = (second, text)
    return text


def _has_public_urls(stored: StoredFile) -> bool:
    return getattr(type(stored), "public_url", None) is not StoredFile.public_url


def _read_back(storage: FileStorage, file_id: str) -> Tuple[StoredFacts, bool]:
    """The facts of the stored file, and whether its class can give public URLs."""
    stored = storage.get(file_id)
    try:
        modified = stored.last_modified
        facts = StoredFacts(
            file_id,
            stored.filename,
            stored.content_type,
            modified.strftime(utils.TIMESTAMP_FORMAT) if modified is not None else None,
            stored.public_url,
        )
        return facts, _has_public_urls(stored)
    finally:
        stored.close()


def store(
    storage: FileStorage, content: Any, filename: Optional[str] = None, content_type: Optional[str] = None
) -> StoredFacts:
    """``storage.create(content, filename, content_type)`` and the facts of the new file."""
    content, filename, content_type = storage.fileinfo(content, filename, content_type)
    if utils.timestamp is _TIMESTAMP:
        # The unpatched stamp is the UTC wall clock to the second: two clock
        # reads around create() in the same second give it, and the string is
        # formatted once per second rather than twice per upload.
        start = _utc_second()
        file_id = storage.create(content, filename, content_type)
        end = _utc_second()
        before = _format_second(start)
        after = before if end == start else _format_second(end)
    else:  # patched (tests pin the time): ask it, as the storage does
        before = utils.timestamp()
        file_id = storage.create(content, filename, content_type)
        after = utils.timestamp()
    kind = type(storage)
    trusted = _predictable.get(kind)
    if trusted and before == after:
        return StoredFacts(file_id, filename, content_type, before, None)
    facts, public_urls = _read_back(storage, file_id)
    if trusted is None and before == after:
        matches = not public_urls and facts == (file_id, filename, content_type, before, None)
        with _lock:
            _predictable.setdefault(kind, matches)
    return facts

