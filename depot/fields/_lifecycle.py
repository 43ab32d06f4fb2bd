"""Which stored files a unit of work created or dropped: the ORM-neutral half of the trackers.

A :class:`FileScope` belongs to one transaction scope (a transaction or a
savepoint).  ``uploaded`` holds the files stored while it was open,
``dropped`` the files its changes stopped referencing (a replaced value, a
value set to ``None``, a deleted row, an upload overwritten before it was
ever flushed).  Nothing is deleted while a scope is open:

- a scope that rolls back deletes its ``uploaded`` files and forgets
  ``dropped`` (the rows that referenced them are back);
- a savepoint that is released hands both sets to its parent scope: only
  the outermost transaction can make anything final;
- the outermost transaction, once the database commit succeeded, deletes
  ``dropped``; its uploads are now referenced by committed rows.

``written`` records, per column of a row (its "holder"), the files the
scope's last flush wrote there: a file dropped by one row and written to
another (a swap, a move, a value put back after a flush) is still
referenced, so a commit deletes only the dropped files no holder wrote last,
and a rollback keeps the uploads that a surviving scope's rows hold.

The SQLAlchemy tracker maps session transactions to scopes; the Ming
extension uses one scope per session, which its flushes end.

What the trackers know of a value itself (how many scopes took it, whether
a commit settled it) lives in attributes that
:class:`~depot.fields.interfaces.DepotFileInfo` declares, read and written
only here (:func:`claims`, :func:`is_fresh`, :meth:`FileScope.settle`).
"""
from __future__ import annotations

import logging
import weakref
from typing import Any, Dict, FrozenSet, Iterable, List, Sequence, Set, Tuple

from depot.manager import DepotManager

from ._offload import off_loop

__all__ = [
    "FileScope", "claims", "created_files", "delete_files", "direct_uploads", "guard_orphans", "is_fresh",
    "files_of", "share",
]

log = logging.getLogger("depot.fields")

# Files this process gave to a second holder (``b.content = a.content``, a
# swap, a value put back): once both rows committed, a later transaction
# replacing one of them cannot know the other still refers to the file, so
# no commit deletes them (orphans at worst).  It grows with such assignments only.
_shared: Set[str] = set()


def share(paths: Iterable[str]) -> None:
    """Never delete ``paths`` because a row dropped them: another row may hold them."""
    _shared.update(paths)


def files_of(value: Any) -> List[str]:
    """The ``'<depot>/<id>'`` paths stored for a column value (none for ``None``)."""
    if not value:
        return []
    return list(dict.get(value, "files") or ())


def created_files(value: Any) -> List[str]:
    """The paths of ``value``'s ``files`` that its own ``store_content`` created.

    What a failed assignment may delete.  A path a ``store_content`` override
    added without storing it through the base method (an existing file it
    deduplicated to) is not among them: another row may reference it.
    """
    created = set(getattr(value, "_created", ()))
    return [path for path in files_of(value) if path in created]


def is_fresh(value: Any) -> bool:
    """Whether ``value`` is an upload of this process that no transaction has committed yet.

    Values read back from the database (no ``original_content``) and values a
    committed transaction settled are not: a rollback must never delete them.
    """
    return (
        value is not None
        and getattr(value, "original_content", None) is not None
        and not getattr(value, "_depot_settled", False)
    )


def claims(value: Any) -> int:
    """How many transaction scopes took ``value`` as an upload (0 for ``None`` and values read back)."""
    return getattr(value, "_depot_claims", 0)


class FileScope:
    """The files one transaction scope uploaded and dropped."""

    __slots__ = ("uploaded", "dropped", "written", "values", "committed")

    def __init__(self) -> None:
        self.uploaded: Set[str] = set()
        self.dropped: Set[str] = set()
        self.written: Dict[Any, FrozenSet[str]] = {}  # holder -> the files its last flush wrote
        self.values: List[Any] = []  # fresh values to settle when the outermost commit succeeds
        self.committed = False

    def __bool__(self) -> bool:
        return bool(self.uploaded or self.dropped)

    def upload(self, value: Any) -> None:
        """Record a fresh value whose files were stored in this scope."""
        self.uploaded.update(files_of(value))
        self.values.append(value)
        # How many scopes took the value: an orphan guard must not delete
        # files that another object (in a session) now refers to.
        object.__setattr__(value, "_depot_claims", claims(value) + 1)

    def drop(self, paths: Iterable[str]) -> None:
        """Record files that this scope's changes no longer reference."""
        self.dropped.update(paths)

    def write(self, holder: Any, paths: Iterable[str]) -> None:
        """Record the files a flush wrote to ``holder`` (a row's column); none for a deleted row.

        ``holder`` is ``(state, column)``; a state with a ``key`` (its row's
        identity) stands for that row, whichever object of it wrote last.
        """
        self.written.pop(holder, None)  # the order of the writes decides
        self.written[holder] = frozenset(paths)

    def referenced(self) -> Set[str]:
        """The files the rows this scope flushed hold now (the last write to each row wins)."""
        rows: Dict[Any, FrozenSet[str]] = {}
        for (state, column), paths in self.written.items():
            # An object expunged and its row loaded again: two states, one row.
            rows[(getattr(state, "key", None) or state, column)] = paths
        return set().union(*rows.values())

    def follow(self, value: Any) -> None:
        """Settle ``value`` (an upload another scope owns) when this scope commits, without owning it."""
        self.values.append(value)

    def merge_into(self, parent: "FileScope") -> None:
        """Hand everything to ``parent`` (a released savepoint, an object attached to a session)."""
        parent.uploaded |= self.uploaded
        parent.dropped |= self.dropped
        for holder, paths in self.written.items():  # later flushes win
            parent.write(holder, paths)
        parent.values.extend(self.values)
        self._reset()

    def _reset(self) -> None:
        self.uploaded = set()
        self.dropped = set()
        self.written = {}
        self.values = []
        self.committed = False

    def _settled_elsewhere(self) -> Set[str]:
        """The files of this scope's uploads that another scope's commit settled (the object moved there)."""
        return {p for v in self.values if v._depot_settled for p in files_of(v)}

    def rolled_back(self, keep: Iterable[str] = ()) -> None:
        """The scope's changes are undone: remove what it uploaded.

        Kept: ``keep`` (files rows of surviving scopes hold) and the uploads
        another session's commit settled meanwhile (the object moved there).
        """
        uploaded = self.uploaded - self._settled_elsewhere() - set(keep)
        # A direct upload's claimed marker goes after its file, and only then.
        claimed = [path for path in direct_uploads(self.values) if path in uploaded]
        self._reset()
        if uploaded:
            delete_files(uploaded, claimed)

    def settle(self) -> None:
        """A commit took the fresh values: no later rollback of another scope may delete them.

        Their paths stay in ``uploaded``, so a scope that holds them until an
        enclosing transaction ends can still remove them if that one rolls back.
        Uploads another scope's commit settled first leave ``uploaded`` now:
        their rows are committed there, and once ``values`` is emptied nothing
        would tell a later rollback of the enclosing transaction (a joined
        connection's, see :mod:`._sqla_outer`) to keep them.
        """
        self.uploaded -= self._settled_elsewhere()
        for value in self.values:
            object.__setattr__(value, "_depot_settled", True)
        self.values = []

    def release(self, value: Any) -> bool:
        """Take ``value`` (an upload of this scope) back out of it, to hand it to another owner.

        Refused (``False``) when another scope took the value too: it may be
        referenced from there, so it stays where it is.
        """
        paths = files_of(value)
        if claims(value) > 1 or not paths or not self.uploaded.issuperset(paths):
            return False
        self.values = [v for v in self.values if v is not value]
        self.uploaded.difference_update(paths)
        return True

    def adopt(self, value: Any) -> None:
        """Record a value :meth:`release` took from another scope (it keeps its single claim)."""
        self.uploaded.update(files_of(value))
        self.values.append(value)

    def committed_outermost(self) -> None:
        """The database commit succeeded: remove what the committed rows no longer reference.

        The claimed markers of the direct uploads attached here go too: a
        committed row now protects them from ``depot fsck``.
        """
        claimed = direct_uploads(self.values)
        self.settle()
        dropped = self.dropped - self.referenced() - _shared
        self._reset()
        if dropped or claimed:
            delete_files(dropped, claimed)

    def forget(self) -> None:
        """Whether the changes became durable cannot be known: keep every file (orphans at worst)."""
        self.settle()
        self._reset()


def guard_orphans(owner: Any, scope: FileScope) -> "weakref.finalize":
    """Delete ``scope``'s uploads if ``owner`` disappears before any unit of work took them.

    An object given a file but never added to a session would otherwise leave
    the upload behind for good.  Values that another scope also took, or that
    a commit settled, are left alone.  Call ``detach()`` on the result when
    the scope is handed to a session.  Nothing runs at interpreter exit, when
    storages may already be unusable.
    """
    guard = weakref.finalize(owner, _discard_orphans, scope)
    guard.atexit = False
    return guard


def _discard_orphans(scope: FileScope) -> None:
    paths: Set[str] = set()
    for value in scope.values:
        if not value._depot_settled and claims(value) <= 1:
            paths.update(files_of(value))
    scope._reset()
    if paths:
        delete_files(paths)


def direct_uploads(values: Iterable[Any]) -> List[str]:
    """The ``'<depot>/<id>'`` of the direct uploads among ``values`` (see :mod:`depot.uploads.attach`)."""
    found = (getattr(value, "__dict__", {}).get("_direct_upload") for value in values)
    return [path for path in found if isinstance(path, str)]


def delete_files(paths: Iterable[str], claimed: Iterable[str] = ()) -> None:
    """Delete each ``'<depot>/<id>'``, then the claimed markers of the direct uploads ``claimed``.

    Failures are logged, never raised.

    A claimed marker keeps ``depot fsck`` from deleting a direct upload
    until its transaction ended (:func:`depot.uploads._api.claim_upload`);
    it goes last, so a crash leaves it (``depot gc --pending-older-than``
    drops it later), never a file without it before the end.

    It runs after a commit or a rollback has already happened: raising would
    report a failed transaction that did not fail, and stop the remaining
    deletions.  A file left behind is an orphan a cleanup job can find; a
    file deleted too early is lost data.  In an event loop's thread
    (``AsyncSession``) the deletions run in a worker thread instead
    (:mod:`depot.fields._offload`).
    """
    paths = sorted(paths)
    markers = sorted(claimed)
    if not off_loop(_delete_now, paths, markers):
        _delete_now(paths, markers)


def _delete_now(paths: List[str], markers: Sequence[str] = ()) -> None:
    steps = [(path, "delete", "the stored file") for path in paths]
    steps += [(path, "_pending_delete", "the claimed marker of the direct upload") for path in markers]
    for path, method, what in steps:
        try:
            storage, file_id = _storage_of(path)
            getattr(storage, method)(file_id)
        except Exception:
            log.exception("depot: could not delete %s %s", what, path)


def _storage_of(path: str) -> Tuple[Any, str]:
    depot_name, file_id = path.split("/", 1)
    depot = DepotManager.get(depot_name)
    if depot is None:
        raise LookupError("no storage named %r is configured" % depot_name)
    return depot, file_id
