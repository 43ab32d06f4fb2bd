"""A storage in MongoDB GridFS, compatible with the layout filedepot 0.12 writes.

Each file is a standard GridFS file: a document in ``<collection>.files``
whose ``_id`` is the file id, with ``filename``, ``contentType``, ``length``,
``chunkSize``, ``uploadDate`` and depot's extra ``last_modified``; its bytes
are the ``<collection>.chunks`` documents with that ``files_id``.  Any GridFS
tool (and filedepot) reads what this storage writes, and this storage reads
files other tools wrote.

Ids.  :meth:`GridFSStorage.create` gives out ObjectIds (24 hex characters,
stored as an ObjectId ``_id``, as filedepot does).  So that a migration from
another storage keeps its ids, a canonical UUID string (the ids of local
disk, memory, S3 and GCS) is accepted too and stored as a string ``_id``; such
files only appear through the backup form of replace, ``replace(f, f)``.

Content moves in chunks both ways, so memory stays bounded by a few chunks
whatever the file size.

Replacing without a window.  GridFS cannot change a file in one operation, so
:meth:`GridFSStorage.replace` works in steps that readers can follow:

1. the new chunks are written under a fresh id ``T`` and tagged ``_depot_gen: T``
   (a failure here deletes them and leaves the file untouched);
2. one atomic update of the files document records ``_depot_replacing:
   {gen: T, doc: <new files document>}``: from this point readers see the new
   version, and everything needed to finish the swap is in the database;
3. the old chunks are deleted, the new ones moved under the file's id, and the
   files document replaced by the new one (which keeps ``_depot_gen: T``).

The backup form, for an id not stored yet, inserts in step 2 the new files
document carrying that same swap record, then goes on with step 3.

Step 3 is idempotent: a writer that finds a swap left unfinished for a minute
(a crashed process) completes it before starting its own.  Chunks of uploads
that died before step 2 belong to no file; :meth:`GridFSStorage.collect_garbage`
removes them once their generation is old enough, whatever the kind of id they
sit under.  Readers check the generation tag of every chunk against the version
they started with, so they never mix two versions: a read that has not
delivered anything yet restarts on the new version; one caught halfway raises
:class:`IOError`.
"""
from __future__ import annotations

import contextlib
import datetime
import functools
import re
import time
import uuid
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, TypeVar

from depot._optional import require
from depot.io import checksums, utils
from depot.io.interfaces import ClosableStoredFile, FileStorage, StoredFacts
from depot.io.interfaces import StoredFile  # noqa: F401 - a name filedepot 0.12 had here
from depot.io.utils import DEFAULT_CHUNK_SIZE, check_chunk, check_uuid, limit_chunks
from depot.utils import asint

pymongo = require("pymongo", "gridfs", "depot.io.gridfs.GridFSStorage")
gridfs = require("gridfs", "gridfs", "depot.io.gridfs.GridFSStorage")
bson = require("bson", "gridfs", "depot.io.gridfs.GridFSStorage")
from pymongo.errors import ConnectionFailure, DuplicateKeyError  # noqa: E402

__all__ = ["GridFSStoredFile", "GridFSStorage"]

ObjectId = bson.ObjectId

#: GridFS's own default chunk size (255 KiB, so a chunk document stays under 256 KiB).
GRIDFS_CHUNK_SIZE = 255 * 1024
#: Bytes of chunks sent in one insert or fetched in one cursor batch: large
#: enough to amortise round trips, small enough to keep memory flat.
BATCH_BYTES = 4 * 1024 * 1024
#: Database used when the URI names none (filedepot 0.12 refused such URIs).
DEFAULT_DATABASE = "filedepot"
#: An unfinished swap older than this is taken over by the next writer.
STALE_SWAP_SECONDS = 60.0
#: How long a replace waits for another writer's swap of the same file.
SWAP_WAIT_SECONDS = 30.0
#: How many times a read that has delivered nothing restarts on a newer version.
READ_RESTARTS = 20

#: Markers of direct uploads fetched per round trip when they are listed.
_PENDING_PAGE = 1000
_GEN = "_depot_gen"
_PENDING = "_depot_replacing"

F = TypeVar("F", bound=Callable[..., Any])


def _check_file_id(file_id: Any) -> Any:
    """The ``_id`` of ``file_id``: an ObjectId for 24 hex characters or 12 raw bytes, the string for a UUID.

    Only the canonical UUID form (lowercase, hyphenated, as storages give
    out) is taken: the other spellings :func:`~depot.io.utils.check_uuid`
    allows would be other ``_id`` strings for the same UUID.  Anything else
    raises ``ValueError('Invalid file id ...')``.
    """
    if isinstance(file_id, ObjectId):
        return file_id
    if isinstance(file_id, bytes) and len(file_id) == 12:
        # The binary form of an ObjectId, which filedepot's ObjectId(file_id) check took too.
        return ObjectId(file_id)
    if isinstance(file_id, str):
        if len(file_id) == 24:
            try:
                return ObjectId(file_id)
            except bson.errors.InvalidId:
                pass
        elif len(file_id) == 36:
            try:
                check_uuid(file_id)
                if str(uuid.UUID(file_id)) == file_id:
                    return file_id
            except ValueError:
                pass
    raise ValueError("Invalid file id %s" % (file_id,))


def _redact(uri: str) -> str:
    """``uri`` with any password replaced, fit for error messages and logs."""
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", uri)


class _Superseded(Exception):
    """The version being read is no longer (fully) stored: the file was replaced or deleted."""


class _Version:
    """One stored version of a file, as resolved from its files document.

    During a swap (step 2 above) the version is the pending one, whose chunks
    are found under either the temporary id or the file's id.
    """

    def __init__(self, file_id: Any, files_doc: Dict[str, Any]) -> None:
        pending = files_doc.get(_PENDING)
        if pending:
            self.doc: Dict[str, Any] = pending["doc"]
            self.sources = [file_id, pending["gen"]]
        else:
            self.doc = files_doc
            self.sources = [file_id]
        self.file_id = file_id
        self.gen = self.doc.get(_GEN)
        self.length = int(self.doc.get("length") or 0)
        self.chunk_size = int(self.doc.get("chunkSize") or GRIDFS_CHUNK_SIZE)
        self.chunk_count = -(-self.length // self.chunk_size)

    @property
    def token(self) -> str:
        """Unique per write: the generation, or for files not replaced by depot id and upload time."""
        uploaded = self.doc.get("uploadDate")
        stamp = 0
        if isinstance(uploaded, datetime.datetime):
            # pymongo hands back naive UTC datetimes: never let the local zone in.
            stamp = int(uploaded.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)
        return "%s-%x-%x" % (self.gen or self.file_id, stamp, self.length)

    def expected_size(self, n: int) -> int:
        return self.chunk_size if n < self.chunk_count - 1 else self.length - n * self.chunk_size

    def iter_chunks(self, chunks: Any, first: int) -> Iterator[bytes]:
        """Yield the data of chunks ``first``, ``first + 1``... of this version.

        Raises :class:`_Superseded` when a chunk of this version is not found
        (the file was replaced or deleted meanwhile).
        """
        n = first
        if len(self.sources) == 1:
            query: Dict[str, Any] = {"files_id": self.file_id}
            patience = 1
        else:
            # Mid-swap the old chunks may still be there: leave them on the server.
            query = {"files_id": {"$in": self.sources}, _GEN: self.gen}
            # A chunk moving between the two sources can escape one query.
            patience = 2
        batch = max(1, BATCH_BYTES // self.chunk_size)
        misses = 0
        while n < self.chunk_count:
            # No projection and no bound on n unless needed: both cost the
            # server more than the few bytes they save.
            if n:
                query["n"] = {"$gte": n}
            found = False
            cursor = chunks.find(query).sort("n", 1).batch_size(batch)
            try:
                for chunk in cursor:
                    if chunk.get(_GEN) != self.gen or chunk["n"] < n:
                        continue  # another version's chunk, or one seen twice as it moved
                    if chunk["n"] != n:
                        break  # a gap: chunk n is moving or gone, ask again
                    data = chunk["data"]
                    if len(data) != self.expected_size(n):
                        # Rewritten by a tool that does not tag chunks, or corrupt:
                        # the caller tells them apart by looking at the files document.
                        raise _Superseded(n)
                    found = True
                    n += 1
                    yield data
                    if n == self.chunk_count:
                        break
            finally:
                cursor.close()
            misses = 0 if found else misses + 1
            if misses == patience:
                raise _Superseded(n)


@contextlib.contextmanager
def _naming_uri(storage: Optional["GridFSStorage"]) -> Iterator[None]:
    """Re-raise connection failures with the storage's (redacted) URI in the message.

    The exception keeps its pymongo class, so callers catching pymongo errors
    still do; it is never turned into IOError, which means "missing file".
    """
    try:
        yield
    except ConnectionFailure as exc:
        if storage is None:  # a file built from a GridOut (filedepot's form) knows no URI
            raise
        message = "GridFSStorage cannot reach MongoDB at %s: %s" % (storage._uri_for_errors, exc)
        try:
            error = type(exc)(message)
        except Exception:  # pragma: no cover - an exception class with another signature
            raise exc from None
        raise error from exc


def _server_errors(method: F) -> F:
    """Decorate a method of the storage or of a stored file with :func:`_naming_uri`."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _naming_uri(getattr(self, "_storage", self)):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _gridout_doc(gridout: Any) -> Dict[str, Any]:
    """The files document fields a :class:`gridfs.GridOut` exposes (unknown ones through ``__getattr__``)."""
    return {
        "_id": gridout._id,
        "filename": gridout.filename,
        "contentType": getattr(gridout, "contentType", None),
        "length": gridout.length,
        "chunkSize": gridout.chunk_size,
        "uploadDate": gridout.upload_date,
        "last_modified": getattr(gridout, "last_modified", None),
    }


class GridFSStoredFile(ClosableStoredFile):
    """A file of :class:`GridFSStorage`; chunks are fetched as they are read.

    A handle obtained before a replace reads the new content, as in
    filedepot: the version seen by :meth:`GridFSStorage.get` is read if it is
    still stored, otherwise the current one.

    filedepot 0.12's form ``GridFSStoredFile(file_id, gridout)`` (or with
    ``gridout=`` by keyword) is accepted too: such a file reads through the
    given :class:`gridfs.GridOut`, as 0.12 did.
    """

    def __init__(
        self,
        storage: Any = None,
        file_id: Any = None,
        files_doc: Optional[Dict[str, Any]] = None,
        gridout: Any = None,
    ) -> None:
        if gridout is None and files_doc is None and not isinstance(storage, GridFSStorage):
            storage, file_id, gridout = None, storage, file_id  # GridFSStoredFile(file_id, gridout)
        elif gridout is not None and file_id is None:
            storage, file_id = None, storage  # GridFSStoredFile(file_id, gridout=gridout)
        if gridout is not None:
            files_doc = _gridout_doc(gridout)
        elif files_doc is None:
            raise TypeError("GridFSStoredFile needs (storage, file_id, files_doc) or (file_id, gridout)")
        self._storage = storage
        self._gridout = gridout
        self._oid = files_doc["_id"]
        super().__init__(str(file_id))
        self._describe(_Version(self._oid, files_doc))
        # Set by real_file(): reads then keep to self._version, never follow a newer one.
        self._pinned = False
        self._stream: Optional[Iterator[bytes]] = None
        self._pending = b""

    def _describe(self, version: _Version) -> None:
        """Take ``version`` as the one this handle reads and reports the facts of."""
        doc = version.doc
        self.filename = doc.get("filename")
        self.content_type = doc.get("contentType")
        self.last_modified = utils.parse_timestamp(doc.get("last_modified"))
        self.content_length = version.length
        # Absent from files written by filedepot 0.12 and depot before checksums: None.
        self.checksum = checksums.readable(doc.get("checksum"))
        self._version = version

    closed_message = "cannot read from a closed file"

    @property
    def version(self) -> str:
        return self._version.token

    @_server_errors
    def real_file(self) -> None:
        """``None`` (no OS file), but the version read from now on is chosen here, as local files choose it.

        The serving core opens content with this call and then checks the
        facts: a replace since :meth:`GridFSStorage.get` shows now (the
        facts become the current version's), before any header is sent,
        instead of as a silent restart at the first read.  From then on
        reads keep to that version: one replaced again raises
        :class:`IOError`.  The price is one lookup of the files document.
        """
        self._check_open()
        # A stream already started has chosen its version; a GridOut reads its own.
        if self._storage is not None and self._stream is None and not self._pinned:
            latest = self._storage._resolve(self._oid)
            if latest.token != self._version.token:
                self._describe(latest)
            self._pinned = True
        return None

    @_server_errors
    def read(self, n: int = -1) -> bytes:
        self._check_open()
        if self._stream is None:
            self._stream = self._chunks_from(0)
        if n is None or n < 0:
            parts = [self._pending]
            parts.extend(self._stream)
            self._pending = b""
            return b"".join(parts)
        parts = []
        while n > 0:
            if not self._pending:
                self._pending = next(self._stream, b"")
                if not self._pending:
                    break
            piece = self._pending[:n]
            self._pending = self._pending[len(piece):]
            parts.append(piece)
            n -= len(piece)
        return b"".join(parts)

    def _chunks_from(self, start: int) -> Iterator[bytes]:
        """The content from offset ``start``, as a closable iterator of chunks."""
        if self._gridout is None:
            return self._storage._stream(self._oid, start, self._version, 0 if self._pinned else READ_RESTARTS)
        return self._gridout_chunks(start)

    def _gridout_chunks(self, start: int) -> Iterator[bytes]:
        self._gridout.seek(start)
        while True:
            data = self._gridout.readchunk()
            if not data:
                return
            yield data

    def close(self, *args: Any, **kwargs: Any) -> None:
        super().close()
        self._pending = b""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()  # type: ignore[attr-defined]
        if self._gridout is not None:
            self._gridout.close()

    def iter_range(
        self, start: int = 0, stop: Optional[int] = None, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> Iterator[bytes]:
        """Yield bytes ``[start, stop)``, fetching only the chunks that hold them."""
        self._check_open()
        remaining = None if stop is None else stop - start
        if remaining is not None and remaining <= 0:
            return
        stream = self._chunks_from(start)
        with _naming_uri(self._storage):
            yield from self._sliced(stream, remaining, chunk_size)

    @staticmethod
    def _sliced(stream: Iterator[bytes], remaining: Optional[int], chunk_size: int) -> Iterator[bytes]:
        try:
            yield from limit_chunks(stream, remaining, chunk_size)
        finally:
            stream.close()  # type: ignore[attr-defined]


class GridFSStorage(FileStorage):
    """Files stored in GridFS in the MongoDB database named by ``mongouri``.

    ``collection`` is the GridFS bucket: files live in ``<collection>.files``
    and ``<collection>.chunks``.  When the URI names no database,
    ``database`` (by default ``'filedepot'``) is used.  ``chunk_size`` sets
    the chunk size of new files (GridFS's 255 KiB by default).

    Nothing is sent to the server until the first operation; if the server
    cannot be reached within pymongo's server-selection timeout (30 s, or
    ``serverSelectionTimeoutMS`` in the URI) the operation raises pymongo's
    error with the URI in its message.
    """

    #: Also gives the ``_id`` the file is stored under (see :meth:`_oid`).
    _check_file_id = staticmethod(_check_file_id)

    def __init__(
        self,
        mongouri: str,
        collection: str = "filedepot",
        database: Optional[str] = None,
        chunk_size: Any = None,
        checksum: Any = checksums.DEFAULT_ALGORITHM,
    ) -> None:
        self._set_checksum(checksum)
        self._uri_for_errors = _redact(mongouri)
        self._cli = pymongo.MongoClient(mongouri)
        self._db = self._cli.get_default_database(database or DEFAULT_DATABASE)
        self._collection = collection
        self._files = self._db[collection + ".files"]
        self._chunks = self._db[collection + ".chunks"]
        # Markers of direct uploads: a collection of their own, which no
        # GridFS tool reads as files and collect_garbage() never looks at.
        self._pending = self._db[collection + ".depot_pending"]
        self._chunk_size = asint(chunk_size) if chunk_size is not None else GRIDFS_CHUNK_SIZE
        if self._chunk_size <= 0:
            raise ValueError("GridFSStorage chunk_size must be positive, got %r" % (chunk_size,))
        self._indexed = False

    def __repr__(self) -> str:
        return "<GridFSStorage %s %s>" % (self._uri_for_errors, self._collection)

    @functools.cached_property
    def _gridfs(self) -> Any:
        """filedepot 0.12's :class:`gridfs.GridFS` of the bucket, for code that reaches into it.

        depot itself reads and writes the two collections directly (see the
        module documentation), so it is built only when asked for.
        """
        return gridfs.GridFS(self._db, collection=self._collection)

    # -- reading ---------------------------------------------------------------

    def _oid(self, file_or_id: Any) -> Any:
        """The ``_id`` of ``file_or_id``, its id checked (:meth:`FileStorage._checked_id` with the key kept)."""
        return _check_file_id(self.fileid(file_or_id))

    @_server_errors
    def get(self, file_or_id: Any) -> GridFSStoredFile:
        oid = self._oid(file_or_id)
        doc = self._files.find_one({"_id": oid})
        if doc is None:
            raise utils.missing_file(oid)
        return GridFSStoredFile(self, str(oid), doc)

    def _resolve(self, oid: Any) -> _Version:
        doc = self._files.find_one({"_id": oid})
        if doc is None:
            raise utils.missing_file(oid)
        return _Version(oid, doc)

    def _stream(
        self, oid: Any, start: int, version: Optional[_Version] = None, restarts_allowed: int = READ_RESTARTS
    ) -> Iterator[bytes]:
        """Yield the bytes of ``version`` (by default the current one) from offset ``start``.

        If that version is gone before anything was yielded, the stream
        restarts on the current version (up to ``restarts_allowed`` times):
        a handle whose file was replaced after :meth:`get` reads the new
        content, without paying a lookup of the files document when it was
        not.  Once bytes were yielded it raises :class:`IOError` rather than
        mix versions.
        """
        if version is None:
            version = self._resolve(oid)
        pos = start
        restarts = 0
        while True:
            first, skip = divmod(pos, version.chunk_size)
            try:
                for data in version.iter_chunks(self._chunks, first):
                    if skip:
                        data, skip = data[skip:], 0
                    pos += len(data)
                    yield data
                return
            except _Superseded:
                latest = self._resolve(oid)
                if latest.token == version.token:
                    raise gridfs.errors.CorruptGridFile(
                        "file %s has a missing or truncated chunk %d" % (oid, pos // version.chunk_size)
                    ) from None
                if pos != start or restarts >= restarts_allowed:
                    raise IOError("File %s was replaced while it was being read" % oid) from None
                version = latest
                restarts += 1

    @_server_errors
    def exists(self, file_or_id: Any) -> bool:
        oid = self._oid(file_or_id)
        return self._files.find_one({"_id": oid}, {"_id": 1}) is not None

    @_server_errors
    def list(self) -> List[str]:
        """Every file id in the bucket, one per file (files without a filename too)."""
        return [str(doc["_id"]) for doc in self._files.find({}, {"_id": 1})]

    # -- writing ---------------------------------------------------------------

    def _ensure_indexes(self) -> None:
        # The indexes GridFS drivers expect; (files_id, n) must be unique so
        # that two writers can never interleave chunks of one file.
        if self._indexed:
            return
        for collection, keys, unique in (
            (self._files, [("filename", 1), ("uploadDate", 1)], False),
            (self._chunks, [("files_id", 1), ("n", 1)], True),
        ):
            existing = [list(index["key"].items()) for index in collection.list_indexes()]
            if keys not in existing:
                collection.create_index(keys, unique=unique)
        self._indexed = True

    def _write_chunks(
        self, files_id: Any, content: Any, gen: Any = None, hasher: Any = None, file_id: Any = None
    ) -> int:
        """Store ``content`` as chunks of ``files_id``; returns its length.

        ``hasher`` is fed each chunk as it is cut, and the chunks are then
        checked (:meth:`_check_stored`; ``file_id`` names the file in its
        error).  On any failure, the chunks already written are deleted.
        """
        size = self._chunk_size
        per_batch = max(1, BATCH_BYTES // size)
        batch: List[Dict[str, Any]] = []
        n = length = inserts = 0
        try:
            for data in _chunks_of(content, size):
                if hasher is not None:
                    hasher.update(data)
                doc = {"files_id": files_id, "n": n, "data": data}
                if gen is not None:
                    doc[_GEN] = gen
                batch.append(doc)
                n += 1
                length += len(data)
                if len(batch) == per_batch:
                    self._chunks.insert_many(batch)
                    inserts += 1
                    batch = []
            if batch:
                self._chunks.insert_many(batch)
                inserts += 1
            # One acknowledged insert stored every chunk or raised: the check
            # is for what arrives in several, or unacknowledged (w=0).
            if hasher is not None and (inserts > 1 or not self._chunks.write_concern.acknowledged):
                self._check_stored(files_id, n, length, files_id if file_id is None else file_id)
        except BaseException:
            try:
                self._chunks.delete_many({"files_id": files_id})
            except Exception:  # noqa: BLE001 - the original error is the one to report
                pass
            raise
        return length

    def _check_stored(self, files_id: Any, count: int, length: int, file_id: Any) -> None:
        """Raise :class:`~depot.io.checksums.ChecksumMismatch` unless the server holds what was sent.

        Run before the files document makes the chunks visible, for content
        sent in several inserts (above ``BATCH_BYTES``) or without
        acknowledgement: the server counts what it stored (one aggregation
        over the chunks just written, without sending them back), so a
        chunk lost or cut on the way is not published under a checksum of
        bytes the server does not hold.  A byte changed in place keeps the
        size: ``depot verify`` finds those.
        """
        found = list(self._chunks.aggregate([
            {"$match": {"files_id": files_id}},
            {"$group": {"_id": None, "count": {"$sum": 1}, "bytes": {"$sum": {"$binarySize": "$data"}}}},
        ]))
        stored_count, stored_bytes = (found[0]["count"], found[0]["bytes"]) if found else (0, 0)
        if (stored_count, stored_bytes) != (count, length):
            raise checksums.ChecksumMismatch(
                "%r: file %s not stored: %d chunks of %d bytes were sent (and checksummed) but the "
                "server holds %d chunks of %d bytes" % (self, file_id, count, length, stored_count, stored_bytes)
            )

    def _files_doc(
        self, length: int, filename: str, content_type: str, gen: Any = None, hasher: Any = None
    ) -> Dict[str, Any]:
        doc: Dict[str, Any] = {
            "filename": filename,
            "contentType": content_type,
            "chunkSize": self._chunk_size,
            "length": bson.Int64(length),
            # GridFS stores milliseconds; truncating here keeps version tokens stable.
            "uploadDate": _now_ms(),
            "last_modified": utils.timestamp(),
        }
        if gen is not None:
            doc[_GEN] = gen
        if hasher is not None:
            doc["checksum"] = hasher.result()
        return doc

    def create(self, content: Any, filename: Optional[str] = None, content_type: Optional[str] = None) -> str:
        return self._create(content, filename, content_type)[0]

    def create_with_facts(
        self, content: Any, filename: Optional[str] = None, content_type: Optional[str] = None
    ) -> StoredFacts:
        if not self._reports_own_facts(GridFSStorage, ("_create",)):
            return super().create_with_facts(content, filename, content_type)
        file_id, doc = self._create(content, filename, content_type)
        return StoredFacts.of(GridFSStoredFile(self, file_id, doc))

    def _write_version(self, gen: Any, content: Any, filename: Optional[str],
                       content_type: Optional[str]) -> Dict[str, Any]:
        """Write ``content`` as chunks of ``gen`` (tagged with it); the files document to publish them with."""
        content, filename, content_type = self._content_info(content, filename, content_type)
        self._ensure_indexes()
        hasher = self._new_hasher()
        length = self._write_chunks(gen, content, gen, hasher)
        return self._files_doc(length, filename, content_type, gen, hasher)

    @_server_errors
    def _create(self, content: Any, filename: Optional[str], content_type: Optional[str]) -> Tuple[str, Dict[str, Any]]:
        """Store a new file; ``(file id, files document)``."""
        oid = ObjectId()
        # Tagged with a generation like replaced files, so that a handle can
        # tell its version from one rewritten by a tool that does not tag.
        doc = self._write_version(oid, content, filename, content_type)
        doc["_id"] = oid
        try:
            self._files.insert_one(doc)
        except BaseException:
            self._chunks.delete_many({"files_id": oid})
            raise
        return str(oid), doc

    @_server_errors
    def replace(
        self, file_or_id: Any, content: Any, filename: Optional[str] = None, content_type: Optional[str] = None
    ) -> str:
        file_id, content, filename, content_type = self._prepare_replace(
            file_or_id, content, filename, content_type
        )
        self._ensure_indexes()
        oid = _check_file_id(file_id)
        gen = ObjectId()
        hasher = self._new_hasher()
        length = self._write_chunks(gen, content, gen, hasher, oid)
        try:
            self._publish(oid, {"gen": gen, "doc": self._files_doc(length, filename, content_type, gen, hasher)})
        except BaseException:
            # Still ours unless the swap was recorded: then the next writer finishes it.
            doc = self._files.find_one({"_id": oid, _PENDING + ".gen": gen}, {"_id": 1})
            if doc is None:
                self._chunks.delete_many({"files_id": gen})
            raise
        return str(oid)

    def _publish(self, oid: Any, swap: Dict[str, Any]) -> None:
        """Make ``swap`` (new generation and files document) the content of ``oid``."""
        deadline = time.monotonic() + SWAP_WAIT_SECONDS
        while True:
            swap["since"] = _now_ms()
            claimed = self._files.find_one_and_update(
                {"_id": oid, _PENDING: {"$exists": False}}, {"$set": {_PENDING: swap}}, {"_id": 1}
            )
            if claimed is not None:
                self._finish_swap(oid, swap)
                return
            current = self._files.find_one({"_id": oid}, {_PENDING: 1})
            if current is None:
                # The backup form (the id is new here), or a file deleted meanwhile.
                if self._insert_swapped(oid, swap):
                    return
                continue
            other = current.get(_PENDING)
            if other and _age(other.get("since")) > STALE_SWAP_SECONDS:
                self._finish_swap(oid, other)
            elif time.monotonic() > deadline:
                raise IOError("File %s is being replaced by another writer" % oid)
            else:
                time.sleep(0.01)

    def _move_chunks(self, oid: Any, gen: Any) -> None:
        self._chunks.delete_many({"files_id": oid, _GEN: {"$ne": gen}})
        self._chunks.update_many({"files_id": gen}, {"$set": {"files_id": oid}})

    def _finish_swap(self, oid: Any, swap: Dict[str, Any]) -> None:
        """Step 3 of a replace; safe to run again, by anyone, on an unfinished swap."""
        gen = swap["gen"]
        self._move_chunks(oid, gen)
        doc = dict(swap["doc"], _id=oid)
        replaced = self._files.replace_one({"_id": oid, _PENDING + ".gen": gen}, doc)
        if replaced.matched_count == 0 and self._files.find_one({"_id": oid}, {"_id": 1}) is None:
            self._chunks.delete_many({"files_id": oid})  # deleted meanwhile: drop what we moved

    def _insert_swapped(self, oid: Any, swap: Dict[str, Any]) -> bool:
        """Publish ``swap`` as the new file ``oid``; False if another writer created it first."""
        # The files document goes in before any chunk moves, with the swap
        # recorded as in step 2: the unique _id settles a race between two
        # writers of the same new id before either touches the other's chunks,
        # and a crash from here on leaves a swap that readers follow and the
        # next writer finishes.
        try:
            self._files.insert_one(dict(swap["doc"], _id=oid, **{_PENDING: swap}))
        except DuplicateKeyError:
            return False
        self._finish_swap(oid, swap)
        return True

    @_server_errors
    def delete(self, file_or_id: Any) -> None:
        oid = self._oid(file_or_id)
        # The files document goes first: from then on readers get IOError, not partial data.
        doc = self._files.find_one_and_delete({"_id": oid}, {_PENDING: 1})
        pending = (doc or {}).get(_PENDING)
        if pending:
            self._chunks.delete_many({"files_id": pending["gen"]})
        self._chunks.delete_many({"files_id": oid})

    # -- direct uploads ----------------------------------------------------------

    def _new_upload_id(self) -> str:
        return str(ObjectId())

    @_server_errors
    def _pending_put(self, file_id: str, data: bytes) -> None:
        oid = _check_file_id(file_id)
        self._pending.update_one(
            {"_id": oid},
            {"$set": {"data": bson.Binary(bytes(data))}, "$setOnInsert": {"created": _now_ms()}},
            upsert=True,
        )

    @_server_errors
    def _pending_get(self, file_id: str) -> Optional[bytes]:
        doc = self._pending.find_one({"_id": _check_file_id(file_id)}, {"data": 1})
        return None if doc is None else bytes(doc["data"])

    @_server_errors
    def _pending_delete(self, file_id: str) -> None:
        self._pending.delete_one({"_id": _check_file_id(file_id)})

    @_server_errors
    def _pending_claim(self, file_id: str, claimed: bytes) -> bool:
        # One update with the "not claimed yet" test in its filter: atomic.
        found = self._pending.update_one(
            {"_id": _check_file_id(file_id), "claimed": {"$ne": True}},
            {"$set": {"data": bson.Binary(bytes(claimed)), "claimed": True}},
        )
        return found.modified_count == 1

    def _pending_list(self) -> Iterator[Tuple[str, float]]:
        # A cursor, fetched a page at a time, in _id order: an index scan, so
        # markers claimed (updated) or removed while it runs, as gc does,
        # never make it repeat or skip the others.
        with _naming_uri(self):
            cursor = self._pending.find({}, {"created": 1}, batch_size=_PENDING_PAGE).sort("_id", 1)
            with cursor:
                for doc in cursor:
                    created = doc.get("created")
                    # Without a known age, the oldest.
                    when = 0.0
                    if isinstance(created, datetime.datetime):
                        when = created.replace(tzinfo=datetime.timezone.utc).timestamp()
                    yield str(doc["_id"]), when

    @_server_errors
    def _store_at(self, file_id: str, content: Any, filename: Optional[str] = None,
                  content_type: Optional[str] = None) -> StoredFacts:
        oid = _check_file_id(self.fileid(file_id))
        # The chunks go under a generation of their own, then the files
        # document claims the id as a swap does: the unique _id refuses an
        # existing file before any of its chunks is touched.
        gen = ObjectId()
        doc = self._write_version(gen, content, filename, content_type)
        try:
            inserted = self._insert_swapped(oid, {"gen": gen, "doc": doc, "since": _now_ms()})
        except BaseException:
            if self._files.find_one({"_id": oid, _PENDING + ".gen": gen}, {"_id": 1}) is None:
                self._chunks.delete_many({"files_id": gen})
            raise
        if not inserted:
            self._chunks.delete_many({"files_id": gen})
            raise FileExistsError("File %s already exists in %r" % (oid, self))
        return StoredFacts.of(GridFSStoredFile(self, str(oid), dict(doc, _id=oid)))

    @_server_errors
    def collect_garbage(self, older_than: float = 3600.0) -> int:
        """Delete chunks that belong to no file and are older than ``older_than`` seconds.

        Such chunks are left by writers that died mid-upload (before the
        files document or the swap record was written) or mid-delete.
        Uploads still in progress are younger than ``older_than`` and are
        left alone.  Returns the number of chunk sets removed.
        """
        owners = set()
        for doc in self._files.find({}, {"_id": 1, _PENDING + ".gen": 1}):
            owners.add(doc["_id"])
            pending = doc.get(_PENDING)
            if pending:
                owners.add(pending.get("gen"))
        cutoff = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=older_than)
        orphans = [
            files_id
            for files_id in self._chunks.distinct("files_id")
            if _hashable(files_id) and files_id not in owners and self._written_before(files_id, cutoff)
        ]
        for start in range(0, len(orphans), 1000):
            self._chunks.delete_many({"files_id": {"$in": orphans[start : start + 1000]}})
        return len(orphans)

    def _written_before(self, files_id: Any, cutoff: datetime.datetime) -> bool:
        """Whether the chunks under ``files_id`` are known to be older than ``cutoff``.

        Their age is the later of the ObjectId files id's and their generation
        tag's: a UUID id tells no time, and a file copied from another GridFS
        keeps an ObjectId that may be years older than its chunks.  Untagged
        chunks under a string id (another tool's) have no known age and are
        kept.
        """
        if isinstance(files_id, ObjectId) and files_id.generation_time >= cutoff:
            return False
        tagged = self._chunks.find_one({"files_id": files_id, _GEN: {"$exists": True}}, {_GEN: 1})
        gen = (tagged or {}).get(_GEN)
        if isinstance(gen, ObjectId):
            return gen.generation_time < cutoff
        return isinstance(files_id, ObjectId)


def _hashable(files_id: Any) -> bool:
    # Another tool may key its files by a document or an array: no age can be
    # told for those, so they are never collected.
    try:
        hash(files_id)
    except TypeError:
        return False
    return True


def _chunks_of(content: Any, size: int) -> Iterator[bytes]:
    """Split bytes or a file object into pieces of exactly ``size`` bytes (the last may be shorter).

    File objects are read piece by piece; short reads (pipes, sockets) are
    topped up, because GridFS requires every chunk but the last to be full.
    """
    if isinstance(content, (bytes, bytearray, memoryview)):
        view = memoryview(content)
        for offset in range(0, len(view), size):
            yield bytes(view[offset : offset + size])
        return
    read = content.read
    while True:
        data = read(size)
        if not data:
            return
        check_chunk(data)
        if len(data) < size:
            parts = [data]
            missing = size - len(data)
            while missing:
                more = read(missing)
                if not more:
                    break
                parts.append(more)
                missing -= len(more)
            data = b"".join(parts)
        yield bytes(data)
        if len(data) < size:
            return


def _now_ms() -> datetime.datetime:
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _age(since: Any) -> float:
    """Seconds elapsed since the (naive UTC, as pymongo returns it) datetime ``since``."""
    if not isinstance(since, datetime.datetime):
        return float("inf")
    if since.tzinfo is None:
        since = since.replace(tzinfo=datetime.timezone.utc)
    return (datetime.datetime.now(datetime.timezone.utc) - since).total_seconds()
