"""A storage on the local file system: one folder per file, written atomically.

Layout (compatible with filedepot): ``<storage_path>/<file_id>/file`` holds the
bytes and ``<storage_path>/<file_id>/metadata.json`` the filename, content
type, length and modification time.

Every write goes to a temporary name in the same folder and is moved into
place with a single rename, so readers only ever see complete files and a
crash leaves the previous version intact.  Temporary names start with a dot
and are never valid ids, so :meth:`LocalFileStorage.list` skips leftovers.
"""
from __future__ import annotations

import io
import json
import os
import shutil
from datetime import datetime
from typing import IO, Any, Dict, Iterator, List, Optional, Tuple

from depot.io import utils
from depot.io.interfaces import DEFAULT_CHUNK_SIZE, OneStepStorage, StoredFacts, StoredFile
from depot.io.utils import DEFAULT_CONTENT_TYPE, check_content, check_uuid

__all__ = ["LocalStoredFile", "LocalFileStorage"]

_check_file_id = check_uuid


# Plain concatenation: os.path.join costs more than the rest of a cached get().
def _metadata_path(local_path: str) -> str:
    return local_path + ("metadata.json" if local_path.endswith(os.sep) else os.sep + "metadata.json")


def _file_path(local_path: str) -> str:
    return local_path + ("file" if local_path.endswith(os.sep) else os.sep + "file")


def _tmp_name(prefix: str) -> str:
    return "%s%s.tmp" % (prefix, os.urandom(16).hex())


class _ClosedLocalFile(io.BytesIO):
    """Stands in for the content of a file closed before it was ever read."""

    def __init__(self) -> None:
        super().__init__()
        self.close()


_CLOSED = _ClosedLocalFile()

Metadata = Tuple[str, str, Optional[datetime], Optional[int]]


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
        metadata.get("filename", "unnamed"),
        metadata.get("content_type", DEFAULT_CONTENT_TYPE),
        last_modified,
        metadata.get("content_length"),
    )


class _MetadataCache:
    """Parsed ``metadata.json`` files, each valid while its file is unchanged.

    Reading and decoding the metadata is most of the cost of :meth:`get`, and
    a served file is asked for again and again.  Every write installs a new
    metadata file with a rename, so its inode, change time and size identify
    the version: one ``stat`` tells whether the cached facts still hold.  The
    key is taken from the very file descriptor that was read, so facts are
    never stored under another version's key.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._entries: Dict[str, Tuple[Tuple[int, int, int, int], Metadata]] = {}

    @staticmethod
    def _key(st: os.stat_result) -> Tuple[int, int, int, int]:
        return (st.st_ino, st.st_dev, st.st_ctime_ns, st.st_size)

    def read(self, file_id: str, path: str) -> Metadata:
        try:
            entry = self._entries.get(path)
            if entry is not None and entry[0] == self._key(os.stat(path)):
                return entry[1]
            with open(path, "rb") as f:
                key = self._key(os.fstat(f.fileno()))
                raw = f.read()
        except OSError:
            self._entries.pop(path, None)
            raise IOError("File %s not existing" % file_id) from None
        facts = _parse_metadata(file_id, raw)
        entries = self._entries
        if len(entries) >= self.max_entries:
            # Forget the oldest half: cheap, and a hot file comes right back.
            for stale in list(entries)[: self.max_entries // 2]:
                entries.pop(stale, None)
        entries[path] = (key, facts)
        return facts


_METADATA = _MetadataCache()


class LocalStoredFile(StoredFile):
    """A file of :class:`LocalFileStorage`; the data file is opened on the first read."""

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
        self._metadata_path = _metadata_path(local_path)
        self._file_path = _file_path(local_path)
        StoredFile.__init__(self, file_id, *_METADATA.read(file_id, self._metadata_path))
        self._file: Optional[IO[bytes]] = None

    def _opened(self) -> IO[bytes]:
        f = self._file
        if f is None:
            f = self._file = open(self._file_path, "rb")
        return f

    def read(self, n: int = -1) -> bytes:
        return self._opened().read(n)

    def readinto(self, buffer: Any) -> int:
        return self._opened().readinto(buffer)

    def readline(self, size: Optional[int] = -1) -> bytes:
        return self._opened().readline(size)

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
        """Changes with every write: each one installs a new inode."""
        st = os.stat(self._file_path)
        return "%x-%x-%x" % (st.st_ino, st.st_mtime_ns, st.st_size)

    def iter_range(
        self, start: int = 0, stop: Optional[int] = None, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> Iterator[bytes]:
        f = self._opened()
        f.seek(start)
        remaining = None if stop is None else stop - start
        while remaining is None or remaining > 0:
            chunk = f.read(chunk_size if remaining is None else min(chunk_size, remaining))
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk

    def real_file(self) -> IO[bytes]:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        return open(self._file_path, "rb")


class MissingStoragePath(TypeError, ValueError):
    """No ``storage_path`` given: a ``TypeError`` as filedepot raised, and a ``ValueError`` like other bad settings."""


class LocalFileStorage(OneStepStorage):
    """Files stored below ``storage_path`` on the local file system.

    ``storage_path`` is kept as given in :attr:`storage_path`; a relative path
    or ``~`` is resolved once, when the storage is created, so a later change
    of working directory does not move the files.  The folder is created on
    the first write.
    """

    _check_file_id = staticmethod(_check_file_id)

    def __init__(self, storage_path: Optional[str] = None) -> None:
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

    def __repr__(self) -> str:
        return "<LocalFileStorage %s>" % self._root

    def _dir(self, file_id: str) -> str:
        # A checked id holds no separator, and _root is absolute and normalised.
        return self._prefix + file_id

    def get(self, file_or_id: Any) -> LocalStoredFile:
        file_id = self.fileid(file_or_id)
        _check_file_id(file_id)
        return LocalStoredFile._checked(file_id, self._dir(file_id))

    @staticmethod
    def _write_files(
        file_id: str, data_path: str, meta_path: str, content: Any, filename: str, content_type: str
    ) -> StoredFacts:
        """Write the data and metadata files; on any failure neither is left behind."""
        try:
            if isinstance(content, (bytes, bytearray, memoryview)):
                # Most uploads are bytes: raw descriptors skip the buffered
                # file objects, a third of a small file's write time.
                _write_new(data_path, content)
                length = len(content)
            else:
                with open(data_path, "xb") as f:
                    length = utils.write_content(content, f)
            stamp = utils.timestamp()
            metadata = {
                "filename": filename,
                "content_type": content_type,
                "content_length": length,
                "last_modified": stamp,
            }
            _write_new(meta_path, json.dumps(metadata).encode("utf-8"))
        except BaseException:
            _remove_quietly(data_path)
            _remove_quietly(meta_path)
            raise
        return StoredFacts(file_id, filename, content_type, utils.parse_timestamp(stamp), None)

    def _save_new(self, file_id: str, content: Any, filename: str, content_type: str) -> StoredFacts:
        check_content(content)
        staging = self._prefix + _tmp_name(".new-")
        try:
            os.mkdir(staging)
        except FileNotFoundError:
            os.makedirs(self._root, exist_ok=True)
            os.mkdir(staging)
        try:
            facts = self._write_files(
                file_id, _file_path(staging), _metadata_path(staging), content, filename, content_type
            )
            # One rename publishes data and metadata together.
            os.rename(staging, self._dir(file_id))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return facts

    def _save(self, file_id: str, content: Any, filename: str, content_type: str) -> StoredFacts:
        check_content(content)
        folder = self._dir(file_id)
        if not os.path.isdir(folder):  # the backup form of replace: the id is new here
            return self._save_new(file_id, content, filename, content_type)
        data_tmp = os.path.join(folder, _tmp_name(".file-"))
        meta_tmp = os.path.join(folder, _tmp_name(".metadata-"))
        facts = self._write_files(file_id, data_tmp, meta_tmp, content, filename, content_type)
        try:
            # Data first: a crash between the renames leaves complete data with
            # the previous metadata, never a missing or partial file.
            os.replace(data_tmp, _file_path(folder))
            os.replace(meta_tmp, _metadata_path(folder))
        finally:
            _remove_quietly(data_tmp)
            _remove_quietly(meta_tmp)
        return facts

    def delete(self, file_or_id: Any) -> None:
        file_id = self.fileid(file_or_id)
        _check_file_id(file_id)
        graveyard = self._prefix + _tmp_name(".del-")
        try:
            # Renamed first so that readers see the file or nothing, never a half-removed folder.
            os.rename(self._dir(file_id), graveyard)
        except FileNotFoundError:
            return
        shutil.rmtree(graveyard, ignore_errors=True)

    def exists(self, file_or_id: Any) -> bool:
        file_id = self.fileid(file_or_id)
        _check_file_id(file_id)
        return os.path.exists(_metadata_path(self._dir(file_id)))

    def list(self) -> List[str]:
        try:
            names = os.listdir(self._root)
        except FileNotFoundError:
            return []
        return [name for name in names if _is_valid_id(name)]


def _is_valid_id(name: str) -> bool:
    try:
        _check_file_id(name)
    except ValueError:
        return False
    return True


def _write_new(path: str, data: Any) -> None:
    """Write ``data`` to a file that must not exist yet."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
