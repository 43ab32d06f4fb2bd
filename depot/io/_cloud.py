"""What the cloud storages share: policies, metadata names, upload sizing, logging once.

Used by :mod:`depot.io.boto3`, :mod:`depot.io.awss3` and :mod:`depot.io.gcs`,
which keep the same option names and metadata layout as filedepot 0.12.
"""
from __future__ import annotations

import io
import logging
import threading
from typing import Any, Dict, Optional, Set, Tuple
from urllib.parse import quote, unquote, urlsplit

from depot.io import utils
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
]

CANNED_ACL_PUBLIC_READ = "public-read"
CANNED_ACL_PRIVATE = "private"
_POLICIES = (CANNED_ACL_PUBLIC_READ, CANNED_ACL_PRIVATE)

#: Custom metadata keys, as filedepot writes them: existing buckets stay readable.
FILENAME_META = "x-depot-filename"
MODIFIED_META = "x-depot-modified"


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
        self._head: Any = memoryview(head)
        self._rest = rest
        self._position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        # Fills the buffer unless the stream ends: uploaders take a short
        # read for the end of the stream and would send undersized parts.
        target = memoryview(buffer).cast("B")
        filled = 0
        if self._head:
            filled = min(len(target), len(self._head))
            target[:filled] = self._head[:filled]
            self._head = self._head[filled:]  # consumed bytes are released with the last view
        while filled < len(target):
            chunk = self._rest.read(len(target) - filled)
            if not chunk:
                break
            if isinstance(chunk, str):
                raise TypeError("Only bytes can be stored, not unicode")
            target[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
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
