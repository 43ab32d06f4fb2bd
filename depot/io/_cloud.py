"""What the cloud storages share: policies, metadata names, upload sizing, logging once.

Used by :mod:`depot.io.boto3`, :mod:`depot.io.awss3` and :mod:`depot.io.gcs`,
which keep the same option names and metadata layout as filedepot 0.12.
"""
from __future__ import annotations

from abc import abstractmethod

import io
import logging
import threading
from typing import Any, Dict, Iterator, Optional, Set, Tuple
from urllib.parse import quote, unquote, urlsplit

from depot.io import _pending_objects, checksums, utils
from depot.io.interfaces import OneStepStorage, StoredFile
from depot.utils import _RFC5987_SAFE, asint, make_content_disposition

__all__ = [
    "CANNED_ACL_PUBLIC_READ",
    "CANNED_ACL_PRIVATE",
    "FILENAME_META",
    "MODIFIED_META",
    "check_policy",
    "default_bucket_name",
    "quote_filename",
    "unquote_filename",
    "inline_disposition",
    "depot_metadata",
    "refuse_text",
    "remaining_size",
    "read_head",
    "HeadThenRest",
    "plan_upload",
    "option_int",
    "log_once",
    "S3_DEFAULT_HOST",
    "parse_s3_host",
    "range_header",
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


def default_bucket_name(access_key_id: str) -> str:
    """The bucket filedepot picks when none is configured."""
    return "filedepot-" + access_key_id.lower()


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


def remaining_size(fileobj: Any) -> Optional[int]:
    """Bytes left between the position of a seekable ``fileobj`` and its end, else ``None``.

    The position is restored.  Objects that claim to seek but fail (HTTP
    bodies, other storages' files) count as not seekable.
    """
    seekable = getattr(fileobj, "seekable", None)
    try:
        if seekable is None or not seekable():
            return None
        position = fileobj.tell()
        end = fileobj.seek(0, io.SEEK_END)
        fileobj.seek(position)
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(end, int) or not isinstance(position, int):
        return None
    return max(end - position, 0)


def read_head(fileobj: Any, limit: int) -> bytes:
    """Read up to ``limit`` bytes, fewer only at the end of the stream."""
    parts = []
    missing = limit
    while missing > 0:
        chunk = fileobj.read(min(missing, utils.CHUNK_SIZE))
        if not chunk:
            break
        if isinstance(chunk, str):
            raise TypeError("Only bytes can be stored, not unicode")
        parts.append(chunk)
        missing -= len(chunk)
    return b"".join(parts)


class HeadThenRest(io.RawIOBase):
    """A forward-only stream: bytes already read from ``rest``, then the rest of it.

    Lets an upload peek at the start of a non-seekable stream (to choose a
    single request or a multipart one) without reading the whole of it.
    ``tell()`` counts the bytes handed out; ``seek`` only to that position
    is allowed, which is all a chunked uploader asks of a stream it cannot
    rewind.
    """

    def __init__(self, head: bytes, rest: Any) -> None:
        self._head: Any = memoryview(head) if head else None
        self._rest = rest
        self._position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        # Fills the buffer unless the stream ends: uploaders take a short
        # read for the end of the stream and would send undersized parts.
        target = memoryview(buffer).cast("B")
        filled = 0
        if self._head is not None:
            filled = min(len(target), len(self._head))
            target[:filled] = self._head[:filled]
            # Dropped once consumed: even an empty slice would keep the whole head alive.
            self._head = self._head[filled:] if filled < len(self._head) else None
        rest_readinto = getattr(self._rest, "readinto", None)
        while filled < len(target):
            if rest_readinto is not None and not isinstance(self._rest, io.TextIOBase):
                n = rest_readinto(target[filled:])  # straight into the buffer: no copy
            else:
                chunk = self._rest.read(len(target) - filled)
                if isinstance(chunk, str):
                    raise TypeError("Only bytes can be stored, not unicode")
                n = len(chunk)
                target[filled : filled + n] = chunk
            if not n:
                break
            filled += n
        self._position += filled
        return filled

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if (whence, offset) not in ((io.SEEK_SET, self._position), (io.SEEK_CUR, 0)):
            raise io.UnsupportedOperation("stream can only move forward")
        return self._position

    def seekable(self) -> bool:
        return False


def plan_upload(content: Any, threshold: int) -> Tuple[Optional[bytes], Any]:
    """Decide between one request and a chunked upload for ``content``.

    Returns ``(data, None)`` when the content is at most ``threshold`` bytes
    (then read into ``data``), else ``(None, stream)``: a stream positioned at
    0 that yields the whole content.  A non-seekable source is read only up
    to ``threshold + 1`` bytes here, so memory stays bounded.
    """
    if isinstance(content, (bytes, bytearray, memoryview)):
        data = bytes(content)
        return (data, None) if len(data) <= threshold else (None, io.BytesIO(data))
    size = remaining_size(content)
    if size is not None and size > threshold and content.tell() == 0:
        return None, content
    head = read_head(content, threshold + 1)
    if len(head) <= threshold:
        return head, None
    return None, HeadThenRest(head, content)


def option_int(value: Any, name: str, minimum: int = 1) -> int:
    """An integer option (INI strings accepted) of at least ``minimum``."""
    number = asint(value, name)
    if number < minimum:
        raise ValueError("%s must be at least %d, got %r" % (name, minimum, value))
    return number


def range_header(start: int, stop: Optional[int], length: Optional[int]) -> Optional[str]:
    """The HTTP ``Range`` value for bytes ``[start, stop)`` of ``length`` bytes; ``None`` if empty."""
    if (stop is not None and stop <= start) or (length is not None and start >= length):
        return None
    return "bytes=%d-%s" % (start, "" if stop is None else stop - 1)


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

    # -- direct uploads: markers as objects (see depot.io._pending_objects) ------
    #
    # Backends provide the raw object operations below, on names relative
    # to their prefix; they are not abstract, so that a subclass written
    # before direct uploads existed still builds (and refuses uploads).

    def _raw_put(self, name: str, data: bytes) -> None:
        """Write the private object ``name`` (below the prefix) holding ``data``."""
        raise NotImplementedError("%r does not support direct uploads" % (self,))

    def _raw_get(self, name: str) -> Optional[bytes]:
        """The content of the object ``name``, ``None`` if absent."""
        raise NotImplementedError("%r does not support direct uploads" % (self,))

    def _raw_delete(self, name: str) -> None:
        """Delete the object ``name``; no error if absent."""
        raise NotImplementedError("%r does not support direct uploads" % (self,))

    def _raw_list(self, under: str) -> Iterator[Tuple[str, float]]:
        """``(name, modified)`` of the objects whose name starts with ``under``; epoch seconds."""
        raise NotImplementedError("%r does not support direct uploads" % (self,))

    def _pending_put(self, file_id: str, data: bytes) -> None:
        _pending_objects.pending_put(self, file_id, data)

    def _pending_get(self, file_id: str) -> Optional[bytes]:
        return _pending_objects.pending_get(self, file_id)

    def _pending_delete(self, file_id: str) -> None:
        _pending_objects.pending_delete(self, file_id)

    def _pending_list(self) -> Iterator[Tuple[str, float]]:
        return _pending_objects.pending_list(self)


_logged: Set[Tuple[str, ...]] = set()
_logged_lock = threading.Lock()


def log_once(logger: logging.Logger, key: Tuple[str, ...], message: str, *args: Any) -> None:
    """Log a warning the first time ``key`` is seen in this process, then stay quiet.

    For facts about a service (it cannot set some bucket option) that would
    otherwise repeat for every storage built against it.
    """
    with _logged_lock:
        if key in _logged:
            return
        _logged.add(key)
    logger.warning(message, *args)


#: The ``host`` of filedepot's legacy S3 storage when none is given.
S3_DEFAULT_HOST = "s3.amazonaws.com"


def parse_s3_host(host: Optional[str]) -> Tuple[str, Optional[int], bool]:
    """``(hostname, port, is_secure)`` from ``'host'``, ``'host:port'`` or ``'http(s)://host[:port]'``."""
    host = host or S3_DEFAULT_HOST
    parts = urlsplit(host if "://" in host else "https://" + host)
    return parts.hostname or host, parts.port, parts.scheme != "http"
