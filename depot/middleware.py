"""WSGI middleware serving stored files under a mountpoint (filedepot-compatible).

``DepotMiddleware(app)`` answers ``GET``/``HEAD`` for ``/depot/<storage>/<id>``
and passes everything else to ``app``.  The HTTP rules (conditional requests,
ranges, ETags, safe content types, signed links) live in :mod:`depot.serving`;
this module only adapts them to WSGI and picks the cheapest way to send the
bytes: the server's ``wsgi.file_wrapper`` over a real file (sendfile), an
offload header for the front server, or chunks read from the storage.
"""
from __future__ import annotations

import functools
import html
import inspect
import os
from datetime import datetime
from typing import IO, Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, Union
from urllib.parse import quote

from depot.io.interfaces import StoredFile
from depot.manager import DepotManager
from depot.serving.caching import cache_headers
from depot.serving.conditional import Outcome, evaluate_preconditions
from depot.serving.content import InlinePolicy
from depot.serving.dates import parse_http_date
from depot.serving.etags import make_etag
from depot.serving.offload import AccelMapping, Offload
from depot.serving.paths import is_under_mount, mount_prefix, quote_file_path, split_file_path
from depot.serving.plan import FileFacts, plan_response
from depot.serving.signing import LinkSigner
from depot.utils import asbool, asint, http_date
from depot.utils import make_content_disposition, utcfromtimestamp_naive  # noqa: F401 - a name filedepot 0.12 had here

__all__ = ["DepotMiddleware", "FileServeApp"]

#: Chunk handed to ``wsgi.file_wrapper`` and read from storages (256 KiB).
_BLOCK_SIZE = 4096 * 64

#: Bodies up to this size are read and returned as one chunk: for them the
#: server's sendfile set-up (a selector, lseek, fstat...) costs more than the
#: copy it saves.
_SMALL_BODY = 64 * 1024

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


def _html(
    start_response: StartResponse, status: str, message: str, headers: Iterable[Tuple[str, str]] = ()
) -> List[bytes]:
    body = ("<html><head><title>%s</title></head><body><h1>%s</h1></body></html>" % (status, message)).encode()
    start_response(status, [*headers, ("Content-Type", "text/html"), ("Content-Length", str(len(body)))])
    return [body]


def _not_found(start_response: StartResponse) -> List[bytes]:
    return _html(start_response, "404 Not Found", "File Not Found")


_ERROR_MESSAGES = {
    "400 Bad Request": "Bad Request",
    "403 Forbidden": "Forbidden",
    "412 Precondition Failed": "Precondition Failed",
    "416 Range Not Satisfiable": "Range Not Satisfiable",
}


class FileServeApp:
    """A WSGI application answering a GET or HEAD for one stored file.

    Keeps filedepot's constructor, attributes (``file``, ``filename``,
    ``last_modified``, ``content_length``, ``content_type``,
    ``cache_expires``, ``replace_wsgi_filewrapper``) and helper methods.  The
    keyword-only options are set by :class:`DepotMiddleware`.
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

    def generate_etag(self) -> str:
        """The file's entity-tag (see :func:`depot.serving.etags.make_etag`).

        filedepot's was ``"<last_modified>-<content_length>"``, which has a
        space (invalid) and misses changes within one second.
        """
        f = self.file
        return make_etag(f.file_id, getattr(f, "version", None), self.last_modified, self.content_length)

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
        if outcome is Outcome.BAD_REQUEST:
            raise RuntimeError("Invalid If-Modified-Since %r" % (environ.get("HTTP_IF_MODIFIED_SINCE"),))
        return outcome is not Outcome.NOT_MODIFIED

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        f = self.file
        real = None
        handed_over: object = None  # the resource the returned body closes
        try:
            if self.replace_wsgi_filewrapper:
                environ["wsgi.file_wrapper"] = _FileIter
            try:
                etag = self.generate_etag()
            except OSError:
                # Deleted between get() and now: as missing as a failed get().
                return self._not_found(start_response)
            try:
                not_modified = not self.has_been_modified(environ, etag, self.last_modified)
            except RuntimeError:
                return _html(start_response, "400 Bad Request", _ERROR_MESSAGES["400 Bad Request"])
            # The shared, memoised date formatting unless a subclass has its own (a class is
            # hashable: the ignore is for typeshed's __hash__ signature on lru_cache's Hashable).
            make_date = self.make_date if _make_date_overridden(type(self)) else None  # type: ignore[arg-type]
            facts = FileFacts(etag, self.last_modified, self.content_length, self.content_type, self.filename)
            cache_control, expires = cache_headers(self.cache_expires, self._link_remaining, make_date=make_date)
            decide = functools.partial(
                plan_response, cache_control=cache_control, expires=expires, policy=self._policy,
                not_modified=not_modified, make_date=make_date,
            )
            plan = decide(environ, facts)
            if plan.body is not None or (self._offload and plan.status[0] == "2"):
                # Only now that content (or its path) is needed: 304s and HEADs
                # never open the data file.
                try:
                    real = f.real_file()
                    size = None if real is None else os.fstat(real.fileno()).st_size
                except OSError:
                    return self._not_found(start_response)
                if real is not None and size != facts.content_length:
                    # Rewritten since its metadata was read: describe the bytes
                    # actually opened, so that the length sent is theirs.
                    facts = facts._replace(content_length=size)
                    plan = decide(environ, facts)
            if plan.status in _ERROR_MESSAGES:
                return _html(start_response, plan.status, _ERROR_MESSAGES[plan.status], plan.headers)
            target = None
            if self._offload and real is not None and plan.status[0] == "2":
                target = self._offload.header_for(real.name)
            if target is not None:
                # The front server sends the bytes: it applies Range itself and
                # computes the length, so neither is decided here.
                plan = decide(environ, facts, ranges=False)
                headers = [h for h in plan.headers if h[0] != "Content-Length"]
                start_response(plan.status, headers + [target])
                return []
            start_response(plan.status, plan.headers)
            if plan.body is None:
                return []
            start, stop = plan.body
            wrapper = environ.get("wsgi.file_wrapper", _FileIter)
            if real is not None and stop is not None and stop - start <= _SMALL_BODY:
                if start:
                    real.seek(start)
                return [real.read(stop - start)]
            if real is not None and stop is not None:  # a real file's size is always known
                handed_over = real
                if start:
                    real.seek(start)
                return wrapper(real if stop == facts.content_length else _BoundedFile(real, stop - start), _BLOCK_SIZE)
            handed_over = f
            if start == 0 and stop == facts.content_length:
                return wrapper(f, _BLOCK_SIZE)
            return _RangeIter(f, start, stop)
        finally:
            for resource in (real, f):
                if resource is not None and resource is not handed_over:
                    resource.close()


_DEFAULT_POLICY = InlinePolicy()


@functools.lru_cache(maxsize=64)
def _make_date_overridden(cls: type) -> bool:
    return inspect.getattr_static(cls, "make_date") is not inspect.getattr_static(FileServeApp, "make_date")


# filedepot accepted any constructor value; these keep that while reading the
# strings of INI files as what they mean.
_MAX_MAX_AGE = 2**31 - 1  # RFC 9111 1.2.2: the largest delta-seconds caches must take


def _as_max_age(value: Any) -> Optional[int]:
    """``cache_max_age`` in whole seconds, clamped to ``[0, 2**31 - 1]``; ``None`` for "no max-age"."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    try:
        seconds = float(value) if isinstance(value, str) else value
        return int(min(max(seconds, 0), _MAX_MAX_AGE))
    except (TypeError, ValueError):  # NaN too: int() refuses it
        raise ValueError("cache_max_age must be a number of seconds or None, got %r" % (value,)) from None


def _as_flag(value: Any) -> bool:
    """An INI boolean (``'false'`` is false); any other value by its truth, as filedepot took it."""
    try:
        return asbool(value)
    except ValueError:
        return bool(value)


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


def _safe_location(url: str) -> str:
    # A URL from a storage goes into a header: percent-encode anything that is
    # not printable ASCII (existing escapes are kept) so it cannot split it.
    return quote(url, safe="!#$%&'()*+,/:;=?@[]~-._")


def _as_types(value: Union[None, str, Iterable[str]]) -> Tuple[str, ...]:
    if not value:
        return ()
    if isinstance(value, str):
        return tuple(item for item in value.replace(",", " ").split() if item)
    return tuple(value)


class DepotMiddleware:
    """Serves the files of every configured storage under ``mountpoint``.

    ``GET``/``HEAD`` of ``<mountpoint>/<storage>/<file id>`` answers the file
    (or a redirect to its public URL); every other request goes to ``app``.
    The first four arguments are filedepot's and take what filedepot took:
    ``cache_max_age=None`` serves files with ``Cache-Control: no-cache``
    (kept, but revalidated at every use), and strings from INI files are
    read as what they mean.  The keyword-only options:

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
        links: an expired, altered or missing signature answers 403.

    Subclasses may override :meth:`url_for`, :meth:`_404_response` and
    :meth:`_301_response`, and set :attr:`file_app_class` to a
    :class:`FileServeApp` subclass (whose ``generate_etag``,
    ``has_been_modified``, ``parse_date`` and ``make_date`` are then used).
    """

    #: The :class:`FileServeApp` (sub)class files are served with; ``None``
    #: means ``depot.middleware.FileServeApp`` as it is at each request, so
    #: code that patches the module attribute keeps working.
    file_app_class: Optional[type] = None

    def __init__(
        self,
        app: Optional[WSGIApp],
        mountpoint: str = "/depot",
        cache_max_age: Optional[int] = 3600 * 24 * 7,
        replace_wsgi_filewrapper: bool = False,
        *,
        inline_types: Union[None, str, Iterable[str]] = None,
        x_sendfile: bool = False,
        x_accel_redirect: AccelMapping = None,
        secret: Union[None, str, bytes] = None,
        link_lifetime: int = 3600,
    ) -> None:
        self.app = app
        self.mountpoint = mountpoint
        self._prefix = mount_prefix(mountpoint)
        self.cache_max_age = _as_max_age(cache_max_age)
        self.replace_wsgi_filewrapper = _as_flag(replace_wsgi_filewrapper)
        self.inline_policy = InlinePolicy(_as_types(inline_types))
        offload = Offload(asbool(x_sendfile), x_accel_redirect)
        self.offload = offload if offload else None
        self.signer = LinkSigner(secret, asint(link_lifetime, "link_lifetime")) if secret else None

    def url_for(self, path: str, *, signed: bool = True) -> str:
        """The URL of ``'<storage>/<file id>'``.

        Characters a URL path cannot carry are percent-encoded (filedepot
        encoded nothing; the ids of the built-in storages need no encoding).
        With a secret the URL is signed and expires, unless ``signed=False``,
        which gives the bare path, for values stored in rows (see
        :meth:`depot.fields.upload.UploadedFile.url`).
        """
        url = "%s/%s" % (self._prefix, quote_file_path(path))
        if signed and self.signer is not None:
            url = "%s?%s" % (url, self.signer.sign(path))
        return url

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD") or not is_under_mount(path, self._prefix):
            return self.app(environ, start_response)  # type: ignore[misc]  # app=None: only for url_for
        target = split_file_path(path, self._prefix)
        if target is None:
            return _call_hook(self._404_response, environ, start_response)
        depot_name, file_id = target
        remaining = None
        if self.signer is not None:
            signed_path = ("%s/%s" % target).encode("utf-8")
            remaining = self.signer.remaining(signed_path, environ.get("QUERY_STRING", ""))
            if remaining is None:
                return _html(start_response, "403 Forbidden", "Forbidden")
        depot = DepotManager.get(depot_name)
        if depot is None:
            return _call_hook(self._404_response, environ, start_response)
        try:
            f = depot.get(file_id)
        except (IOError, ValueError):
            return _call_hook(self._404_response, environ, start_response)
        try:
            public_url = f.public_url
        except BaseException:
            f.close()
            raise
        if public_url is not None:
            f.close()
            if f.public_url_signed:
                return self._302_response(start_response, public_url)
            return _call_hook(self._301_response, environ, start_response, public_url)
        app_class = self.file_app_class or FileServeApp
        return app_class(
            f,
            self.cache_max_age,
            self.replace_wsgi_filewrapper,
            inline_policy=self.inline_policy,
            offload=self.offload,
            link_remaining=remaining,
            not_found=lambda respond: _call_hook(self._404_response, environ, respond),
        )(environ, start_response)

    def _404_response(self, start_response: StartResponse) -> Iterable[bytes]:
        """The answer for a path that names no stored file (filedepot's hook)."""
        return _not_found(start_response)

    def _301_response(self, start_response: StartResponse, location: str) -> Iterable[bytes]:
        """The permanent redirect to a file's public URL (filedepot's hook)."""
        return _redirect(start_response, "301 Moved Permanently", location, [])

    def _302_response(self, start_response: StartResponse, location: str) -> Iterable[bytes]:
        """The redirect to a signed, expiring URL: temporary, and never cached."""
        return _redirect(start_response, "302 Found", location, [("Cache-Control", "no-store")])


def _redirect(start_response: StartResponse, status: str, url: str, extra: List[Tuple[str, str]]) -> List[bytes]:
    location = _safe_location(url)
    body = ('<html><body>Moved to <a href="%s">%s</a></body></html>' % ((html.escape(location),) * 2)).encode()
    headers = [("Content-Type", "text/html"), ("Location", location), *extra, ("Content-Length", str(len(body)))]
    start_response(status, headers)
    return [body]
