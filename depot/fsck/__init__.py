"""``fsck``: compare the files rows reference with the files storages hold.

Two kinds of disagreement are found:

- **missing**: an attachment names a file (its main file, a thumbnail, any
  path of its ``files`` list) that its storage does not have;
- **orphan**: a storage holds a file no attachment names (an upload whose
  transaction never committed, the thumbnail of a replaced image whose
  deletion failed...).

:func:`check` reports both and, when asked, deletes orphans older than a
grace period.  Values are read from *sources*
(:class:`SQLAlchemySource` for SQLAlchemy models,
:class:`MingSource` for Ming, or any object with
``storages`` and ``values()``), storages from a :class:`StorageLookup`
(:class:`DepotManager` by default).

Memory stays bounded whatever the size of the tables and storages: rows
are streamed, listings are walked a page at a time, and both sets of paths
are compared in a temporary SQLite file (:mod:`depot.fsck._index`).

**Why deleting an orphan is safe.**  A file is deleted only if all of the
following hold:

1. **It was listed before the rows were read.**  Every storage is listed
   first, then the rows are scanned.  A file uploaded during the scan is
   not in the listing, so it cannot be a candidate, whether or not the scan
   saw the row that references it.
2. **No row read after the listing references it.**  A file listed but
   referenced by a row the scan did not see (a row committed after the
   scan passed it) is protected by the next two rules.
3. **It is older than the grace period** (``last_modified`` compared with
   the time the listing started): an upload whose transaction is still
   open, or committed while the scan ran, is younger than that.  A file
   whose age is unknown is kept.
4. **A second scan of every row, started after the candidates were
   chosen, does not reference it either.**  It catches a transaction that
   committed a reference after the first scan, however long it lasted.
5. **No value was unreadable.**  A row whose JSON cannot be read may
   reference anything: then nothing is deleted at all.
6. **The rows reference at least one file of its storage.**  When none
   of a storage's files is referenced, the likeliest cause is the wrong
   database (an empty or a staging one) or the wrong storage rather than a
   storage full of orphans: nothing is deleted there.
7. **No other storage name shares its files.**  References are compared
   under the real storage name (aliases followed, as reading them does),
   and a storage whose directory or bucket and prefix another storage in
   play also uses deletes nothing: a file referenced through the other
   name would look like an orphan (:mod:`depot.fsck._place`).

The grace period must be at least :data:`MIN_GRACE` to delete: a shorter
one would take an upload whose transaction is still open, or whose
writer's clock is behind, for an orphan (``allow_short_grace=True`` lifts
this, for tests).  A source that cannot see rows committed after its first
scan (a SQLAlchemy connection inside a transaction) refuses deletion.

Only the storages the attachment columns upload to (and those named with
``storages=``) are listed, so files of a storage the models do not use are
never candidates.
"""
from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Protocol, Sequence, Tuple

from depot.io.interfaces import FileStorage
from depot.manager import DepotManager

from ._index import Index
from ._listing import batches, iter_ids
from ._place import describe, overlap, place

__all__ = [
    "check", "Problem", "Report", "Source", "StorageLookup", "DepotManagerLookup",
    "FsckError", "referenced_paths", "DEFAULT_GRACE", "MIN_GRACE", "parse_duration", "SQLAlchemySource", "MingSource",
]


def __getattr__(name: str) -> Any:
    # The sources import their ORM only when asked for.
    if name == "SQLAlchemySource":
        from ._sqlalchemy import SQLAlchemySource

        return SQLAlchemySource
    if name == "MingSource":
        from ._ming import MingSource

        return MingSource
    raise AttributeError("module %r has no attribute %r" % (__name__, name))

#: How old an unreferenced file must be before ``delete_orphans`` removes it.
DEFAULT_GRACE = datetime.timedelta(hours=24)

#: The shortest grace period ``delete_orphans`` accepts without ``allow_short_grace``: a
#: transaction open longer, or a writer's clock behind by more, would lose an upload.
MIN_GRACE = datetime.timedelta(hours=1)

MISSING = "missing"
ORPHAN = "orphan"
UNREADABLE = "unreadable"


class FsckError(Exception):
    """The check cannot start: an unknown storage, no attachment column..."""


class Source(Protocol):
    """Where attachment values come from."""

    #: The storage names values are uploaded to (``None``: the default storage).
    storages: Sequence[Optional[str]]

    def values(self) -> Iterator[Tuple[Any, Any]]:
        """``(location, value)`` pairs; ``value`` is the JSON text or the decoded dict."""

    # Optional: ``deletion_blocker() -> Optional[str]``, why deleting would be
    # unsafe (a second ``values()`` would not see newer rows), or ``None``.


class StorageLookup(Protocol):
    def resolve(self, name: Optional[str]) -> Optional[str]:
        """The real storage name behind ``name`` (an alias, ``None`` for the default), or ``None``."""

    def get(self, name: str) -> Optional[FileStorage]:
        """The storage with that real name, or ``None`` if there is none."""


class DepotManagerLookup:
    """The storages and aliases registered in :class:`DepotManager`."""

    def resolve(self, name: Optional[str]) -> Optional[str]:
        if name is None:
            try:
                name = DepotManager.get_default()
            except RuntimeError:  # nothing configured
                return None
        return DepotManager.resolve_alias(name)

    def get(self, name: str) -> Optional[FileStorage]:
        return DepotManager.get(name)


@dataclass(frozen=True)
class Problem:
    """One disagreement.

    ``kind`` is ``'missing'`` (``locations`` lists the ``[table, key,
    column]`` of every value referencing the path), ``'orphan'``
    (``action`` says what became of it: ``'reported'``, ``'deleted'``,
    ``'kept_young'`` — younger than the grace period —, ``'kept_referenced'``
    — referenced when checked again —, ``'kept_unknown_age'``, or
    ``'delete_failed'``) or ``'unreadable'`` (a value whose JSON or paths
    cannot be read; ``path`` is ``None``).
    """

    kind: str
    storage: Optional[str]
    file_id: Optional[str]
    locations: Tuple[Any, ...] = ()
    detail: str = ""
    action: Optional[str] = None
    last_modified: Optional[datetime.datetime] = None
    age_seconds: Optional[float] = None

    @property
    def path(self) -> Optional[str]:
        return None if self.storage is None else "%s/%s" % (self.storage, self.file_id)

    def to_json(self) -> Dict[str, Any]:
        return {
            "kind": self.kind, "path": self.path, "storage": self.storage, "id": self.file_id,
            "locations": [_location_json(loc) for loc in self.locations], "detail": self.detail or None,
            "action": self.action,
            "last_modified": self.last_modified.strftime("%Y-%m-%d %H:%M:%S") if self.last_modified else None,
            "age_seconds": None if self.age_seconds is None else round(self.age_seconds, 3),
        }


def _location_json(loc: Any) -> Any:
    if isinstance(loc, (list, tuple)) and len(loc) == 3:
        return {"table": loc[0], "key": loc[1], "column": loc[2]}
    return loc


@dataclass
class Report:
    """What a check found; problems themselves go to the ``on_problem`` callback as they are found."""

    storages: List[str] = field(default_factory=list)
    values: int = 0
    references: int = 0
    stored: int = 0
    #: Files of direct uploads not attached yet: neither stored files nor orphans
    #: (``depot gc --pending-older-than`` collects those never attached).
    pending_uploads: int = 0
    missing: int = 0
    unreadable: int = 0
    orphans: int = 0
    young_orphans: int = 0
    deleted: int = 0
    rescued: int = 0
    kept: int = 0
    delete_failed: int = 0
    deletion_refused: Optional[str] = None

    @property
    def remaining(self) -> int:
        """Problems left for a person: missing files, unreadable values, old orphans not deleted."""
        return self.missing + self.unreadable + self.orphans - self.young_orphans - self.deleted - self.rescued

    @property
    def clean(self) -> bool:
        return self.remaining == 0

    def to_json(self) -> Dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items()}
        data["remaining"] = self.remaining
        return data


_THUMB_PATH = re.compile(r"^thumb.*_path$")


def referenced_paths(value: Mapping[str, Any]) -> List[str]:
    """Every ``'<storage>/<id>'`` an attachment value names: its ``files``, ``path`` and ``thumb*_path`` keys.

    Raises :class:`ValueError` for a value that is not an attachment's JSON.
    """
    if not isinstance(value, Mapping):
        raise ValueError("not a JSON object")
    files = value.get("files", [])
    if not isinstance(files, list):
        raise ValueError("'files' is not a list")
    paths = list(files)
    for key, path in value.items():
        if key == "path" or (isinstance(key, str) and _THUMB_PATH.match(key)):
            if path is not None:
                paths.append(path)
    for path in paths:
        if not isinstance(path, str) or "/" not in path.strip("/"):
            raise ValueError("%r is not a '<storage>/<id>' path" % (path,))
    return list(dict.fromkeys(paths))


def _decode(raw: Any) -> Mapping[str, Any]:
    if isinstance(raw, (str, bytes)):
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ValueError("not JSON (%s)" % exc) from None
    return raw


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> datetime.timedelta:
    """``'90s'``, ``'15m'``, ``'24h'``, ``'7d'``, ``'2w'`` or plain seconds."""
    match = _DURATION.match(text.lower())
    if not match:
        raise ValueError("%r is not a duration such as 90s, 15m, 24h, 7d" % text)
    return datetime.timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


ProblemHandler = Callable[[Problem], None]


def check(
    sources: Iterable[Source],
    lookup: Optional[StorageLookup] = None,
    *,
    storages: Iterable[str] = (),
    delete_orphans: bool = False,
    grace: datetime.timedelta = DEFAULT_GRACE,
    allow_short_grace: bool = False,
    on_problem: Optional[ProblemHandler] = None,
    on_progress: Optional[Callable[[str], None]] = None,
    tempdir: Optional[str] = None,
) -> Report:
    """Compare the attachments of ``sources`` with the storages they use.

    ``storages`` adds storages to list for orphans besides those the
    sources upload to.  Each :class:`Problem` is handed to ``on_problem`` as
    soon as it is known (nothing is collected in memory); the returned
    :class:`Report` counts them.  With ``delete_orphans``, orphans are
    deleted under the rules of this module's docstring; a ``grace``
    shorter than :data:`MIN_GRACE` then needs ``allow_short_grace=True``.
    """
    sources = list(sources)
    lookup = lookup or DepotManagerLookup()
    emit = on_problem or (lambda problem: None)
    say = on_progress or (lambda text: None)
    if grace < datetime.timedelta(0):
        raise FsckError("the grace period cannot be negative")
    if delete_orphans:
        _check_can_delete(sources, grace, allow_short_grace)
    report = Report(storages=_storages_to_list(sources, lookup, storages))
    with Index(tempdir) as index:
        # Listing first, rows second: see "Why deleting an orphan is safe".
        listed_at = _utcnow()
        for name in report.storages:
            say("listing storage %s" % name)
            storage = _storage(lookup, name)
            # Markers before files: an upload listed as a file had its marker
            # listed already (markers are written before any upload can happen).
            for batch in batches(_pending_ids(storage)):
                index.add_pending(name, batch)
            for batch in batches(iter_ids(storage)):
                index.add_stored(name, batch)
            report.pending_uploads += index.drop_pending(name)
        report.stored = index.count_stored()
        say("reading rows")
        for refs in batches(_references(sources, lookup, report, emit)):
            index.add_refs(refs)
        report.references = index.count_refs()
        say("looking for missing files")
        _find_missing(index, lookup, report, emit)
        say("looking for orphans")
        _find_orphans(index, lookup, report, emit, delete_orphans, grace, listed_at)
        if delete_orphans and index.has_candidates():
            say("checking the rows again before deleting")
            _delete_candidates(index, sources, lookup, report, emit, grace)
    return report


def _check_can_delete(sources: Sequence[Source], grace: datetime.timedelta, allow_short_grace: bool) -> None:
    if grace < MIN_GRACE and not allow_short_grace:
        raise FsckError(
            "a grace period of %s is too short to delete orphans (at least %s): an upload whose "
            "transaction is still open, or whose clock is behind, would be deleted; "
            "force it only where no other process writes (tests)" % (grace, MIN_GRACE))
    for source in sources:
        blocker = getattr(source, "deletion_blocker", None)
        reason = blocker() if blocker is not None else None
        if reason:
            raise FsckError("cannot delete orphans: %s" % reason)


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _storages_to_list(sources: Sequence[Source], lookup: StorageLookup, extra: Iterable[str]) -> List[str]:
    names: List[str] = []
    wanted = [(name, "an attachment column") for source in sources for name in source.storages]
    if not wanted:
        # Listing a storage for no column would make every file an orphan.
        raise FsckError("no attachment column found: nothing to check")
    wanted += [(name, "--storage") for name in extra]
    for name, origin in wanted:
        real = lookup.resolve(name)
        if real is None or lookup.get(real) is None:
            raise FsckError("storage %r (used by %s) is not configured" % (
                "<default>" if name is None else name, origin))
        if real not in names:
            names.append(real)
    return names


def _pending_ids(storage: FileStorage) -> Iterator[str]:
    """The ids of the direct uploads of ``storage`` that are not attached yet (see :mod:`depot.uploads`)."""
    try:
        for file_id, _ in storage._pending_list():
            yield file_id
    except NotImplementedError:
        return  # a storage without direct uploads


def _storage(lookup: StorageLookup, name: str) -> FileStorage:
    storage = lookup.get(name)
    assert storage is not None, name  # checked by _storages_to_list
    return storage


def _references(
    sources: Sequence[Source], lookup: StorageLookup, report: Report, emit: ProblemHandler,
) -> Iterator[Tuple[str, str, Any]]:
    """``(storage, id, location)`` for every path of every value; unreadable values are reported.

    ``storage`` is the real name (an alias followed, as reading the file
    does), so that the file listed under that name counts as referenced; a
    name that resolves to nothing is kept as written (reported missing).
    """
    real: Dict[str, str] = {}
    for source in sources:
        for location, raw in source.values():
            report.values += 1
            try:
                paths = referenced_paths(_decode(raw))
            except ValueError as exc:
                report.unreadable += 1
                emit(Problem(UNREADABLE, None, None, (location,), detail=str(exc)))
                continue
            for path in paths:
                storage, _, file_id = path.partition("/")
                if storage not in real:
                    if len(real) > 1000:  # a corrupt table could name countless storages
                        real.clear()
                    real[storage] = lookup.resolve(storage) or storage
                yield real[storage], file_id, location


def _find_missing(index: Index, lookup: StorageLookup, report: Report, emit: ProblemHandler) -> None:
    for storage_name, file_id, locations in index.unlisted_refs(report.storages):
        real = lookup.resolve(storage_name)
        storage = lookup.get(real) if real else None
        if storage is None:
            detail = "storage %r is not configured" % storage_name
        else:
            # Also asked for a listed storage: the file may have been stored after the listing.
            try:
                if storage.exists(file_id):
                    continue
            except ValueError as exc:
                detail = "not a valid file id (%s)" % exc
            else:
                detail = "no such file"
        report.missing += 1
        emit(Problem(MISSING, storage_name, file_id, tuple(locations), detail=detail))


def _find_orphans(
    index: Index, lookup: StorageLookup, report: Report, emit: ProblemHandler,
    delete: bool, grace: datetime.timedelta, listed_at: datetime.datetime,
) -> None:
    for storage_name, file_id in index.unreferenced():
        try:
            with _storage(lookup, storage_name).get(file_id) as stored:
                modified = stored.last_modified
        except IOError:
            continue  # deleted since the listing: nothing to report
        age = None if modified is None else (listed_at - _naive_utc(modified)).total_seconds()
        report.orphans += 1
        if age is not None and age < grace.total_seconds():
            report.young_orphans += 1
            action = "kept_young"
        elif not delete:
            action = "reported"
        elif age is None:
            report.kept += 1
            action = "kept_unknown_age"
        else:
            index.add_candidate(storage_name, file_id)
            continue  # reported once its fate is known
        emit(Problem(ORPHAN, storage_name, file_id, action=action, last_modified=modified, age_seconds=age))


def _naive_utc(moment: datetime.datetime) -> datetime.datetime:
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return moment


def _delete_candidates(
    index: Index, sources: Sequence[Source], lookup: StorageLookup, report: Report, emit: ProblemHandler,
    grace: datetime.timedelta,
) -> None:
    # Storage name -> why nothing is deleted there.
    refused: Dict[str, str] = {}
    if report.unreadable:
        refused = dict.fromkeys(report.storages, "%d unreadable value(s) may reference any file" % report.unreadable)
    else:
        unused = [name for name in report.storages if index.has_stored(name) and not index.has_referenced(name)]
        if unused:
            refused = dict.fromkeys(unused, "no row references any file of %s: is this the right database?" % (
                ", ".join(unused)))
        # The second scan: anything referenced now is no candidate any more.
        seen = set(index.referenced_storages())
        for refs in batches(_references(sources, lookup, Report(), lambda problem: None)):
            seen.update(storage for storage, _, _ in refs)
            for storage, file_id in _rescued(index, refs):
                report.rescued += 1
                emit(Problem(ORPHAN, storage, file_id, action="kept_referenced"))
        for name, reason in _shared_places(lookup, report.storages, seen).items():
            refused.setdefault(name, reason)
    if refused:
        report.deletion_refused = "; ".join(dict.fromkeys(refused.values()))
    while True:
        page = index.candidates()
        if not page:
            return
        for storage_name, file_id in page:
            if storage_name in refused:
                report.kept += 1
                emit(Problem(ORPHAN, storage_name, file_id, action="reported", detail=refused[storage_name]))
                continue
            _delete_one(lookup, storage_name, file_id, report, emit, grace)


def _shared_places(lookup: StorageLookup, listed: Sequence[str], referenced: Iterable[str]) -> Dict[str, str]:
    """The listed storages whose files another storage name in play can also reach, with the reason."""
    places = {}
    for name in dict.fromkeys([*listed, *referenced]):
        storage = lookup.get(name)
        if storage is not None:
            places[name] = place(storage)
    shared: Dict[str, str] = {}
    for name in listed:
        for other, where in places.items():
            if other != name and overlap(places[name], where):
                shared[name] = (
                    "storages %s and %s share their files (%s): a file referenced as %s/<id> would look "
                    "like an orphan of %s; make one an alias of the other" % (
                        name, other, describe(places[name]), other, name))
                break
    return shared


def _rescued(index: Index, refs: List[Tuple[str, str, Any]]) -> List[Tuple[str, str]]:
    return index.rescue(dict.fromkeys((storage, file_id) for storage, file_id, _ in refs))


def _delete_one(
    lookup: StorageLookup, storage_name: str, file_id: str, report: Report, emit: ProblemHandler,
    grace: datetime.timedelta,
) -> None:
    storage = _storage(lookup, storage_name)
    try:
        with storage.get(file_id) as stored:
            modified = stored.last_modified
        age = None if modified is None else (_utcnow() - _naive_utc(modified)).total_seconds()
        if age is None or age < grace.total_seconds():
            # Replaced since it was chosen (same id, new content): not the file judged an orphan.
            report.young_orphans += 1
            emit(Problem(ORPHAN, storage_name, file_id, action="kept_young", last_modified=modified, age_seconds=age))
            return
        storage.delete(file_id)
    except IOError:
        return  # already gone
    except Exception as exc:
        report.delete_failed += 1
        emit(Problem(ORPHAN, storage_name, file_id, action="delete_failed", detail="%s: %s" % (
            type(exc).__name__, exc)))
        return
    report.deleted += 1
    emit(Problem(ORPHAN, storage_name, file_id, action="deleted", last_modified=modified, age_seconds=age))
