"""Ming integration: the :class:`UploadedFileProperty` attachment and its :class:`DepotExtension`.

Declare an attachment on a mapped class and register the extension on the
session::

    session = ThreadLocalODMSession(bind=create_datastore(url), extensions=(DepotExtension,))

    class Document(MappedClass):
        class __mongometa__:
            session = session
            name = 'documents'
        _id = FieldProperty(schema.ObjectId)
        content = UploadedFileProperty()

The document stores the upload's description (a plain sub-document with
``depot_name``, ``files``, ``file_id``...).  Files a document stops
referencing (a replaced value, a value set to ``None``, a deleted document)
are deleted once the flush has written that document: a write that fails
leaves them in place.  Ming has no transactions and tells nothing about a
session cleared without flushing, so uploads of changes that are never
flushed stay in the storage (a cleanup job can find them with
:meth:`~depot.io.interfaces.FileStorage.list`).
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, List, Optional, Set, Type

from depot._optional import require

require("ming", "ming", "depot.fields.ming")
from ming.odm import FieldProperty, mapper, state  # noqa: E402
from ming.odm.odmsession import SessionExtension  # noqa: E402
from ming.schema import Anything  # noqa: E402

from depot.manager import DepotManager  # noqa: E402,F401 - a name filedepot 0.12 had here

from ._attach import AttachmentOptions, attached  # noqa: E402
from ._lifecycle import FileScope, delete_files, direct_uploads, files_of  # noqa: E402
from .interfaces import FileFilter  # noqa: E402
from .upload import UploadedFile  # noqa: E402

__all__ = ["UploadedFileProperty", "DepotExtension"]

_HISTORY_KEY = "depot_history"


class _UploadedFileSchema(Anything):
    """Stores an upload as the plain sub-document of its keys."""

    def validate(self, value: Any, **kw: Any) -> Any:  # type: ignore[override]  # Ming passes it by position
        if isinstance(value, UploadedFile):
            value = dict(value)  # a frozen UploadedFile must not live in Ming's document
        return super().validate(value, **kw)


class UploadedFileProperty(FieldProperty, AttachmentOptions):
    """A document field holding an uploaded file.

    Assigning content (bytes, a file object, a form upload, a
    :class:`~depot.io.utils.FileIntent`) stores it in ``upload_storage``
    (the default storage when ``None``) wrapped in ``upload_type``; the
    ``filters`` then run on every fresh upload assigned.  Reading gives a new
    ``upload_type`` built from the stored sub-document, or ``None``.
    """

    name: str  # the field's name in the document, set by Ming's mapper (its stubs omit it)

    def __init__(
        self,
        filters: Iterable[FileFilter] = tuple(),
        upload_type: Type[UploadedFile] = UploadedFile,
        upload_storage: Optional[str] = None,
    ) -> None:
        # Ming's stubs declare FieldProperty without its field-type argument and name attribute.
        super().__init__(_UploadedFileSchema())  # type: ignore[call-arg]
        self._set_attachment_options(filters, upload_type, upload_storage)

    def _stored(self, instance: Any) -> Any:
        document = state(instance).document
        return document.get(self.name) if document is not None else None

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        if instance is None:
            return self
        value = self._stored(instance)
        if not value:
            return None
        return self.upload_type(value)

    def __set__(self, instance: Any, value: Any) -> None:
        value = attached(self, value, refilter=True)
        DepotExtension.get_depot_history(instance).swap(self._stored(instance), value)
        super().__set__(instance, value)  # type: ignore[misc]  # Ming's stubs omit the descriptor methods

    def __delete__(self, instance: Any, cls: Any = None) -> None:
        DepotExtension.get_depot_history(instance).swap(self._stored(instance), None)
        super().__delete__(instance, cls)  # type: ignore[misc]  # Ming's stubs omit the descriptor methods
        # Ming does not mark the document changed for a deleted field: without
        # this the removal would not be written, and the file must not go.
        state(instance).soil()


class _DepotHistory:
    """The files an object's unflushed changes uploaded (``new``) and stopped referencing (``deleted``).

    Both are sets of ``'<depot>/<file id>'`` paths, taken from each value's
    ``files`` list, so extra files (thumbnails) follow their main file.
    """

    def __init__(self) -> None:
        self.new: Set[str] = set()
        self.deleted: Set[str] = set()

    def add(self, obj: Any) -> None:
        paths = files_of(obj)
        self.new.update(paths)
        self.deleted.difference_update(paths)

    def delete(self, obj: Any) -> None:
        paths = files_of(obj)
        self.deleted.update(paths)
        self.new.difference_update(paths)

    def swap(self, old: Any, new: Any) -> None:
        if old:
            self.delete(old)
        if new:
            self.add(new)

    def clear(self) -> None:
        self.new.clear()
        self.deleted.clear()

    def __repr__(self) -> str:
        return "<_DepotHistory new=%s deleted=%s>" % (sorted(self.new), sorted(self.deleted))


def _file_properties(obj: Any) -> Iterator[UploadedFileProperty]:
    for prop in mapper(obj).properties:
        if isinstance(prop, UploadedFileProperty):
            yield prop


class DepotExtension(SessionExtension):
    """Deletes the files that flushed documents no longer reference.

    As Ming writes each document (insert, update or delete), the old files
    of its replaced values, and all its files when it was deleted, are
    noted; when the flush ends they are deleted, except those another
    document of the session references now (a value moved from one
    document to another).  A write that fails notes nothing, so its
    document keeps its files.

    The rules are those of :class:`~depot.fields._lifecycle.FileScope`, one
    per session: Ming has no transactions, so a flush is what makes changes
    durable and ends the scope as an outermost commit does.  Uploads are
    never deleted here (no rollback to undo them).
    """

    def __init__(self, session: Any) -> None:
        super().__init__(session)
        self._scope = FileScope()
        # Direct uploads written by this flush: their claimed markers go after it.
        self._claimed: List[str] = []

    @staticmethod
    def get_depot_history(instance: Any) -> _DepotHistory:
        """The :class:`_DepotHistory` of ``instance``, kept on its Ming object state."""
        extra = state(instance).extra_state
        history = extra.get(_HISTORY_KEY)
        if history is None:
            history = extra[_HISTORY_KEY] = _DepotHistory()
        return history

    def _written(self, obj: Any) -> None:
        self._claimed.extend(direct_uploads(prop._stored(obj) for prop in _file_properties(obj)))
        history = self.get_depot_history(obj)
        self._scope.drop(history.deleted)
        history.clear()

    def after_insert(self, obj: Any, st: Any) -> None:
        self._written(obj)

    def after_update(self, obj: Any, st: Any) -> None:
        self._written(obj)

    def after_delete(self, obj: Any, st: Any) -> None:
        history = self.get_depot_history(obj)
        for prop in _file_properties(obj):
            history.delete(prop._stored(obj))
        self._written(obj)

    def after_flush(self, obj: Any = None) -> None:
        scope = self._scope
        if self._claimed:
            claimed, self._claimed = self._claimed, []
            delete_files((), claimed)
        if not scope.dropped:
            return
        # What the session's live documents hold now: a dropped file one of
        # them references (moved there) stays.
        for live in self.session.uow:
            live_state = state(live)
            if live_state.status != live_state.deleted:
                for prop in _file_properties(live):
                    scope.write((live_state, prop.name), files_of(prop._stored(live)))
        scope.committed_outermost()
