"""Commits the DBAPI driver made behind SQLAlchemy's back (SQLite's ``sqlite3``).

With pysqlite's legacy transaction control (``isolation_level`` not
``None``, SQLAlchemy's default) ``connection.begin()`` sends no ``BEGIN``:
the first ``SAVEPOINT`` starts the real transaction and its ``RELEASE``
commits it, and in autocommit mode (``isolation_level=None`` without the
recipe that emits ``BEGIN``) every write commits at once.  SQLAlchemy still
believes its transaction is open, and a later ``rollback()`` undoes nothing
(or only what came after).  Deleting the uploads of that transaction would
leave committed rows pointing at deleted files.

A connection is *escaped* once, within SQLAlchemy's current transaction, a
statement left the driver outside a transaction after it was in one, or
wrote rows outside any.  Rolling back an escaped connection keeps every file
(orphans at worst).  ``ROLLBACK TO SAVEPOINT`` needs no such check: it fails
unless the savepoint still exists, and then it undoes all of its work.
"""
from __future__ import annotations

import sqlite3
import threading
import weakref
from typing import Any

from sqlalchemy import event

__all__ = ["escaped", "outside_transaction", "watch"]

_BEFORE = "depot.driver_before"

_watched: "weakref.WeakSet[Any]" = weakref.WeakSet()
# Connections (not their info: still readable once closed) escaped since their last begin.
_escaped: "weakref.WeakSet[Any]" = weakref.WeakSet()
_lock = threading.Lock()


def _driver(connection: Any) -> Any:
    """The ``sqlite3`` connection under a SQLAlchemy one; ``None`` for any other driver."""
    try:
        dbapi_connection = connection.connection.dbapi_connection
    except Exception:  # closed or invalidated: nothing to learn from it
        return None
    return dbapi_connection if isinstance(dbapi_connection, sqlite3.Connection) else None


def watch(connection: Any) -> None:
    """Follow the statements of ``connection``'s engine, if it runs on ``sqlite3`` (idempotent)."""
    engine = connection.engine
    if engine in _watched or _driver(connection) is None:
        return
    with _lock:
        if engine in _watched:
            return
        _watched.add(engine)
    event.listen(engine, "begin", _on_begin)
    event.listen(engine, "before_cursor_execute", _before_execute)
    event.listen(engine, "after_cursor_execute", _after_execute)


def escaped(connection: Any) -> bool:
    """Whether a watched statement made work of ``connection``'s current (or last) SQLAlchemy transaction durable."""
    return connection in _escaped


def outside_transaction(connection: Any) -> bool:
    """Whether the driver is outside a transaction while SQLAlchemy is inside one.

    Rows written earlier in SQLAlchemy's transaction are then durable
    already: a rollback cannot undo them.
    """
    dbapi_connection = _driver(connection)
    return dbapi_connection is not None and connection.in_transaction() and not dbapi_connection.in_transaction


def _on_begin(connection: Any) -> None:
    _escaped.discard(connection)


def _before_execute(connection: Any, cursor: Any, statement: Any, parameters: Any, context: Any, many: Any) -> None:
    dbapi_connection = _driver(connection)
    if dbapi_connection is not None:
        connection.info[_BEFORE] = (dbapi_connection.in_transaction, dbapi_connection.total_changes)


def _after_execute(connection: Any, cursor: Any, statement: Any, parameters: Any, context: Any, many: Any) -> None:
    dbapi_connection = _driver(connection)
    before = connection.info.pop(_BEFORE, None)
    if dbapi_connection is None or before is None or dbapi_connection.in_transaction:
        return
    was_open, changes = before
    # Ended the driver's transaction (a RELEASE that committed), or wrote in autocommit.
    if connection.in_transaction() and (was_open or dbapi_connection.total_changes != changes):
        _escaped.add(connection)
