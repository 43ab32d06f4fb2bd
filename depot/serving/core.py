"""The transport-neutral serving core: one request in, one :class:`Response` out.

Both middlewares (:mod:`depot.middleware` for WSGI, :mod:`depot.asgi` for
ASGI) are thin adapters over this module.  From the request method, path,
query string and headers (as WSGI ``environ`` keys: the form the 0.12 hooks
take) and the stored file, it decides once the status, the headers and the
*body source*:

- ``None``: no content (HEAD, 304, offloaded to the front server);
- ``bytes``: small content already read (a page, or a file of at most
  :data:`SMALL_BODY` bytes: for them sendfile's set-up costs more than a copy);
- :class:`FileSpan`: bytes ``[start, stop)`` of a real local file, which a
  server can send zero-copy (``wsgi.file_wrapper``, ASGI ``pathsend``);
- :class:`StoredSpan`: bytes ``[start, stop)`` of any stored file, read in chunks;
- :class:`Redirect`: a redirect to the file's public URL.

The adapters only send what was decided.  The core does blocking storage
I/O (``get``, opening the file), so the ASGI adapter runs it in a worker
thread, once per request.
"""
from __future__ import annotations

import functools
import html
import importlib
import inspect
import io
import json
import os
import time
from http import HTTPStatus
from typing import IO, TYPE_CHECKING, Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple, Union, cast
from urllib.parse import quote

from depot.io.interfaces import StoredFile
from depot.io.local import SETTLED_AFTER_NS, finds_files_plainly
from depot.io.utils import DEFAULT_CHUNK_SIZE
from depot.manager import DepotManager
from depot.utils import asbool, asint

from .caching import BoundedCache, cache_headers
from .conditional import PROCEED, Outcome
from .content import InlinePolicy
from .offload import AccelMapping, Offload
from .paths import is_under_mount, mount_prefix, mount_url, quote_file_path, split_file_path
from .plan import (
    OUTCOME_STATUS, FileFacts, check_preconditions, content_headers, not_modified_headers, requested_range,
    unsatisfiable_headers,
)
from .ranges import UNSATISFIABLE
from .signing import UPLOAD, LinkSigner
from .uploads import ALREADY_UPLOADED, Admitted, BodyCheck, Refusal, admit, check_url, is_upload_url

if TYPE_CHECKING:
    from depot.io.local import LocalFileStorage

__all__ = [
    "BLOCK_SIZE", "SMALL_BODY", "Response", "FileSpan", "StoredSpan", "Redirect", "Located", "ServingCore",
    "HotFiles", "respond_file", "choose_body", "page", "redirect", "status_line",
    "json_response", "UploadBody", "AdmittedUpload", "DRAIN_LIMIT",
]

#: Chunk read from storages and handed to servers (256 KiB, filedepot's
#: ``_BLOCK_SIZE``): memory per response is bounded by it.  The storages'
#: own size for the pieces a file is streamed in, for the same reason.
BLOCK_SIZE = DEFAULT_CHUNK_SIZE

#: Bodies up to this size are read at once and sent as one chunk: for them a
#: server's sendfile set-up (a selector, lseek, fstat...) or another trip to a
#: worker thread costs more than the copy it saves.
SMALL_BODY = 64 * 1024

Headers = List[Tuple[str, str]]

# HTTPStatus members read through the class cost a descriptor call each
# (Python 3.11): the statuses of every file response, as plain names.
_OK, _PARTIAL_CONTENT = HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT


class FileSpan(NamedTuple):
    """Bytes ``[start, stop)`` of ``real``, an open local file of ``size`` bytes: sendable zero-copy."""

    real: IO[bytes]
    start: int
    stop: int
    size: int

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.stop == self.size


class StoredSpan(NamedTuple):
    """Bytes ``[start, stop)`` of a stored file (``stop`` is ``None`` for "to the end, size unknown")."""

    file: StoredFile
    start: int
    stop: Optional[int]
    whole: bool


class Redirect(NamedTuple):
    """A redirect to ``location`` (as the storage gave it), with the page sent as its body."""

    location: str
    page: bytes


Body = Union[None, bytes, FileSpan, StoredSpan, Redirect]


class Response:
    """What to answer: an :class:`http.HTTPStatus`, the headers and the body source.

    A body that holds a file owns it: :meth:`close` releases it, and the
    adapter calls it once the body is sent (or abandoned).  ``identity`` is
    set when the whole response was derived from one version of a local
    file, read from its data file: that version (:attr:`StoredFile.version`,
    see :class:`HotFiles`).
    """

    __slots__ = ("status", "headers", "body", "identity")

    def __init__(self, status: HTTPStatus, headers: Headers, body: Body = None) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.identity: Optional[str] = None

    def close(self) -> None:
        body = self.body
        if isinstance(body, FileSpan):
            body.real.close()
        elif isinstance(body, StoredSpan):
            body.file.close()

    def __repr__(self) -> str:
        return "Response(%d, %r, %s)" % (self.status, self.headers, type(self.body).__name__)


# RFC 9110's reason phrases where Python's differ (3.12 and older say
# "Requested Range Not Satisfiable").
_PHRASES = {HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE: "Range Not Satisfiable",
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "Content Too Large"}
_STATUS_LINES: Dict[int, str] = {
    status: "%d %s" % (status, _PHRASES.get(status, status.phrase)) for status in HTTPStatus
}


def status_line(status: int) -> str:
    """``'206 Partial Content'``: the status as WSGI writes it."""
    return _STATUS_LINES[status]


# What each error page says (the title is the status line, as filedepot's 404).
_MESSAGES = {HTTPStatus.NOT_FOUND: "File Not Found"}


def page(status: HTTPStatus, headers: Headers = ()) -> Response:  # type: ignore[assignment]
    """A small HTML page answering ``status``, after ``headers``."""
    line = _STATUS_LINES[status]
    body = (
        "<html><head><title>%s</title></head><body><h1>%s</h1></body></html>"
        % (line, _MESSAGES.get(status, line.split(" ", 1)[1]))
    ).encode()
    return Response(status, [*headers, ("Content-Type", "text/html"), ("Content-Length", str(len(body)))], body)


def _safe_location(url: str) -> str:
    # A URL from a storage goes into a header: percent-encode anything that is
    # not printable ASCII (existing escapes are kept) so it cannot split it.
    return quote(url, safe="!#$%&'()*+,/:;=?@[]~-._")


def redirect(location: str, permanent: bool) -> Response:
    """``301`` to a public URL, or ``302`` (never cached) to a signed, expiring one."""
    safe = _safe_location(location)
    body = ('<html><body>Moved to <a href="%s">%s</a></body></html>' % ((html.escape(safe),) * 2)).encode()
    headers = [("Content-Type", "text/html"), ("Location", safe)]
    if not permanent:
        headers.append(("Cache-Control", "no-store"))
    headers.append(("Content-Length", str(len(body))))
    status = HTTPStatus.MOVED_PERMANENTLY if permanent else HTTPStatus.FOUND
    return Response(status, headers, Redirect(location, body))


def json_response(status: HTTPStatus, value: Any, headers: Headers = ()) -> Response:  # type: ignore[assignment]
    """``value`` as a small JSON body answering ``status``, after ``headers``."""
    body = json.dumps(value).encode("utf-8")
    return Response(status, [*headers, ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                             ("Cache-Control", "no-store")], body)


def _refused(refusal: Refusal) -> Response:
    headers = [("Allow", "PUT")] if refusal.status == HTTPStatus.METHOD_NOT_ALLOWED else []
    return json_response(refusal.status, {"error": refusal.code, "message": refusal.reason}, headers)


#: After refusing an upload, at most this much of the unread body is read
#: and dropped: a server that closes a connection with unread bytes resets
#: it, and the client may then lose the answer saying why.  A larger body is
#: left unread (the client sees the connection reset).
DRAIN_LIMIT = 4 * 1024 * 1024

#: A body's ``read`` function: at most ``n`` bytes, ``b''`` at the end.
ReadBody = Callable[[int], bytes]


class _BodyRefused(Exception):
    """Raised into the storage's write by :class:`UploadBody`: the write is abandoned."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


class UploadBody(io.RawIOBase):
    """The body of a direct upload as the storage reads it, checked as it passes.

    Reads the request body with ``read`` a ``chunk_size`` at a time, never
    past the declared length, and feeds every chunk to ``check`` (a
    :class:`~depot.serving.uploads.BodyCheck`).  The first bytes are held
    back until the type sniffed from them is allowed.  A refusal (too many
    bytes, a refused type, a short body, a wrong checksum, a client gone
    mid-body) is raised into the storage's write as an exception, and kept
    in :attr:`refusal`: every backend abandons a write whose content raises
    (``StorageConformance.test_failing_stream_leaves_nothing``), and the end
    of the body is only reported once every check has passed, so nothing
    refused is ever stored.  Memory: one chunk.
    """

    def __init__(self, read: ReadBody, check: BodyCheck, chunk_size: int = BLOCK_SIZE) -> None:
        super().__init__()
        self._read = read
        self._check = check
        self._chunk_size = chunk_size
        self._left = check.admitted.length
        self._chunk = b""
        self._offset = 0
        self._held: List[bytes] = []
        self._ended = False
        self.refusal: Optional[Refusal] = None

    def readable(self) -> bool:
        return True

    def _refuse(self, refusal: Refusal, cause: Optional[BaseException] = None) -> None:
        self.refusal = refusal
        raise _BodyRefused(refusal) from cause

    def _next(self) -> bytes:
        size = self._chunk_size if self._left is None else min(self._chunk_size, self._left)
        if size <= 0:
            return b""
        try:
            chunk = self._read(size)
        except Exception as exc:  # the transport's: a client gone, a broken chunked encoding
            self._refuse(Refusal(HTTPStatus.BAD_REQUEST, "incomplete", "the body was cut short (%s)" % exc), exc)
        if self._left is not None:
            self._left -= len(chunk)
        return bytes(chunk) if not isinstance(chunk, bytes) else chunk

    def _fill(self) -> bool:
        """Make :attr:`_chunk` the next bytes to hand on; ``False`` at the (checked) end."""
        check = self._check
        while not self._ended:
            chunk = self._next()
            refusal = check.feed(chunk) if chunk else check.end()
            if refusal is not None:
                self._refuse(refusal)
            if not chunk:
                self._ended = True
            elif not check.sniffed:
                self._held.append(chunk)  # the first bytes wait for the type check
                continue
            if self._held:
                chunk = b"".join([*self._held, chunk])
                self._held = []
            if chunk:
                self._chunk, self._offset = chunk, 0
                return True
        return False

    def read(self, size: Optional[int] = -1) -> bytes:
        if self._offset >= len(self._chunk) and not self._fill():
            return b""
        chunk, offset = self._chunk, self._offset
        if offset == 0 and (size is None or size < 0 or size >= len(chunk)):
            self._offset = len(chunk)
            return chunk  # the common case: the whole chunk, not copied
        stop = len(chunk) if size is None or size < 0 else offset + size
        self._offset = min(stop, len(chunk))
        return chunk[offset:stop]

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return b"".join(iter(lambda: self.read(), b""))

    def drain(self, limit: int = DRAIN_LIMIT) -> None:
        """Read and drop the rest of a refused body, if at most ``limit`` bytes (see :data:`DRAIN_LIMIT`)."""
        if not self._ended and (self._left is None or self._left <= limit):
            _drain(self._read, self._left, limit)


def choose_body(
    file: StoredFile, real: Optional[IO[bytes]], start: int, stop: Optional[int], size: Optional[int]
) -> Body:
    """How the bytes ``[start, stop)`` of ``file`` (``size`` bytes) go out: the one place that decides it.

    ``real`` is the file's local data file, opened (``None`` when the
    storage has none).  Small bodies are read now and both files closed;
    larger local ones become a :class:`FileSpan` (zero-copy), the rest a
    :class:`StoredSpan`.  Whatever is not handed over in the body is closed.
    """
    if real is not None:
        assert stop is not None  # the size of an opened file is known
        if stop - start > SMALL_BODY:
            file.close()
            return FileSpan(real, start, stop, stop if size is None else size)
        try:
            if start:
                real.seek(start)
            return real.read(stop - start)
        finally:
            real.close()
            file.close()
    if stop is not None and stop - start <= SMALL_BODY:
        try:
            return b"".join(file.iter_range(start, stop, BLOCK_SIZE))
        finally:
            file.close()
    return StoredSpan(file, start, stop, start == 0 and stop == size)


class AdmittedUpload(NamedTuple):
    """A direct upload that may send its body: the storage, the intent's record, what was declared."""

    storage: Any
    record: Any
    admitted: Admitted


class Located(NamedTuple):
    """The stored file a request names, and the seconds left on its signed link (if any)."""

    file: StoredFile
    link_remaining: Optional[int]


def respond_file(app: Any, environ: Mapping[str, str]) -> Response:
    """The response to a GET or HEAD of ``app.file``, decided once.

    ``app`` is a :class:`~depot.middleware.FileServeApp` (or subclass): its
    attributes describe the file and its hooks (``generate_etag``,
    ``has_been_modified``, ``make_date``; ``parse_date`` through
    ``has_been_modified``) are honoured.  ``environ`` holds the request's
    WSGI keys.  Conditional requests, HEAD and unsatisfiable ranges never
    open the file's content.  A file replaced between ``get()`` and that
    open is planned again from the version opened (the app's facts
    refreshed, the hooks asked again), so the headers always describe the
    bytes sent.  The stored file is closed, or owned by the returned body.
    """
    f = app.file
    real: Optional[IO[bytes]] = None
    size: Optional[int] = None
    version = getattr(f, "version", None)
    try:
        # The shared, memoised date formatting unless a subclass has its own.
        app_class: type = type(app)
        make_date = app.make_date if _make_date_overridden(app_class) else None
        policy, offload = app._policy, app._offload
        cache_control, expires = cache_headers(app.cache_expires, app._link_remaining, make_date=make_date)
        head = environ.get("REQUEST_METHOD") == "HEAD"
        opened = False
        while True:
            try:
                etag = app.generate_etag()
            except OSError:
                _close(real, f)  # deleted between get() and now: as missing as a failed get()
                return page(HTTPStatus.NOT_FOUND)
            try:
                modified = app.has_been_modified(environ, etag, app.last_modified)
            except RuntimeError:
                _close(real, f)
                return page(HTTPStatus.BAD_REQUEST)
            facts = FileFacts(etag, app.last_modified, app.content_length, app.content_type, app.filename)
            outcome = check_preconditions(environ, facts, not modified)
            if outcome is not PROCEED:
                _close(real, f)
                if outcome is Outcome.NOT_MODIFIED:
                    headers = not_modified_headers(facts, cache_control, expires, policy, make_date)
                    return Response(HTTPStatus.NOT_MODIFIED, headers)
                return page(OUTCOME_STATUS[outcome])
            wanted = requested_range(environ, facts)
            if wanted is UNSATISFIABLE:
                _close(real, f)
                return page(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, unsatisfiable_headers(facts))
            if opened:
                break
            local_path = None if offload is None else f.local_path
            target = None if local_path is None else offload.header_for(local_path)
            if target is not None:
                # The front server opens the path and sends the bytes: it applies
                # Range itself and computes the length, so neither is decided here.
                f.close()
                headers = content_headers(facts, None, cache_control, expires, policy, make_date, ranges=False)
                return Response(HTTPStatus.OK, [h for h in headers if h[0] != "Content-Length"] + [target])
            if head:
                break
            # Only now that content is needed.
            described = _facts_of(f)
            try:
                real = f.real_file()
                st = None if real is None else os.fstat(real.fileno())
                size = None if st is None else st.st_size
            except OSError:
                f.close()
                return page(HTTPStatus.NOT_FOUND)
            opened = True
            now_version = getattr(f, "version", None)
            if now_version == version and _facts_of(f) == described:
                break
            # Replaced between get() and the open, which chose the new
            # version (and gave the file its facts): every header must
            # describe those bytes, and the request's conditions be judged
            # against them.  Planned once more, from the version now held
            # open, which cannot change again.  Such an answer is not kept
            # (its identity stays unset): rare, and HotFiles only keeps
            # what was never in doubt.
            version = None
            app.filename, app.content_type = f.filename, f.content_type
            app.last_modified, app.content_length = f.last_modified, f.content_length
        if real is not None and size != facts.content_length:
            # The data file does not match its metadata (written in place, as
            # filedepot 0.12 did): at least the length sent is the bytes'.
            facts = facts._replace(content_length=size)
            if wanted is not None:
                wanted = requested_range(environ, facts)
                if wanted is UNSATISFIABLE:
                    _close(real, f)
                    return page(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, unsatisfiable_headers(facts))
        headers = content_headers(facts, wanted, cache_control, expires, policy, make_date)
        status = _OK if wanted is None else _PARTIAL_CONTENT
        if head:
            f.close()
            return Response(status, headers)
        start, stop = (0, facts.content_length) if wanted is None else wanted
        # The headers describe exactly the bytes opened, all of them: the
        # facts and version did not change when the file was opened (or
        # versions written within one clock tick, showing one version, would
        # differ in their facts), and its data file has the size they state.
        whole_version = real is not None and version is not None and size == app.content_length
        response = Response(status, headers, choose_body(f, real, start, stop, facts.content_length))
        if whole_version:
            response.identity = version
        return response
    except BaseException:
        _close(real, f)
        raise


def _close(real: Optional[IO[bytes]], f: StoredFile) -> None:
    if real is not None:
        real.close()
    f.close()


def _facts_of(f: StoredFile) -> Tuple[Any, ...]:
    """What the headers of a response are made of (with the version), as the stored file holds them now."""
    return (f.filename, f.content_type, f.content_length, f.last_modified, getattr(f, "checksum", None))


# Request headers that make a GET ask for more than "the current file, whole".
_CONDITIONS = (
    "HTTP_RANGE", "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_IF_MATCH", "HTTP_IF_UNMODIFIED_SINCE",
)


class _Hot:
    """One kept answer: the version of the file it answers, its bytes, and its headers as of one second."""

    __slots__ = ("policy", "storage", "depot_name", "file_id", "key", "etag", "tail", "body", "headers")

    def __init__(self, policy: InlinePolicy, storage: "LocalFileStorage", depot_name: str, file_id: str,
                 key: Tuple[int, ...], etag: Tuple[str, str], tail: Headers, body: bytes) -> None:
        self.policy = policy
        self.storage = storage
        self.depot_name = depot_name
        self.file_id = file_id
        self.key = key  # LocalFileStorage.version_key
        self.etag = etag
        self.tail = tail  # the headers after Cache-Control and Expires
        self.body = body
        # (second, max-age, headers): only Expires changes, once a second.
        # Replaced as a whole, so threads never see half of one.
        self.headers: Tuple[int, Optional[int], Headers] = (-1, None, [])



class HotFiles:
    """The answers to plain GETs of small local files, kept per URL path while the file's version lasts.

    A popular small file costs more in deciding its response (finding the
    storage, reading its metadata, planning the headers, opening and
    reading the file) than in sending it.  The first full answer, when
    :func:`respond_file` derived it from one version of the file (its
    :attr:`Response.identity`), is kept with its bytes; a later request
    asks for the current version with one ``stat``
    (:meth:`~depot.io.local.LocalFileStorage.version_key`), and when it is
    the same, answers the kept bytes and headers (only ``Expires`` is
    recomputed, once a second).  A replaced file has another version; a
    deleted one has none: either way the request takes the full path
    (which answers 404 through the middleware's hooks) and the entry is
    dropped.

    A version is only kept once settled (:data:`SETTLED_AFTER_NS` after
    its last change): within a file system's time granule another version
    could show the very ``stat`` of the kept one.

    Only plain GETs (no ``Range``, no precondition) of files up to
    :data:`SMALL_BODY` bytes from a :class:`~depot.io.local.LocalFileStorage`
    take this path, and only when no hook can change the answer (see
    :meth:`ServingCore.plain_get`).  Bounded by entries and by bytes,
    the kept bodies included.
    """

    def __init__(self, prefix: str, max_bytes: int = 8 * 1024 * 1024, max_entries: int = 4096) -> None:
        self._prefix = prefix
        self._entries = BoundedCache(max_bytes=max_bytes, max_entries=max_entries)

    def answer(self, path: str, max_age: Optional[int], policy: InlinePolicy) -> Optional[Tuple[Headers, bytes]]:
        """The headers (a new list) and body answering a plain GET of ``path`` from what is kept, or ``None``."""
        # Not refreshed: kept in the order first answered, a popular file
        # dropped for a newer one comes back at its next request.
        hot: Optional[_Hot] = self._entries.peek(path)
        if hot is None:
            return None
        storage = hot.storage
        # Reconfigured, or a get() that must be asked now: the full path.
        if DepotManager.get(hot.depot_name) is not storage or hot.policy is not policy or not finds_files_plainly(
            storage
        ):
            self._entries.pop(path)
            return None
        try:
            same = storage.version_key(hot.file_id) == hot.key
        except (OSError, ValueError):
            same = False
        if not same:
            self._entries.pop(path)
            return None
        second = int(time.time())
        kept = hot.headers
        if kept[0] != second or kept[1] != max_age:
            cache_control, expires = cache_headers(max_age, now=second)
            kept = hot.headers = (second, max_age, [hot.etag, ("Cache-Control", cache_control),
                                                    ("Expires", expires), *hot.tail])
        # A new list: the server, or a middleware around this one, may change it.
        return kept[2][:], hot.body

    def respond(self, path: str, max_age: Optional[int], policy: InlinePolicy) -> Optional[Response]:
        """:meth:`answer` as a :class:`Response`, or ``None`` (take the full path)."""
        kept = self.answer(path, max_age, policy)
        return None if kept is None else Response(_OK, kept[0], kept[1])

    def remember(self, path: str, policy: InlinePolicy, response: Response) -> None:
        """Keep ``response``, the full answer to a plain GET of ``path``, if it answers a settled local version."""
        file_identity, headers, body = response.identity, response.headers, response.body
        if (
            file_identity is None or response.status is not _OK or not isinstance(body, bytes)
            or len(headers) < 3 or headers[0][0] != "ETag" or headers[1][0] != "Cache-Control"
            or headers[2][0] != "Expires"
        ):
            return
        target = split_file_path(path, self._prefix)
        if target is None:
            return
        depot_name, file_id = target
        found = DepotManager.get(depot_name)
        if not finds_files_plainly(found):
            return
        storage = cast("LocalFileStorage", found)
        try:
            key = storage.version_key(file_id)
        except (OSError, ValueError):
            return
        # Taken after the answer: it is still the current version, and
        # settled, so any later write shows another key.
        if storage.key_version(key) != file_identity or key[2] > time.time_ns() - SETTLED_AFTER_NS:
            return
        hot = _Hot(policy, storage, depot_name, file_id, key, headers[0], headers[3:], body)
        size = 200 + 2 * len(path) + len(body) + sum(len(name) + len(value) + 100 for name, value in headers)
        self._entries.put(path, hot, size)


_WSGI_MODULE: Any = None


def _wsgi_module() -> Any:
    """:mod:`depot.middleware`, imported on first use (it imports this module).

    Through ``import_module``, which waits while another thread is still
    importing it: a module taken from ``sys.modules`` at that moment lacks
    its attributes (the first requests of a threaded server come at once).
    """
    global _WSGI_MODULE
    module = _WSGI_MODULE
    if module is None:
        module = _WSGI_MODULE = importlib.import_module("depot.middleware")
    return module


@functools.lru_cache(maxsize=64)
def _make_date_overridden(cls: type) -> bool:
    from depot.middleware import FileServeApp

    return inspect.getattr_static(cls, "make_date") is not inspect.getattr_static(FileServeApp, "make_date")


# filedepot accepted any constructor value; these keep that while reading the
# strings of INI files as what they mean.
_MAX_MAX_AGE = 2**31 - 1  # RFC 9111 1.2.2: the largest delta-seconds caches must take


def as_max_age(value: Any) -> Optional[int]:
    """``cache_max_age`` in whole seconds, clamped to ``[0, 2**31 - 1]``; ``None`` for "no max-age"."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    try:
        seconds = float(value) if isinstance(value, str) else value
        return int(min(max(seconds, 0), _MAX_MAX_AGE))
    except (TypeError, ValueError):  # NaN too: int() refuses it
        raise ValueError("cache_max_age must be a number of seconds or None, got %r" % (value,)) from None


def as_flag(value: Any) -> bool:
    """An INI boolean (``'false'`` is false); any other value by its truth, as filedepot took it."""
    try:
        return asbool(value)
    except ValueError:
        return bool(value)


def as_types(value: Union[None, str, Any]) -> Tuple[str, ...]:
    if not value:
        return ()
    if isinstance(value, str):
        return tuple(item for item in value.replace(",", " ").split() if item)
    return tuple(value)


class ServingCore:
    """What both middlewares share: the wrapped ``app``, the options, the URLs and finding the file a request names.

    The options are those of :class:`depot.middleware.DepotMiddleware`
    (documented there).
    """

    #: The :class:`~depot.middleware.FileServeApp` (sub)class files are
    #: served with; ``None`` means ``depot.middleware.FileServeApp`` as it is
    #: at each request, so code that patches the module attribute keeps working.
    file_app_class: Optional[type] = None

    def __init__(
        self,
        app: Any,
        mountpoint: str = "/depot",
        cache_max_age: Optional[int] = 3600 * 24 * 7,
        replace_wsgi_filewrapper: bool = False,
        *,
        inline_types: Any = None,
        x_sendfile: bool = False,
        x_accel_redirect: AccelMapping = None,
        secret: Union[None, str, bytes] = None,
        link_lifetime: int = 3600,
    ) -> None:
        self.app = app
        self.mountpoint = mountpoint
        self._prefix = mount_prefix(mountpoint)
        self.cache_max_age = as_max_age(cache_max_age)
        self.replace_wsgi_filewrapper = as_flag(replace_wsgi_filewrapper)
        self.inline_policy = InlinePolicy(as_types(inline_types))
        offload = Offload(asbool(x_sendfile), x_accel_redirect)
        self.offload = offload if offload else None
        self.signer = LinkSigner(secret, asint(link_lifetime, "link_lifetime")) if secret else None
        self.hot = HotFiles(self._prefix)

    def url_for(self, path: str, *, signed: bool = True) -> str:
        """The URL of ``'<storage>/<file id>'`` (:func:`~depot.serving.paths.mount_url`).

        With a secret the URL is signed and expires, unless ``signed=False``,
        which gives the bare path, for values stored in rows (see
        :meth:`depot.fields.upload.UploadedFile.url`).
        """
        return mount_url(self._prefix, path, self.signer if signed else None)

    def upload_url_for(self, record: Any) -> str:
        """The URL a browser sends the file of ``record`` (a :class:`~depot.uploads.PendingUpload`) to with ``PUT``.

        Signed for uploads only (a download link never authorises an upload,
        nor the reverse) and valid until the intent expires.  Needs the
        middleware's ``secret``: without one, :class:`RuntimeError`.
        """
        if self.signer is None:
            raise RuntimeError(
                "Direct uploads of %s to storage %s go through the middleware, which needs a secret: "
                "DepotManager.make_middleware(app, secret=...)" % (record.file_id, record.storage)
            )
        path = "%s/%s" % (record.storage, record.file_id)
        query = self.signer.sign(path, expires=record.expires_at, purpose=UPLOAD)
        return "%s/%s?%s" % (self._prefix, quote_file_path(path), query)

    def takes_upload(self, method: Optional[str], path: str, query_string: str) -> bool:
        """Whether the request is a direct upload for the middleware to answer.

        With a secret only: a ``PUT`` under the mountpoint, or a request with
        another method than ``GET``/``HEAD`` on a valid upload URL (answered
        ``405``).  Everything else under the mountpoint goes to the
        application as before.
        """
        if self.signer is None or method == "GET" or method == "HEAD" or not is_under_mount(path, self._prefix):
            return False
        return method == "PUT" or is_upload_url(path, query_string, self._prefix, self.signer)

    def receive_upload(
        self,
        method: Optional[str],
        path: str,
        query_string: str,
        headers: Mapping[str, str],
        read: ReadBody,
        *,
        length_known: bool = True,
        chunk_size: int = BLOCK_SIZE,
        now: Optional[float] = None,
    ) -> Response:
        """Store the body of a direct upload (see :mod:`depot.serving.uploads`): ``201`` or the refusal.

        Blocking (storage I/O, reading the body with ``read``):
        :meth:`admit_upload`, then :meth:`store_upload`.  A refused
        request's body is read and dropped when it is small (see
        :data:`DRAIN_LIMIT`).  A body whose end cannot be told (no
        ``Content-Length`` and ``length_known`` false) is never read: the
        read would wait for bytes that may never come, holding the worker.
        No ``Connection: close`` is added: PEP 3333 forbids hop-by-hop
        headers (wsgiref asserts on them), and a WSGI server that cannot
        tell where such a body ends cannot keep the connection anyway
        (wsgiref speaks HTTP/1.0 and closes it).
        """
        admitted = self.admit_upload(method, path, query_string, headers, length_known=length_known, now=now)
        if isinstance(admitted, Response):
            length = headers.get("CONTENT_LENGTH")
            declared = int(length) if length and length.isdigit() else None
            # A malformed Content-Length tells no end either.
            ends = declared is not None if length else length_known
            if ends and (declared is None or declared <= DRAIN_LIMIT):
                _drain(read, declared)
            return admitted
        return self.store_upload(admitted, read, chunk_size)

    def admit_upload(
        self,
        method: Optional[str],
        path: str,
        query_string: str,
        headers: Mapping[str, str],
        *,
        length_known: bool = True,
        now: Optional[float] = None,
    ) -> Union[Response, "AdmittedUpload"]:
        """Whether a direct upload may send its body: the :class:`AdmittedUpload`, or the refusal's response.

        Blocking (reads the intent's marker).  The signature is checked
        before any storage is asked; the marker, the existing file and the
        declared headers before any byte of the body is read, so that a
        client waiting for ``100 Continue`` is refused without sending it.
        ``headers`` holds the request's WSGI keys; ``length_known`` is false
        when a body without ``Content-Length`` has no end the server can tell.
        """
        now = time.time() if now is None else now
        target = check_url(method, path, query_string, self._prefix, self.signer, now)  # type: ignore[arg-type]
        if isinstance(target, Refusal):
            return _refused(target)
        name, file_id = target
        storage = DepotManager.get(name)
        try:
            record = None if storage is None else _pending_record(storage, file_id)
        except IOError as exc:
            # An outage, not an answer: 404 would tell the browser its intent is gone.
            return json_response(HTTPStatus.SERVICE_UNAVAILABLE, {
                "error": "unavailable", "message": "storage %s: the upload's marker cannot be read (%s)"
                % (name, exc)})
        present = record is not None and storage.exists(file_id)  # type: ignore[union-attr]
        admitted = admit(record, present, headers, now, length_known)
        if isinstance(admitted, Refusal):
            return _refused(admitted)
        return AdmittedUpload(storage, record, admitted)

    def store_upload(self, upload: "AdmittedUpload", read: ReadBody, chunk_size: int = BLOCK_SIZE) -> Response:
        """Stream the body (``read``) of an admitted upload into the storage's ``_store_at``: ``201`` or the refusal.

        Blocking.  The body goes through an :class:`UploadBody`, one chunk in
        memory, which refuses it mid-stream when a check fails: the write
        is then abandoned and nothing is stored.  A ``201`` answers
        ``{"id": ..., "size": ...}``.
        """
        record = upload.record
        check = BodyCheck(record, upload.admitted)
        body = UploadBody(read, check, chunk_size)
        try:
            upload.storage._store_at(record.file_id, body, record.filename, upload.admitted.content_type)
        except FileExistsError:
            body.drain()
            return _refused(ALREADY_UPLOADED)
        except Exception:
            if body.refusal is None:
                raise
            body.drain()
            return _refused(body.refusal)
        return json_response(HTTPStatus.CREATED, {"id": record.file_id, "size": check.size})

    def serves(self, method: Optional[str], path: str) -> bool:
        """Whether the request is the middleware's to answer (GET or HEAD under the mountpoint)."""
        return (method == "GET" or method == "HEAD") and is_under_mount(path, self._prefix)

    def unrouted(self, method: Optional[str], path: str) -> Response:
        """The answer to what :meth:`serves` refuses when there is no application behind.

        ``405`` (``Allow: GET, HEAD``) for another method under the mountpoint, else ``404``.
        """
        if is_under_mount(path, self._prefix):
            return page(HTTPStatus.METHOD_NOT_ALLOWED, [("Allow", "GET, HEAD")])
        return page(HTTPStatus.NOT_FOUND)

    def locate(self, path: str, query_string: str) -> Union[Response, Located]:
        """The stored file ``path`` (WSGI form: latin-1 code points of the raw bytes) names.

        Or the response that ends the request here: ``404`` (no such file),
        ``403`` (a bad or expired signature, checked before any storage is
        asked), a redirect to the file's public URL.
        """
        target = split_file_path(path, self._prefix)
        if target is None:
            return page(HTTPStatus.NOT_FOUND)
        depot_name, file_id = target
        remaining = None
        if self.signer is not None:
            remaining = self.signer.remaining(("%s/%s" % target).encode("utf-8"), query_string)
            if remaining is None:
                return page(HTTPStatus.FORBIDDEN)
        depot = DepotManager.get(depot_name)
        if depot is None:
            return page(HTTPStatus.NOT_FOUND)
        try:
            f = depot.get(file_id)
        except (IOError, ValueError):
            return page(HTTPStatus.NOT_FOUND)
        try:
            public_url = f.public_url
        except BaseException:
            f.close()
            raise
        if public_url is not None:
            f.close()
            return redirect(public_url, permanent=not f.public_url_signed)
        return Located(f, remaining)

    def plain_get(self, method: Optional[str], environ: Mapping[str, str]) -> bool:
        """Whether the answer to this request may come from (and go to) :attr:`hot`.

        A GET of the whole current file (no ``Range``, no precondition),
        without signed links or offloading, served by the plain
        :class:`~depot.middleware.FileServeApp`: nothing but the file's
        version decides the answer (and the clock, for ``Expires``).
        """
        if method != "GET" or self.signer is not None or self.offload is not None:
            return False
        if not environ.keys().isdisjoint(_CONDITIONS):  # one C loop for the usual request without any
            get = environ.get
            for name in _CONDITIONS:
                if get(name) is not None:
                    return False
        module = _WSGI_MODULE or _wsgi_module()
        app_class = self.file_app_class
        return (module.FileServeApp if app_class is None else app_class) is module._PLAIN_FILE_APP

    def _file_app_class(self) -> type:
        app_class = self.file_app_class
        if app_class is None:
            # The module attribute as it is now (tests and old code patch it).
            app_class = _wsgi_module().FileServeApp
        return app_class

    def file_app(self, located: Located, remember: Optional[str] = None, **options: Any) -> Any:
        """The :attr:`file_app_class` instance serving ``located``.

        ``remember``: the request path of a :meth:`plain_get`, whose answer
        :attr:`hot` then keeps.
        """
        app_class = self._file_app_class()
        if remember is not None:
            options["remember"] = functools.partial(self.hot.remember, remember, self.inline_policy)
        return app_class(
            located.file,
            self.cache_max_age,
            self.replace_wsgi_filewrapper,
            inline_policy=self.inline_policy,
            offload=self.offload,
            link_remaining=located.link_remaining,
            **options,
        )


def _pending_record(storage: Any, file_id: str) -> Any:
    """The intent's record from the marker of ``file_id``; ``None`` when there is none (or no markers at all).

    A storage that cannot be read raises its :class:`IOError`.
    """
    from depot.uploads.intents import PendingUpload

    try:
        raw = storage._pending_get(file_id)
        record = None if raw is None else PendingUpload.from_json(raw)
    except (NotImplementedError, ValueError):
        return None
    return record if record is not None and record.file_id == file_id else None


def _drain(read: ReadBody, left: Optional[int], limit: int = DRAIN_LIMIT) -> None:
    """Read and drop at most ``limit`` bytes of a refused body (``left`` of them when declared)."""
    try:
        while limit > 0 and (left is None or left > 0):
            chunk = read(min(BLOCK_SIZE, limit, limit if left is None else left))
            if not chunk:
                return
            limit -= len(chunk)
            if left is not None:
                left -= len(chunk)
    except Exception:  # noqa: BLE001 - a client gone: nothing left to drain
        return
