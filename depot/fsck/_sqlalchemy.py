"""The attachment columns of SQLAlchemy models, and their values streamed row by row."""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from sqlalchemy import Column, MetaData, Table, inspect, or_, select, type_coerce, types
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Mapper

from depot.fields.sqlalchemy import UploadedFileField

__all__ = ["SQLAlchemySource", "attachment_tables"]

#: Rows fetched from the database per round trip (server-side cursor where the driver has one).
ROWS_PER_BATCH = 1000


@dataclass(frozen=True)
class AttachmentTable:
    """A table and its :class:`UploadedFileField` columns."""

    table: Table
    columns: Tuple[Column, ...]

    @property
    def storages(self) -> List[Optional[str]]:
        """The ``upload_storage`` of each column (``None``: the default storage)."""
        return [_field(column).upload_storage for column in self.columns]


def _field(column: Column) -> UploadedFileField:
    field = column.type
    assert isinstance(field, UploadedFileField)  # attachment_tables() keeps only these columns
    return field


def _tables_in(module: Any) -> Iterator[Table]:
    registries = []
    for value in list(vars(module).values()) if isinstance(module, ModuleType) else [module]:
        if isinstance(value, Table):
            yield value
        elif isinstance(value, MetaData):
            yield from value.tables.values()
        elif isinstance(value, type):
            mapped: Any = inspect(value, raiseerr=False)
            if isinstance(mapped, Mapper) and mapped.registry not in registries:
                registries.append(mapped.registry)
    # Every class of the registries found, not only those named in the
    # module: a model the module does not import still references files, and
    # forgetting it would make its files look like orphans.
    for registry in registries:
        for mapper in list(registry.mappers):
            for table in mapper.tables:
                # A mapper needs a primary key, which only a Table (not a bare TableClause) has.
                assert isinstance(table, Table), table
                yield table


def attachment_tables(models: Iterable[Any]) -> List[AttachmentTable]:
    """The tables with attachment columns among ``models``.

    ``models`` holds modules (their mapped classes, ``Table`` and ``MetaData``
    objects), mapped classes, tables or metadata.  Each mapped class found
    brings every class of its registry (its declarative base).
    """
    found: dict = {}
    for model in models:
        for table in _tables_in(model):
            columns = tuple(c for c in table.columns if isinstance(c.type, UploadedFileField))
            if columns:
                found.setdefault(table.fullname, AttachmentTable(table, columns))
    return [found[name] for name in sorted(found)]


def _raw(column: Column) -> Any:
    # The stored JSON as the driver returns it: decoding it here lets a
    # corrupt value be reported instead of ending the scan.
    if _field(column).native_json:
        return type_coerce(column, types.JSON()).label(column.name)
    return type_coerce(column, types.UnicodeText()).label(column.name)


Bind = Union[Engine, Connection]


class SQLAlchemySource:
    """The attachment values of every row of the tables with :class:`UploadedFileField` columns.

    ``bind`` is an :class:`~sqlalchemy.engine.Engine` (each scan then uses
    a connection of its own, so a second scan sees what was committed
    meanwhile) or a :class:`~sqlalchemy.engine.Connection`.  A connection
    already inside a transaction may show both scans the same snapshot
    (REPEATABLE READ), hiding a reference committed between them: deleting
    orphans is then refused (:meth:`deletion_blocker`); a transaction a
    scan begins on the connection is rolled back when the scan ends.  Rows are
    streamed (a server-side cursor where the driver has one), reading only
    the primary key and the attachment columns.
    """

    def __init__(self, bind: Bind, models: Iterable[Any], rows_per_batch: int = ROWS_PER_BATCH) -> None:
        if not isinstance(bind, (Engine, Connection)):
            raise TypeError("SQLAlchemySource needs an Engine or a Connection, got %r" % (bind,))
        self.bind = bind
        self.tables = attachment_tables(models)
        self.rows_per_batch = rows_per_batch

    @property
    def storages(self) -> List[Optional[str]]:
        return [name for t in self.tables for name in t.storages]

    def describe(self) -> str:
        return ", ".join("%s(%s)" % (t.table.fullname, ", ".join(c.name for c in t.columns)) for t in self.tables)

    def deletion_blocker(self) -> Optional[str]:
        """Why the rows cannot be read again fresh before deleting, or ``None``."""
        if isinstance(self.bind, Connection) and self.bind.in_transaction():
            return ("the SQLAlchemy connection is inside a transaction, whose snapshot can hide rows "
                    "committed between the two scans: pass an Engine, or a connection outside any transaction")
        return None

    def values(self) -> Iterator[Tuple[Any, Any]]:
        """``(location, raw value)`` for every non-NULL attachment; a location is ``[table, key, column]``."""
        for attached in self.tables:
            yield from self._table_values(attached)

    def _table_values(self, attached: AttachmentTable) -> Iterator[Tuple[Any, Any]]:
        table = attached.table
        keys: Sequence[Column] = list(table.primary_key.columns)
        stmt = select(*keys, *[_raw(c) for c in attached.columns]).where(
            or_(*[c.isnot(None) for c in attached.columns])
        )
        if keys:
            stmt = stmt.order_by(*keys)
        names = [c.name for c in attached.columns]
        with self._connection() as conn:
            # On the statement, not the connection: a caller's connection keeps its options.
            result = conn.execute(stmt.execution_options(stream_results=True, yield_per=self.rows_per_batch))
            for row in result:
                key = [_plain(v) for v in row[: len(keys)]]
                for name, value in zip(names, row[len(keys):], strict=True):
                    if value is not None:
                        yield [table.fullname, key, name], value

    def _connection(self) -> Any:
        if isinstance(self.bind, Engine):
            return self.bind.connect()
        return _Borrowed(self.bind)


class _Borrowed:
    """A caller's connection, used as a context manager without closing it.

    A transaction the scan begins (SQLAlchemy begins one on first use) is
    rolled back at the end, so that the next scan starts a new one and sees
    what was committed meanwhile; the caller's own transaction is left alone.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.began = False

    def __enter__(self) -> Connection:
        self.began = not self.conn.in_transaction()
        return self.conn

    def __exit__(self, *exc: Any) -> None:
        transaction = self.conn.get_transaction() if self.began else None
        if transaction is not None:
            transaction.rollback()  # only read: nothing to keep


def _plain(value: Any) -> Any:
    # A location goes into JSON output: keep JSON types, show others as text.
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
