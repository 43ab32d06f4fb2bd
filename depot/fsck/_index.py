"""The on-disk index ``fsck`` compares: stored files against the references rows hold.

Both sets can be far larger than memory (a million files is 100 MB of ids
as Python strings), so they go into a temporary SQLite file and are compared
there with anti-joins; the process keeps only a batch of rows at a time and
SQLite's page cache.
"""
from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Tuple

__all__ = ["Index"]

#: SQLite's page cache for the index: bounded, whatever the number of files.
CACHE_KIB = 8192

_SCHEMA = """
CREATE TABLE stored (storage TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (storage, id)) WITHOUT ROWID;
CREATE TABLE refs (storage TEXT NOT NULL, id TEXT NOT NULL, location TEXT NOT NULL);
CREATE TABLE candidates (storage TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (storage, id)) WITHOUT ROWID;
CREATE TABLE pending (storage TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (storage, id)) WITHOUT ROWID;
"""


class Index:
    """A temporary SQLite database in ``directory`` (the system's temp dir by default), removed on close."""

    def __init__(self, directory: Optional[str] = None) -> None:
        fd, self.path = tempfile.mkstemp(prefix="depot-fsck-", suffix=".sqlite", dir=directory)
        os.close(fd)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        # A scratch file: losing it in a crash loses nothing, so skip the journal's fsyncs.
        self._db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-%d; PRAGMA temp_store=FILE;"
            % CACHE_KIB
        )
        self._db.executescript(_SCHEMA)
        self._refs_indexed = False

    def close(self) -> None:
        self._db.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _insert(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._db.execute("BEGIN")
        try:
            self._db.executemany(sql, rows)
        finally:
            self._db.execute("COMMIT")

    def add_stored(self, storage: str, ids: Iterable[str]) -> None:
        self._insert("INSERT OR IGNORE INTO stored VALUES (?, ?)", ((storage, file_id) for file_id in ids))

    def add_pending(self, storage: str, ids: Iterable[str]) -> None:
        """Ids of direct uploads not attached yet (their markers): not stored files, see :meth:`drop_pending`."""
        self._insert("INSERT OR IGNORE INTO pending VALUES (?, ?)", ((storage, file_id) for file_id in ids))

    def drop_pending(self, storage: str) -> int:
        """Remove the pending uploads from the stored files of ``storage``; how many were listed."""
        return self._db.execute(
            "DELETE FROM stored WHERE storage = ? AND id IN (SELECT id FROM pending WHERE storage = ?)",
            (storage, storage),
        ).rowcount

    def add_refs(self, refs: Iterable[Tuple[str, str, Any]]) -> None:
        """``(storage, id, location)`` triples; the location is kept as JSON."""
        self._insert("INSERT INTO refs VALUES (?, ?, ?)", ((s, i, json.dumps(loc)) for s, i, loc in refs))

    def _index_refs(self) -> None:
        # Built once after the bulk insert: far cheaper than maintaining it row by row.
        if not self._refs_indexed:
            self._db.execute("CREATE INDEX refs_path ON refs (storage, id)")
            self._refs_indexed = True

    def count_stored(self) -> int:
        return self._db.execute("SELECT count(*) FROM stored").fetchone()[0]

    def count_refs(self) -> int:
        return self._db.execute("SELECT count(*) FROM refs").fetchone()[0]

    def unlisted_refs(self, listed: Sequence[str]) -> Iterator[Tuple[str, str, List[Any]]]:
        """``(storage, id, locations)`` of the references the listings did not show, by path.

        In a listed storage these are missing files (or files stored after
        the listing); in another storage nothing is known yet.
        """
        self._index_refs()
        marks = ",".join("?" * len(listed)) or "NULL"
        cursor = self._db.execute(
            "SELECT r.storage, r.id, r.location FROM refs r "
            "WHERE NOT (r.storage IN (%s) AND EXISTS "
            "(SELECT 1 FROM stored s WHERE s.storage = r.storage AND s.id = r.id)) "
            "ORDER BY r.storage, r.id" % marks,
            list(listed),
        )
        yield from _grouped(cursor)

    def unreferenced(self) -> Iterator[Tuple[str, str]]:
        """The stored files no reference names, by path."""
        self._index_refs()
        return iter(self._db.execute(
            "SELECT s.storage, s.id FROM stored s WHERE NOT EXISTS "
            "(SELECT 1 FROM refs r WHERE r.storage = s.storage AND r.id = s.id) ORDER BY s.storage, s.id"
        ))

    def has_stored(self, storage: str) -> bool:
        return self._db.execute("SELECT 1 FROM stored WHERE storage = ? LIMIT 1", (storage,)).fetchone() is not None

    def has_referenced(self, storage: str) -> bool:
        """Whether some listed file of ``storage`` is referenced."""
        self._index_refs()
        return self._db.execute(
            "SELECT 1 FROM stored s WHERE s.storage = ? AND EXISTS "
            "(SELECT 1 FROM refs r WHERE r.storage = s.storage AND r.id = s.id) LIMIT 1", (storage,)
        ).fetchone() is not None

    def referenced_storages(self) -> List[str]:
        """The distinct storage names the references use."""
        self._index_refs()
        return [row[0] for row in self._db.execute("SELECT DISTINCT storage FROM refs")]

    def add_candidate(self, storage: str, file_id: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO candidates VALUES (?, ?)", (storage, file_id))

    def has_candidates(self) -> bool:
        return self._db.execute("SELECT 1 FROM candidates LIMIT 1").fetchone() is not None

    def rescue(self, paths: Iterable[Tuple[str, str]]) -> List[Tuple[str, str]]:
        """Remove these ``(storage, id)`` from the candidates; returns those that were candidates."""
        removed = []
        self._db.execute("BEGIN")
        try:
            for path in paths:
                if self._db.execute("DELETE FROM candidates WHERE storage = ? AND id = ?", path).rowcount:
                    removed.append(path)
        finally:
            self._db.execute("COMMIT")
        return removed

    def candidates(self) -> List[Tuple[str, str]]:
        """A page of the candidates, removed from the table as they are handed out."""
        page = self._db.execute("SELECT storage, id FROM candidates ORDER BY storage, id LIMIT 1000").fetchall()
        self._insert("DELETE FROM candidates WHERE storage = ? AND id = ?", page)
        return page


def _grouped(cursor: Iterable[Tuple[str, str, str]]) -> Iterator[Tuple[str, str, List[Any]]]:
    current: Optional[Tuple[str, str]] = None
    locations: List[Any] = []
    for storage, file_id, location in cursor:
        if (storage, file_id) != current:
            if current is not None:
                yield current[0], current[1], locations
            current, locations = (storage, file_id), []
        locations.append(json.loads(location))
    if current is not None:
        yield current[0], current[1], locations
