"""Attachments in async applications: upload to a model attribute without blocking the loop.

Assigning content to an :class:`~depot.fields.sqlalchemy.UploadedFileField`
attribute stores it right away, in the calling thread: in an async
application that would block the event loop for the whole upload.
:func:`attach` does the storing (and the column's filters, thumbnails...)
in a worker thread, streaming an async upload chunk by chunk, then assigns
the stored value to the attribute on the loop, where the session's tracker
records it exactly as an assignment would::

    from depot.fields.aio import attach

    async with AsyncSession(engine) as session:
        doc = Document(title="report")
        await attach(doc, "content", upload)   # Starlette/FastAPI UploadFile
        session.add(doc)
        await session.commit()                 # a rollback would delete the file

The tracker works with ``AsyncSession`` as with ``Session``: a rollback
(of the transaction or of a ``begin_nested()`` savepoint) deletes the files
uploaded in it, and a commit deletes the files that rows stopped
referencing.  Those deletions run in worker threads when the session is
used from an event loop; :func:`deletions_done` waits for them.
"""
from __future__ import annotations

import asyncio
import tempfile
from typing import Any, Optional

from depot._optional import require

require("anyio", "async", "depot.fields.aio")  # a message naming the extra when anyio is missing

from sqlalchemy import inspect as sa_inspect  # noqa: E402
from sqlalchemy.ext.asyncio import async_object_session  # noqa: E402

from depot.io import _workers  # noqa: E402
from depot.io._aio_pipe import blocking_content, is_async_source, run_with_source  # noqa: E402
from depot.io.aio import AsyncStoredFile, thread_limiter, upload_thread_limiter  # noqa: E402
from depot.io.interfaces import DEFAULT_CHUNK_SIZE, FileStorage  # noqa: E402
from depot.io.utils import INMEMORY_FILESIZE, FileIntent, write_content  # noqa: E402

from . import _offload  # noqa: E402
from ._attach import rereads_content, upload  # noqa: E402
from ._lifecycle import created_files, delete_files  # noqa: E402
from .interfaces import _is_direct_upload  # noqa: E402
from .sqlalchemy import UploadedFileField  # noqa: E402
from .upload import UploadedFile  # noqa: E402

__all__ = ["attach", "deletions_done"]


def _column_type(obj: Any, attribute: str) -> UploadedFileField:
    mapper = sa_inspect(type(obj), raiseerr=False)
    prop = mapper.attrs.get(attribute) if mapper is not None else None
    column_type = getattr(prop, "columns", [None])[0]
    column_type = getattr(column_type, "type", None)
    if not isinstance(column_type, UploadedFileField):
        raise TypeError("%s.%s is not an UploadedFileField column" % (type(obj).__name__, attribute))
    return column_type


def _spooled(content: Any) -> FileIntent:
    """``content`` copied to a rewound temporary file (memory up to ``INMEMORY_FILESIZE``), names kept.

    Filters and image types read the upload again after it is stored: a
    stream delivered once by an async source cannot be read twice.
    """
    source, filename, content_type = FileStorage.fileinfo(content)
    spool = tempfile.SpooledTemporaryFile(INMEMORY_FILESIZE)
    try:
        write_content(source, spool)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return FileIntent(spool, filename, content_type)


async def attach(obj: Any, attribute: str, content: Any, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> UploadedFile:
    """Store ``content`` off the event loop and assign it to ``obj.<attribute>``; returns the value.

    ``obj`` is an instance of a SQLAlchemy model and ``attribute`` one of its
    :class:`~depot.fields.sqlalchemy.UploadedFileField` columns; ``content``
    is whatever the column accepts, or an async source (an async iterable
    of bytes, an upload object with an async ``read``, an
    :class:`~depot.io.aio.AsyncStoredFile`), alone or in a
    :class:`~depot.io.utils.FileIntent`.  It is stored in the column's
    storage, wrapped in its ``upload_type``, with its filters run, exactly as
    ``obj.<attribute> = content`` would, and the assignment then records the
    files with the session's tracker.  If storing fails or the task is
    cancelled, what was stored is deleted and the attribute is unchanged.
    An :class:`~depot.fields.upload.UploadedFile` (a value already stored)
    is assigned as it is.
    """
    column_type = _column_type(obj, attribute)
    if isinstance(content, UploadedFile):  # already stored: an assignment, nothing to upload
        setattr(obj, attribute, content)
        return content
    # Plain uploads stream straight to the storage; filters and upload types
    # that read the content again get a rewindable copy.
    # A direct upload is already stored: the value is built on the stored file, which it rereads itself.
    rereads = rereads_content(column_type) and not _is_direct_upload(content)
    built = []

    def build(source: Any) -> UploadedFile:
        if rereads:
            source = _spooled(source)
        try:
            # A filter that fails deletes what this upload stored itself.
            value = upload(column_type, source)
            built.append(value)
        finally:
            if rereads:
                source._fileobj.close()
        return value

    await _load_current(obj, attribute)
    if isinstance(content, AsyncStoredFile):
        content = content.file
    try:
        if is_async_source(content):
            value = await run_with_source(content, build, upload_thread_limiter(), chunk_size)
        else:
            value = await _workers.run_sync(build, blocking_content(content), limiter=thread_limiter())
        setattr(obj, attribute, value)
    except BaseException:
        # Stored but never assigned (a failing filter, a cancellation): nothing refers to it.
        if built:
            delete_files(created_files(built[0]))
        raise
    return value


async def _load_current(obj: Any, attribute: str) -> None:
    """Load the attribute's current value if it is expired, through the object's AsyncSession.

    The tracker needs the value being replaced (to delete its file at
    commit); loading it on assignment would be blocking I/O, which an
    ``AsyncSession`` refuses outside of its own calls.
    """
    state = sa_inspect(obj)
    if state.persistent and attribute in state.unloaded:
        session = async_object_session(obj)
        if session is not None:
            await session.refresh(obj, [attribute])


async def deletions_done(timeout: Optional[float] = None) -> None:
    """Wait until the file deletions scheduled by commits and rollbacks so far are done."""
    futures = _offload.pending()
    if futures:
        await asyncio.wait_for(asyncio.gather(*(asyncio.wrap_future(f) for f in futures)), timeout)
