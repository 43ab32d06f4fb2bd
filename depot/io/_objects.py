"""The base of the object stores (S3 through boto3 or boto, Google Cloud Storage).

:class:`ObjectStorage` holds the storage operations every object store
shares, on top of a few hooks; :class:`ObjectStoredFile` reads a file's facts
from the object's depot metadata.  The policy names, the metadata layout and
the option parsing here are filedepot 0.12's, so existing buckets stay readable.
"""
from __future__ import annotations

import io
from abc import abstractmethod
from typing import Any, Dict, Optional
from urllib.parse import quote, unquote

from depot.io import checksums, utils
from depot.io.interfaces import OneStepStorage, StoredFile
from depot.utils import _RFC5987_SAFE, asint, make_content_disposition

__all__ = [
    "CANNED_ACL_PUBLIC_READ",
    "CANNED_ACL_PRIVATE",
    "FILENAME_META",
    "MODIFIED_META",
    "CHECKSUM_META",
    "check_policy",
    "quote_filename",
    "unquote_filename",
    "inline_disposition",
    "depot_metadata",
    "refuse_text",
    "option_int",
    "ObjectStoredFile",
    "ObjectStorage",
]

CANNED_ACL_PUBLIC_READ = "public-read"
CANNED_ACL_PRIVATE = "private"
_POLICIES = (CANNED_ACL_PUBLIC_READ, CANNED_ACL_PRIVATE)

#: Custom metadata keys, as filedepot writes them: existing buckets stay readable.
FILENAME_META = "x-depot-filename"
MODIFIED_META = "x-depot-modified"
#: The content's checksum as :attr:`StoredFile.checksum` reports it.
CHECKSUM_META = "x-depot-checksum"


def check_policy(policy: Optional[str]) -> str:
    """``policy`` or the default ``'public-read'``; anything else fails an assert, as in filedepot."""
    policy = policy or CANNED_ACL_PUBLIC_READ
    assert policy in _POLICIES, "Key policy must be %s or %s" % _POLICIES
    return policy


def quote_filename(filename: str) -> str:
    """The filename as stored in object metadata: percent-encoded, so it stays ASCII."""
    return quote(filename, safe=_RFC5987_SAFE, encoding="utf-8", errors="strict")


def unquote_filename(value: Optional[str]) -> Optional[str]:
    """The real filename back from :func:`quote_filename`'s form (``None`` stays ``None``)."""
    return None if value is None else unquote(value)


def inline_disposition(filename: Optional[str]) -> Optional[str]:
    """The Content-Disposition stored with an object, built from the real (unquoted) name.

    filedepot built it from the already-quoted name, so ``filename*`` came out
    encoded twice; this gives the header a browser decodes back to the name.
    """
    return None if filename is None else make_content_disposition("inline", filename)


def depot_metadata(filename: Optional[str]) -> Dict[str, str]:
    """The custom metadata depot writes with every object.

    ``filename`` is ``None`` only when replacing an object written outside
    depot without naming the new content; it then stays unnamed.
    """
    metadata = {MODIFIED_META: utils.timestamp()}
    if filename is not None:
        metadata[FILENAME_META] = quote_filename(filename)
    return metadata


def refuse_text(content: Any) -> None:
    """Raise the storages' :class:`TypeError` for text (``str`` or a text-mode file)."""
    utils.check_content(content)
    if isinstance(content, io.TextIOBase):
        raise TypeError("Only bytes can be stored, not unicode")


def option_int(value: Any, name: str, minimum: int = 1) -> int:
    """An integer option (INI strings accepted) of at least ``minimum``."""
    number = asint(value, name)
    if number < minimum:
        raise ValueError("%s must be at least %d, got %r" % (name, minimum, value))
    return number


class ObjectStoredFile(StoredFile):
    """A file of an object store: its facts read from the object's depot metadata.

    ``metadata`` is the object's custom metadata; ``quoted`` says whether the
    client library returns ``x-depot-filename`` as stored (percent-encoded)
    or already decoded.  Subclasses read the content and call
    :meth:`_check_open` before any read.
    """

    #: The ValueError message for reads after close (filedepot's, per backend).
    closed_message = "I/O operation on closed file"

    def __init__(
        self,
        file_id: str,
        metadata: Optional[Dict[str, str]],
        content_type: Optional[str],
        content_length: Optional[int],
        quoted: bool = True,
    ) -> None:
        utils.check_uuid(file_id)
        metadata = metadata or {}
        filename = metadata.get(FILENAME_META)
        super().__init__(
            file_id,
            filename=unquote_filename(filename) if quoted else filename,
            content_type=content_type,
            last_modified=utils.parse_timestamp(metadata.get(MODIFIED_META)),
            content_length=content_length,
            # Absent from objects written by filedepot 0.12 and depot before checksums: None.
            checksum=checksums.readable(metadata.get(CHECKSUM_META)),
        )
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(self.closed_message)

    def close(self, *args: Any, **kwargs: Any) -> None:
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed


class ObjectStorage(OneStepStorage):
    """The storage operations of object stores, on top of a few hooks.

    A subclass provides ``_save(file_id, content, filename, content_type)``
    (writes the whole object, or leaves the previous one untouched, and
    returns the new object's facts or ``None``),
    ``_find(file_id)`` (the object's metadata, ``None`` if absent),
    ``_stored_file(file_id, found)``, ``_remove(file_id)`` (no error if
    absent) and ``list()``.
    """

    _check_file_id = staticmethod(utils.check_uuid)

    @abstractmethod
    def _find(self, file_id: str) -> Any:
        """The object's metadata, ``None`` if absent."""

    @abstractmethod
    def _stored_file(self, file_id: str, found: Any) -> Any:
        """The StoredFile for an object :meth:`_find` returned."""

    @abstractmethod
    def _remove(self, file_id: str) -> None:
        """Delete the object; no error if absent."""

    def _checked_id(self, file_or_id: Any) -> str:
        """The id of ``file_or_id``; :class:`ValueError` if it is not a valid one."""
        file_id = self.fileid(file_or_id)
        self._check_file_id(file_id)
        return file_id

    def get(self, file_or_id: Any) -> Any:
        file_id = self._checked_id(file_or_id)
        found = self._find(file_id)
        if found is None:
            raise IOError("File %s not existing" % file_id)
        return self._stored_file(file_id, found)

    def delete(self, file_or_id: Any) -> None:
        self._remove(self._checked_id(file_or_id))

    def exists(self, file_or_id: Any) -> bool:
        return self._find(self._checked_id(file_or_id)) is not None
