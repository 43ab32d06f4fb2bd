"""ASGI middleware serving stored files: the same URLs, options and behaviour as :mod:`depot.middleware`.

``DepotMiddleware(app)`` answers ``GET``/``HEAD`` of
``<mountpoint>/<storage>/<id>`` and passes every other request, and the
``lifespan`` and ``websocket`` scopes, to ``app`` untouched.  What to answer
is decided by :mod:`depot.serving.core`, the core the WSGI middleware uses
too, in one trip to a worker thread (it reads the storage); this module only
sends it, without blocking the event loop:

- small bodies (pages, files up to 64 KiB) were read in that trip, and go in one message;
- a whole local file goes with the server's ``http.response.pathsend``
  extension when it offers it (granian does): the server sends it zero-copy;
- any other body is read in chunks (1 MiB) in a worker thread, one chunk in
  memory at a time; a client that disconnects stops the reading and the
  file is closed.

With a ``secret`` it also takes direct uploads (``PUT`` of a signed upload
URL): the body is received on the event loop and handed, a chunk at a time,
to a worker thread that writes it into the storage
(:func:`depot.io._aio_pipe.run_with_source`).
"""
from __future__ import annotations

import os
from typing import (
    Any, AsyncIterator, Awaitable, Callable, Dict, Iterable, List, MutableMapping, Optional, Tuple, Union,
)
from urllib.parse import unquote_to_bytes

from depot._optional import require
from depot.serving.core import DRAIN_LIMIT, FileSpan, Located, Redirect, Response, ServingCore, StoredSpan

anyio = require("anyio", "asgi", "depot.asgi")

from depot.io import _workers  # noqa: E402 - needs anyio, checked just above
from depot.io._aio_pipe import run_with_source  # noqa: E402

__all__ = ["DepotMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PATHSEND = "http.response.pathsend"

#: Bytes read and sent at a time (1 MiB): the memory a streamed response
#: holds.  Each chunk costs a trip to a worker thread and a message through
#: the server, so smaller chunks cost more CPU per byte (256 KiB: about 40%
#: more under uvicorn than 512 KiB), and each trip passes the GIL between
#: the loop and a worker twice: on a busy machine every such switch can
#: delay the loop, so fewer of them (1 MiB) keep it more responsive.
CHUNK_SIZE = 1024 * 1024

# Header names as ASGI wants them (lowercase bytes), computed once each.
_NAMES: Dict[str, bytes] = {}
# WSGI environ keys of request header names.
_KEYS: Dict[bytes, str] = {b"content-type": "CONTENT_TYPE", b"content-length": "CONTENT_LENGTH"}
_MAX_KEYS = 256


def _encoded(headers: Iterable[Tuple[str, str]]) -> List[Tuple[bytes, bytes]]:
    encoded = []
    for name, value in headers:
        raw = _NAMES.get(name)
        if raw is None:
            raw = _NAMES.setdefault(name, name.lower().encode("latin-1"))
        encoded.append((raw, value.encode("latin-1")))
    return encoded


def _environ(scope: Scope, path: str) -> Dict[str, Any]:
    """The request as the 0.12 hooks see it: WSGI environ keys (and ``asgi.scope``)."""
    environ: Dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", ""),
        "PATH_INFO": path,
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "asgi.scope": scope,
    }
    for name, value in scope["headers"]:
        key = _KEYS.get(name)
        if key is None:
            key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
            if len(_KEYS) < _MAX_KEYS:  # clients choose the names: keep the memo bounded
                _KEYS[name] = key
        text = value.decode("latin-1")
        # Repeated headers are one comma-separated list, as WSGI servers join them.
        environ[key] = environ[key] + "," + text if key in environ else text
    return environ


def _below_root(path: str, root: str) -> str:
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root):]
    return path


def _path(scope: Scope) -> str:
    """The path below the application's root as ASGI servers decode it (text)."""
    return _below_root(scope["path"], scope.get("root_path", ""))


def _wsgi_path(scope: Scope, path: str) -> Optional[str]:
    """``path`` in WSGI form (latin-1 code points of the raw bytes), which the shared core takes.

    From ``raw_path`` when the server gives it: servers decode ``path`` as
    UTF-8 and replace what is not, and a URL with such bytes names no file
    (as under WSGI), while ``%EF%BF%BD`` is a real U+FFFD.
    """
    raw = scope.get("raw_path")
    if raw:
        raw_text = unquote_to_bytes(raw.split(b"?", 1)[0]).decode("latin-1")
        root = scope.get("root_path", "")
        return _below_root(raw_text, root.encode("utf-8", "surrogatepass").decode("latin-1") if root else "")
    if path.isascii():
        return path
    try:
        return path.encode("utf-8").decode("latin-1")
    except UnicodeEncodeError:  # lone surrogates: no file has such a name
        return None


class DepotMiddleware(ServingCore):
    """Serves the files of every configured storage under ``mountpoint``, for ASGI applications.

    Takes the options of :class:`depot.middleware.DepotMiddleware`
    (``replace_wsgi_filewrapper`` is accepted and means nothing here), and
    ``chunk_size``, the bytes streamed at a time (:data:`CHUNK_SIZE`), and
    answers the same URLs the same way; its :attr:`file_app_class` hooks
    (``generate_etag``, ``has_been_modified``, ``parse_date``, ``make_date``)
    are honoured too, called with a WSGI-style ``environ`` of the request
    (which also holds the ASGI scope under ``'asgi.scope'``).  ``app`` may be
    ``None``: requests that are not for a file then answer 404 (405 for
    another method under the mountpoint).

    Register it with :meth:`depot.manager.DepotManager.make_asgi_middleware`
    so that ``url_for``, ``UploadedFile.url`` and thumbnail URLs use it.
    """

    app: Optional[ASGIApp]

    def __init__(self, app: Optional[ASGIApp], *args: Any, chunk_size: int = CHUNK_SIZE, **options: Any) -> None:
        super().__init__(app, *args, **options)
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError("chunk_size must be a positive number of bytes, got %r" % (chunk_size,))
        self.chunk_size = chunk_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if self.app is None:
                await _without_app(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        path = _path(scope)
        if self.signer is not None and not self.serves(method, path):
            query = scope.get("query_string", b"").decode("latin-1")
            upload_path = _wsgi_path(scope, path) if self.takes_upload(method, path, query) else None
            if upload_path is not None and self.takes_upload(method, upload_path, query):
                await self._upload(scope, receive, send, upload_path)
                return
        # Only a path under the mountpoint is decoded the WSGI way.
        wsgi_path = _wsgi_path(scope, path) if self.serves(method, path) else None
        if wsgi_path is None or not self.serves(method, wsgi_path):
            if self.app is not None:
                await self.app(scope, receive, send)
                return
            response = self.unrouted(method, path)
        else:
            response = await _workers.run_sync(self.respond, scope, wsgi_path)
        await self._send(response, scope, receive, send)

    def respond(self, scope: Scope, path: str) -> Response:
        """The whole decision for a GET or HEAD of ``path``: blocking (storage I/O), run in a worker thread."""
        environ = _environ(scope, path)
        plain = self.plain_get(environ["REQUEST_METHOD"], environ)
        if plain:
            hot = self.hot.respond(path, self.cache_max_age, self.inline_policy)
            if hot is not None:
                return hot
        located = self.locate(path, environ["QUERY_STRING"])
        if isinstance(located, Located):
            return self.file_app(located, remember=path if plain else None).respond(environ)
        return located

    async def _upload(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """A direct upload: admitted in a worker thread, then stored by one, fed from the loop a chunk at a time."""
        environ = _environ(scope, path)
        admitted = await _workers.run_sync(
            lambda: self.admit_upload(scope["method"], path, environ["QUERY_STRING"], environ)
        )
        if isinstance(admitted, Response):
            # Refused before the body: a client waiting for "100 Continue"
            # never sends it; another one's small body is read and dropped.
            if "continue" not in environ.get("HTTP_EXPECT", "").lower():
                await _drain(receive, environ.get("CONTENT_LENGTH"))
            response = admitted
        else:
            limiter = anyio.to_thread.current_default_thread_limiter()
            response = await run_with_source(
                _request_body(receive), lambda body: self.store_upload(admitted, body.read, self.chunk_size),
                limiter, self.chunk_size,
            )
        await self._send(response, scope, receive, send)

    async def _send(self, response: Response, scope: Scope, receive: Receive, send: Send) -> None:
        body = response.body
        try:
            try:
                await send({"type": "http.response.start", "status": int(response.status),
                            "headers": _encoded(response.headers)})
                message = _single_message(body, scope)
                if message is not None:
                    await send(message)
                    return
            except OSError:
                return  # the client has gone (ASGI 2.4 servers raise from send)
            assert isinstance(body, (FileSpan, StoredSpan)), "every other body is sent in one message"
            await _stream(_reader(body, self.chunk_size), receive, send)
        finally:
            if isinstance(body, StoredSpan):
                # Closing may talk to the storage: off the loop, and even when cancelled.
                with anyio.CancelScope(shield=True):
                    await _workers.run_sync(response.close)
            else:
                response.close()


def _single_message(body: Any, scope: Scope) -> Optional[Message]:
    """The one message that sends ``body``, or ``None`` when it is streamed in chunks."""
    if scope["method"] == "HEAD" or body is None:
        return {"type": "http.response.body", "body": b""}
    if isinstance(body, bytes):
        return {"type": "http.response.body", "body": body}
    if isinstance(body, Redirect):
        return {"type": "http.response.body", "body": body.page}
    if isinstance(body, FileSpan) and body.whole and PATHSEND in scope.get("extensions", ()):
        # The server sends the file by its path (zero-copy); it cannot send a
        # part of one, so ranges are streamed.
        return {"type": PATHSEND, "path": os.path.abspath(body.real.name)}
    return None


def _reader(body: Union[FileSpan, StoredSpan], chunk_size: int) -> Callable[[], bytes]:
    """A blocking function returning the body's next chunk (``b''`` at the end)."""
    if isinstance(body, FileSpan):
        fd = body.real.fileno()
        position = [body.start, body.stop]

        def read_local() -> bytes:
            offset, stop = position
            # pread: no shared file position, one system call per chunk.
            chunk = os.pread(fd, min(chunk_size, stop - offset), offset) if offset < stop else b""
            position[0] = offset + len(chunk)
            return chunk

        return read_local
    if body.whole:
        f = body.file
        return lambda: f.read(chunk_size)
    chunks = body.file.iter_range(body.start, body.stop, chunk_size)
    return lambda: next(chunks, b"")


async def _stream(read: Callable[[], bytes], receive: Receive, send: Send) -> None:
    """Send the chunks ``read`` gives, each read in a worker thread, until the end or a disconnect.

    A disconnect is seen either way ASGI servers report it: an
    ``http.disconnect`` message (watched for concurrently) or ``send``
    raising ``OSError`` (ASGI 2.4).  Either stops the reading at once.
    """
    async with anyio.create_task_group() as group:
        group.start_soon(_cancel_on_disconnect, receive, group.cancel_scope)
        try:
            while True:
                chunk = await _workers.run_sync(read)
                if not await _sent(send, chunk, more=bool(chunk)) or not chunk:
                    return
        finally:
            group.cancel_scope.cancel()


async def _sent(send: Send, chunk: bytes, more: bool) -> bool:
    """Send one body message; ``False`` when the client has gone (ASGI 2.4 servers raise ``OSError``)."""
    try:
        await send({"type": "http.response.body", "body": chunk, "more_body": more})
    except OSError:
        return False
    return True


async def _cancel_on_disconnect(receive: Receive, scope: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


class ClientDisconnected(IOError):
    """The client went away before the end of the request body."""


async def _request_body(receive: Receive) -> AsyncIterator[bytes]:
    """The request body's chunks; :class:`ClientDisconnected` if the client leaves before its end."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected("the client disconnected before the end of the body")
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _drain(receive: Receive, length: Optional[str]) -> None:
    """Read and drop a refused request's body, if at most :data:`~depot.serving.core.DRAIN_LIMIT` bytes.

    A server that answers with body bytes left unread may reset the
    connection, and the client then loses the answer.
    """
    if length and length.isdigit() and int(length) > DRAIN_LIMIT:
        return
    left = DRAIN_LIMIT
    try:
        async for chunk in _request_body(receive):
            left -= len(chunk)
            if left <= 0:
                return
    except ClientDisconnected:
        return


async def _without_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer the non-HTTP scopes when no application is behind the middleware."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1000})

