"""The async storage API: every storage awaited, whether its backend is async or not.

:class:`AsyncStorage` wraps any :class:`~depot.io.interfaces.FileStorage`
and offers the same six operations as coroutines, plus
:meth:`~AsyncStorage.create_with_facts`::

    from depot.io.aio import AsyncStorage

    files = AsyncStorage(DepotManager.get())      # or DepotManager.get_async()
    file_id = await files.create(upload)           # Starlette's UploadFile, streamed
    async with await files.get(file_id) as stored:
        async for chunk in stored:                 # the content, chunk by chunk
            ...

A blocking backend runs each call in a worker thread of a bounded pool
(anyio, one :class:`anyio.CapacityLimiter` of :data:`DEFAULT_THREADS`
threads per event loop, shared by every AsyncStorage unless one is given),
so the event loop keeps serving other requests.  A backend becomes native
by defining coroutine methods named after the operations with an ``a``
prefix (``aget``, ``acreate``, ``areplace``, ``adelete``, ``aexists``,
``alist``, ``acreate_with_facts``; on its stored files ``aread``,
``aclose``, ``aiter_range``, ``areal_file``): AsyncStorage awaits those
instead, and callers do not change.

Content is anything ``create()`` accepts, plus what async applications
hold: an async iterable of ``bytes`` (``request.stream()``) or an upload
object whose ``read(n)`` is a coroutine (Starlette's and FastAPI's
``UploadFile``, Litestar's), alone or inside a
:class:`~depot.io.utils.FileIntent`.  These are streamed to the storage
chunk by chunk (see :mod:`depot.io._aio_pipe`): memory is bounded by the
chunk size, never by the file size.  An upload's ``filename`` and
``content_type`` are used as for a form upload in ``create()``.

Errors keep their types: a missing file is still an :class:`IOError`, a
malformed id a :class:`ValueError`, a failing source's own exception
reaches the caller.  Requires ``anyio`` (``pip install 'depot[async]'``).
"""
from __future__ import annotations

from datetime import datetime
from typing import IO, Any, AsyncGenerator, AsyncIterator, Callable, Generator, List, Optional, Tuple, TypeVar, cast

from depot._optional import require

require("anyio", "async", "depot.io.aio")  # a message naming the extra when anyio is missing

import anyio  # noqa: E402
from anyio.lowlevel import RunVar  # noqa: E402

from depot.io import _workers  # noqa: E402
from depot.io._workers import set_worker_niceness, worker_niceness  # noqa: E402
from depot.io._aio_pipe import blocking_content, is_async_source, run_with_source  # noqa: E402
from depot.io.interfaces import DEFAULT_CHUNK_SIZE, FileStorage, StoredFacts, StoredFile  # noqa: E402

__all__ = [
    "AsyncStorage", "AsyncStoredFile", "DEFAULT_THREADS", "set_worker_niceness", "thread_limiter",
    "upload_thread_limiter", "worker_niceness",
]

T = TypeVar("T")

#: Worker threads per event loop for the calls of blocking backends.
DEFAULT_THREADS = 16

# One pool for short calls and chunk reads, one for uploads fed from the event
# loop: an upload holds its thread while it waits for chunks, and if those
# chunks come from a stored file of another AsyncStorage (a copy), reading them
# needs a thread too.  Separate pools mean uploads can never take every thread
# their own sources need.
_call_limiter: RunVar[anyio.CapacityLimiter] = RunVar("depot_call_limiter")
_upload_limiter: RunVar[anyio.CapacityLimiter] = RunVar("depot_upload_limiter")


def _limiter_of(var: "RunVar[anyio.CapacityLimiter]") -> anyio.CapacityLimiter:
    try:
        return var.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(DEFAULT_THREADS)
        var.set(limiter)
        return limiter


def thread_limiter() -> anyio.CapacityLimiter:
    """The current event loop's default limiter for blocking storage calls.

    Change its ``total_tokens`` to resize the pool for the running loop.
    """
    return _limiter_of(_call_limiter)


def upload_thread_limiter() -> anyio.CapacityLimiter:
    """The current event loop's default limiter for uploads fed from async sources."""
    return _limiter_of(_upload_limiter)


def _unwrap(value: Any) -> Any:
    """The blocking StoredFile behind an :class:`AsyncStoredFile` (ids and content)."""
    return value.file if isinstance(value, AsyncStoredFile) else value


class AsyncStoredFile:
    """A stored file read with ``await``: the async face of a :class:`~depot.io.interfaces.StoredFile`.

    The facts are plain attributes, as on the StoredFile (``file_id``,
    ``filename``, ``content_type``, ``last_modified``, ``content_length``,
    ``public_url``...); any other attribute is the StoredFile's.
    ``async for chunk in f`` yields the rest of the content in chunks of
    ``chunk_size`` bytes; :meth:`iter_range` yields a byte range.  Use it as
    ``async with`` to close it.  The blocking file is :attr:`file`.
    """

    def __init__(
        self,
        file: StoredFile,
        limiter: Optional[anyio.CapacityLimiter] = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.file = file
        self._limiter = limiter
        self.chunk_size = chunk_size

    # -- facts ---------------------------------------------------------------

    @property
    def file_id(self) -> str:
        return self.file.file_id

    @property
    def filename(self) -> Optional[str]:
        return self.file.filename

    @property
    def content_type(self) -> Optional[str]:
        return self.file.content_type

    @property
    def last_modified(self) -> Optional[datetime]:
        return self.file.last_modified

    @property
    def content_length(self) -> Optional[int]:
        return self.file.content_length

    @property
    def name(self) -> Optional[str]:
        return self.file.name

    @property
    def public_url(self) -> Optional[str]:
        return self.file.public_url

    @property
    def public_url_signed(self) -> bool:
        return self.file.public_url_signed

    @property
    def closed(self) -> bool:
        return self.file.closed

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not defined here: a backend's extras (``version``...).
        if name == "file":
            raise AttributeError(name)
        return getattr(self.file, name)

    # -- reading ---------------------------------------------------------------

    async def _run(self, native: str, blocking: Callable[..., T], *args: Any) -> T:
        method = getattr(self.file, native, None)
        if method is not None:
            return await method(*args)
        return await _workers.run_sync(blocking, *args, limiter=self._limiter or thread_limiter())

    async def read(self, n: int = -1) -> bytes:
        """Read up to ``n`` bytes (everything when ``n`` is negative): keep ``n`` bounded for big files."""
        return await self._run("aread", self.file.read, n)

    async def close(self) -> None:
        """Release the underlying resources; later reads raise :class:`ValueError`."""
        # Closing may release a network connection: off the loop, and done even if cancelled.
        with anyio.CancelScope(shield=True):
            await self._run("aclose", self.file.close)

    aclose = close

    async def real_file(self) -> Optional[IO[bytes]]:
        """:meth:`StoredFile.real_file <depot.io.interfaces.StoredFile.real_file>`, opened off the loop."""
        return await self._run("areal_file", self.file.real_file)

    async def __aenter__(self) -> "AsyncStoredFile":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self.read(self.chunk_size)
            if not chunk:
                return
            yield chunk

    async def iter_range(
        self, start: int = 0, stop: Optional[int] = None, chunk_size: Optional[int] = None
    ) -> AsyncGenerator[bytes, None]:
        """Yield the bytes ``[start, stop)`` in chunks of at most ``chunk_size``, as :meth:`StoredFile.iter_range`.

        Each chunk is fetched off the event loop; stopping early closes the
        backend's range reader.
        """
        chunk_size = chunk_size or self.chunk_size
        native = getattr(self.file, "aiter_range", None)
        if native is not None:
            async for chunk in native(start, stop, chunk_size):
                yield chunk
            return
        limiter = self._limiter or thread_limiter()
        # Every iter_range is a generator (the interface's own is): close() releases the backend's reader.
        chunks = cast(Generator[bytes, None, None], self.file.iter_range(start, stop, chunk_size))
        try:
            while True:
                chunk = await _workers.run_sync(next, chunks, None, limiter=limiter)
                if chunk is None:
                    return
                yield chunk
        finally:
            with anyio.CancelScope(shield=True):
                await _workers.run_sync(chunks.close, limiter=limiter)

    def __repr__(self) -> str:
        return "<AsyncStoredFile %r>" % (self.file,)


class AsyncStorage:
    """The operations of ``storage`` as coroutines; see the module documentation.

    ``limiter`` bounds the worker threads used for blocking calls and reads
    (default: :func:`thread_limiter`, :data:`DEFAULT_THREADS` per event
    loop); uploads fed from an async source take their threads from a
    separate pool of the same size, unless ``upload_limiter`` is given.
    ``chunk_size`` is the size of the chunks read from async sources and of
    ``async for`` over stored files.
    """

    def __init__(
        self,
        storage: FileStorage,
        *,
        limiter: Optional[anyio.CapacityLimiter] = None,
        upload_limiter: Optional[anyio.CapacityLimiter] = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if isinstance(storage, AsyncStorage):
            storage = storage.storage
        self.storage = storage
        self._limiter = limiter
        self._upload_limiter = upload_limiter
        self.chunk_size = chunk_size

    def _calls(self) -> anyio.CapacityLimiter:
        return self._limiter or thread_limiter()

    async def _run(self, native: str, blocking: Callable[..., T], *args: Any) -> T:
        method = getattr(self.storage, native, None)
        if method is not None:
            return await method(*args)
        return await _workers.run_sync(blocking, *args, limiter=self._calls())

    async def _write(self, native: str, blocking: Callable[..., T], *args: Any) -> T:
        """A create/replace: ``args`` end with ``(content, filename, content_type)``."""
        method = getattr(self.storage, native, None)
        if method is not None:
            return await method(*args)
        *head, content, filename, content_type = args
        if not is_async_source(content):
            call_args: Tuple[Any, ...] = (*head, blocking_content(content), filename, content_type)
            return await _workers.run_sync(blocking, *call_args, limiter=self._calls())
        limiter = self._upload_limiter or upload_thread_limiter()
        return await run_with_source(
            content, lambda stream: blocking(*head, stream, filename, content_type), limiter, self.chunk_size
        )

    def _wrap(self, stored: StoredFile) -> AsyncStoredFile:
        return AsyncStoredFile(stored, self._limiter, self.chunk_size)

    async def get(self, file_or_id: Any) -> AsyncStoredFile:
        """The stored file; :class:`ValueError` for a malformed id, :class:`IOError` if missing."""
        return self._wrap(await self._run("aget", self.storage.get, _unwrap(file_or_id)))

    async def create(self, content: Any, filename: Optional[str] = None, content_type: Optional[str] = None) -> str:
        """Store ``content`` as a new file and return its new id."""
        return await self._write("acreate", self.storage.create, _unwrap(content), filename, content_type)

    async def create_with_facts(
        self, content: Any, filename: Optional[str] = None, content_type: Optional[str] = None
    ) -> StoredFacts:
        """:meth:`create`, returning the new file's facts (what :meth:`get` reports)."""
        return await self._write(
            "acreate_with_facts", self.storage.create_with_facts, _unwrap(content), filename, content_type
        )

    async def replace(
        self, file_or_id: Any, content: Any, filename: Optional[str] = None, content_type: Optional[str] = None
    ) -> str:
        """Store ``content`` under an existing id and return the id (rules of ``FileStorage.replace``)."""
        return await self._write(
            "areplace", self.storage.replace, _unwrap(file_or_id), _unwrap(content), filename, content_type
        )

    async def delete(self, file_or_id: Any) -> None:
        """Remove the file; removing a missing file does nothing."""
        await self._run("adelete", self.storage.delete, _unwrap(file_or_id))

    async def exists(self, file_or_id: Any) -> bool:
        """Whether a file with this id is stored."""
        return await self._run("aexists", self.storage.exists, _unwrap(file_or_id))

    async def list(self) -> List[str]:
        """The ids of the files in the backing store."""
        return await self._run("alist", self.storage.list)

    def __repr__(self) -> str:
        return "<AsyncStorage %r>" % (self.storage,)
