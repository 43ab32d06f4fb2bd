"""Files of sessions whose commit did not end the database transaction.

A session bound to a :class:`~sqlalchemy.engine.Connection` that is already
inside a transaction (``Session(bind=connection)`` within
``connection.begin()``, any ``join_transaction_mode`` but ``control_fully``
at the top level) only releases a savepoint, or does nothing, when
``session.commit()`` returns; closed without a rollback in ``rollback_only``
mode, it leaves what it flushed in place.  The transaction that makes those
changes durable belongs to the code that opened it.  The session's files are
then handed to a :class:`_Ledger` of the connection, which follows that
transaction through connection events:

- a savepoint of the connection that rolls back removes the uploads handed
  over inside it and forgets the files they replaced; one that is released
  hands both to the savepoint (or transaction) around it;
- the outer transaction rolling back removes every upload, unless the DBAPI
  driver already committed part of it behind SQLAlchemy's back (pysqlite's
  legacy transaction control: see :mod:`depot.fields._driver_commits`), in
  which case every file is kept;
- the outer transaction committing removes the replaced files, but only once
  the commit is known to have succeeded: the ``commit`` event fires *before*
  the database commits, so the deletion waits for the next sign of life of the
  connection (its next ``begin``, its return to the pool, or a session
  committing on it) and is abandoned if an error was reported meanwhile.

Whatever cannot be followed (the connection's savepoints cannot be read, the
connection is discarded with its transaction still open, the commit failed)
keeps every file: an orphan can be collected later, a deleted file is lost.
"""
from __future__ import annotations

import threading
import weakref
from typing import Any, Callable, Dict, List, Optional

from sqlalchemy import event

from . import _driver_commits
from ._lifecycle import FileScope

__all__ = ["defer", "commit_confirmed"]

_OPEN, _COMMITTING, _FAILED = "open", "committing", "failed"


class _Level:
    __slots__ = ("transaction", "scope")

    def __init__(self, transaction: Any) -> None:
        self.transaction = transaction  # None for the root transaction, else a NestedTransaction
        self.scope = FileScope()


class _Ledger:
    """The handed-over files of one connection, one level per open transaction or savepoint."""

    __slots__ = ("dbapi_connection", "levels", "state")

    def __init__(self, dbapi_connection: Any) -> None:
        self.dbapi_connection = dbapi_connection
        self.levels: List[_Level] = [_Level(None)]
        self.state = _OPEN

    def rolled_back(self) -> None:
        for level in self.levels:
            level.scope.rolled_back()

    def committed(self) -> None:
        for level in self.levels[1:]:
            level.scope.merge_into(self.levels[0].scope)
        self.levels[0].scope.committed_outermost()

    def forget(self) -> None:
        for level in self.levels:
            level.scope.forget()


_ledgers: "weakref.WeakKeyDictionary[Any, _Ledger]" = weakref.WeakKeyDictionary()
_hooked_connections: "weakref.WeakSet[Any]" = weakref.WeakSet()
_hooked_engines: "weakref.WeakSet[Any]" = weakref.WeakSet()
_lock = threading.Lock()


def _savepoint_chain(connection: Any) -> Optional[List[Any]]:
    """The connection's open savepoints, outermost first; ``None`` when they cannot be read.

    SQLAlchemy has no public way to walk them or to learn a savepoint's name
    (the ``savepoint`` event fires before the name is chosen).
    """
    chain = []
    transaction = connection.get_nested_transaction()
    while transaction is not None:
        if not isinstance(getattr(transaction, "_savepoint", None), str):
            return None
        chain.append(transaction)
        transaction = getattr(transaction, "_previous_nested", None)
    chain.reverse()
    return chain


def defer(connection: Any, scope: FileScope) -> bool:
    """Hand ``scope`` to the transaction ``connection`` is in; ``False`` if it cannot be followed."""
    chain = _savepoint_chain(connection)
    if chain is None or _undoes_nothing(connection):
        return False
    _hook(connection)
    stale = None
    with _lock:
        ledger = _ledgers.get(connection)
        if ledger is not None and ledger.state != _OPEN:
            # An outer commit not confirmed yet: it still decides its own files.
            stale, ledger = ledger, None
        if ledger is None:
            ledger = _ledgers[connection] = _Ledger(connection.connection.dbapi_connection)
        known = {id(level.transaction): level for level in ledger.levels[1:]}
        followed = len(known) <= len(chain) and all(id(t) in known for t in chain[: len(known)])
        if followed:
            ledger.levels[1:] = [known.get(id(t)) or _Level(t) for t in chain]
            # A savepoint ended without us noticing otherwise: its files could not be placed.
            scope.merge_into(ledger.levels[-1].scope)
    if stale is not None:
        _settle(stale)
    return followed


def commit_confirmed(connection: Any) -> None:
    """A session saw ``connection`` commit successfully: act on a pending outer commit now."""
    ledger = _take(connection, lambda ledger: ledger.state == _COMMITTING)
    if ledger is not None:
        _settle(ledger)


def _take(connection: Any, condition: Callable[[_Ledger], bool] = lambda ledger: True) -> Optional[_Ledger]:
    with _lock:
        ledger = _ledgers.get(connection)
        if ledger is None or not condition(ledger):
            return None
        del _ledgers[connection]
        return ledger


def _settle(ledger: _Ledger) -> None:
    """The transaction is over: a commit nobody reported an error for succeeded; anything else is unknown."""
    if ledger.state == _COMMITTING:
        ledger.committed()
    else:
        ledger.forget()


def _hook(connection: Any) -> None:
    """Listen to ``connection`` (and its engine) for as long as it lives; listeners of no ledger do nothing."""
    with _lock:
        if connection not in _hooked_connections:
            _hooked_connections.add(connection)
            for name, listener in _CONNECTION_LISTENERS.items():
                event.listen(connection, name, listener)
        engine = connection.engine
        if engine not in _hooked_engines:
            _hooked_engines.add(engine)
            event.listen(engine, "handle_error", _on_error)
            event.listen(engine, "checkin", _on_checkin)


def _level_of(ledger: _Ledger, name: str) -> Optional[int]:
    for index, level in enumerate(ledger.levels[1:], 1):
        if level.transaction._savepoint == name:
            return index
    return None  # a savepoint opened after the last hand-over: none of our files are in it


def _on_release_savepoint(connection: Any, name: str, context: Any) -> None:
    ledger = _ledgers.get(connection)
    index = None if ledger is None else _level_of(ledger, name)
    if ledger is not None and index is not None:
        for level in ledger.levels[index:]:
            level.scope.merge_into(ledger.levels[index - 1].scope)
        del ledger.levels[index:]


def _on_rollback_savepoint(connection: Any, name: str, context: Any) -> None:
    ledger = _ledgers.get(connection)
    index = None if ledger is None else _level_of(ledger, name)
    if ledger is not None and index is not None:
        # Uploads that rows flushed in the surviving levels hold stay.
        held = set().union(*(level.scope.referenced() for level in ledger.levels[:index]))
        for level in ledger.levels[index:]:
            level.scope.rolled_back(held)
        del ledger.levels[index:]


def _on_commit(connection: Any) -> None:
    ledger = _ledgers.get(connection)
    if ledger is not None and ledger.state == _OPEN:
        ledger.state = _COMMITTING


def _on_rollback(connection: Any) -> None:
    ledger = _take(connection)
    if ledger is None:
        return
    if ledger.state == _OPEN and not _undoes_nothing(connection):
        ledger.rolled_back()
    else:
        ledger.forget()  # a rollback after an unconfirmed commit: the outcome is unknown


def _undoes_nothing(connection: Any) -> bool:
    """Whether rows handed over may be durable already although SQLAlchemy's transaction is open."""
    return _driver_commits.escaped(connection) or _driver_commits.outside_transaction(connection)


def _on_begin(connection: Any) -> None:
    # The previous transaction ended (a ledger still open missed how: forget it).
    ledger = _take(connection)
    if ledger is not None:
        _settle(ledger)


def _on_error(context: Any) -> None:
    ledger = _ledgers.get(context.connection) if context.connection is not None else None
    if ledger is not None and ledger.state == _COMMITTING:
        ledger.state = _FAILED


def _on_checkin(dbapi_connection: Any, record: Any) -> None:
    # The Connection is closed or collected.  A transaction still open is
    # rolled back by the pool without a connection event: its uploads are kept.
    with _lock:
        connections = [c for c, ledger in _ledgers.items() if ledger.dbapi_connection is dbapi_connection]
    for connection in connections:
        ledger = _take(connection)
        if ledger is not None:
            _settle(ledger)


_CONNECTION_LISTENERS: Dict[str, Callable[..., None]] = {
    "release_savepoint": _on_release_savepoint,
    "rollback_savepoint": _on_rollback_savepoint,
    "commit": _on_commit,
    "rollback": _on_rollback,
    "begin": _on_begin,
}
