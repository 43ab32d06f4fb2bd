"""A storage on the local file system: one folder per file, written atomically.

Layout (compatible with filedepot): ``<storage_path>/<file_id>/file`` holds the
bytes and ``<storage_path>/<file_id>/metadata.json`` the filename, content
type, length and modification time.

Every write builds the complete new folder under a temporary name beside
the others (``.new-<random>.tmp``) and publishes it in one step: a rename for
a new id, and for an existing one an exchange of the two folders
(``renameat2(RENAME_EXCHANGE)`` on Linux), so data and metadata always change
together.  Readers see the old pair or the new pair (they open both files
through one descriptor of the folder, or check a key that no other version
can show), a crash leaves one of them whole, and open files keep reading
the version they opened.  Where the file system cannot exchange folders,
the two files are moved in one after the other (the previous behaviour:
complete files, but not atomic as a pair).

Temporary names start with a dot and are never valid ids, so
:meth:`LocalFileStorage.list` skips them; what killed writers leave behind is
removed by :meth:`LocalFileStorage.collect_garbage` (``depot gc``).

All of that holds when a process dies: the kernel keeps what it was given.
A power loss can also lose what the kernel had not yet written to the disk,
in any order: a renamed file can come back empty, a rename can be undone.
With ``durable=True`` every step is written through before the next one
depends on it: the data and metadata files and their staging folder are
synced before the rename that publishes them, and the folder that received
the rename (or a new folder, or lost a name) is synced after it.  filedepot
0.12 never syncs, and syncing costs a disk flush per step, so it is off by
default.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import io
import json
import os
import shutil
import sys
import time
from datetime import datetime
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Tuple

from depot.io import checksums, utils
from depot.io.interfaces import OneStepStorage, StoredFacts, StoredFile
from depot.io.interfaces import FileStorage  # noqa: F401 - a name filedepot 0.12 had here
from depot.io.utils import DEFAULT_CHUNK_SIZE, DEFAULT_CONTENT_TYPE, check_uuid, read_chunks
from depot.utils import asbool

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the grace period alone protects writers
    fcntl = None  # type: ignore[assignment]

__all__ = ["LocalStoredFile", "LocalFileStorage"]

_check_file_id = check_uuid  # filedepot 0.12's name; the storage checks through FileStorage._checked_id

#: The folder of the markers of direct uploads (``<id>.json``), beside the
#: files: a dot name, so neither :meth:`LocalFileStorage.list` nor
#: :meth:`LocalFileStorage.collect_garbage` ever takes it for theirs.
_PENDING = ".depot-pending"
#: Suffix of a claimed marker (an upload being attached), beside ``<id>.json``.
_CLAIMED = ".claimed"
#: Prefix of a marker being written there (collected by collect_garbage).
_MARKER_TMP = ".marker-"
#: Pieces a checksummed stream is copied in: small enough that the bytes
#: just read are still in the CPU cache when they are hashed and written
#: (benchmarks/bench_checksum.py: with 1 MiB pieces the copy ran ~15% slower).
HASHED_CHUNK_SIZE = 256 * 1024

#: Prefixes of the temporary folders beside the files: a version being
#: written (or, after an exchange, the version it replaced) and a deleted file.
_STAGING = ".new-"
_GRAVEYARD = ".del-"


_METADATA_NAME = os.sep + "metadata.json"
#: Flags of the descriptors opened for reading (Python makes them non-inheritable).
_O_READ = os.O_RDONLY | getattr(os, "O_BINARY", 0)


# Plain concatenation: os.path.join costs more than the rest of a cached get().
def _metadata_path(local_path: str) -> str:
    return local_path + (_METADATA_NAME[1:] if local_path.endswith(os.sep) else _METADATA_NAME)


_DATA_NAME = "file"


def _file_path(local_path: str) -> str:
    return local_path + (_DATA_NAME if local_path.endswith(os.sep) else os.sep + _DATA_NAME)


def _tmp_name(prefix: str) -> str:
    return "%s%s.tmp" % (prefix, os.urandom(16).hex())


def _is_tmp_name(name: str) -> bool:
    """Whether ``name`` is one of our temporary folders (``.new-<32 hex>.tmp``, ``.del-...``)."""
    if not name.endswith(".tmp") or not name.startswith((_STAGING, _GRAVEYARD)):
        return False
    token = name[5:-4]
    return len(token) == 32 and all(c in "0123456789abcdef" for c in token)


class _ClosedLocalFile(io.BytesIO):
    """Stands in for the content of a file closed before it was ever read."""

    def __init__(self) -> None:
        super().__init__()
        self.close()


_CLOSED = _ClosedLocalFile()

Metadata = Tuple[str, str, Optional[datetime], Optional[int], Optional[str]]
Key = Tuple[int, int, int, int, int]


def _parse_metadata(file_id: str, raw: bytes) -> Metadata:
    try:
        metadata = json.loads(raw)
        modified = metadata.get("last_modified")
        last_modified = utils.parse_timestamp(modified) if modified else None
        if modified and last_modified is None:
            raise ValueError(modified)
    except (ValueError, TypeError, AttributeError):
        raise ValueError("Invalid file metadata for %s" % file_id) from None
    return (
        _readable_filename(metadata.get("filename", "unnamed")),
        _readable_content_type(metadata.get("content_type", DEFAULT_CONTENT_TYPE)),
        last_modified,
        metadata.get("content_length"),
        # Absent from files written by filedepot 0.12 and depot before checksums: None.
        checksums.readable(metadata.get("checksum")),
    )


# Metadata of ordinary files is a few hundred bytes; the cap bounds the cache
# by bytes too (max_entries * this), whatever names uploaders send.
_MAX_CACHED_METADATA = 2048


# Files written before create() checked its arguments (by filedepot 0.12, or
# by hand) may hold names and types that would fail every response: they are
# read as the closest value that works.
def _readable_filename(value: Any) -> Any:
    if isinstance(value, str):
        return utils.clean_filename(value)
    return value if value is None else str(value)


def _readable_content_type(value: Any) -> Any:
    try:
        return value if value is None else utils.check_content_type(value)
    except (TypeError, ValueError):
        return DEFAULT_CONTENT_TYPE


def _key(st: os.stat_result) -> Key:
    """Identifies one version of a metadata file: every write installs a new inode.

    The times name a version of a file rewritten in place (filedepot 0.12
    rewrote both files of a replaced one), to the file system's granularity.
    """
    return (st.st_ino, st.st_dev, st.st_ctime_ns, st.st_mtime_ns, st.st_size)


def _version(key: Key) -> str:
    """:attr:`LocalStoredFile.version` of the metadata file with this key."""
    ino, dev, ctime_ns, mtime_ns, size = key
    return "%x-%x-%x" % (ino, ctime_ns, size)


#: Nanoseconds after its last change when a version of a file is settled:
#: every later write, to that file or to a new one, gets other times.  A
#: file system stamps times to a granularity (a clock tick, or whole
#: seconds), so a file rewritten in place twice within one granule
#: (filedepot 0.12 rewrote its files), or an inode freed and reused as fast
#: (ext4 hands a freed inode to the next file), can show the same ``stat``
#: for two versions; two seconds covers the coarsest.  Only a key that was
#: settled when it was taken names one version for good.
SETTLED_AFTER_NS = 2_000_000_000


def _settled(key: Key, before_ns: int) -> bool:
    """Whether ``key``, taken after ``before_ns`` (``time.time_ns()``), can never show for another version.

    The file was there after ``before_ns``, so any file that takes its
    inode later is created (or rewritten) after ``before_ns`` too, and is
    stamped at least ``before_ns`` minus one granule: later than ``key``'s
    change time when that was settled at ``before_ns``.  (It assumes the
    file system's clock does not run far behind the caller's.)
    """
    return key[2] < before_ns - SETTLED_AFTER_NS


def _read_all(fd: int) -> Tuple[Key, bytes]:
    """The key and the whole content of the open file ``fd`` (raw calls: fewer than a file object's)."""
    st = os.fstat(fd)
    parts: List[bytes] = []
    while True:
        chunk = os.read(fd, max(st.st_size + 1, 1024))
        if not chunk:
            return _key(st), b"".join(parts)
        parts.append(chunk)


class _MetadataCache:
    """Parsed ``metadata.json`` files, each valid while its file is unchanged.

    Reading and decoding the metadata is most of the cost of :meth:`get`, and
    a served file is asked for again and again.  Every write installs a new
    metadata file with a rename, so its inode, change time and size identify
    the version, once settled (:data:`SETTLED_AFTER_NS`): one ``stat`` then
    tells whether the cached facts still hold.  Only settled versions are
    kept: a version written moments ago is read again at each :meth:`get`,
    as another version may show its very ``stat`` (an inode freed and
    reused within one tick of the file system's clock).  The key is taken
    from the very file descriptor that was read, so facts are never stored
    under another version's key.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._entries: Dict[str, Tuple[Key, Metadata]] = {}
        # Facts of unsettled versions by their bytes (the same bytes are the
        # same facts): a file read just after it was written is read twice,
        # at get() and at its first read, but decoded once.
        self._recent: Dict[bytes, Metadata] = {}

    def read(self, file_id: str, path: str, folder: Optional[int] = None) -> Tuple[Key, Metadata, bool]:
        """The key of the metadata file at ``path``, the facts it holds, and whether the key is settled.

        With ``folder`` (a descriptor of the file's folder, ``path`` still
        naming the entry) the file is looked up in that very folder.
        """
        name = path if folder is None else _METADATA_NAME[1:]
        try:
            entry = self._entries.get(path)
            if entry is not None and entry[0] == _key(os.stat(name, dir_fd=folder)):
                return entry[0], entry[1], True
            before = time.time_ns()
            fd = os.open(name, _O_READ, dir_fd=folder)
            try:
                key, raw = _read_all(fd)
            finally:
                os.close(fd)
        except OSError:
            self._entries.pop(path, None)
            raise utils.missing_file(file_id) from None
        recent = self._recent
        metadata = recent.get(raw)
        if metadata is None:
            metadata = _parse_metadata(file_id, raw)
        settled = _settled(key, before)
        if len(raw) > _MAX_CACHED_METADATA:
            return key, metadata, settled  # a huge name: cheap to re-read next time, costly to keep
        if not settled:
            # Another version may show this key: kept by its bytes only.
            _bounded_put(recent, raw, metadata, _RECENT_ENTRIES)
            return key, metadata, False
        _bounded_put(self._entries, path, (key, metadata), self.max_entries)
        return key, metadata, True


#: Unsettled versions whose decoded facts are kept (by their bytes).
_RECENT_ENTRIES = 256


def _bounded_put(entries: Dict[Any, Any], key: Any, value: Any, max_entries: int) -> None:
    if len(entries) >= max_entries:
        # Forget the oldest half: cheap, and a hot file comes right back.
        for stale in list(entries)[: max_entries // 2]:
            entries.pop(stale, None)
    entries[key] = value


_METADATA = _MetadataCache()

#: Attempts to open a data file while writers keep replacing it.
_OPEN_ATTEMPTS = 100

#: Whether a folder can be opened and its files opened through it (not on Windows).
_FOLDER_FDS = hasattr(os, "O_DIRECTORY") and os.open in os.supports_dir_fd and os.stat in os.supports_dir_fd


def _open_folder(path: str) -> Optional[int]:
    """A descriptor of the folder ``path`` (``None`` where files cannot be opened through one)."""
    if not _FOLDER_FDS:  # pragma: no cover - Windows
        return None
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY)


def _opener(folder: int) -> Callable[[str, int], int]:
    """An ``opener`` for :func:`open`: the data file of the open folder ``folder``, whatever the path given."""
    return lambda path, flags: os.open(_DATA_NAME, flags, dir_fd=folder)


def _still_at(path: str, folder: int) -> bool:
    """Whether ``path`` names the open folder ``folder`` (held open, its inode is nobody else's)."""
    try:
        st, held = os.stat(path), os.fstat(folder)
    except OSError:
        return False
    return (st.st_ino, st.st_dev) == (held.st_ino, held.st_dev)


class LocalStoredFile(StoredFile):
    """A file of :class:`LocalFileStorage`; the data file is opened on the first read.

    As in filedepot, a handle taken before a replace reads the new content.
    Its facts then follow: the data file is opened with the metadata of the
    same folder (see :meth:`_open_current`), so the bytes read always belong
    to the facts the handle reports.
    """

    def __init__(self, file_id: str, local_path: str) -> None:
        _check_file_id(file_id)
        self._setup(file_id, local_path)

    @classmethod
    def _checked(cls, file_id: str, local_path: str) -> "LocalStoredFile":
        """Construct for an id the storage has already validated."""
        self = cls.__new__(cls)
        self._setup(file_id, local_path)
        return self

    def _setup(self, file_id: str, local_path: str) -> None:
        self._folder = local_path
        self._metadata_path = _metadata_path(local_path)
        self._file_path = _file_path(local_path)
        self._key, facts, self._settled = _METADATA.read(file_id, self._metadata_path)
        StoredFile.__init__(self, file_id, *facts)
        self._file: Optional[IO[bytes]] = None

    def _open_current(self) -> IO[bytes]:
        """Open the data file of the current version, the facts becoming that version's.

        With a settled key (:data:`SETTLED_AFTER_NS`), no other metadata
        file ever shows it: if the metadata file is still the one the facts
        came from after the data file is opened, both belong to one version,
        as a version never comes back to the id once replaced.  Otherwise
        (replaced since :meth:`get`, or written too recently for its key to
        tell) the folder is opened once and both files are read through it.
        """
        if self._settled:
            try:
                f = open(self._file_path, "rb")
            except OSError:
                raise utils.missing_file(self.file_id) from None
            try:
                if _key(os.stat(self._metadata_path)) == self._key:
                    return f
            except OSError:
                pass
            f.close()
        return self._open_generation()

    def _open_generation(self) -> IO[bytes]:
        """Open the data file and read the facts of one version: both through one descriptor of its folder.

        A write publishes a complete folder by renaming or exchanging it,
        and never changes a published one, so the two files of one folder
        are one version's, whatever is published meanwhile.  A folder
        replaced and removed while it is opened is left for the new one.
        (Where folders cannot be exchanged, the two files are moved into
        the folder one after the other: a reader between the two moves pairs
        the new data with the previous facts.  That is the case on Windows,
        where the two files are opened by their paths.)
        """
        for _ in range(_OPEN_ATTEMPTS):
            try:
                folder = _open_folder(self._folder)
            except OSError:
                raise utils.missing_file(self.file_id) from None
            try:
                try:
                    key, facts, settled = _METADATA.read(self.file_id, self._metadata_path, folder)
                    # Named by its path (servers send files by their name), opened in the folder.
                    data = open(self._file_path, "rb", opener=None if folder is None else _opener(folder))
                except OSError:
                    if folder is not None and not _still_at(self._folder, folder):
                        continue  # removed after a replace: read the new version
                    raise utils.missing_file(self.file_id) from None
            finally:
                if folder is not None:
                    os.close(folder)
            self._key, self._settled = key, settled
            self.filename, self.content_type, self.last_modified, self.content_length, self.checksum = facts
            return data
        raise IOError("File %s changed while it was opened" % self.file_id)

    def _opened(self) -> IO[bytes]:
        f = self._file
        if f is None:
            f = self._file = self._open_current()
        return f

    def read(self, n: int = -1) -> bytes:
        return self._opened().read(n)

    def readinto(self, buffer: Any) -> int:
        return self._opened().readinto(buffer)  # type: ignore[attr-defined]  # a binary file object has it

    def readline(self, size: Optional[int] = -1) -> bytes:
        return self._opened().readline(-1 if size is None else size)

    def close(self, *args: Any, **kwargs: Any) -> None:
        if self._file is None:
            self._file = _CLOSED
        else:
            self._file.close()

    @property
    def closed(self) -> bool:
        return self._file is not None and self._file.closed

    @property
    def version(self) -> str:
        """Changes with every write (each installs a new metadata inode); no I/O.

        It names the version the facts describe.  Two versions written
        within one tick of the file system's clock may show the same one
        (an inode freed and reused at once): the ETag also carries the
        checksum, and what is kept by version waits until it is settled
        (:data:`SETTLED_AFTER_NS`).
        """
        return _version(self._key)

    def iter_range(
        self, start: int = 0, stop: Optional[int] = None, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> Iterator[bytes]:
        f = self._opened()
        f.seek(start)
        yield from read_chunks(f.read, None if stop is None else stop - start, chunk_size)

    @property
    def local_path(self) -> str:
        """The data file of the current version (``real_file`` opens the one the facts describe)."""
        return self._file_path

    def real_file(self) -> IO[bytes]:
        self._check_open()
        f = self._file
        if f is None:
            return self._open_current()
        # Already reading a version: the same one, even if replaced since.
        try:
            return open("/proc/self/fd/%d" % f.fileno(), "rb")
        except OSError:
            pass
        try:
            again = open(self._file_path, "rb")
        except OSError:
            raise utils.missing_file(self.file_id) from None
        # The file held open keeps its inode: the same inode is the same file.
        st, held = os.fstat(again.fileno()), os.fstat(f.fileno())
        if (st.st_ino, st.st_dev) == (held.st_ino, held.st_dev):
            return again
        again.close()
        raise IOError("File %s changed while it was opened" % self.file_id)


# -- publishing a folder in one step ----------------------------------------

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _load_renameat2() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28, musl >= 1.2.3
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_renameat2 = _load_renameat2()

# What renameat2 answers when the kernel or the file system cannot exchange.
_NO_EXCHANGE = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}


def _exchange(a: str, b: str) -> bool:
    """Swap the folders ``a`` and ``b`` atomically; ``False`` where that is not supported.

    Other failures raise :class:`OSError` (``FileNotFoundError`` when ``b``
    does not exist).
    """
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _NO_EXCHANGE:
        return False
    raise OSError(err, os.strerror(err), b)


def _lock_folder(path: str, wait: bool = True) -> Optional[int]:
    """Lock a folder being written, so that :meth:`collect_garbage` skips it.

    Returns the descriptor holding the lock (``None`` where folders cannot be
    locked: the grace period alone protects writers there); the kernel
    releases the lock when the writer dies, however it dies.  Without
    ``wait``, :class:`BlockingIOError` tells that another process holds it.
    """
    if fcntl is None:  # pragma: no cover - Windows
        return None
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise
    except OSError:  # pragma: no cover - a file system without flock
        os.close(fd)
        return None
    return fd


def _unlock(fd: Optional[int]) -> None:
    if fd is not None:
        os.close(fd)


class MissingStoragePath(TypeError, ValueError):
    """No ``storage_path`` given: a ``TypeError`` as filedepot raised, and a ``ValueError`` like other bad settings."""


class LocalFileStorage(OneStepStorage):
    """Files stored below ``storage_path`` on the local file system.

    ``storage_path`` is kept as given in :attr:`storage_path`; a relative path
    or ``~`` is resolved once, when the storage is created, so a later change
    of working directory does not move the files.  The folder is created on
    the first write.
    """

    def __init__(
        self, storage_path: Optional[str] = None, checksum: Any = checksums.DEFAULT_ALGORITHM, *, durable: bool = False
    ) -> None:
        # A missing path is a configuration error that names the setting
        # (rather than Python's "missing 1 required positional argument"),
        # still a TypeError as in filedepot.
        if storage_path is None:
            raise MissingStoragePath("LocalFileStorage needs a storage_path (the depot.storage_path setting)")
        if not isinstance(storage_path, (str, os.PathLike)) or not os.fspath(storage_path):
            raise ValueError("LocalFileStorage needs a storage_path, got %r" % (storage_path,))
        self.storage_path = storage_path
        self._root = os.path.abspath(os.path.expanduser(os.fspath(storage_path)))
        self._prefix = os.path.join(self._root, "")
        self._set_checksum(checksum)
        #: Whether writes survive a power loss (see the module's docstring); a
        #: string from a settings file (``depot.durable = true``) is read as a bool.
        self.durable = asbool(durable)

    def __repr__(self) -> str:
        return "<LocalFileStorage %s>" % self._root

    def _dir(self, file_id: str) -> str:
        # A checked id holds no separator, and _root is absolute and normalised.
        return self._prefix + file_id

    def get(self, file_or_id: Any) -> LocalStoredFile:
        file_id = self._checked_id(file_or_id)
        return LocalStoredFile._checked(file_id, self._dir(file_id))

    def version_key(self, file_id: str) -> Key:
        """What names the current version of ``file_id``, from one ``stat`` (nothing is opened or read).

        The inode, device, change and modification times and size of its
        metadata file: every write installs a new metadata file (depot), or
        rewrites it after the data (filedepot 0.12), so a version's data and
        facts go with its key (:attr:`LocalStoredFile.version` is made from
        it, see :meth:`key_version`).  For callers that keep what they
        derived from a version (the serving layer keeps the answers to small
        files) and must know whether it still holds; only a key settled when
        it was taken (:data:`SETTLED_AFTER_NS`) is never shown by another
        version.  ``file_id`` must be one :meth:`get` accepted.
        :class:`OSError` when the file is missing.
        """
        return _key(os.stat(self._prefix + file_id + _METADATA_NAME))

    @staticmethod
    def key_version(key: Key) -> str:
        """The :attr:`LocalStoredFile.version` of the version :meth:`version_key` gave ``key`` for."""
        return _version(key)

    def _write_files(
        self, file_id: str, data_path: str, meta_path: str, content: Any, filename: str, content_type: str
    ) -> StoredFacts:
        """Write the data and metadata files of a new folder."""
        hasher = self._new_hasher()
        if isinstance(content, (bytes, bytearray, memoryview)):
            # Most uploads are bytes: raw descriptors skip the buffered
            # file objects, a third of a small file's write time.
            if hasher is not None:
                hasher.update(content)
            length = memoryview(content).nbytes
            on_disk = _write_new(data_path, content, size=True, sync=self.durable)
        else:
            with open(data_path, "xb") as f:
                length = utils.write_content(content, f, HASHED_CHUNK_SIZE if hasher else utils.CHUNK_SIZE, hasher)
                f.flush()
                on_disk = os.fstat(f.fileno()).st_size
                if self.durable:
                    os.fsync(f.fileno())
        if on_disk != length:
            # Free to check (one fstat of the open file) and worth it: the
            # checksum describes the bytes handed to write(), so a write
            # that lost some must not be published under that checksum.
            raise checksums.ChecksumMismatch(
                "%r: file %s not stored: %d bytes were written (and checksummed) but the file "
                "holds %d" % (self, file_id, length, on_disk)
            )
        stamp = utils.timestamp()
        metadata = {
            "filename": filename,
            "content_type": content_type,
            "content_length": length,
            "last_modified": stamp,
        }
        if hasher is not None:
            metadata["checksum"] = hasher.result()
        _write_new(meta_path, json.dumps(metadata).encode("utf-8"), sync=self.durable)
        return StoredFacts(file_id, filename, content_type, utils.parse_timestamp(stamp), None)

    def _stage(
        self, file_id: str, content: Any, filename: str, content_type: str
    ) -> Tuple[str, Optional[int], StoredFacts]:
        """Write a complete folder under a temporary name: ``(path, lock, facts)``.

        The folder stays locked against :meth:`collect_garbage` until the
        caller releases the lock with :func:`_unlock`; on failure nothing is
        left behind.
        """
        staging = self._prefix + _tmp_name(_STAGING)
        try:
            os.mkdir(staging)
        except FileNotFoundError:
            _make_folders(self._root, self.durable)
            os.mkdir(staging)
        lock = None
        try:
            lock = _lock_folder(staging)
            facts = self._write_files(
                file_id, _file_path(staging), _metadata_path(staging), content, filename, content_type
            )
            if self.durable:
                # The names of the two files, which the rename publishes with the folder.
                _sync_folder(staging)
        except BaseException:
            _unlock(lock)
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return staging, lock, facts

    def _save_new(self, file_id: str, content: Any, filename: str, content_type: str) -> StoredFacts:
        staging, lock, facts = self._stage(file_id, content, filename, content_type)
        try:
            # One rename publishes data and metadata together.
            os.rename(staging, self._dir(file_id))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            _unlock(lock)
        if self.durable:
            _sync_folder(self._root)
        return facts

    def _save(self, file_id: str, content: Any, filename: str, content_type: str) -> StoredFacts:
        staging, lock, facts = self._stage(file_id, content, filename, content_type)
        try:
            folder = self._dir(file_id)
            renamed = self._publish(staging, folder)
            if self.durable:
                # Renamed folders changed the storage folder; moved files, the file's own.
                _sync_folder(self._root if renamed else folder)
        finally:
            _unlock(lock)
            # After an exchange the staging name holds the replaced version.
            shutil.rmtree(staging, ignore_errors=True)
        return facts

    def _publish(self, staging: str, folder: str) -> bool:
        """Make the folder ``staging`` the content of ``folder``, whether it exists or not.

        ``True`` when whole folders were renamed (their parent changed),
        ``False`` when the two files were moved into ``folder``.
        """
        for _ in range(_OPEN_ATTEMPTS):
            try:
                if _exchange(staging, folder):
                    return True
                missing = not os.path.isdir(folder)
            except FileNotFoundError:
                missing = True
            if missing:  # a new id (the backup form of replace), or deleted meanwhile
                try:
                    os.rename(staging, folder)
                    return True
                except OSError as exc:
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
                    continue  # created meanwhile by another writer: replace that
            # No exchange on this file system: data first, so a crash between
            # the two renames leaves complete data with the previous metadata,
            # never a missing file.
            os.replace(_file_path(staging), _file_path(folder))
            if self.durable:
                # The same order after a power loss: never new metadata on old data.
                _sync_folder(folder)
            os.replace(_metadata_path(staging), _metadata_path(folder))
            return False
        raise IOError("Could not publish %s: it keeps changing" % folder)

    def delete(self, file_or_id: Any) -> None:
        file_id = self._checked_id(file_or_id)
        graveyard = self._prefix + _tmp_name(_GRAVEYARD)
        try:
            # Renamed first so that readers see the file or nothing, never a half-removed folder.
            os.rename(self._dir(file_id), graveyard)
        except FileNotFoundError:
            return
        if self.durable:
            # Only the rename must last: a graveyard that comes back is collected by gc.
            _sync_folder(self._root)
        _remove_file_folder(graveyard)

    def exists(self, file_or_id: Any) -> bool:
        return os.path.exists(_metadata_path(self._dir(self._checked_id(file_or_id))))

    def list(self) -> List[str]:
        try:
            names = os.listdir(self._root)
        except FileNotFoundError:
            return []
        return [name for name in names if _is_valid_id(name)]

    # -- direct uploads ----------------------------------------------------------

    def _marker_path(self, file_id: str, suffix: str = ".json") -> str:
        _check_file_id(file_id)
        return os.path.join(self._root, _PENDING, file_id + suffix)

    def _write_marker(self, path: str, data: bytes, publish: Optional[Callable[[str, str], None]] = None) -> None:
        """Write a marker aside, then ``publish`` it (``os.replace`` by default) at ``path``."""
        folder = os.path.dirname(path)
        # Written aside and published whole: a reader sees the whole marker or none.
        tmp = os.path.join(folder, _tmp_name(_MARKER_TMP))
        try:
            try:
                _write_new(tmp, data, sync=self.durable)
            except FileNotFoundError:
                _make_folders(folder, self.durable)
                _write_new(tmp, data, sync=self.durable)
            (publish or os.replace)(tmp, path)
            if self.durable:
                _sync_folder(folder)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _sync_markers(self) -> None:
        """With ``durable``, make the removal of markers last too.

        A removed marker that came back would be harmless (gc removes it
        again, a claimed one is read first), but a durable storage's calls
        should all have happened once they return.
        """
        if self.durable:
            with contextlib.suppress(FileNotFoundError):
                _sync_folder(os.path.join(self._root, _PENDING))

    def _pending_put(self, file_id: str, data: bytes) -> None:
        self._write_marker(self._marker_path(file_id), data)

    def _pending_get(self, file_id: str) -> Optional[bytes]:
        # The claimed marker first: it supersedes a pending one left by a crash.
        for suffix in (_CLAIMED, ".json"):
            try:
                with open(self._marker_path(file_id, suffix), "rb") as f:
                    return f.read()
            except FileNotFoundError:
                continue
        return None

    def _pending_delete(self, file_id: str) -> None:
        for suffix in (".json", _CLAIMED):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._marker_path(file_id, suffix))
        self._sync_markers()

    def _pending_claim(self, file_id: str, claimed: bytes) -> bool:
        """Publish ``<id>.claimed`` with ``link()`` (fails if it exists: one winner), then drop ``<id>.json``.

        A crash in between leaves both; the claimed one is the one read.
        """
        if not os.path.exists(self._marker_path(file_id)):
            return False
        try:
            self._write_marker(self._marker_path(file_id, _CLAIMED), claimed, os.link)
        except FileExistsError:
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._marker_path(file_id))
        self._sync_markers()
        return True

    def _pending_list(self) -> Iterator[Tuple[str, float]]:
        """The markers as the folder is read: memory does not grow with their number.

        Markers may be claimed and removed meanwhile (``depot gc`` does it
        while it lists).  An upload claimed while it is listed may be
        listed twice (its pending marker, then the claimed one the scan
        came upon); never is a marker there all along left out.
        """
        try:
            entries = os.scandir(os.path.join(self._root, _PENDING))
        except FileNotFoundError:
            return
        # Ids with both markers, already listed: there are only as many as
        # claims in progress or cut short by a crash, not one per marker.
        both = set()
        with entries:
            for entry in entries:
                file_id, suffix = os.path.splitext(entry.name)
                if suffix not in (".json", _CLAIMED) or not _is_valid_id(file_id) or file_id in both:
                    continue
                # Asked again by name: a marker claimed since the scan is listed as claimed.
                claimed, pending = (_mtime(self._marker_path(file_id, s)) for s in (_CLAIMED, ".json"))
                if claimed is not None and pending is not None:
                    both.add(file_id)  # its other entry is still to come, or came already
                when = claimed if claimed is not None else pending
                if when is not None:  # else collected meanwhile
                    yield file_id, when

    def _store_at(self, file_id: str, content: Any, filename: Optional[str] = None,
                  content_type: Optional[str] = None) -> StoredFacts:
        file_id = self._checked_id(file_id)
        try:
            # _save_new publishes with rename(), which never replaces a file's (non-empty) folder.
            return self._save_new(file_id, *self._content_info(content, filename, content_type))
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise FileExistsError("File %s already exists in %r" % (file_id, self)) from None
            raise

    def collect_garbage(self, older_than: float = 3600.0, deep: bool = False) -> int:
        """Remove what killed writers left behind; returns the number of leftovers removed.

        Writes and deletes go through temporary folders beside the files
        (``.new-*.tmp``, ``.del-*.tmp``); a process killed mid-write leaves
        its folder there (and a half-written marker of a direct upload in
        ``.depot-pending``).  Only those not modified for ``older_than``
        seconds are removed, and never one a live writer still holds (it
        keeps it locked).  Stored files are never touched.  This reads only
        the storage folder itself, not the files' folders: run it from
        time to time (``depot gc``), not on every start.

        ``deep`` also looks into every file's folder for the temporary files
        (``.file-*.tmp``, ``.metadata-*.tmp``) that earlier versions of this
        storage wrote there; it reads the whole tree.
        """
        try:
            entries = list(os.scandir(self._root))
        except FileNotFoundError:
            return 0
        cutoff = time.time() - older_than
        removed = 0
        for entry in entries:
            if _is_tmp_name(entry.name):
                removed += _remove_if_abandoned(entry.path, cutoff)
            elif deep and _is_valid_id(entry.name):
                removed += _remove_stale_files(entry.path, cutoff)
            elif entry.name == _PENDING:
                # Markers of direct uploads half written by a killed process.
                removed += _remove_stale_files(entry.path, cutoff, (_MARKER_TMP,))
        return removed


def _last_change(path: str) -> float:
    """The latest modification time of a folder and of what it holds (a writer updates its file's)."""
    latest = os.lstat(path).st_mtime
    if os.path.isdir(path):
        for entry in os.scandir(path):
            try:
                latest = max(latest, entry.stat(follow_symlinks=False).st_mtime)
            except FileNotFoundError:
                continue
    return latest


def _remove_if_abandoned(path: str, cutoff: float) -> bool:
    try:
        if _last_change(path) >= cutoff:
            return False
        lock = _lock_folder(path, wait=False)
    except BlockingIOError:
        return False  # a live writer holds it, however long it takes
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        shutil.rmtree(path, ignore_errors=True)
    finally:
        _unlock(lock)
    return not os.path.lexists(path)


def _remove_stale_files(folder: str, cutoff: float, prefixes: Tuple[str, ...] = (".file-", ".metadata-")) -> int:
    """Remove the temporary files ``<prefix>*.tmp`` in ``folder`` older than ``cutoff``.

    By default those earlier versions left in a file's folder.
    """
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefixes) and name.endswith(".tmp")):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


# LocalFileStorage.get as defined here, before anything replaced it.
_PLAIN_GET = LocalFileStorage.get


def finds_files_plainly(storage: Any) -> bool:
    """Whether ``storage`` is a :class:`LocalFileStorage` whose ``get`` nobody replaced or overrode.

    What :meth:`LocalFileStorage.version_key` looks at is then what ``get``
    would find: callers that skip ``get`` for it (the serving layer's kept
    answers) must ask this first, so that a subclass, a patched ``get`` or an
    instance's own ``get`` (a check, a test double) is always honoured.
    """
    return (
        isinstance(storage, LocalFileStorage) and type(storage).get is _PLAIN_GET
        and type(storage).version_key is LocalFileStorage.version_key and "get" not in vars(storage)
    )


def _remove_file_folder(path: str) -> None:
    """Remove a file's folder that no reader or writer can reach any more.

    A folder holds just its two files: removing them by name takes three
    system calls, against about fifteen for :func:`shutil.rmtree`, which
    opens, lists and checks the folder first.  Anything unexpected (an older
    version's temporary file, a file already gone) is left to ``rmtree``.
    """
    try:
        os.unlink(_file_path(path))
        os.unlink(_metadata_path(path))
        os.rmdir(path)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


def _mtime(path: str) -> Optional[float]:
    """The modification time of ``path``, ``None`` if it is gone."""
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return None


def _is_valid_id(name: str) -> bool:
    try:
        _check_file_id(name)
    except ValueError:
        return False
    return True


def _write_new(path: str, data: Any, size: bool = False, sync: bool = False) -> int:
    """Write ``data`` to a file that must not exist yet; with ``size``, returns the file's size once written.

    With ``sync``, the bytes are on the disk when it returns.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data).cast("B")
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
        return os.fstat(fd).st_size if size else -1
    finally:
        os.close(fd)


def _sync_folder(path: str) -> None:
    """Write the names a folder holds (added, renamed or removed ones) to the disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        # A file system that cannot sync folders (some network ones) says
        # EINVAL: there is nothing more this process can do for them.
        if exc.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)


def _make_folders(path: str, durable: bool) -> None:
    """``os.makedirs(path, exist_ok=True)``; with ``durable``, each folder's name is synced in its parent."""
    if not durable:
        os.makedirs(path, exist_ok=True)
        return
    parent = os.path.dirname(path)
    if parent != path and not os.path.isdir(parent):
        _make_folders(parent, durable)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path)
    # Synced even when another process made it just now: it may not have synced it yet.
    _sync_folder(parent)
