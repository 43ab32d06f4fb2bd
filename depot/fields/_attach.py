"""The attach step: what assigning to a file column or property does, for every ORM.

SQLAlchemy's :class:`~depot.fields.sqlalchemy.UploadedFileField`, Ming's
:class:`~depot.fields.ming.UploadedFileProperty` and the async
:func:`depot.fields.aio.attach` turn what they are given into the value they
keep through :func:`attached`, and read of their column or property only
what :class:`AttachmentOptions` declares.  The trackers then decide, each for
its ORM, when the stored files become final or go (:mod:`._lifecycle`).

Crash safety: :func:`upload` stores the content before the ORM keeps
anything; when wrapping or a filter fails, what this upload stored is
deleted (by :class:`~depot.fields.interfaces.DepotFileInfo`) and the
exception reaches the assignment, which then changes nothing.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional, Type

from .interfaces import FileFilter
from .upload import UploadedFile

__all__ = ["AttachmentOptions", "attached", "upload", "rereads_content"]


class AttachmentOptions:
    """What a column or property holding uploads declares; all the attach step reads of it.

    ``upload_type`` wraps the content, ``upload_storage`` names the storage
    (the default one when ``None``), ``filters`` run on every fresh upload.
    Subclasses call :meth:`_set_attachment_options` from their constructor.
    """

    upload_type: Type[UploadedFile]
    upload_storage: Optional[str]
    # Kept under filedepot's name (code in the wild reads it); ``filters`` is
    # a property, so SQLAlchemy's type cache key, made of the constructor's
    # public names found in ``__dict__``, never has to hash it.
    _filters: Iterable[FileFilter]

    def _set_attachment_options(
        self, filters: Iterable[FileFilter], upload_type: Type[UploadedFile], upload_storage: Optional[str]
    ) -> None:
        self._filters = filters
        self.upload_type = upload_type
        self.upload_storage = upload_storage

    @property
    def filters(self) -> Iterable[FileFilter]:
        """The filters run on every fresh upload, in order."""
        return self._filters

    # filedepot 0.12's private names (SPEC 5.5), for code that reads or sets them.
    @property
    def _upload_type(self) -> Type[UploadedFile]:
        return self.upload_type

    @_upload_type.setter
    def _upload_type(self, value: Type[UploadedFile]) -> None:
        self.upload_type = value

    @property
    def _upload_storage(self) -> Optional[str]:
        return self.upload_storage

    @_upload_storage.setter
    def _upload_storage(self, value: Optional[str]) -> None:
        self.upload_storage = value


def upload(options: AttachmentOptions, content: Any) -> UploadedFile:
    """Store ``content`` as the column would: wrapped in its ``upload_type``, its filters run.

    A failure leaves nothing stored (see the module's note).  A
    :class:`~depot.uploads.attach.DirectUpload` is content too: the value
    type checks it against its intent and builds on the file already stored,
    without copying it (see :mod:`depot.uploads.attach`).
    """
    value = options.upload_type(content, options.upload_storage)
    value._apply_filters(options.filters)
    return value


def attached(options: AttachmentOptions, value: Any, *, refilter: bool = False) -> Any:
    """The value a column or property keeps when ``value`` is assigned to it.

    ``None`` stays ``None``; any other value that is not an
    :class:`~depot.fields.upload.UploadedFile` is content, stored now by
    :func:`upload`.  An ``UploadedFile`` is kept as it is; with ``refilter``
    (Ming's rule since filedepot 0.12) the filters run on it when it is a
    fresh upload, and a failing filter leaves its main file alone: the
    caller built that value and still holds it.
    """
    if value is None:
        return None
    if not isinstance(value, UploadedFile):
        return upload(options, value)
    if refilter:
        value._apply_filters(options.filters, discard=False)
    return value


def rereads_content(options: AttachmentOptions) -> bool:
    """Whether storing through ``options`` reads the content more than once (filters, image types).

    A stream that can be read only once (an async upload) must then be
    spooled to a rewindable file first.
    """
    return bool(options.filters) or options.upload_type is not UploadedFile
