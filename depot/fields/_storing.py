"""Store an upload's content and learn the facts it records, without reading the file back.

filedepot fetched every file it had just written (``depot.get(file_id)``) to
learn its filename, content type, modification time and public URL: one
more storage round trip per upload, a network request on S3 or GridFS.
:meth:`~depot.io.interfaces.FileStorage.create_with_facts` returns them from
the write itself where the backend knows them, and reads back only where it
does not.

A public URL is recorded only when it is permanent: a signed URL would be
stored in the row and stop working when it expires, so such files are left
to the middleware, which redirects to a fresh one at every request.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple, Optional, Tuple

from depot.io import utils
from depot.io.interfaces import FileStorage

__all__ = ["UploadFacts", "store", "read_back"]


class UploadFacts(NamedTuple):
    """What an upload records about a file it has just stored (the storage's facts, as a row keeps them)."""

    file_id: str
    filename: Optional[str]
    content_type: Optional[str]
    uploaded_at: Optional[str]
    public_url: Optional[str]


_last_format: Tuple[Optional[datetime], Optional[str]] = (None, None)


def _format(moment: Optional[datetime]) -> Optional[str]:
    """``moment`` as a metadata timestamp string; the last one is remembered (uploads come in bursts)."""
    global _last_format
    if moment is None:
        return None
    last = _last_format
    if last[0] != moment:
        last = _last_format = (moment, moment.strftime(utils.TIMESTAMP_FORMAT))
    return last[1]


def store(
    storage: FileStorage, content: Any, filename: Optional[str] = None, content_type: Optional[str] = None
) -> UploadFacts:
    """``storage.create(content, filename, content_type)`` and the facts of the new file."""
    return _recorded(storage.create_with_facts(content, filename, content_type))


def read_back(storage: FileStorage, file_id: str) -> UploadFacts:
    """The facts of a file stored by other means, read back from ``storage`` as filedepot did."""
    return _recorded(storage._read_facts(file_id))


def _recorded(facts: Any) -> UploadFacts:
    """The facts an upload records, from the storage's :class:`~depot.io.interfaces.StoredFacts`."""
    uploaded_at = _format(facts.last_modified)
    return UploadFacts(facts.file_id, facts.filename, facts.content_type, uploaded_at, facts.public_url)
