"""Feed content that arrives asynchronously to a storage that reads it in a worker thread.

A blocking storage's ``create()`` runs in a worker thread and reads its
content with ``read()``/``readinto()``; an async application has an async
iterable of bytes (a request body) or an upload object whose ``read(n)`` is
a coroutine (Starlette's ``UploadFile``).  :func:`run_with_source` joins the
two: a producer task on the event loop pulls chunks from the source and
hands them over a memory stream holding at most one chunk; the worker
thread's :class:`_Pipe` takes them one at a time (the small pieces of a
request body are gathered up to the chunk size first: every hand-over is a
trip through the loop).  Memory is bounded by a few chunks whatever the
size of the upload.

When the source fails, or the calling task is cancelled (a client that went
away), the pipe raises in the worker thread instead of reporting an end of
file, so the storage discards the partial write exactly as for any failing
stream: a truncated upload is never stored as if it were complete.
"""
from __future__ import annotations

import inspect
import io
from typing import Any, AsyncIterator, Callable, List, Optional, TypeVar, Union

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.abc import ObjectReceiveStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from depot.io import _workers
from depot.io.utils import FileIntent, _is_fieldstorage_like

__all__ = ["is_async_source", "blocking_content", "run_with_source", "UploadCancelled", "HANDOVER_SIZE"]

T = TypeVar("T")

#: The least a hand-over to the worker thread carries (512 KiB): the small
#: pieces of a request body are gathered up to it.  Each hand-over is a trip
#: through the event loop and a switch between threads (with the GIL passed
#: each way), so on a busy machine the number of hand-overs, not the bytes,
#: is what delays the loop.  Memory stays bounded: about three hand-overs per
#: upload (one being gathered, one being joined into the bytes written).
HANDOVER_SIZE = 512 * 1024

#: A chunk of content as sources give it and the pipe takes it (or pieces
#: of a request body to join, see _Pieces).
Chunk = Union[bytes, bytearray, memoryview, "_Pieces"]


class UploadCancelled(Exception):
    """Raised inside the storage's write when the task that fed it was cancelled."""


def _has_async_read(obj: Any) -> bool:
    return inspect.iscoroutinefunction(getattr(obj, "read", None))


def is_async_source(content: Any) -> bool:
    """Whether ``content`` (or the content of a :class:`FileIntent`) must be read with ``await``.

    An upload object that also holds its content in a blocking ``file``
    (Starlette's ``UploadFile`` once the form is parsed: a spooled temporary
    file) is not: a worker thread reads that file directly, as ``create()``
    reads any form upload, without a trip to the event loop per chunk.
    """
    if isinstance(content, FileIntent):
        content = content._fileobj
    if _has_blocking_file(content):
        return False
    return hasattr(content, "__aiter__") or _has_async_read(content)


def _has_blocking_file(upload: Any) -> bool:
    return _is_fieldstorage_like(upload) and callable(getattr(upload.file, "read", None)) and not (
        _has_async_read(upload.file)
    )


def blocking_content(content: Any) -> Any:
    """``content`` as a blocking ``create()`` takes it: a FileIntent around an upload object gets its file."""
    if isinstance(content, FileIntent) and _has_blocking_file(content._fileobj):
        return FileIntent(content._fileobj.file, content._filename, content._content_type)
    return content


async def _chunks(source: Any, chunk_size: int) -> AsyncIterator[Chunk]:
    """The bytes of an async source: ``await source.read(n)`` until empty, or ``async for``."""
    if _has_async_read(source):
        while True:
            chunk = await source.read(chunk_size)
            if not chunk:
                return
            yield chunk
    else:
        # Request bodies come in pieces of a few KiB: gathered up to a
        # hand-over's size (see HANDOVER_SIZE), each trip through the loop
        # carries more.  The pieces are only listed here; the worker thread
        # joins them (see _Pipe), so the copy is not made on the loop.
        target = max(chunk_size, HANDOVER_SIZE)
        pending: List[Union[bytes, bytearray, memoryview]] = []
        size = 0
        async for chunk in source:
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise TypeError("Only bytes can be stored, not %s" % type(chunk).__name__)
            if not pending and len(chunk) >= target:
                yield chunk  # already large enough: no copy
                continue
            pending.append(chunk)
            size += len(chunk)
            if size >= target:
                yield _Pieces(pending)
                pending, size = [], 0
        if pending:
            yield _Pieces(pending)


class _Pieces(List[Union[bytes, bytearray, memoryview]]):
    """Pieces of a request body handed over together; the worker thread joins them."""


class _Pipe(io.RawIOBase):
    """The worker thread's end: a non-seekable binary stream over the chunks received.

    It carries the source's ``filename`` and ``content_type`` (an upload
    object's), so the storage resolves them by its usual rules.
    """

    def __init__(
        self, receive: ObjectReceiveStream[Chunk], filename: Optional[str], content_type: Optional[str]
    ) -> None:
        super().__init__()
        self._receive = receive
        self._pending = memoryview(b"")
        self._eof = False
        self.error: Optional[BaseException] = None  # set on the loop before the stream is closed
        self.filename = filename
        self.content_type = content_type

    def readable(self) -> bool:
        return True

    async def _next(self) -> Chunk:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            pass
        if self.error is not None:
            raise self.error  # outside the except block: the source's exception is not chained to ours
        return b""

    def _fill(self) -> bool:
        """Receive the next chunk unless one is pending; ``False`` at the end."""
        while not self._pending:
            if self._eof:
                return False
            chunk = anyio.from_thread.run(self._next)
            if not chunk:
                self._eof = True
                return False
            if isinstance(chunk, _Pieces):
                chunk = b"".join(chunk)
            self._pending = memoryview(chunk).cast("B")
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._fill():
            return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def read(self, size: Optional[int] = -1) -> bytes:
        """Up to ``size`` bytes (all the rest when negative): a whole pending chunk without copying it."""
        if size is None or size < 0:
            return self.readall()
        if not size or not self._fill():
            return b""
        pending = self._pending
        if len(pending) <= size and isinstance(pending.obj, bytes) and len(pending) == len(pending.obj):
            self._pending = memoryview(b"")
            return pending.obj
        chunk = bytes(pending[:size])
        self._pending = pending[size:]
        return chunk


def _source_names(source: Any) -> tuple:
    filename = getattr(source, "filename", None)
    content_type = getattr(source, "content_type", None)
    return (filename if isinstance(filename, str) else None,
            content_type if isinstance(content_type, str) else None)


async def run_with_source(
    content: Any,
    call: Callable[[Any], T],
    limiter: anyio.CapacityLimiter,
    chunk_size: int,
) -> T:
    """Run ``call(stream)`` in a worker thread, ``stream`` delivering the async ``content``.

    ``content`` may also be a :class:`FileIntent` around an async source;
    ``call`` then receives a FileIntent around the stream.  Exceptions keep
    their type: the source's own (a client disconnect...) and the storage's.
    """
    intent = content if isinstance(content, FileIntent) else None
    source = intent._fileobj if intent is not None else content
    send: MemoryObjectSendStream[Chunk]
    receive: MemoryObjectReceiveStream[Chunk]
    send, receive = anyio.create_memory_object_stream(max_buffer_size=0)
    pipe = _Pipe(receive, *_source_names(source))
    argument: Any = FileIntent(pipe, intent._filename, intent._content_type) if intent is not None else pipe

    async def produce() -> None:
        try:
            async with send:
                async for chunk in _chunks(source, chunk_size):
                    if not isinstance(chunk, (bytes, bytearray, memoryview, _Pieces)):
                        raise TypeError("Only bytes can be stored, not %s" % type(chunk).__name__)
                    await send.send(chunk)
        except anyio.get_cancelled_exc_class():
            pipe.error = UploadCancelled("the upload was cancelled before its end")
            raise
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the storage stopped reading: its own outcome is what counts
        except Exception as exc:  # the source failed: the storage must see it, not an end of file
            pipe.error = exc

    failure: Optional[Exception] = None
    result: Any = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        try:
            result = await _workers.run_sync(call, argument, limiter=limiter)
        except Exception as exc:
            failure = exc
        # Whatever the storage did, the producer has nothing more to deliver.
        receive.close()
        tg.cancel_scope.cancel()
    if failure is not None:
        # A write aborted because this task is being cancelled reports the cancellation, not UploadCancelled.
        await anyio.lowlevel.checkpoint_if_cancelled()
        raise failure
    return result
