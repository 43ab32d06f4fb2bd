"""Attaching a direct upload to a field: :class:`DirectUpload`, what ``UploadedFile.from_upload`` returns."""
from __future__ import annotations

from typing import Any, Optional

__all__ = ["DirectUpload"]


class DirectUpload:
    """A file uploaded directly to a storage, to be attached to a field without copying it.

    Assign it to an ``UploadedFileField`` (SQLAlchemy) or
    ``UploadedFileProperty`` (Ming): the field checks the upload against its
    intent (:func:`depot.uploads.finish_upload`), runs its validators and
    filters on the stored file, deletes the marker and records the file as
    stored by the current transaction (a rollback deletes it).  Attaching an
    id twice, or one never permitted, raises
    :class:`~depot.uploads.UploadRefused`.

    ``file_id`` is the intent's id; ``storage`` its storage name (``None``:
    the field's storage, else the default one).  ``value_type`` is the
    :class:`~depot.fields.upload.UploadedFile` subclass asked for
    (``UploadedImageWithThumb.from_upload``); the field's own type wins when
    it has one.
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
