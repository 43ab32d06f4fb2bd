"""SQLAlchemy integration: the :class:`UploadedFileField` column type and its session tracker.

Importing this module registers the tracker's listeners (as filedepot does):
files uploaded by assigning a column are removed again when their
transaction or savepoint rolls back, and files that rows stop referencing
are removed once the outermost transaction has committed.  See
:mod:`depot.fields._lifecycle` for the exact rules, and
:mod:`depot.fields._sqla_outer` for sessions joined to a transaction they do
not own.
"""
from __future__ import annotations

import weakref
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple, Type

from sqlalchemy import event, select, types
from sqlalchemy.engine import NestedTransaction
from sqlalchemy.orm import Mapper, Session, attributes, object_session
from sqlalchemy.orm.base import instance_state

from depot.manager import DepotManager  # noqa: F401 - a name filedepot 0.12 had here

from . import _driver_commits, _sqla_outer
from ._attach import AttachmentOptions, attached
from ._lifecycle import FileScope, claims, delete_files, files_of, guard_orphans, is_fresh, share
from .interfaces import FileFilter
from .upload import UploadedFile

__all__ = ["UploadedFileField"]

#: filedepot's column size: Oracle's VARCHAR maximum, so existing columns keep working.
DEFAULT_LENGTH = 4000


class UploadedFileField(types.TypeDecorator, AttachmentOptions):
    """A column holding an uploaded file, as the JSON of its :class:`UploadedFile`.

    Assigning content (bytes, a file object, a form upload, a
    :class:`~depot.io.utils.FileIntent`) stores it in ``upload_storage``
    (the default storage when ``None``) wrapped in ``upload_type``, and runs
    ``filters`` on it.

    By default the column is ``VARCHAR(4000)`` on every database, the type
    filedepot created, so existing tables and data keep working.  Pass
    ``native_json=True`` for a JSON column on databases that have one
    (PostgreSQL ``JSONB``, MySQL/MariaDB and SQLite ``JSON``; others fall
    back to unbounded text), which has no size limit; ``length=None`` gives
    unbounded text without JSON.  Both only change new tables: migrate
    existing columns yourself.
    """

    impl = types.Unicode
    # The type's public parameters below form its SQL cache key; filters do
    # not change the SQL or the bind processing, so they need not be part of it.
    cache_ok = True

    def __init__(
        self,
        filters: Iterable[FileFilter] = tuple(),
        upload_type: Type[UploadedFile] = UploadedFile,
        upload_storage: Optional[str] = None,
        *args: Any,
        native_json: bool = False,
        length: Optional[int] = DEFAULT_LENGTH,
        **kw: Any,
    ) -> None:
        super().__init__(*args, **kw)
        self._set_attachment_options(filters, upload_type, upload_storage)
        self.native_json = native_json
        self.length = length

    def load_dialect_impl(self, dialect: Any) -> Any:
        if self.native_json:
            return dialect.type_descriptor(_json_type(dialect))
        if self.length is None:
            return dialect.type_descriptor(types.UnicodeText())
        return dialect.type_descriptor(types.VARCHAR(self.length))

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if not value:
            return None
        if not isinstance(value, self.upload_type):
            raise ValueError(
                "AttachmentField requires %s, got %s instead" % (self.upload_type, type(value))
            )
        if self.native_json and _has_json(dialect):
            return dict(value)
        return value.encode()

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if not value:
            return None
        if isinstance(value, dict):
            return self.upload_type(value)
        return self.upload_type.decode(value)


_JSON_DIALECTS = ("postgresql", "mysql", "mariadb", "sqlite")


def _has_json(dialect: Any) -> bool:
    return dialect.name in _JSON_DIALECTS


def _json_type(dialect: Any) -> types.TypeEngine:
    if dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB

        return JSONB()
    if _has_json(dialect):
        return types.JSON()
    return types.UnicodeText()


class _SessionFiles:
    """The file scopes of one session: one per open transaction or savepoint.

    ``pending`` collects uploads made while the session has no transaction;
    the next outermost transaction takes them over.  ``connections`` lists
    the connections each outermost transaction used with their transaction
    (its own or the one it joined), to learn whether its commit (or its
    close) really ended the database transaction.  ``expunged`` remembers
    objects that left the session (expunged, or the session closed) without
    their row being written, with the fresh values they hold.
    """

    __slots__ = ("scopes", "pending", "connections", "expunged", "rolled_back", "restoring")

    def __init__(self) -> None:
        self.scopes: Dict[Any, FileScope] = {}
        self.pending = FileScope()
        self.connections: Dict[Any, List[Tuple[Any, Any]]] = {}
        self.rolled_back: List[Any] = []  # transactions whose database rollback happened
        self.expunged: List[Tuple["weakref.ref[Any]", List[Tuple[str, UploadedFile]]]] = []
        self.restoring = False  # a rollback is expunging the objects it added: not the user


_INFO_KEY = "depot.files"
_GUARD_KEY = "depot.orphan_guard"
_UNWRITTEN_KEY = "depot.unwritten"


def _owner(transaction: Any) -> Any:
    """The savepoint or outermost transaction whose scope ``transaction`` belongs to.

    Inner non-nested transactions (the ones a flush opens, or 1.4's
    subtransactions) commit or roll back with their parent.
    """
    while not transaction.nested and transaction.parent is not None:
        transaction = transaction.parent
    return transaction


def _innermost(session: Session) -> Any:
    return session.get_nested_transaction() or session.get_transaction()


class _SQLAMutationTracker:
    """Keeps stored files in step with SQLAlchemy transactions (listeners on every Session)."""

    #: mapped class -> [(attribute key, column type)] of its UploadedFileField columns
    mapped_entities: Dict[type, List[Tuple[str, UploadedFileField]]] = {}
    _configured = False

    @classmethod
    def setup(cls) -> None:
        if cls._configured:
            return
        cls._configured = True
        event.listen(Mapper, "mapper_configured", cls._mapper_configured)
        event.listen(Session, "before_attach", cls._session_attached)
        event.listen(Session, "after_begin", cls._session_began)
        event.listen(Session, "before_flush", cls._session_flush)
        event.listen(Session, "persistent_to_deleted", cls._session_deleted)
        event.listen(Session, "pending_to_transient", cls._session_left)
        event.listen(Session, "persistent_to_detached", cls._session_detached)
        event.listen(Session, "after_commit", cls._session_committed)
        event.listen(Session, "after_rollback", cls._session_rolled_back)
        event.listen(Session, "after_transaction_end", cls._transaction_ended)

    # -- where the files of a change go ------------------------------------

    @staticmethod
    def _session_files(session: Session, create: bool = True) -> Optional[_SessionFiles]:
        files = session.info.get(_INFO_KEY)
        if files is None and create:
            files = session.info[_INFO_KEY] = _SessionFiles()
        return files

    @classmethod
    def _scope_of(cls, files: _SessionFiles, transaction: Any) -> FileScope:
        owner = _owner(transaction)
        scope = files.scopes.get(owner)
        if scope is None:
            scope = files.scopes[owner] = FileScope()
        if owner.parent is None and files.pending:
            files.pending.merge_into(scope)
        return scope

    @classmethod
    def _current_scope(cls, session: Session) -> FileScope:
        files = cls._session_files(session)
        transaction = _innermost(session)
        if transaction is None:
            return files.pending  # type: ignore[union-attr]
        return cls._scope_of(files, transaction)  # type: ignore[arg-type]

    @classmethod
    def _target_scope(cls, target: Any) -> FileScope:
        session = object_session(target)
        if session is not None:
            return cls._current_scope(session)
        return cls._object_scope(target)

    @staticmethod
    def _object_scope(target: Any) -> FileScope:
        # Not in a session: kept on the object until it is added to one,
        # and removed with the object if that never happens.
        info = instance_state(target).info
        scope = info.get(_INFO_KEY)
        if scope is None:
            scope = info[_INFO_KEY] = FileScope()
            info[_GUARD_KEY] = guard_orphans(target, scope)
        return scope

    # -- mapper and attribute events ---------------------------------------

    @classmethod
    def _mapper_configured(cls, mapper: Mapper, class_: type) -> None:
        tracked = []
        for prop in mapper.column_attrs:
            column_type = prop.columns[0].type
            if not isinstance(column_type, UploadedFileField):
                continue
            if len(prop.columns) > 1:
                raise TypeError("UploadedFileField currently supports a single column")
            tracked.append((prop.key, column_type))
            # Every mapper (polymorphic subclasses too) registers its own
            # attribute, so the listener must not propagate to subclasses.
            # No active_history (as in filedepot): assigning an expired or
            # detached attribute must neither query nor fail; the value it
            # replaces is read at flush time instead (_replaced_files).
            event.listen(getattr(class_, prop.key), "set", cls._make_setter(column_type), retval=True)
        if tracked:
            cls.mapped_entities[class_] = tracked
            # raw: the state, also for objects already collected
            event.listen(mapper, "expire", cls._expired, raw=True)

    @classmethod
    def _make_setter(cls, column_type: UploadedFileField):
        def setter(target: Any, value: Any, oldvalue: Any, initiator: Any) -> Any:
            return cls._field_set(column_type, target, value, oldvalue, initiator)

        return setter

    @classmethod
    def _field_set(
        cls, column_type: UploadedFileField, target: Any, value: Any, oldvalue: Any, initiator: Any
    ) -> Any:
        value = attached(column_type, value)
        fresh_new = is_fresh(value)
        if (
            isinstance(value, UploadedFile) and not (fresh_new and claims(value) == 0)
            and files_of(value) != files_of(oldvalue if isinstance(oldvalue, UploadedFile) else None)
        ):
            # A value some holder already has (an upload taken twice, one read
            # from a row): a second row may commit it too.
            share(files_of(value))
        # An upload replaced before any commit or flush saw it is referenced by
        # nothing.  One already flushed is in the row: the flush that replaces
        # it drops it, and if no flush ever does (the object is expunged) the row keeps it.
        # One another object took too (``b.content = a.content``) may be held there: kept.
        orphan = (
            isinstance(oldvalue, UploadedFile) and oldvalue is not value and is_fresh(oldvalue)
            and not cls._written(target, initiator.key) and claims(oldvalue) <= 1
        )
        state = instance_state(target)
        if state.key is not None:
            # Expiring or refreshing the object would discard this assignment
            # without a word: remember it until a flush writes it (see _expired).
            unwritten = state.info.setdefault(_UNWRITTEN_KEY, {})
            if fresh_new:
                unwritten[initiator.key] = value
            else:
                unwritten.pop(initiator.key, None)
        if fresh_new or orphan:
            scope = cls._target_scope(target)
            if fresh_new:
                scope.upload(value)
            if orphan:
                scope.drop(files_of(oldvalue))
        return value

    @staticmethod
    def _written(target: Any, key: str) -> bool:
        """Whether the current value of ``target.<key>`` is the one its row holds (flushed, unchanged since)."""
        state = instance_state(target)
        return state.key is not None and key not in state.committed_state

    # -- session events ----------------------------------------------------

    @classmethod
    def _session_attached(cls, session: Session, instance: Any) -> None:
        info = instance_state(instance).info
        guard = info.pop(_GUARD_KEY, None)
        if guard is not None:
            guard.detach()
        scope = info.pop(_INFO_KEY, None)
        current = cls._current_scope(session)
        if scope:
            scope.merge_into(current)
        # Uploads another session owns (the object was expunged there, or
        # copied from one of its objects): a commit here must settle them, so
        # that a rollback there does not delete what this session's rows hold.
        loaded = instance_state(instance).dict
        for key, _ in cls.mapped_entities.get(type(instance), ()):
            if is_fresh(loaded.get(key)):
                current.follow(loaded[key])

    @classmethod
    def _session_began(cls, session: Session, transaction: Any, connection: Any) -> None:
        # A savepoint reports the connection its outermost transaction already has.
        if cls.mapped_entities and transaction.parent is None:
            # The connection's transaction the session uses: its own, or the one it joined.
            joined = connection.get_nested_transaction() or connection.get_transaction()
            _driver_commits.watch(connection)
            connections = cls._session_files(session).connections  # type: ignore[union-attr]
            connections.setdefault(transaction, []).append((connection, joined))

    @classmethod
    def _session_flush(cls, session: Session, flush_context: Any, instances: Any) -> None:
        entities = cls.mapped_entities
        if not entities:
            return
        dropped: List[str] = []
        # What each row's columns hold after this flush: a file dropped by one
        # row may be written to another (swap, move, a value put back).
        written: List[Tuple[Any, List[str]]] = []
        for obj in session.deleted:
            state = instance_state(obj)
            state.info.pop(_UNWRITTEN_KEY, None)
            keys = [key for key, _ in entities.get(type(obj), ())]
            # The value being deleted, and the committed one if a change replaced it first.
            for key in keys:
                dropped += files_of(state.dict.get(key))
                written.append(((state, key), []))
            # Columns not loaded (expired, deferred) are read from the row without
            # loading the object: a row already gone (deleted behind the session's
            # back) holds no file, and SQLAlchemy's own DELETE of it only warns.
            unloaded = [key for key in keys if key not in state.dict]
            if unloaded:
                dropped += [path for value in cls._stored_values(session, state, unloaded) for path in files_of(value)]
            dropped += cls._replaced_files(session, obj, keys)
        for obj in session.new:
            state = instance_state(obj)
            written += [((state, key), files_of(state.dict.get(key))) for key, _ in entities.get(type(obj), ())]
        # Pending objects have no database value to lose: only persistent ones can drop files.
        for obj in session.dirty:
            state = instance_state(obj)
            state.info.pop(_UNWRITTEN_KEY, None)  # written by this flush
            keys = [key for key, _ in entities.get(type(obj), ())]
            dropped += cls._replaced_files(session, obj, keys)
            written += [
                ((state, key), files_of(state.dict.get(key))) for key in keys
                if state.get_history(key, attributes.PASSIVE_NO_INITIALIZE).added
            ]
        if dropped or written:
            scope = cls._current_scope(session)
            scope.drop(dropped)
            for holder, paths in written:
                scope.write(holder, paths)

    @classmethod
    def _replaced_files(cls, session: Session, obj: Any, keys: List[str]) -> List[str]:
        """The files of the stored values that pending changes of ``obj``'s ``keys`` replace."""
        state = instance_state(obj)
        paths: List[str] = []
        unknown = []
        for key in keys:
            history = state.get_history(key, attributes.PASSIVE_NO_INITIALIZE)
            if history.deleted:
                paths += [path for old in history.deleted for path in files_of(old)]
            elif history.added and state.key is not None:
                # Assigned while the old value was not loaded (expired, detached
                # or deferred): the row still holds it.
                unknown.append(key)
        if unknown:
            for value in cls._stored_values(session, state, unknown):
                paths += files_of(value)
        return paths

    @staticmethod
    def _stored_values(session: Session, state: Any, keys: List[str]) -> Iterable[Any]:
        """What the row of ``state`` holds for ``keys``, read in the flushing transaction (one query)."""
        mapper = state.mapper
        criteria = [column == value for column, value in zip(mapper.primary_key, state.key[1], strict=True)]
        # select_from(mapper): the joined tables of an inherited class, its discriminator.
        query = select(*[mapper.attrs[key].class_attribute for key in keys]).select_from(mapper).where(*criteria)
        return session.execute(query).one_or_none() or ()

    @classmethod
    def _expired(cls, state: Any, attrs: Any) -> None:
        # An unflushed assignment was discarded (expire, refresh, a rollback):
        # its upload is referenced by nothing now, unless another object took it.
        unwritten = state.info.get(_UNWRITTEN_KEY)
        session = state.session
        if not unwritten or session is None:
            return
        paths = []
        for key in [key for key in unwritten if key not in state.dict]:
            value = unwritten.pop(key)
            if claims(value) <= 1:
                paths += files_of(value)
        if paths:
            cls._current_scope(session).drop(paths)

    @classmethod
    def _session_left(cls, session: Session, instance: Any) -> None:
        # Expunged before its row was written: its uploads must neither be
        # settled by a commit that does not store it nor deleted by a rollback.
        cls._remember_leaving(session, instance, lambda key: True)

    @classmethod
    def _session_detached(cls, session: Session, instance: Any) -> None:
        # Expunged with changes never flushed: the row does not hold those uploads.
        unflushed = instance_state(instance).committed_state
        cls._remember_leaving(session, instance, unflushed.__contains__)

    @classmethod
    def _remember_leaving(cls, session: Session, instance: Any, unwritten: Any) -> None:
        tracked = cls.mapped_entities.get(type(instance))
        files = cls._session_files(session)
        if not tracked or files.restoring:  # type: ignore[union-attr]
            return  # objects a rollback takes out lose their uploads with it
        loaded = instance_state(instance).dict
        values = [(key, loaded[key]) for key, _ in tracked if unwritten(key) and is_fresh(loaded.get(key))]
        if values:
            files.expunged.append((weakref.ref(instance), values))  # type: ignore[union-attr]

    @classmethod
    def _session_deleted(cls, session: Session, instance: Any) -> None:
        # query.delete(synchronize_session="fetch"), delete-orphan and cascades
        # reach here; the row is gone, so only values already loaded are known.
        tracked = cls.mapped_entities.get(type(instance))
        if not tracked:
            return
        state = instance_state(instance)
        paths = [p for key, _ in tracked for p in files_of(state.dict.get(key))]
        scope = cls._current_scope(session)
        scope.drop(paths)
        for key, _ in tracked:
            scope.write((state, key), ())

    @classmethod
    def _session_committed(cls, session: Session) -> None:
        # Fired for released savepoints too: the scope is only marked here and
        # acted upon when the transaction ends (see _transaction_ended).
        files = cls._session_files(session, create=False)
        if files is None:
            return
        transaction = _innermost(session)
        if transaction is not None:
            cls._scope_of(files, transaction).committed = True

    @classmethod
    def _session_rolled_back(cls, session: Session) -> None:
        # Fired when the database rollback happened, for the savepoint or the
        # outermost transaction being rolled back (not for a close that only
        # leaves a joined transaction: see _transaction_ended).
        files = cls._session_files(session, create=False)
        transaction = _innermost(session)
        if files is not None and transaction is not None:
            files.rolled_back.append(_owner(transaction))
            files.restoring = True

    @classmethod
    def _transaction_ended(cls, session: Session, transaction: Any) -> None:
        files = cls._session_files(session, create=False)
        if files is None or (not transaction.nested and transaction.parent is not None):
            return
        files.restoring = False
        scope = files.scopes.pop(transaction, None)
        rolled_back = any(t is transaction for t in files.rolled_back)
        files.rolled_back = [t for t in files.rolled_back if t is not transaction]
        connections: Iterable[Any] = ()
        expunged: List[Any] = []
        if transaction.parent is None:
            connections = files.connections.pop(transaction, ())
            expunged, files.expunged = files.expunged, []
            if files.pending:
                scope = scope or FileScope()
                files.pending.merge_into(scope)
        if scope is None:
            return
        if not scope.committed and not rolled_back and any(t.is_active for _, t in connections):
            # Closed without a rollback: a session joined in "rollback_only"
            # mode leaves what it flushed in the transaction it joined, which
            # may still commit.  Unflushed uploads went back to their objects.
            scope.committed = True
        if not transaction.nested:
            cls._hand_back(session, scope, expunged)
        if not scope.committed and any(
            # A savepoint rollback undoes all its work; the transaction's may undo nothing.
            not isinstance(t, NestedTransaction) and _driver_commits.escaped(c) for c, t in connections
        ):
            scope.forget()  # rows the driver committed may hold these uploads: keep every file
        elif not scope.committed:
            scope.rolled_back(cls._held_around(files, transaction))
        elif transaction.nested:
            scope.merge_into(cls._scope_of(files, transaction.parent))
        else:
            cls._committed(scope, connections)

    @staticmethod
    def _held_around(files: _SessionFiles, transaction: Any) -> Set[str]:
        """The files rows flushed in the scopes enclosing ``transaction`` hold (they survive its rollback)."""
        held: Set[str] = set()
        parent = transaction.parent
        while parent is not None:
            owner = _owner(parent)
            if owner in files.scopes:
                held |= files.scopes[owner].referenced()
            parent = owner.parent
        return held

    @classmethod
    def _hand_back(cls, session: Session, scope: FileScope, expunged: List[Any]) -> None:
        """Give objects that left the session unsaved their uploads back, out of the commit or rollback."""
        for ref, values in expunged:
            obj = ref()
            if obj is None:  # collected already: nothing refers to its uploads
                delete_files([p for _, value in values if scope.release(value) for p in files_of(value)])
            elif object_session(obj) is None:  # not added again, here or elsewhere
                loaded = instance_state(obj).dict
                for key, value in values:
                    # Still holding it, and not written by a flush after being added again.
                    if loaded.get(key) is value and not cls._written(obj, key) and scope.release(value):
                        cls._object_scope(obj).adopt(value)
            elif object_session(obj) is not session:
                # Added to another session: its transaction decides about the uploads now.
                loaded = instance_state(obj).dict
                other = cls._current_scope(object_session(obj))  # type: ignore[arg-type]
                for key, value in values:
                    if loaded.get(key) is value and scope.release(value):
                        other.adopt(value)

    @staticmethod
    def _committed(scope: FileScope, connections: Iterable[Any]) -> None:
        """The session committed: act now if that ended the database transaction, else follow it."""
        still_open = [c for c, _ in connections if not c.closed and c.in_transaction()]
        if not still_open:
            scope.committed_outermost()
            for connection, _ in connections:
                _sqla_outer.commit_confirmed(connection)
            return
        scope.settle()
        # Several connections left open: no single transaction decides; keep every file.
        if len(still_open) > 1 or not _sqla_outer.defer(still_open[0], scope):
            scope.forget()


def _register_with_sprox() -> None:
    """Make Sprox forms render this column as a file input validated into a FileIntent.

    Done only when Sprox, ToscaWidgets 2 forms and their validator import,
    as filedepot did.
    """
    try:
        from sprox.sa.validatorselector import SAValidatorSelector
        from sprox.sa.widgetselector import SAWidgetSelector
        from tw2.forms import FileField

        from depot.validators import TW2FileIntentValidator
    except ImportError:
        return
    SAWidgetSelector.default_widgets.setdefault(UploadedFileField, FileField)
    SAValidatorSelector.default_validators.setdefault(UploadedFileField, TW2FileIntentValidator)


_SQLAMutationTracker.setup()
_register_with_sprox()
