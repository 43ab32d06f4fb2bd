"""Input resolution and streaming helpers shared by every storage backend."""
from __future__ import annotations

import io
import mimetypes
import os
import re
import stat
import tempfile
import time
import uuid
from datetime import datetime
from itertools import islice
from typing import IO, Any, Callable, Iterable, Iterator, List, Optional, Tuple, TypeVar

from depot.utils import utcfromtimestamp_naive, utcnow_naive

__all__ = [
    "INMEMORY_FILESIZE",
    "DEFAULT_CONTENT_TYPE",
    "DEFAULT_NAME",
    "CHUNK_SIZE",
    "DEFAULT_CHUNK_SIZE",
    "timestamp",
    "parse_timestamp",
    "file_from_content",
    "FileIntent",
    "check_content",
    "check_chunk",
    "copy_stream",
    "read_chunks",
    "limit_chunks",
    "size_left",
    "iter_file",
    "check_uuid",
    "missing_file",
    "new_uuid",
    "as_byte_content",
    "check_content_type",
    "clean_filename",
]

#: Bytes kept in memory by :func:`file_from_content` before spilling to disk.
INMEMORY_FILESIZE = 1024 * 1024
DEFAULT_CONTENT_TYPE = "application/octet-stream"
DEFAULT_NAME = "unnamed"
# The chunk sizes of the storage layer, both here.  Memory is bounded by
# them, never by the file size.
#: The buffer of one copy of a stream (:func:`copy_stream`): one per copy,
#: so large, for throughput.
CHUNK_SIZE = 1024 * 1024
#: The pieces a file is streamed in (:meth:`StoredFile.iter_range
#: <depot.io.interfaces.StoredFile.iter_range>`, async uploads): many may be
#: in flight at once (a request each, a pipe's queue), so smaller.
DEFAULT_CHUNK_SIZE = 256 * 1024
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


def timestamp() -> str:
    """The current UTC time as ``'YYYY-MM-DD HH:MM:SS'``, as stored in file metadata.

    Backends call it through this module at write time (``utils.timestamp()``)
    so that tests can patch it, and it reads the clock through this module's
    ``utcnow_naive`` at call time, so patching that controls it too (as in
    filedepot, whose ``timestamp`` formatted ``utcnow_naive()``).
    """
    global _last_stamp
    now = utcnow_naive
    if now is not _REAL_UTCNOW:
        # Patched (mock.patch('depot.io.utils.utcnow_naive')): format what it says.
        return now().strftime(TIMESTAMP_FORMAT)
    second = int(time.time())
    last = _last_stamp
    if last[0] != second:
        # Formatting costs more than a small file's write bookkeeping; the
        # string changes once a second.
        last = _last_stamp = (second, utcfromtimestamp_naive(second).strftime(TIMESTAMP_FORMAT))
    return last[1]


#: The real clock: while ``utcnow_naive`` is this very function, the once-a-second cache is exact.
_REAL_UTCNOW = utcnow_naive
_last_stamp: Tuple[int, str] = (-1, "")


def parse_timestamp(value: Any) -> Optional[datetime]:
    """Parse a :func:`timestamp` string; ``None`` when missing or malformed."""
    # fromisoformat is a C fast path, an order of magnitude quicker than
    # strptime; the length and separator checks keep it to our exact format.
    if not isinstance(value, str) or len(value) != 19 or value[10] != " ":
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def new_uuid() -> str:
    """A new random file id (UUID4: unlike UUID1 it reveals neither host nor time)."""
    return str(uuid.uuid4())


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def check_uuid(file_id: Any) -> None:
    """Raise ``ValueError('Invalid file id ...')`` unless ``file_id`` is a UUID string.

    Every form :class:`uuid.UUID` accepts stays valid (uppercase, no hyphens,
    ``urn:uuid:``), as in filedepot; such ids are simply not found.  None of
    these forms can hold a path separator, so a valid id is safe in a path.
    """
    if isinstance(file_id, str) and _CANONICAL_UUID.match(file_id):
        return
    try:
        uuid.UUID("{%s}" % file_id)
    except Exception:
        raise ValueError("Invalid file id %s" % (file_id,)) from None


def missing_file(file_id: Any) -> OSError:
    """The :class:`IOError` of an id that is not stored, in filedepot's words (callers match them)."""
    return IOError("File %s not existing" % (file_id,))


def _is_fieldstorage_like(obj: Any) -> bool:
    """Whether ``obj`` looks like an upload field (cgi/WebOb FieldStorage, UploadFile...)."""
    return getattr(obj, "filename", None) is not None and getattr(obj, "file", None) not in (None, False)


class FileIntent:
    """Content paired with the filename and content type to store it under.

    The explicit name and type win over anything :class:`FileStorage.create`
    would guess, and no guessing happens at all: a ``None`` content type is
    stored as ``application/octet-stream`` (and a ``None`` filename as
    ``'unnamed'``), as in filedepot.  ``fileobj`` may be a file object or
    ``bytes``.
    """

    def __init__(self, fileobj: Any, filename: Optional[str], content_type: Optional[str]) -> None:
        self._fileobj = fileobj
        self._filename = filename
        self._content_type = content_type

    @property
    def fileinfo(self) -> Tuple[Any, Optional[str], Optional[str]]:
        return self._fileobj, self._filename, self._content_type

    def __repr__(self) -> str:
        return "<FileIntent filename=%r content_type=%r>" % (self._filename, self._content_type)


def _name_of(fileobj: Any) -> Optional[str]:
    filename = getattr(fileobj, "filename", None)
    if isinstance(filename, str) and filename:
        return filename
    name = getattr(fileobj, "name", None)
    if isinstance(name, str) and name:
        return os.path.basename(name) or None
    return None


class _FileInfo:
    """Resolve what to store and under which filename and content type.

    Filename: the explicit argument, then ``fileobj.filename``, then the
    basename of ``fileobj.name``, then ``'unnamed'``.  Content type: the
    explicit argument, then ``fileobj.content_type``, then ``fileobj.type``
    (cgi.FieldStorage), then a guess from the filename, then
    ``'application/octet-stream'``.  A :class:`FileIntent` is taken as given.
    """

    DEFAULT_CONTENT_TYPE = DEFAULT_CONTENT_TYPE
    DEFAULT_NAME = DEFAULT_NAME

    def __init__(self, fileobj: Any, filename: Optional[str] = None, content_type: Optional[str] = None):
        if isinstance(fileobj, FileIntent):
            filename, content_type = fileobj._filename, fileobj._content_type
        _check_text("filename", filename)
        _check_text("content_type", content_type)
        self._content, self._filename, self._content_type = self._resolve(fileobj, filename, content_type)

    @staticmethod
    def _resolve(fileobj: Any, filename: Optional[str], content_type: Optional[str]):
        if isinstance(fileobj, FileIntent):
            return fileobj.fileinfo
        content = fileobj.file if _is_fieldstorage_like(fileobj) else fileobj
        if isinstance(fileobj, (bytes, bytearray, memoryview, str)):
            if content_type is None and filename:
                content_type = mimetypes.guess_type(filename, strict=False)[0]
            return content, filename, content_type
        filename = filename or _name_of(fileobj)
        content_type = (
            content_type
            or getattr(fileobj, "content_type", None)
            or getattr(fileobj, "type", None)
            or (filename and mimetypes.guess_type(filename, strict=False)[0])
            or None
        )
        if content_type is not None and not isinstance(content_type, str):
            content_type = None
        return content, filename, content_type

    def get_info(self, existing: Any = None) -> Tuple[Any, str, str]:
        content = as_byte_content(self._content)
        if self._filename is None and existing is not None:
            if callable(existing):
                existing = existing()
            return content, existing.filename, existing.content_type
        # No guessing here: a FileIntent's (name, None) means "no type given",
        # stored as the default type, as filedepot and FileIntent's docstring say.
        filename = clean_filename(self._filename or self.DEFAULT_NAME)
        return content, filename, check_content_type(self._content_type or self.DEFAULT_CONTENT_TYPE)


def _check_text(what: str, value: Any) -> None:
    # Anything but a string would be stored as is and break every later read
    # or response: refused where it comes in.
    if value is not None and not isinstance(value, str):
        raise TypeError("%s must be a string, not %s" % (what, type(value).__name__))


def clean_filename(filename: str) -> str:
    """``filename`` as valid Unicode: lone surrogates cannot be encoded, so they are fixed.

    A name decoded with ``os.fsdecode`` from non-UTF-8 bytes carries them
    (``'caf\\udce9'``), and would make every later response or listing of
    the file fail.  The original bytes are decoded again with U+FFFD for what
    is not UTF-8; any other lone surrogate becomes U+FFFD too, and a proper
    surrogate pair becomes its character.
    """
    if filename.isascii():
        return filename
    try:
        filename.encode("utf-8")
        return filename
    except UnicodeEncodeError:
        pass
    try:
        filename = filename.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        filename = filename.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return filename


# Control characters would split or end a header; surrogates cannot be encoded.
_BAD_TYPE_CHARS = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def check_content_type(content_type: str) -> str:
    """Return ``content_type``, or raise :class:`ValueError` if it holds control characters.

    Any other string is kept, as filedepot did: only what would break the
    ``Content-Type`` header of every later response is refused.
    """
    if _BAD_TYPE_CHARS.search(content_type):
        raise ValueError("Invalid content type %r: it holds control characters" % (content_type,))
    return content_type


def as_byte_content(content: Any) -> Any:
    """Bytes-like ``content`` as a flat view of bytes; anything else unchanged.

    Any object with the buffer protocol (``array.array``, a memoryview of
    another item size, a non-contiguous slice) is stored as the bytes it
    holds, so its length is its size in bytes on every backend.  A
    contiguous buffer is not copied.
    """
    if isinstance(content, (bytes, bytearray, str)) or hasattr(content, "read"):
        return content
    try:
        view = memoryview(content)
    except TypeError:
        return content  # not bytes-like: check_content says why
    if view.format == "B" and view.ndim == 1 and view.c_contiguous:
        return content if isinstance(content, memoryview) else view
    if view.c_contiguous:
        return view.cast("B")
    return view.tobytes()


def _refuse(what: Any) -> TypeError:
    # The one wording of "not bytes" (SPEC 2.0: filedepot's, for str).
    return TypeError("Only bytes can be stored, not %s" % ("unicode" if isinstance(what, str) else type(what).__name__))


def check_content(content: Any) -> None:
    """Raise :class:`TypeError` unless ``content`` is bytes or a binary, readable file object.

    Text (``str``, or a text-mode file such as :class:`io.StringIO`) is
    refused here, before any backend starts writing.
    """
    if isinstance(content, (str, io.TextIOBase)):
        raise _refuse("")
    if not hasattr(content, "read") and not isinstance(content, (bytes, bytearray, memoryview)):
        raise TypeError(
            "Cannot store %s: content must be bytes or a file object" % type(content).__name__
        )


def check_chunk(chunk: Any) -> None:
    """Raise :class:`TypeError` for a piece of content that is not bytes.

    For file objects that :func:`check_content` cannot tell from binary ones
    until they are read (their ``read`` returns text).
    """
    if not isinstance(chunk, (bytes, bytearray, memoryview)):
        raise _refuse(chunk)


T = TypeVar("T")


def batches(items: Iterable[T], size: int) -> Iterator[List[T]]:
    """Lists of up to ``size`` consecutive items: what a listing holds at a time."""
    it = iter(items)
    while True:
        batch = list(islice(it, size))
        if not batch:
            return
        yield batch


def read_chunks(read: Callable[[int], bytes], remaining: Optional[int], chunk_size: int) -> Iterator[bytes]:
    """Yield what ``read`` returns, ``chunk_size`` at most a call, until ``remaining`` bytes (``None``: the end)."""
    while remaining is None or remaining > 0:
        chunk = read(chunk_size if remaining is None else min(chunk_size, remaining))
        if not chunk:
            return
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk


def limit_chunks(blocks: Iterable[Any], remaining: Optional[int], chunk_size: int) -> Iterator[bytes]:
    """Yield the bytes of ``blocks`` cut into pieces of at most ``chunk_size``, up to ``remaining`` bytes.

    ``remaining`` of ``None`` means all of them.  Blocks may be bytes or
    memoryviews (a piece is copied out of a view, which is never kept).
    """
    for block in blocks:
        if remaining is not None:
            block = block[:remaining]
            remaining -= len(block)
        for offset in range(0, len(block), chunk_size):
            yield bytes(block[offset : offset + chunk_size])
        if remaining is not None and remaining <= 0:
            return


def _spool(src: IO[bytes]) -> IO[bytes]:
    spooled = tempfile.SpooledTemporaryFile(INMEMORY_FILESIZE)
    copy_stream(src, spooled)
    return spooled


def file_from_content(content: Any) -> Tuple[bool, IO[bytes]]:
    """A seekable file object, rewound, for ``content``; returns ``(must_close, fileobj)``.

    Bytes (also inside a :class:`FileIntent`) become a spooled temporary file,
    and so does content that cannot seek (a pipe, another storage's
    :class:`StoredFile`); ``must_close`` then tells the caller to close it.
    """
    if isinstance(content, FileIntent):
        content = content._fileobj
    content = as_byte_content(content)
    check_content(content.file if _is_fieldstorage_like(content) else content)
    if isinstance(content, (bytes, bytearray, memoryview)):
        spooled = tempfile.SpooledTemporaryFile(INMEMORY_FILESIZE)
        spooled.write(content)
        spooled.seek(0)
        return True, spooled
    f = content.file if _is_fieldstorage_like(content) else content
    if not _can_seek(f):
        f = _spool(f)
        f.seek(0)
        return True, f
    f.seek(0)
    return False, f


def _can_seek(f: Any) -> bool:
    seekable = getattr(f, "seekable", None)
    if seekable is not None:
        try:
            return bool(seekable())
        except (ValueError, OSError):
            return False
    return hasattr(f, "seek")


def _real_fd(f: Any) -> Optional[int]:
    """The descriptor of ``f`` if it is a plain OS file, without forcing temp files to disk."""
    if isinstance(f, tempfile._TemporaryFileWrapper):
        f = f.file
    elif isinstance(f, tempfile.SpooledTemporaryFile):
        if not getattr(f, "_rolled", False):
            return None
        f = f._file
    if not isinstance(f, (io.FileIO, io.BufferedReader, io.BufferedWriter, io.BufferedRandom)):
        return None
    try:
        fd = f.fileno()
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (OSError, ValueError):
        return None


def size_left(f: Any) -> Optional[int]:
    """The bytes from the position of the plain OS file ``f`` to its end; ``None`` for other streams."""
    fd = _real_fd(f)
    if fd is None:
        return None
    try:
        return max(os.fstat(fd).st_size - f.tell(), 0)
    except (OSError, ValueError):
        return None


def _zero_copy(src: Any, src_fd: int, dst_fd: int) -> int:
    """Copy from ``src``'s position to EOF inside the kernel; returns the byte count."""
    offset = start = src.tell()
    size = os.fstat(src_fd).st_size
    copy = getattr(os, "copy_file_range", None)
    try:
        while offset < size:
            count = min(size - offset, 1 << 30)
            if copy is not None:
                sent = copy(src_fd, dst_fd, count, offset)
            else:
                sent = os.sendfile(dst_fd, src_fd, offset, count)
            if sent == 0:
                break
            offset += sent
    finally:
        src.seek(offset)
    return offset - start


def copy_stream(src: Any, dst: Any, chunk_size: int = CHUNK_SIZE, hasher: Any = None) -> int:
    """Copy everything left in ``src`` to ``dst``; returns the number of bytes copied.

    When both are plain files the kernel copies the data (copy_file_range or
    sendfile), otherwise it goes through one reusable buffer of ``chunk_size``:
    memory stays bounded whatever the size.  An exception from ``src`` is
    propagated, so callers can discard a partial copy.  A ``hasher``
    (:class:`depot.io.checksums.Hasher`) is fed every byte as it passes, so
    the copy goes through user space, and the content is still read once.
    """
    src_fd = _real_fd(src) if hasher is None else None
    if src_fd is not None:
        dst.flush()
        dst_fd = _real_fd(dst)
        if dst_fd is not None:
            try:
                return _zero_copy(src, src_fd, dst_fd)
            except OSError:
                pass  # e.g. a file system without copy_file_range support: copy in user space
    readinto = getattr(src, "readinto", None)
    total = 0
    # With a hasher, read() gives the immutable bytes google-crc32c wants
    # without another copy (readinto would need one per chunk).
    if readinto is not None and hasher is None and not isinstance(src, io.TextIOBase):
        buf = bytearray(chunk_size)
        view = memoryview(buf)
        while True:
            n = readinto(view)
            if not n:
                break
            dst.write(view[:n])
            total += n
        return total
    while True:
        chunk = src.read(chunk_size)
        if not chunk:
            break
        check_chunk(chunk)
        if hasher is not None:
            hasher.update(chunk)
        dst.write(chunk)
        total += len(chunk)
    return total


def iter_file(fileobj: Any, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Yield ``fileobj``'s remaining content in chunks of at most ``chunk_size``."""
    while True:
        chunk = fileobj.read(chunk_size)
        if not chunk:
            return
        check_chunk(chunk)
        yield chunk


def write_content(content: Any, dst: Any, chunk_size: int = CHUNK_SIZE, hasher: Any = None) -> int:
    """Write ``content`` (bytes or a file object) into ``dst``; returns the byte count.

    ``hasher`` is fed the bytes written (see :func:`copy_stream`).
    """
    if isinstance(content, (bytes, bytearray, memoryview)):
        if hasher is not None:
            hasher.update(content)
        dst.write(content)
        return len(content)
    check_content(content)
    return copy_stream(content, dst, chunk_size, hasher)

