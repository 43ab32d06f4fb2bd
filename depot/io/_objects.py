"""The base of the object stores (S3 through boto3 or boto, Google Cloud Storage).

:class:`ObjectStorage` holds the storage operations every object store
shares, on top of a few hooks; :class:`ObjectStoredFile` reads a file's facts
from the object's depot metadata.  The policy names, the metadata layout and
the option parsing here are filedepot 0.12's, so existing buckets stay readable.
"""
from __future__ import annotations

from abc import abstractmethod
from typing import Any, Callable, Dict, NamedTuple, Optional
from urllib.parse import quote, unquote

from depot.io import checksums, utils
from depot.io.interfaces import ClosableStoredFile, OneStepStorage, StoredFile
from depot.io.utils import DEFAULT_CONTENT_TYPE
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
    "DEFAULT_URL_EXPIRES",
    "ObjectHeaders",
    "option_int",
    "ObjectStoredFile",
    "ObjectStorage",
]

CANNED_ACL_PUBLIC_READ = "public-read"
CANNED_ACL_PRIVATE = "private"
_POLICIES = (CANNED_ACL_PUBLIC_READ, CANNED_ACL_PRIVATE)

#: Signed URLs of private files expire after this many seconds by default.
DEFAULT_URL_EXPIRES = 3600

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


def option_int(value: Any, name: str, minimum: int = 1) -> int:
    """An integer option (INI strings accepted) of at least ``minimum``."""
    number = asint(value, name)
    if number < minimum:
        raise ValueError("%s must be at least %d, got %r" % (name, minimum, value))
    return number


class ObjectHeaders(NamedTuple):
    """What is stored with an object besides its bytes: the same for every object store."""

    content_type: str
    #: ``None`` for an unnamed replacement (see :func:`depot_metadata`).
    content_disposition: Optional[str]
    metadata: Dict[str, str]


class ObjectStoredFile(ClosableStoredFile):
    """A file of an object store: its facts read from the object's depot metadata.

    ``metadata`` is the object's custom metadata; ``quoted`` says whether the
    client library returns ``x-depot-filename`` as stored (percent-encoded)
    or already decoded.  Subclasses read the content and call
    :meth:`_check_open` before any read.
    """

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


class ObjectStorage(OneStepStorage):
    """The storage operations of object stores, on top of a few hooks.

    A subclass sets :attr:`public_file_class` and :attr:`private_file_class`,
    and ``_prefix``, ``_policy``, ``_url_expires`` and ``_signer`` in its
    constructor; it provides ``_save(file_id, content, filename,
    content_type)`` (writes the whole object under :meth:`_object_key`, with
    :meth:`_object_headers`, or leaves the previous one untouched, and
    returns the new object's facts or ``None``), ``_find(file_id)`` (the
    object's metadata, ``None`` if absent), ``_remove(file_id)`` (no error if
    absent) and ``list()``.  Ids and content are checked before any hook
    runs (:class:`~depot.io.interfaces.FileStorage`).
    """

    #: The StoredFile of an object readable by anyone: ``cls(file_id, found)``.
    public_file_class: Callable[..., StoredFile]
    #: The StoredFile of a private object, whose URL is signed and expires:
    #: ``cls(file_id, found, url_expires=..., signer=...)``.
    private_file_class: Callable[..., StoredFile]

    _prefix = ""
    _policy = CANNED_ACL_PUBLIC_READ
    _url_expires = DEFAULT_URL_EXPIRES
    #: What signs private URLs (a client or credentials); ``None``: the file's own.
    _signer: Any = None

    @abstractmethod
    def _find(self, file_id: str) -> Any:
        """The object's metadata, ``None`` if absent."""

    @abstractmethod
    def _remove(self, file_id: str) -> None:
        """Delete the object; no error if absent."""

    def _object_key(self, file_id: str) -> str:
        """The name of the object holding ``file_id``: ``<prefix><file id>``, as filedepot lays it out."""
        return self._prefix + file_id

    def _stored_file(self, file_id: str, found: Any) -> Any:
        """The StoredFile for an object :meth:`_find` returned: public or private, as the policy says."""
        if self._policy == CANNED_ACL_PRIVATE:
            return self.private_file_class(file_id, found, url_expires=self._url_expires, signer=self._signer)
        return self.public_file_class(file_id, found)

    @staticmethod
    def _object_headers(filename: Optional[str], content_type: Optional[str]) -> ObjectHeaders:
        """The content type, Content-Disposition and depot metadata to store with an object."""
        content_type = content_type or DEFAULT_CONTENT_TYPE
        return ObjectHeaders(content_type, inline_disposition(filename), depot_metadata(filename))

    def get(self, file_or_id: Any) -> Any:
        file_id = self._checked_id(file_or_id)
        found = self._find(file_id)
        if found is None:
            raise utils.missing_file(file_id)
        return self._stored_file(file_id, found)

    def delete(self, file_or_id: Any) -> None:
        self._remove(self._checked_id(file_or_id))

    def exists(self, file_or_id: Any) -> bool:
        return self._find(self._checked_id(file_or_id)) is not None
