"""The storage contract: :class:`StoredFile` (a file read back) and :class:`FileStorage`."""
from __future__ import annotations

import io
import uuid
from abc import ABCMeta, abstractmethod
from datetime import datetime
from typing import IO, Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

from . import checksums
from .utils import FileIntent  # noqa: F401 - filedepot 0.12 had it here
from .utils import DEFAULT_CHUNK_SIZE, _FileInfo, check_content, check_uuid, missing_file, new_uuid, read_chunks

__all__ = ["StoredFile", "ClosableStoredFile", "FileStorage", "StoredFacts", "OneStepStorage"]


class StoredFile(io.IOBase):
    """A read-only file returned by :meth:`FileStorage.get`.

    Besides the stream API it carries the file's facts as plain attributes:
    ``file_id``, ``filename``, ``content_type``, ``last_modified`` (a naive UTC
    :class:`~datetime.datetime` to the second, or ``None``) and
    ``content_length``.  Content is fetched lazily on the first :meth:`read`.

    ``checksum`` is the checksum computed while the content was written, as
    ``"<algorithm>:<hex digest>"`` (``"crc32c:e3069283"``, ``"sha256:..."``,
    ``"md5:..."``), or ``None`` for files written without one (by filedepot
    0.12, by depot before checksums existed, or with ``checksum=None``).

    :meth:`seekable` answers ``False`` as in filedepot; random access for
    HTTP ranges goes through :meth:`iter_range`, and zero-copy serving through
    :meth:`real_file` and :attr:`local_path`, which backends override when
    they can do better than reading from the start.

    Once :meth:`close` has been called, reads raise :class:`ValueError`
    (:meth:`_check_open` says it with the backend's :attr:`closed_message`);
    :meth:`close` and :attr:`closed` stay abstract as in filedepot 0.12, and
    :class:`ClosableStoredFile` implements them with a flag.
    """

    #: True when :attr:`public_url` is a signed URL that expires: such a URL
    #: must not be cached or handed out as a permanent redirect.
    public_url_signed: bool = False

    #: See the class documentation; a class attribute so that subclasses
    #: written for filedepot 0.12 (which never set it) report ``None``.
    checksum: Optional[str] = None

    #: The :class:`ValueError` message for reads after :meth:`close`
    #: (filedepot's wording differs per backend, and callers may match it).
    closed_message = "I/O operation on closed file"

    def __init__(
        self,
        file_id: str,
        filename: Optional[str] = None,
        content_type: Optional[str] = None,
        last_modified: Optional[datetime] = None,
        content_length: Optional[int] = None,
        checksum: Optional[str] = None,
    ) -> None:
        self.file_id = file_id
        self.filename = filename
        self.content_type = content_type
        self.last_modified = last_modified
        self.content_length = content_length
        self.checksum = checksum

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    @abstractmethod
    def read(self, n: int = -1) -> bytes:  # pragma: no cover - abstract
        """Read up to ``n`` bytes (everything when ``n`` is negative or omitted)."""

    @abstractmethod
    def close(self, *args: Any, **kwargs: Any) -> None:  # pragma: no cover - abstract
        """Release the underlying resources; later reads raise :class:`ValueError`."""

    @property
    @abstractmethod
    def closed(self) -> bool:  # pragma: no cover - abstract
        """Whether :meth:`close` has been called."""

    @property
    def version(self) -> Optional[str]:
        """An opaque string that changes with every write of the file, or ``None``.

        It goes into the ETag.  ``None`` (this default, so subclasses written
        for filedepot 0.12 have it) when the backend cannot tell versions
        apart; the ETag then falls back on the date and length.
        """
        return None

    @property
    def local_path(self) -> Optional[str]:
        """The path of a local file holding the content, or ``None``; known without opening anything.

        For servers that send files themselves (``X-Accel-Redirect``,
        ``X-Sendfile``): they open the path later, so they read the version
        current then.  :meth:`real_file` opens the content now.
        """
        return None

    def _check_open(self) -> None:
        """Raise the :class:`ValueError` of a read after :meth:`close`."""
        if self.closed:
            raise ValueError(self.closed_message)

    @property
    def name(self) -> Optional[str]:
        return self.filename

    @property
    def public_url(self) -> Optional[str]:
        """A URL the browser can fetch the file from directly, or ``None``."""
        return None

    def iter_range(
        self, start: int = 0, stop: Optional[int] = None, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> Iterator[bytes]:
        """Yield the bytes ``[start, stop)`` of the file in chunks of at most ``chunk_size``.

        ``stop`` of ``None`` means the end of the file.  This generic version
        reads from the current position and discards what precedes ``start``;
        backends that can seek or request a byte range override it so that the
        skipped bytes are never transferred.  It is meant for a freshly
        obtained file (position 0).
        """
        skip = start
        while skip > 0:
            chunk = self.read(min(skip, chunk_size))
            if not chunk:
                return
            skip -= len(chunk)
        yield from read_chunks(self.read, None if stop is None else stop - start, chunk_size)

    def real_file(self) -> Optional[IO[bytes]]:
        """A new, open operating-system file holding the content, or ``None``.

        Servers can hand such a file (it has a working ``fileno()``) to
        ``sendfile``.  The caller owns it and must close it.  Only storages
        that keep content on a local file system return one.
        """
        return None

    def __repr__(self) -> str:
        return "<%s:%s filename=%s content_type=%s last_modified=%s>" % (
            self.__class__.__name__,
            self.file_id,
            self.filename,
            self.content_type,
            self.last_modified,
        )


class ClosableStoredFile(StoredFile):
    """A :class:`StoredFile` that keeps its closed state itself, as a flag.

    For backends whose content is not one local stream (object stores,
    GridFS): :meth:`close` sets the flag (subclasses release their
    resources and call it), and every read starts with :meth:`_check_open`.
    """

    _closed = False

    def close(self, *args: Any, **kwargs: Any) -> None:
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed


ContentInfo = Tuple[Any, str, str]


class StoredFacts(NamedTuple):
    """What is known of a file just written: what :meth:`FileStorage.get` would report.

    ``public_url`` is a permanent public URL, or ``None`` when the file has
    none or only a signed, expiring one (which must not be recorded).
    """

    file_id: str
    filename: Optional[str]
    content_type: Optional[str]
    last_modified: Optional[datetime]
    public_url: Optional[str]

    @classmethod
    def of(cls, stored: StoredFile) -> "StoredFacts":
        """The facts of a file read back from its storage."""
        public_url = None if stored.public_url_signed else stored.public_url
        return cls(stored.file_id, stored.filename, stored.content_type, stored.last_modified, public_url)


class FileStorage(metaclass=ABCMeta):
    """A place where files are stored and read back by id.

    Every backend offers the same six operations: :meth:`get`, :meth:`create`,
    :meth:`replace`, :meth:`delete`, :meth:`exists` and :meth:`list`.  Content
    may be ``bytes``, a file object, a FieldStorage-like upload, a
    :class:`~depot.io.utils.FileIntent` or another :class:`StoredFile`.

    :attr:`checksum_algorithm` is the algorithm of the checksum computed
    while each file is written (the ``checksum`` option of every backend:
    ``"crc32c"`` by default, ``"sha256"``, ``"md5"``, or ``None`` for none).
    """

    #: Set by the backends from their ``checksum`` option; the class default
    #: covers subclasses whose ``__init__`` predates the option.
    checksum_algorithm: Optional[str] = checksums.DEFAULT_ALGORITHM

    def _set_checksum(self, checksum: Any) -> None:
        """Validate and keep the ``checksum`` option (at construction: bad options fail early)."""
        self.checksum_algorithm = checksums.check_algorithm(checksum)

    def _new_hasher(self) -> Optional[checksums.Hasher]:
        """A hasher for one write, or ``None`` when checksums are off."""
        return checksums.new_hasher(self.checksum_algorithm)

    @staticmethod
    def fileid(file_or_id: Any) -> str:
        """The id of a :class:`StoredFile` (or anything with ``file_id``), or the id itself.

        A :class:`uuid.UUID` stands for its canonical string, the form ids are stored under.
        """
        file_id = getattr(file_or_id, "file_id", file_or_id)
        return str(file_id) if isinstance(file_id, uuid.UUID) else file_id

    #: Raises ``ValueError('Invalid file id ...')`` for an id this storage
    #: cannot hold (SPEC 2.0: every operation checks before touching the
    #: store).  UUIDs by default, as every filedepot backend but GridFS.
    _check_file_id: Callable[[Any], Any] = staticmethod(check_uuid)

    def _checked_id(self, file_or_id: Any) -> str:
        """The id of ``file_or_id``, checked: :class:`ValueError` at the door for a malformed one."""
        file_id = self.fileid(file_or_id)
        self._check_file_id(file_id)
        return file_id

    def _content_info(
        self, content: Any, filename: Optional[str] = None, content_type: Optional[str] = None, existing: Any = None
    ) -> ContentInfo:
        """:meth:`fileinfo`, with the content checked: :class:`TypeError` for text or non-file content.

        The one place that refuses what no backend can store, before any
        backend starts writing.  A text-mode file object is refused as a
        whole; a file object whose ``read`` turns out to return text is
        refused by the copy helpers (:func:`depot.io.utils.check_chunk`).
        """
        content, filename, content_type = self.fileinfo(content, filename, content_type, existing)
        check_content(content)
        return content, filename, content_type

    @staticmethod
    def fileinfo(
        fileobj: Any,
        filename: Optional[str] = None,
        content_type: Optional[str] = None,
        existing: Any = None,
    ) -> ContentInfo:
        """Resolve ``(content, filename, content_type)`` for ``fileobj``.

        See :class:`depot.io.utils._FileInfo` for the rules.
        """
        return _FileInfo(fileobj, filename, content_type).get_info(existing)

    @abstractmethod
    def get(self, file_or_id: Any) -> StoredFile:  # pragma: no cover - abstract
        """The stored file; :class:`ValueError` for a malformed id, :class:`IOError` if missing."""

    @abstractmethod
    def create(
        self, content: Any, filename: Optional[str] = None, content_type: Optional[str] = None
    ) -> str:  # pragma: no cover - abstract
        """Store ``content`` as a new file and return its new id."""

    @abstractmethod
    def replace(
        self,
        file_or_id: Any,
        content: Any,
        filename: Optional[str] = None,
        content_type: Optional[str] = None,
    ) -> str:  # pragma: no cover - abstract
        """Store ``content`` under an existing id and return the id.

        Without a filename, the existing file's filename and content type are
        kept.  ``other.replace(f, f)`` copies the StoredFile ``f`` of another
        storage under the same id, even if it does not exist here yet.
        """

    @abstractmethod
    def delete(self, file_or_id: Any) -> None:  # pragma: no cover - abstract
        """Remove the file; removing a missing file does nothing."""

    @abstractmethod
    def exists(self, file_or_id: Any) -> bool:  # pragma: no cover - abstract
        """Whether a file with this id is stored."""

    @abstractmethod
    def list(self) -> List[str]:  # pragma: no cover - abstract
        """The ids of the files in the backing store."""

    def create_with_facts(
        self, content: Any, filename: Optional[str] = None, content_type: Optional[str] = None
    ) -> StoredFacts:
        """:meth:`create`, returning the new file's facts rather than only its id.

        This generic version reads the file back (one more request on a
        remote storage); backends that know what they wrote override it.
        """
        return self._read_facts(self.create(content, filename, content_type))

    @classmethod
    def _reports_own_facts(cls, home: type, writers: Tuple[str, ...], delegates: Optional[type] = None) -> bool:
        """Whether the ``create_with_facts`` of ``home`` may return what ``writers`` report.

        The one decision to trust a backend's write result without reading
        the file back.  A subclass that redefines ``create()`` expects every
        new file to go through it, and one that redefines ``get()`` may
        report other facts (a public URL, another clock) than the writers it
        inherits: those get filedepot's create-then-get.  A writer defined
        by ``delegates`` only hands over to another writer and is not counted.
        """
        trusted = _facts_trusted.get(cls)
        if trusted is None:
            getter = _definer(cls, "get")
            savers = {_definer(cls, name) for name in writers} - {delegates}
            trusted = _definer(cls, "create") is home and all(issubclass(saver, getter) for saver in savers)
            _facts_trusted[cls] = trusted
        return trusted

    def _read_facts(self, file_id: str) -> StoredFacts:
        """The facts of a stored file, as :meth:`get` reports them."""
        stored = self.get(file_id)
        try:
            return StoredFacts.of(stored)
        finally:
            stored.close()

    # -- direct uploads (depot.uploads) -----------------------------------------
    #
    # A pending upload has a marker: a small record kept beside the files
    # under the upload's id, never listed by list() nor touched by the
    # garbage collectors of stored files.  Backends that keep markers
    # override the four _pending_* methods; the others refuse direct uploads.

    def _pending_put(self, file_id: str, data: bytes) -> None:
        """Keep ``data`` as the marker of the pending upload ``file_id`` (overwriting one).

        Written before any upload to ``file_id`` can happen, so every upload
        is recognisable as pending until it is attached.
        """
        raise NotImplementedError("%r does not support direct uploads (no pending-upload markers)" % (self,))

    def _pending_get(self, file_id: str) -> Optional[bytes]:
        """The marker of ``file_id``, or ``None`` when there is none (never an intent, or attached)."""
        raise NotImplementedError("%r does not support direct uploads (no pending-upload markers)" % (self,))

    def _pending_delete(self, file_id: str) -> None:
        """Remove the marker of ``file_id``; no error when there is none."""
        raise NotImplementedError("%r does not support direct uploads (no pending-upload markers)" % (self,))

    def _pending_claim(self, file_id: str, claimed: bytes) -> bool:
        """Replace the pending marker of ``file_id`` by ``claimed`` (the claimed record); whether this call did.

        ``False`` when there is no marker or it is claimed already
        (:func:`depot.uploads.intents.claimed`): of two requests attaching
        the same id at once only one succeeds.  The marker is replaced,
        never absent in between, so ``depot fsck`` always sees one (see
        :func:`depot.uploads._api.claim_upload`).  Atomic where the backend
        can tell (memory, local, GridFS); this version reads then writes,
        which leaves a window of one request.
        """
        from depot.uploads.intents import claimed as is_claimed

        raw = self._pending_get(file_id)
        if raw is None or is_claimed(raw):
            return False
        self._pending_put(file_id, claimed)
        return True

    def _pending_release_claims(self, before: float) -> List[str]:
        """Release the claims held since before ``before`` by a process that died holding them; their ids.

        A claim here is one atomic write (memory, local, GridFS, GCS),
        never held across requests: nothing to release.  Object stores
        whose claim is held for a few requests (S3, see
        :class:`depot.io._pending_objects.ClaimObjects`) override it;
        ``depot gc --pending-older-than`` calls it.
        """
        return []

    def _pending_list(self) -> Iterator[Tuple[str, float]]:
        """``(file_id, created)`` of every marker, ``created`` in seconds since the epoch."""
        raise NotImplementedError("%r does not support direct uploads (no pending-upload markers)" % (self,))

    def _new_upload_id(self) -> str:
        """A new id for a direct upload, of the form :meth:`create` gives out."""
        return new_uuid()

    def _upload_target(self, record: Any) -> Any:
        """How the browser uploads the file of ``record`` (a :class:`~depot.uploads.PendingUpload`).

        Returns a :class:`~depot.uploads.UploadTarget`.  This version sends
        the browser to the registered middleware, which streams the body
        into :meth:`_store_at` at a signed URL; storages a browser can reach
        themselves (S3, GCS) override it with the service's own signed URLs.
        """
        from depot.manager import DepotManager
        from depot.uploads.intents import UploadTarget

        try:
            middleware = DepotManager.get_middleware()
        except RuntimeError:
            raise RuntimeError(
                "Direct uploads to storage %s (%r) go through the depot middleware: register one "
                "(DepotManager.make_middleware(app, secret=...)) before creating upload intents"
                % (record.storage, self)
            ) from None
        upload_url_for = getattr(middleware, "upload_url_for", None)
        if upload_url_for is None:
            raise RuntimeError(
                "The registered middleware %r cannot accept direct uploads to storage %s"
                % (middleware, record.storage)
            )
        method = (record.multipart or {}).get("method")
        if method not in (None, "PUT"):
            raise ValueError("Direct uploads to storage %s (%r) go through the middleware with PUT, not %s"
                             % (record.storage, self, method))
        return UploadTarget("PUT", upload_url_for(record), {}, {}, None)

    def _complete_upload(self, record: Any) -> None:
        """Finish an upload the browser has sent all of (S3 multipart completion); default nothing.

        Raises :class:`IOError` when the upload is not complete.
        """
        return None  # a single-request upload is complete once stored

    def _seal_upload(self, record: Any, checked: StoredFile) -> Optional[str]:
        """Make a claimed upload unreachable by its upload URL; the id it now has, ``None`` when unchanged.

        Called by the attach step once it has claimed the upload, before
        the field sees it; ``checked`` is the handle
        :func:`~depot.uploads.finish_upload` returned, of the version its
        checks read.  By default nothing: the upload URLs of the base
        refuse a second upload once the file exists.  A backend whose URLs
        could replace the object until they expire (an S3 POST policy)
        moves that version, and only that one, to a fresh id instead
        (another one: :class:`~depot.uploads.UploadRefused`).
        """
        return None

    def _abandon_upload(self, record: Any) -> None:
        """Remove whatever an upload never attached left: the file, unfinished parts.

        The marker is left to the caller, which removes it afterwards: a
        crash in between leaves a marker that the next collection finishes.
        """
        if self.exists(record.file_id):
            self.delete(record.file_id)

    def _store_at(self, file_id: str, content: Any, filename: Optional[str] = None,
                  content_type: Optional[str] = None) -> StoredFacts:
        """Store ``content`` as the new file ``file_id`` (a direct upload's id), like :meth:`create`.

        The file appears whole or not at all.  :class:`FileExistsError` when
        ``file_id`` is already stored: an upload never overwrites a file.
        """
        raise NotImplementedError("%r cannot store a file under a given id" % (self,))

    # Shared by the backends' replace(): the rules of SPEC 2.0 live here once.
    def _prepare_replace(
        self,
        file_or_id: Any,
        content: Any,
        filename: Optional[str] = None,
        content_type: Optional[str] = None,
    ) -> Tuple[str, Any, str, str]:
        """Validate a replace and resolve its ``(file_id, content, filename, content_type)``.

        Raises :class:`ValueError` for a malformed id and :class:`IOError` when
        the id is not stored, except in the backup form ``replace(f, f)`` where
        the content is the very StoredFile whose id is reused.
        """
        file_id = self._checked_id(file_or_id)
        backup = isinstance(file_or_id, StoredFile) and content is file_or_id
        if not backup and not self.exists(file_id):
            raise missing_file(file_id)
        content, filename, content_type = self._content_info(
            content, filename, content_type, lambda: self.get(file_id)
        )
        return file_id, content, filename, content_type


# class -> whether the facts its _save() reports are what its get() returns
_facts_trusted: Dict[type, bool] = {}


def _definer(cls: type, name: str) -> type:
    return next(klass for klass in cls.__mro__ if name in vars(klass))


class OneStepStorage(FileStorage):
    """A storage that writes a whole file under a given id in one step.

    Subclasses provide :meth:`_save`; :meth:`create`, :meth:`replace` and
    :meth:`create_with_facts` follow from it (and :meth:`_save_new`, for
    backends that write a new id more cheaply than an existing one).
    """

    @abstractmethod
    def _save(
        self, file_id: str, content: Any, filename: str, content_type: str
    ) -> Optional[StoredFacts]:  # pragma: no cover - abstract
        """Write the whole file under ``file_id``, or leave the previous version untouched.

        Returns the facts :meth:`get` will report, or ``None`` if they are
        only known by reading the file back.
        """

    def _save_new(self, file_id: str, content: Any, filename: str, content_type: str) -> Optional[StoredFacts]:
        """:meth:`_save` for an id known to be new."""
        return self._save(file_id, content, filename, content_type)

    def create(self, content: Any, filename: Optional[str] = None, content_type: Optional[str] = None) -> str:
        file_id = new_uuid()
        self._save_new(file_id, *self._content_info(content, filename, content_type))
        return file_id

    def create_with_facts(
        self, content: Any, filename: Optional[str] = None, content_type: Optional[str] = None
    ) -> StoredFacts:
        # OneStepStorage's own _save_new only hands over to _save.
        if not self._reports_own_facts(OneStepStorage, ("_save", "_save_new"), delegates=OneStepStorage):
            return FileStorage.create_with_facts(self, content, filename, content_type)
        file_id = new_uuid()
        facts = self._save_new(file_id, *self._content_info(content, filename, content_type))
        return self._read_facts(file_id) if facts is None else facts

    def _store_at(self, file_id: str, content: Any, filename: Optional[str] = None,
                  content_type: Optional[str] = None) -> StoredFacts:
        # Backends whose _save_new cannot refuse an existing id check first:
        # the id is a fresh random one only a signed upload URL names, so the
        # window between the check and the write is never raced in practice.
        file_id = self._checked_id(file_id)
        if self.exists(file_id):
            raise FileExistsError("File %s already exists in %r" % (file_id, self))
        facts = self._save_new(file_id, *self._content_info(content, filename, content_type))
        return self._read_facts(file_id) if facts is None else facts

    def replace(
        self, file_or_id: Any, content: Any, filename: Optional[str] = None, content_type: Optional[str] = None
    ) -> str:
        file_id, content, filename, content_type = self._prepare_replace(file_or_id, content, filename, content_type)
        self._save(file_id, content, filename, content_type)
        return file_id
