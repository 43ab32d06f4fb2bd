"""Attaching a direct upload to a field: :class:`DirectUpload`, what ``UploadedFile.from_upload`` returns.

Assigning a :class:`DirectUpload` to a file field builds the field's value
type around the file already stored, in four steps:

1. :func:`~depot.uploads.finish_upload` checks the upload against its
   intent (size, sniffed type, checksum); a refused upload is deleted.
2. The upload is *claimed*: its marker is replaced by a claimed one,
   atomically where the backend can tell (of two requests attaching one
   id, one is refused; see :func:`~depot.uploads._api.claim_upload`).
   The file is never without a marker before the row is committed, so
   ``depot fsck --delete-orphans`` never takes it for an orphan however
   old the upload is; ``depot gc --pending-older-than`` never deletes a
   claimed upload, it only drops the claimed marker once old, after which
   ``fsck`` judges the file from committed rows.  A crash before the
   commit leaves at worst an orphan file that ``fsck`` finds then.
3. The value type's ``process_content`` (its validators, the image
   types' decoding) and then the field's filters (thumbnails) run on an
   :class:`UploadContent`: the stored file, read lazily, rewindable.  When
   the value keeps the uploaded file as its main file, it references it:
   no byte is copied.  A value type that stores a processed version instead
   (an image reduced to its maximum size) stores that, and the upload is
   deleted.
4. The transaction tracker records the file like any upload of this
   transaction: a rollback deletes it, a later replacement deletes it once
   committed.

When a validator or a filter refuses the file, it is deleted with its
marker and :class:`~depot.uploads.UploadRefused` (code ``rejected``) is
raised from the validator's own exception.
"""
from __future__ import annotations

import io
import tempfile
from dataclasses import replace
from typing import Any, Optional, Tuple

from depot.io.interfaces import DEFAULT_CHUNK_SIZE, FileStorage, StoredFile
from depot.io.utils import INMEMORY_FILESIZE

from ._api import claim_upload, discard_upload, finish_upload, resolve_storage
from .intents import PendingUpload, UploadRefused

__all__ = ["DirectUpload", "UploadContent"]


class DirectUpload:
    """A file uploaded directly to a storage, to be attached to a field without copying it.

    Assign it to an ``UploadedFileField`` (SQLAlchemy; with an
    ``AsyncSession`` through :func:`depot.fields.aio.attach`) or an
    ``UploadedFileProperty`` (Ming).  Attaching an id twice, or one never
    permitted, raises :class:`~depot.uploads.UploadRefused`.

    ``file_id`` is the intent's id; ``storage`` its storage name (``None``:
    the field's storage, else the default one).  ``value_type`` is the
    :class:`~depot.fields.upload.UploadedFile` subclass it was made by
    (``UploadedImageWithThumb.from_upload``); the field builds its own
    ``upload_type``.
    """

    __slots__ = ("file_id", "storage", "value_type")

    def __init__(self, file_id: str, storage: Optional[str] = None, value_type: Any = None) -> None:
        if not isinstance(file_id, str) or not file_id:
            raise ValueError("file_id must be the id of an upload intent, got %r" % (file_id,))
        if storage is not None and not isinstance(storage, str):
            raise ValueError("storage must be a storage name or None, got %r" % (storage,))
        self.file_id = file_id
        self.storage = storage
        self.value_type = value_type

    def __repr__(self) -> str:
        return "<DirectUpload %s/%s>" % (self.storage or "<default>", self.file_id)

    def open(self, field_storage: Optional[str] = None) -> "UploadContent":
        """Check the upload (:func:`~depot.uploads.finish_upload`) and give its content to build a value from.

        ``field_storage`` is the storage the field stores in; an upload made
        to another one is refused (it cannot move without a copy).
        """
        name, backend = resolve_storage(self.storage if self.storage is not None else field_storage)
        if self.storage is not None and field_storage is not None:
            field_name = resolve_storage(field_storage)[0]
            if field_name != name:
                raise ValueError("Upload %s is in storage %s, the field stores in %s: attach it to a field "
                                 "of storage %s" % (self.file_id, name, field_name, name))
        record, stored = finish_upload(name, self.file_id)
        # Claimed before the field's validators run: of two requests attaching
        # the same id at once, one goes on, the other is refused here.
        if not claim_upload(backend, record):
            stored.close()
            raise UploadRefused(name, self.file_id, "not-an-intent", "attached by another request meanwhile")
        try:
            sealed = backend._seal_upload(record, stored)
        except BaseException:
            stored.close()
            raise
        if sealed is not None:
            # Moved out of its upload URL's reach: the value references the new id.
            stored.close()
            record = replace(record, file_id=sealed)
            stored = backend.get(sealed)
        return UploadContent(name, backend, record, stored)


class UploadContent(io.RawIOBase):
    """The content of a checked direct upload, as validators and filters read it.

    A read-only, seekable file: the stored file is read from the storage
    the first time someone reads or seeks back (spooled in memory up to
    ``INMEMORY_FILESIZE``, then on disk), so a large upload no one reads is
    never transferred.  ``filename``, ``content_type`` and
    ``content_length`` are the stored file's.
    """

    def __init__(self, storage_name: str, backend: FileStorage, record: PendingUpload, stored: StoredFile) -> None:
        super().__init__()
        self.storage_name = storage_name
        self.backend = backend
        self.record = record
        self.file_id = stored.file_id
        self.filename = stored.filename
        self.content_type = stored.content_type
        self.content_length = stored.content_length
        self._stored: Optional[StoredFile] = stored
        self._spool: Any = None
        self._position = 0

    @property
    def name(self) -> Optional[str]:
        return self.filename

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def _spooled(self) -> Any:
        if self._spool is None:
            if self._stored is None:
                raise ValueError("I/O operation on closed file")
            spool = tempfile.SpooledTemporaryFile(INMEMORY_FILESIZE)
            try:
                for chunk in self._stored.iter_range(0, None, DEFAULT_CHUNK_SIZE):
                    spool.write(chunk)
            except BaseException:
                spool.close()
                raise
            finally:
                self._stored.close()
                self._stored = None
            spool.seek(self._position)
            self._spool = spool
        return self._spool

    def readinto(self, buffer: Any) -> int:
        return self._spooled().readinto(buffer)

    def read(self, n: Optional[int] = -1) -> bytes:
        return self._spooled().read(-1 if n is None else n)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if self._spool is None and whence != io.SEEK_CUR and (whence == io.SEEK_SET or self.content_length is not None):
            # Measuring the size or rewinding before any read needs no transfer.
            end = self.content_length or 0
            self._position = offset if whence == io.SEEK_SET else end + offset
            return self._position
        return self._spooled().seek(offset, whence)

    def tell(self) -> int:
        return self._position if self._spool is None else self._spool.tell()

    def close(self) -> None:
        if self._stored is not None:
            self._stored.close()
            self._stored = None
        if self._spool is not None:
            self._spool.close()
        super().close()

    def __repr__(self) -> str:
        return "<UploadContent %s/%s>" % (self.storage_name, self.file_id)

    # -- the attach step's side of the value's life -------------------------------

    def path(self) -> str:
        return "%s/%s" % (self.storage_name, self.file_id)

    def attached(self, kept: bool) -> None:
        """The value is built; the upload goes when the value did not keep it (it stored a processed copy).

        The claimed marker stays until ``depot gc --pending-older-than``
        drops it (see the module's documentation for why this is the safe
        order).
        """
        if not kept:
            discard_upload(self.backend, self.record)

    def rejected(self, exc: BaseException) -> UploadRefused:
        """A validator or filter refused the upload: delete it with its marker; the error to raise."""
        discard_upload(self.backend, self.record)
        return UploadRefused(self.storage_name, self.file_id, "rejected", "%s: %s" % (type(exc).__name__, exc))


def direct_upload_of(content: Any) -> Optional[Tuple[str, str]]:
    """``(storage, file_id)`` when ``content`` is the content of a direct upload being attached."""
    if isinstance(content, UploadContent):
        return content.storage_name, content.file_id
    return None
