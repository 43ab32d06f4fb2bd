"""A storage that keeps everything in the process's memory: meant for test suites."""
from __future__ import annotations

import io
import itertools
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

from depot.io import checksums, utils
from depot.io.interfaces import OneStepStorage, StoredFacts, StoredFile
from depot.io.interfaces import FileStorage  # noqa: F401 - a name filedepot 0.12 had here
from depot.io.utils import DEFAULT_CHUNK_SIZE, check_uuid, limit_chunks

__all__ = ["MemoryStoredFile", "MemoryFileStorage"]

_check_file_id = check_uuid  # filedepot 0.12's name; the storage checks through FileStorage._checked_id

# A write counter makes every stored version distinguishable (for ETags), even
# two writes of the same length within one second.
_versions = itertools.count(1)


def _facts(file_data: Dict[str, Any]) -> Tuple[str, str, Any, int]:
    """``(filename, content_type, last_modified, content_length)`` of a stored entry."""
    metadata = file_data["metadata"]
    return (
        metadata["filename"],
        metadata["content_type"],
        metadata["last_modified"],
        metadata["content_length"],
    )


def _checksum(file_data: Dict[str, Any]) -> Optional[str]:
    """The checksum of a stored entry, taken from its bytes the first time it is asked for.

    Why not while writing, as the other backends do: their checksum guards
    the bytes on their way to a disk or a server, but these bytes never
    leave the process, so one taken later from the same immutable ``bytes``
    is the same value, and a write that nobody asks the checksum of (tests,
    caches) costs no more than filedepot's.  It is kept beside the
    metadata, whose keys stay 0.12's exactly (SPEC 2.1); an entry written
    with ``checksum=None``, or by hand as 0.12 did, has none.
    """
    checksum = file_data.get("checksum")
    if checksum is None and file_data.get("checksum_algorithm") is not None:
        checksum = file_data["checksum"] = checksums.compute(file_data["checksum_algorithm"], file_data["data"])
    return checksum


def _read_all(content: Any) -> bytes:
    """Everything left in the stream ``content``, copied as few times as its kind allows.

    A plain file is read in one call straight into the bytes object that is
    kept (the kernel's copy is the only one), and a :class:`io.BytesIO`
    hands over its buffer; any other stream goes through
    :func:`utils.copy_stream`'s bounded buffer into a :class:`io.BytesIO`.
    """
    if isinstance(content, io.BytesIO):
        return content.read()
    buf = io.BytesIO()
    left = utils.size_left(content)
    if left:
        head = content.read(left)
        more = content.read(1)  # the end, normally: one more read returns nothing
        if not more:
            return head
        # A short read, or a file grown meanwhile: the rest the usual way.
        buf.write(head)
        buf.write(more)
    utils.copy_stream(content, buf)
    return buf.getvalue()


class MemoryStoredFile(StoredFile):
    """A file of :class:`MemoryFileStorage`; content is looked up on the first read."""

    def __init__(self, files: Dict[str, Dict[str, Any]], file_id: str, file_data: Dict[str, Any]) -> None:
        _check_file_id(file_id)
        super().__init__(file_id, *_facts(file_data))
        self._files = files
        self._file_data = file_data
        self._pinned = False
        self._stream: Optional[io.BytesIO] = None

    @property
    def version(self) -> str:
        return str(self._file_data["version"])

    @property
    def checksum(self) -> Optional[str]:
        """The checksum of the entry whose facts this file reports (see :func:`_checksum`)."""
        return _checksum(self._file_data)

    @checksum.setter
    def checksum(self, value: Optional[str]) -> None:
        # StoredFile.__init__ assigns every fact; this one always comes from the entry.
        pass

    def _data(self) -> bytes:
        # Looked up at the first read so a handle taken before replace() reads
        # the new content, as in filedepot; the facts follow so that they
        # describe the bytes read, and the version is kept from then on.
        if not self._pinned:
            entry = self._files.get(self.file_id, self._file_data)
            if entry is not self._file_data:
                StoredFile.__init__(self, self.file_id, *_facts(entry))
                self._file_data = entry
            self._pinned = True
        return self._file_data["data"]

    def real_file(self) -> None:
        """``None`` (no OS file), but the version read from now on is chosen here, as local files choose it.

        The serving core opens content with this call and then checks the
        facts: a replace since :meth:`MemoryFileStorage.get` shows now,
        before any header is sent, instead of at the first read.
        """
        self._check_open()
        self._data()
        return None

    def read(self, n: int = -1) -> bytes:
        if self._stream is None:
            self._stream = io.BytesIO(self._data())
        return self._stream.read(n)

    def close(self, *args: Any, **kwargs: Any) -> None:
        if self._stream is None:
            self._stream = io.BytesIO()
        self._stream.close()

    @property
    def closed(self) -> bool:
        return self._stream is not None and self._stream.closed

    def iter_range(
        self, start: int = 0, stop: Optional[int] = None, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> Iterator[bytes]:
        self._check_open()
        yield from limit_chunks((memoryview(self._data())[start:stop],), None, chunk_size)


class MemoryFileStorage(OneStepStorage):
    """Files kept in a dict of this instance; options are accepted and ignored.

    Ignoring options lets a test configuration swap any storage for this one
    without editing the rest of its settings.
    """

    def __init__(self, checksum: Any = checksums.DEFAULT_ALGORITHM, **options: Any) -> None:
        self.files: Dict[str, Dict[str, Any]] = {}
        # Markers of direct uploads: apart from ``files``, so never listed.
        self.pending: Dict[str, Tuple[bytes, float]] = {}
        self._store_lock = threading.Lock()
        self._set_checksum(checksum)

    def get(self, file_or_id: Any) -> MemoryStoredFile:
        file_id = self._checked_id(file_or_id)
        try:
            file_data = self.files[file_id]
        except KeyError:
            raise utils.missing_file(file_id) from None
        return MemoryStoredFile(self.files, file_id, file_data)

    def _save(self, file_id: str, content: Any, filename: str, content_type: str) -> StoredFacts:
        return self._save_into(self.files, file_id, content, filename, content_type)

    def _save_into(
        self, files: Dict[str, Dict[str, Any]], file_id: str, content: Any, filename: str, content_type: str
    ) -> StoredFacts:
        """Read ``content`` (already checked) whole and publish it as ``files[file_id]``."""
        if isinstance(content, (bytes, bytearray, memoryview)):
            data = bytes(content)
        else:
            data = _read_all(content)  # in one call for a plain file
        last_modified = utils.parse_timestamp(utils.timestamp())
        # Built completely before it is published: a failing stream leaves nothing behind.
        entry = {
            "data": data,
            "metadata": {
                "filename": filename,
                "content_type": content_type,
                "content_length": len(data),
                "last_modified": last_modified,
            },
            "version": next(_versions),
        }
        if self.checksum_algorithm is not None:
            entry["checksum_algorithm"] = self.checksum_algorithm  # see _checksum
        files[file_id] = entry
        return StoredFacts(file_id, filename, content_type, last_modified, None)

    def delete(self, file_or_id: Any) -> None:
        self.files.pop(self._checked_id(file_or_id), None)

    def exists(self, file_or_id: Any) -> bool:
        return self._checked_id(file_or_id) in self.files

    def list(self) -> List[str]:
        return list(self.files)

    # -- direct uploads ----------------------------------------------------------

    def _pending_put(self, file_id: str, data: bytes) -> None:
        _check_file_id(file_id)
        previous = self.pending.get(file_id)
        self.pending[file_id] = (bytes(data), previous[1] if previous else time.time())

    def _pending_get(self, file_id: str) -> Optional[bytes]:
        entry = self.pending.get(file_id)
        return None if entry is None else entry[0]

    def _pending_delete(self, file_id: str) -> None:
        self.pending.pop(file_id, None)

    def _pending_claim(self, file_id: str, claimed: bytes) -> bool:
        from depot.uploads.intents import claimed as is_claimed

        with self._store_lock:
            entry = self.pending.get(file_id)
            if entry is None or is_claimed(entry[0]):
                return False
            self.pending[file_id] = (bytes(claimed), entry[1])
            return True

    def _pending_list(self) -> Iterator[Tuple[str, float]]:
        # The ids are copied (the dict may change while the caller goes on:
        # gc removes markers as it lists them), the rest is read as it goes.
        for file_id in list(self.pending):
            entry = self.pending.get(file_id)
            if entry is not None:  # else removed meanwhile
                yield file_id, entry[1]

    def _store_at(self, file_id: str, content: Any, filename: Optional[str] = None,
                  content_type: Optional[str] = None) -> StoredFacts:
        file_id = self._checked_id(file_id)
        content, filename, content_type = self._content_info(content, filename, content_type)
        # The entry is built before the lock (a slow stream holds no one up);
        # the check and the publication happen under it, so of two uploads
        # to one id exactly one is kept.
        scratch: Dict[str, Dict[str, Any]] = {}
        facts = MemoryFileStorage._save_into(self, scratch, file_id, content, filename, content_type)
        with self._store_lock:
            if file_id in self.files:
                raise FileExistsError("File %s already exists in %r" % (file_id, self))
            self.files[file_id] = scratch[file_id]
        return facts

    def __repr__(self) -> str:
        return "<MemoryFileStorage files=%d>" % len(self.files)
