"""WSGI middleware serving stored files under a mountpoint (filedepot-compatible).

``DepotMiddleware(app)`` answers ``GET``/``HEAD`` for ``/depot/<storage>/<id>``
and passes everything else to ``app``.  What to answer (status, headers and
body source) is decided by :mod:`depot.serving.core`, which the ASGI
middleware (:mod:`depot.asgi`) shares; this module only sends it the WSGI
way: small bodies as one chunk, a real file through the server's
``wsgi.file_wrapper`` (sendfile), other files in chunks read from the storage.
"""
from __future__ import annotations

import inspect
from datetime import datetime
from http import HTTPStatus
from typing import IO, Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

from depot.io.interfaces import StoredFile
from depot.manager import DepotManager  # noqa: F401 - a name filedepot 0.12 had here
from depot.serving import core
from depot.serving.conditional import BAD_REQUEST, NOT_MODIFIED, evaluate_preconditions
from depot.serving.content import InlinePolicy
from depot.serving.core import FileSpan, Redirect, Response, StoredSpan, page, redirect, status_line
from depot.serving.dates import parse_http_date
from depot.serving.etags import make_etag
from depot.serving.offload import Offload
from depot.utils import http_date
from depot.utils import make_content_disposition, utcfromtimestamp_naive  # noqa: F401 - a name filedepot 0.12 had here

__all__ = ["DepotMiddleware", "FileServeApp"]

#: Chunk handed to ``wsgi.file_wrapper`` and read from storages (256 KiB).
_BLOCK_SIZE = core.BLOCK_SIZE

#: Bodies up to this size are read and returned as one chunk (see
#: :data:`depot.serving.core.SMALL_BODY`).
_SMALL_BODY = core.SMALL_BODY

_NOT_FOUND = HTTPStatus.NOT_FOUND  # read on every request: a plain name (see depot.serving.core)
_OK_LINE = status_line(HTTPStatus.OK)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict, StartResponse], Iterable[bytes]]


class _FileIter:
    """Iterates over ``file`` in ``block_size`` chunks; :meth:`close` closes it.

    The fallback ``wsgi.file_wrapper`` (PEP 3333's interface), also installed
    in the environ by ``replace_wsgi_filewrapper=True``.
    """

    def __init__(self, file: Any, block_size: int = _BLOCK_SIZE) -> None:
        self.file = file
        self.block_size = block_size

    def __iter__(self) -> "_FileIter":
        return self

    def __next__(self) -> bytes:
        chunk = self.file.read(self.block_size)
        if not chunk:
            raise StopIteration
        return chunk

    def close(self) -> None:
        self.file.close()


class _RangeIter:
    """The bytes ``[start, stop)`` of a StoredFile, through its ``iter_range``."""

    def __init__(self, file: StoredFile, start: int, stop: Optional[int]) -> None:
        self.file = file
        self._chunks = file.iter_range(start, stop, _BLOCK_SIZE)

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        self.file.close()


class _BoundedFile:
    """A real file positioned at a range's start that reads no further than its end.

    It keeps ``fileno()``, so a server with sendfile still uses it: gunicorn
    sends ``Content-Length`` bytes from the current offset.  Servers that
    read instead get exactly the range from :meth:`read`.
    """

    def __init__(self, real: IO[bytes], length: int) -> None:
        self._real = real
        self._left = length
        self.fileno = real.fileno
        self.close = real.close

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size is None or size < 0 else min(size, self._left)
        chunk = self._real.read(size)
        self._left -= len(chunk)
        return chunk


def _send(response: Response, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
    """Start ``response`` and return its body as a WSGI iterable (which closes what it holds)."""
    start_response(status_line(response.status), response.headers)
    body = response.body
    if body is None:
        return []
    if isinstance(body, bytes):
        return [body]
    if isinstance(body, Redirect):
        return [body.page]
    wrapper = environ.get("wsgi.file_wrapper", _FileIter)
    if isinstance(body, FileSpan):
        # A real file: the server's wrapper can use sendfile from its offset.
        real = body.real
        if body.start:
            real.seek(body.start)
        return wrapper(real if body.stop == body.size else _BoundedFile(real, body.stop - body.start), _BLOCK_SIZE)
    assert isinstance(body, StoredSpan)
    if body.whole:
        return wrapper(body.file, _BLOCK_SIZE)
    return _RangeIter(body.file, body.start, body.stop)


def _not_found(start_response: StartResponse) -> Iterable[bytes]:
    return _send(page(HTTPStatus.NOT_FOUND), {}, start_response)


class FileServeApp:
    """A WSGI application answering a GET or HEAD for one stored file.

    Keeps filedepot's constructor, attributes (``file``, ``filename``,
    ``last_modified``, ``content_length``, ``content_type``,
    ``cache_expires``, ``replace_wsgi_filewrapper``) and helper methods.  The
    keyword-only options are set by :class:`DepotMiddleware`.  The decision
    is :meth:`respond`'s (the transport-neutral core, which the ASGI
    middleware uses too); ``__call__`` only sends it.
    """

    def __init__(
        self,
        storedfile: StoredFile,
        cache_max_age: int,
        replace_wsgi_filewrapper: bool = False,
        *,
        inline_policy: Optional[InlinePolicy] = None,
        offload: Optional[Offload] = None,
        link_remaining: Optional[int] = None,
        not_found: Optional[Callable[[StartResponse], Iterable[bytes]]] = None,
        remember: Optional[Callable[[Response], None]] = None,
    ) -> None:
        self.file = storedfile
        self.filename = storedfile.filename
        self.last_modified = storedfile.last_modified
        self.content_length = storedfile.content_length
        self.content_type = storedfile.content_type
        self.cache_expires = cache_max_age
        self.replace_wsgi_filewrapper = replace_wsgi_filewrapper
        self._policy = inline_policy if inline_policy is not None else _DEFAULT_POLICY
        self._offload = offload
        self._link_remaining = link_remaining
        self._not_found = not_found or _not_found
        self._remember = remember

    def generate_etag(self) -> str:
        """The file's entity-tag (see :func:`depot.serving.etags.make_etag`).

        filedepot's was ``"<last_modified>-<content_length>"``, which has a
        space (invalid) and misses changes within one second.
        """
        f = self.file
        version, checksum = f.version, f.checksum
        return make_etag(f.file_id, version, self.last_modified, self.content_length, checksum)

    def parse_date(self, value: str) -> datetime:
        """Parse an HTTP date to naive UTC; ``RuntimeError`` if it is not one.

        ``self`` is unused: filedepot's tests call ``FileServeApp.parse_date(None, value)``.
        """
        try:
            return parse_http_date(value)
        except (TypeError, ValueError) as exc:
            raise RuntimeError("Invalid HTTP date %r" % (value,)) from exc

    @classmethod
    def make_date(cls, d: Union[datetime, float, None]) -> str:
        """An RFC 1123 date from a naive-UTC datetime or an epoch number (``None``: now)."""
        return http_date(d)

    def has_been_modified(self, environ: dict, etag: str, last_modified: Optional[datetime]) -> bool:
        """Whether ``If-None-Match``/``If-Modified-Since`` let the file be sent again.

        ``If-None-Match`` takes lists, weak tags and ``*``; when present,
        ``If-Modified-Since`` is ignored, which is parsed with
        :meth:`parse_date`.  ``RuntimeError`` for a malformed
        ``If-Modified-Since`` (the response is a 400).  Every request asks
        this method, so a subclass overriding it decides between 304 and 200.
        """
        outcome = evaluate_preconditions(
            etag,
            last_modified,
            if_none_match=environ.get("HTTP_IF_NONE_MATCH"),
            if_modified_since=environ.get("HTTP_IF_MODIFIED_SINCE"),
            parse_date=self.parse_date,
        )
        if outcome is BAD_REQUEST:
            raise RuntimeError("Invalid If-Modified-Since %r" % (environ.get("HTTP_IF_MODIFIED_SINCE"),))
        return outcome is not NOT_MODIFIED

    def respond(self, environ: Mapping[str, str]) -> Response:
        """The decision for this request (see :func:`depot.serving.core.respond_file`)."""
        response = core.respond_file(self, environ)
        if self._remember is not None and response.identity is not None:
            self._remember(response)
        return response

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if self.replace_wsgi_filewrapper:
            environ["wsgi.file_wrapper"] = _FileIter
        response = self.respond(environ)
        if response.status is _NOT_FOUND:
            return self._not_found(start_response)
        try:
            return _send(response, environ, start_response)
        except BaseException:
            response.close()
            raise


_DEFAULT_POLICY = InlinePolicy()

# The class whose answers depend on nothing but the file (no overridden hook):
# only its answers are kept by depot.serving.core.HotFiles.
_PLAIN_FILE_APP = FileServeApp

# filedepot's names for these, kept for code that imported them.
_as_max_age = core.as_max_age
_as_flag = core.as_flag
_as_types = core.as_types


# Names a hook override may give its parameters, and what each receives.
_HOOK_ARGUMENTS = {"environ": 0, "start_response": 1, "location": 2, "url": 2}


def _call_hook(method: Callable[..., Any], environ: dict, start_response: StartResponse, *location: str) -> Any:
    """Call a response hook (``_404_response``, ``_301_response``) of a middleware, maybe overridden.

    The hooks take ``(start_response)`` and ``(start_response, location)``;
    an override that names its parameters ``environ``, ``start_response``
    and ``location`` (or ``url``) in another order, or asks for ``environ``
    too, gets them by name.
    """
    available: Sequence[Any] = (environ, start_response, *location)
    try:
        names = [
            p.name for p in inspect.signature(method).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        names = []
    if names and all(name in _HOOK_ARGUMENTS and _HOOK_ARGUMENTS[name] < len(available) for name in names):
        return method(*(available[_HOOK_ARGUMENTS[name]] for name in names))
    return method(start_response, *location)


class DepotMiddleware(core.ServingCore):
    """Serves the files of every configured storage under ``mountpoint``.

    ``GET``/``HEAD`` of ``<mountpoint>/<storage>/<file id>`` answers the file
    (or a redirect to its public URL); every other request goes to ``app``
    (with no ``app``, they answer 404, or 405 for another method under the
    mountpoint).  The first four arguments are filedepot's and take what
    filedepot took: ``cache_max_age=None`` serves files with
    ``Cache-Control: no-cache`` (kept, but revalidated at every use), and
    strings from INI files are read as what they mean.  The keyword-only
    options:

    ``inline_types``
        media types (``type/sub`` or ``type/*``) served inline even though a
        browser would run them (HTML, SVG, XML, JavaScript...), which are
        otherwise served as attachments with ``Content-Security-Policy: sandbox``.
    ``x_sendfile``
        answer local files with an ``X-Sendfile`` header and no body, for
        Apache's mod_xsendfile or lighttpd.
    ``x_accel_redirect``
        ``{directory: internal location}`` (or ``"DIR=LOCATION, ..."``): answer
        local files below ``directory`` with nginx's ``X-Accel-Redirect``.
    ``secret``, ``link_lifetime``
        with a secret, :meth:`url_for` gives links valid for ``link_lifetime``
        seconds (default one hour), and files are only served through such
        links: an expired, altered or missing signature answers 403.  A
        secret also lets the middleware take direct uploads
        (:meth:`upload_url_for`, ``PUT`` of a signed upload URL, see
        :mod:`depot.uploads`).

    Subclasses may override :meth:`url_for`, :meth:`_404_response` and
    :meth:`_301_response`, and set :attr:`file_app_class` to a
    :class:`FileServeApp` subclass (whose ``generate_etag``,
    ``has_been_modified``, ``parse_date`` and ``make_date`` are then used).
    :mod:`depot.asgi` has the same middleware for ASGI applications.

    The signature: ``DepotMiddleware(app, mountpoint='/depot',
    cache_max_age=604800, replace_wsgi_filewrapper=False, *, inline_types=None,
    x_sendfile=False, x_accel_redirect=None, secret=None, link_lifetime=3600)``.
    """

    app: Optional[WSGIApp]

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD")
        if not self.serves(method, path):
            query = environ.get("QUERY_STRING", "")
            if self.takes_upload(method, path, query):
                return _send(self._upload(environ, method, path, query), environ, start_response)
            if self.app is None:
                return _send(self.unrouted(method, path), environ, start_response)
            return self.app(environ, start_response)
        plain = self.plain_get(method, environ)
        if plain:
            kept = self.hot.answer(path, self.cache_max_age, self.inline_policy)
            if kept is not None:
                start_response(_OK_LINE, kept[0])
                return [kept[1]]
        located = self.locate(path, environ.get("QUERY_STRING", ""))
        if isinstance(located, Response):
            return self._answer(located, environ, start_response)
        return self.file_app(
            located, remember=path if plain else None,
            not_found=lambda respond: _call_hook(self._404_response, environ, respond),
        )(environ, start_response)

    def _upload(self, environ: dict, method: Optional[str], path: str, query: str) -> Response:
        """A direct upload: the body streams from ``wsgi.input`` (see :meth:`receive_upload`)."""
        # Without Content-Length the body ends where the server says so
        # (wsgi.input_terminated: gunicorn's chunked bodies); waitress and
        # others give a Content-Length after reading a chunked body themselves.
        length_known = bool(environ.get("CONTENT_LENGTH")) or bool(environ.get("wsgi.input_terminated"))
        return self.receive_upload(method, path, query, environ, environ["wsgi.input"].read, length_known=length_known)

    def _answer(self, response: Response, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        # The responses a subclass may have its own hook for.
        status = response.status
        if status is _NOT_FOUND:
            return _call_hook(self._404_response, environ, start_response)
        if status is HTTPStatus.MOVED_PERMANENTLY or status is HTTPStatus.FOUND:
            body = response.body
            assert isinstance(body, Redirect), "locate() answers 301/302 with core.redirect()"
            if status is HTTPStatus.MOVED_PERMANENTLY:
                return _call_hook(self._301_response, environ, start_response, body.location)
            return self._302_response(start_response, body.location)
        return _send(response, environ, start_response)

    def _404_response(self, start_response: StartResponse) -> Iterable[bytes]:
        """The answer for a path that names no stored file (filedepot's hook)."""
        return _not_found(start_response)

    def _301_response(self, start_response: StartResponse, location: str) -> Iterable[bytes]:
        """The permanent redirect to a file's public URL (filedepot's hook)."""
        return _send(redirect(location, permanent=True), {}, start_response)

    def _302_response(self, start_response: StartResponse, location: str) -> Iterable[bytes]:
        """The redirect to a signed, expiring URL: temporary, and never cached."""
        return _send(redirect(location, permanent=False), {}, start_response)
