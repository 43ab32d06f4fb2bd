"""The storage conformance suite: what it means to be a depot storage.

A backend's test module subclasses :class:`StorageConformance` and provides a
``storage`` fixture returning an empty storage; every test here then runs
against it.  A backend that passes is correct by definition::

    import pytest
    from depot.testing import StorageConformance

    class TestMyStorage(StorageConformance):
        @pytest.fixture
        def storage(self, tmp_path):
            return MyStorage(tmp_path)

Fixtures a subclass may override: ``missing_id`` (a well-formed id that is
not stored; a random UUID by default), ``invalid_id`` and ``backup_storage``
(a second, empty storage accepting this backend's ids; a
:class:`~depot.io.memory.MemoryFileStorage` by default).

Running the suite requires pytest; importing this module does not (the API
reference is built without it).
"""
from __future__ import annotations

import array
import dataclasses
import datetime
import io
import os
import tempfile
import threading
import uuid
from typing import Any, Optional
from unittest import mock

try:
    import pytest
except ImportError:  # importable without pytest (documentation builds); running the tests needs it
    from depot._no_pytest import pytest  # type: ignore[no-redef]

from depot.io.interfaces import FileStorage, StoredFacts, StoredFile
from depot.io.memory import MemoryFileStorage
from depot.io.utils import FileIntent

__all__ = ["StorageConformance", "FieldStorageLike", "FailingStream", "NonSeekableStream", "ForeignStoredFile"]

FILE_CONTENT = b"HELLO WORLD"


class FieldStorageLike:
    """What cgi.FieldStorage, WebOb and multipart parsers hand to applications."""

    def __init__(self, data: bytes, filename: str, type: Optional[str] = None) -> None:
        self.file = io.BytesIO(data)
        self.filename = filename
        self.type = type


class NonSeekableStream(io.RawIOBase):
    """A read-only stream that cannot seek or tell, like a socket or a pipe."""

    def __init__(self, data: bytes, chunk: int = 7919) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._chunk = chunk

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self._chunk, len(self._data) - self._pos)
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


class FailingStream(NonSeekableStream):
    """Yields ``good`` bytes, then raises: a client that disconnects mid-upload."""

    class Boom(Exception):
        pass

    def readinto(self, b: Any) -> int:
        n = super().readinto(b)
        if n == 0:
            raise self.Boom("stream broke after %d bytes" % self._pos)
        return n


class ForeignStoredFile(StoredFile):
    """A StoredFile of some other storage, for the ``replace(f, f)`` backup form."""

    def __init__(self, file_id: str, data: bytes, filename: str, content_type: str) -> None:
        super().__init__(file_id, filename, content_type, None, len(data))
        self._stream = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._stream.read(n)

    def close(self, *args: Any, **kwargs: Any) -> None:
        self._stream.close()

    @property
    def closed(self) -> bool:
        return self._stream.closed


def _patched_timestamp(value: str):
    return mock.patch("depot.io.utils.timestamp", return_value=value)


class StorageConformance:
    """The behaviour every :class:`~depot.io.interfaces.FileStorage` must show."""

    #: Bytes for the streaming tests: larger than any chunk, not a multiple of one.
    large_size = 3 * 1024 * 1024 + 4321
    #: Whether :meth:`StoredFile.real_file` gives an OS file (storages on a local disk).
    has_real_files = False

    @pytest.fixture
    def storage(self) -> FileStorage:  # pragma: no cover - must be overridden
        raise NotImplementedError("subclasses provide the storage fixture")

    @pytest.fixture
    def missing_id(self) -> str:
        return str(uuid.uuid4())

    @pytest.fixture
    def invalid_id(self) -> str:
        return "not-a-valid-id"

    @pytest.fixture
    def backup_storage(self) -> FileStorage:
        return MemoryFileStorage()

    # -- creation from every kind of content ---------------------------------

    def test_create_from_bytes(self, storage):
        file_id = storage.create(FILE_CONTENT)
        assert isinstance(file_id, str)
        f = storage.get(file_id)
        assert f.file_id == file_id
        assert f.read() == FILE_CONTENT
        assert f.filename == "unnamed"
        assert f.content_type == "application/octet-stream"
        assert f.content_length == len(FILE_CONTENT)

    def test_create_returns_new_ids(self, storage):
        ids = {storage.create(FILE_CONTENT) for _ in range(5)}
        assert len(ids) == 5

    def test_create_bytes_with_filename_guesses_type(self, storage):
        f = storage.get(storage.create(FILE_CONTENT, "image.png"))
        assert (f.filename, f.content_type) == ("image.png", "image/png")

    def test_explicit_content_type_wins(self, storage):
        f = storage.get(storage.create(FILE_CONTENT, "image.png", "text/plain"))
        assert (f.filename, f.content_type) == ("image.png", "text/plain")

    def test_create_empty(self, storage):
        f = storage.get(storage.create(b""))
        assert f.read() == b""
        assert f.content_length == 0

    def test_create_from_bytesio(self, storage):
        f = storage.get(storage.create(io.BytesIO(FILE_CONTENT), "hello.txt"))
        assert f.read() == FILE_CONTENT
        assert (f.filename, f.content_type) == ("hello.txt", "text/plain")

    def test_create_from_named_file(self, storage):
        with tempfile.NamedTemporaryFile() as tmp:
            tmp.write(FILE_CONTENT)
            tmp.flush()
            tmp.seek(0)
            f = storage.get(storage.create(tmp))
            assert f.read() == FILE_CONTENT
            assert f.filename == tmp.name.rsplit("/", 1)[-1]
            assert f.content_type == "application/octet-stream"

    def test_create_from_named_file_guesses_type(self, storage):
        with tempfile.NamedTemporaryFile(suffix=".txt") as tmp:
            tmp.write(FILE_CONTENT)
            tmp.flush()
            tmp.seek(0)
            f = storage.get(storage.create(tmp))
            assert f.filename.endswith(".txt")
            assert f.content_type == "text/plain"

    def test_create_from_fieldstorage_like(self, storage):
        upload = FieldStorageLike(FILE_CONTENT, "report.pdf", "application/x-custom")
        f = storage.get(storage.create(upload))
        assert f.read() == FILE_CONTENT
        assert (f.filename, f.content_type) == ("report.pdf", "application/x-custom")

    def test_create_from_fieldstorage_like_guesses_type(self, storage):
        f = storage.get(storage.create(FieldStorageLike(FILE_CONTENT, "report.pdf")))
        assert f.content_type == "application/pdf"

    def test_create_from_file_intent(self, storage):
        intent = FileIntent(io.BytesIO(FILE_CONTENT), "file.bin", "image/x-intent")
        f = storage.get(storage.create(intent, "ignored.txt", "text/ignored"))
        assert f.read() == FILE_CONTENT
        assert (f.filename, f.content_type) == ("file.bin", "image/x-intent")

    def test_create_from_file_intent_bytes(self, storage):
        f = storage.get(storage.create(FileIntent(FILE_CONTENT, "a.txt", "text/csv")))
        assert f.read() == FILE_CONTENT
        assert (f.filename, f.content_type) == ("a.txt", "text/csv")

    def test_create_from_stored_file(self, storage):
        source = storage.get(storage.create(FILE_CONTENT, "source.txt"))
        f = storage.get(storage.create(source))
        assert f.read() == FILE_CONTENT
        assert (f.filename, f.content_type) == ("source.txt", "text/plain")

    def test_create_from_other_storage_file(self, storage):
        other = MemoryFileStorage()
        source = other.get(other.create(FILE_CONTENT, "other.csv"))
        f = storage.get(storage.create(source))
        assert f.read() == FILE_CONTENT
        assert (f.filename, f.content_type) == ("other.csv", "text/csv")

    def test_create_from_non_seekable_stream(self, storage):
        data = bytes(range(256)) * 4099
        f = storage.get(storage.create(NonSeekableStream(data), "stream.bin"))
        assert f.content_length == len(data)
        assert f.read() == data

    def test_create_large_stream(self, storage):
        data = (b"0123456789abcdef" * (self.large_size // 16 + 1))[: self.large_size]
        f = storage.get(storage.create(io.BytesIO(data), "large.bin"))
        assert f.content_length == len(data)
        chunks = []
        while True:
            chunk = f.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
        assert b"".join(chunks) == data

    def test_unicode_filename_round_trips(self, storage):
        name = "Крупный файл àèìòù 😀.txt"
        f = storage.get(storage.create(FILE_CONTENT, name))
        assert f.filename == name
        assert f.content_type == "text/plain"

    # -- bad input changes nothing ---------------------------------------------

    def test_str_content_is_refused(self, storage):
        before = set(storage.list())
        with pytest.raises(TypeError):
            storage.create("this is text")
        assert set(storage.list()) == before

    def test_text_mode_file_is_refused(self, storage, tmp_path):
        path = tmp_path / "text.txt"
        path.write_text("text content")
        before = set(storage.list())
        with open(path) as text_file, pytest.raises(TypeError):
            storage.create(text_file)
        assert set(storage.list()) == before

    def test_failing_stream_leaves_nothing(self, storage):
        before = set(storage.list())
        with pytest.raises(FailingStream.Boom):
            storage.create(FailingStream(b"x" * 100000), "broken.bin")
        assert set(storage.list()) == before

    def test_failing_replace_keeps_original(self, storage):
        file_id = storage.create(FILE_CONTENT, "keep.txt")
        with pytest.raises(FailingStream.Boom):
            storage.replace(file_id, FailingStream(b"y" * 100000), "broken.bin")
        f = storage.get(file_id)
        assert f.read() == FILE_CONTENT
        assert f.filename == "keep.txt"
        assert storage.list().count(file_id) == 1

    def test_str_replace_keeps_original(self, storage):
        file_id = storage.create(FILE_CONTENT, "keep.txt")
        with pytest.raises(TypeError):
            storage.replace(file_id, "text")
        assert storage.get(file_id).read() == FILE_CONTENT

    # -- metadata -----------------------------------------------------------

    def test_last_modified_comes_from_timestamp(self, storage):
        with _patched_timestamp("2001-01-01 00:00:01"):
            file_id = storage.create(FILE_CONTENT)
        assert storage.get(file_id).last_modified == datetime.datetime(2001, 1, 1, 0, 0, 1)

    def test_last_modified_is_naive_utc_to_the_second(self, storage):
        before = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)
        modified = storage.get(storage.create(FILE_CONTENT)).last_modified
        after = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        assert modified.tzinfo is None
        assert modified.microsecond == 0
        assert before <= modified <= after

    @pytest.mark.parametrize(
        "content",
        [lambda: FILE_CONTENT, lambda: FileIntent(FILE_CONTENT, "r\u00e9sum\u00e9.txt", None),
         lambda: FieldStorageLike(FILE_CONTENT, "data.csv"), lambda: NonSeekableStream(FILE_CONTENT)],
        ids=["bytes", "intent", "upload", "stream"],
    )
    def test_create_with_facts_reports_what_get_reads(self, storage, content):
        with _patched_timestamp("2001-01-01 00:00:01"):
            facts = storage.create_with_facts(content())
        stored = storage.get(facts.file_id)
        assert facts == StoredFacts.of(stored)
        assert facts.last_modified == datetime.datetime(2001, 1, 1, 0, 0, 1)
        assert stored.read() == FILE_CONTENT
        stored.close()
        assert facts.file_id in storage.list()

    def test_repr(self, storage):
        with _patched_timestamp("2001-01-01 00:00:01"):
            f = storage.get(storage.create(FILE_CONTENT, "file.txt"))
        assert repr(f).startswith("<%s:%s " % (type(f).__name__, f.file_id))
        assert repr(f).endswith(
            "filename=file.txt content_type=text/plain last_modified=2001-01-01 00:00:01>"
        )

    def test_name_is_filename(self, storage):
        f = storage.get(storage.create(FILE_CONTENT, "named.txt"))
        assert f.name == "named.txt"

    def test_stream_capabilities(self, storage):
        f = storage.get(storage.create(FILE_CONTENT))
        assert f.readable() is True
        assert f.writable() is False
        assert f.seekable() is False

    # -- get, exists, delete, list --------------------------------------------

    def test_get_accepts_stored_file_and_objects_with_file_id(self, storage):
        file_id = storage.create(FILE_CONTENT)
        f = storage.get(file_id)
        assert storage.get(f).file_id == file_id
        assert storage.get(type("Uploaded", (), {"file_id": file_id})()).read() == FILE_CONTENT

    def test_get_invalid_id(self, storage, invalid_id):
        with pytest.raises(ValueError):
            storage.get(invalid_id)

    def test_get_missing(self, storage, missing_id):
        with pytest.raises(IOError):
            storage.get(missing_id)

    def test_exists(self, storage, missing_id, invalid_id):
        file_id = storage.create(FILE_CONTENT)
        assert storage.exists(file_id) is True
        assert storage.exists(storage.get(file_id)) is True
        assert storage.exists(missing_id) is False
        with pytest.raises(ValueError):
            storage.exists(invalid_id)

    def test_delete(self, storage):
        file_id = storage.create(FILE_CONTENT)
        storage.delete(file_id)
        assert storage.exists(file_id) is False
        with pytest.raises(IOError):
            storage.get(file_id)

    def test_delete_stored_file(self, storage):
        f = storage.get(storage.create(FILE_CONTENT))
        storage.delete(f)
        assert storage.exists(f.file_id) is False

    def test_delete_is_idempotent(self, storage, missing_id):
        file_id = storage.create(FILE_CONTENT)
        storage.delete(file_id)
        storage.delete(file_id)
        storage.delete(missing_id)

    def test_delete_invalid_id(self, storage, invalid_id):
        with pytest.raises(ValueError):
            storage.delete(invalid_id)

    def test_list(self, storage):
        ids = [storage.create(FILE_CONTENT) for _ in range(3)]
        listed = storage.list()
        assert isinstance(listed, list)
        assert set(ids) <= set(listed)
        storage.delete(ids[0])
        listed = storage.list()
        assert ids[0] not in listed
        assert set(ids[1:]) <= set(listed)

    def test_list_names_every_file_even_with_same_filename(self, storage):
        ids = {storage.create(FILE_CONTENT, "same.txt") for _ in range(3)}
        ids.add(storage.create(FILE_CONTENT))
        assert ids <= set(storage.list())

    # -- replace --------------------------------------------------------------

    def test_replace_returns_id_and_keeps_filename(self, storage):
        file_id = storage.create(FILE_CONTENT, "file.txt")
        old_handle = storage.get(file_id)
        assert storage.replace(file_id, b"NEW CONTENT") == file_id
        f = storage.get(file_id)
        assert f.read() == b"NEW CONTENT"
        assert (f.filename, f.content_type) == ("file.txt", "text/plain")
        # A handle taken before the replace reads the new content (read is lazy).
        assert old_handle.read() == b"NEW CONTENT"

    def test_replace_by_stored_file(self, storage):
        f = storage.get(storage.create(FILE_CONTENT, "file.txt"))
        assert storage.replace(f, io.BytesIO(b"BY HANDLE")) == f.file_id
        assert storage.get(f.file_id).read() == b"BY HANDLE"

    def test_replace_without_filename_ignores_content_type(self, storage):
        file_id = storage.create(FILE_CONTENT, "file.txt")
        storage.replace(file_id, b"x", content_type="image/png")
        f = storage.get(file_id)
        assert (f.filename, f.content_type) == ("file.txt", "text/plain")

    def test_replace_with_filename_changes_type(self, storage):
        file_id = storage.create(FILE_CONTENT, "file.txt")
        storage.replace(file_id, b"x", "image.png")
        f = storage.get(file_id)
        assert (f.filename, f.content_type) == ("image.png", "image/png")

    def test_replace_with_fieldstorage_like(self, storage):
        file_id = storage.create(FILE_CONTENT, "file.txt")
        storage.replace(file_id, FieldStorageLike(b"form data", "form.csv"))
        f = storage.get(file_id)
        assert f.read() == b"form data"
        assert (f.filename, f.content_type) == ("form.csv", "text/csv")

    def test_replace_refreshes_metadata(self, storage):
        with _patched_timestamp("2001-01-01 00:00:01"):
            file_id = storage.create(FILE_CONTENT)
        with _patched_timestamp("2002-02-02 00:00:02"):
            storage.replace(file_id, b"longer content than before")
        f = storage.get(file_id)
        assert f.last_modified == datetime.datetime(2002, 2, 2, 0, 0, 2)
        assert f.content_length == len(b"longer content than before")

    def test_replace_missing(self, storage, missing_id):
        with pytest.raises(IOError):
            storage.replace(missing_id, FILE_CONTENT)
        assert storage.exists(missing_id) is False

    def test_replace_invalid_id(self, storage, invalid_id):
        with pytest.raises(ValueError):
            storage.replace(invalid_id, FILE_CONTENT)

    def test_replace_changes_version(self, storage):
        """``version`` (what ETags derive from) changes even for same-length writes within a second."""
        f = storage.get(storage.create(b"AAAA"))
        before = f.version
        storage.replace(f.file_id, b"BBBB")
        after = storage.get(f.file_id).version
        assert isinstance(before, str) and before
        assert before != after
        assert storage.get(f.file_id).version == after

    def test_backup_to_another_storage(self, storage, backup_storage):
        with _patched_timestamp("2001-01-01 00:00:01"):
            f = storage.get(storage.create(FILE_CONTENT, "backup.txt"))
        assert backup_storage.replace(f, f) == f.file_id
        copy = backup_storage.get(f.file_id)
        assert copy.read() == FILE_CONTENT
        assert (copy.filename, copy.content_type) == ("backup.txt", "text/plain")

    def test_restore_from_another_storage(self, storage):
        file_id = storage.create(b"placeholder")
        storage.delete(file_id)
        foreign = ForeignStoredFile(file_id, FILE_CONTENT, "restored.txt", "text/plain")
        assert storage.replace(foreign, foreign) == file_id
        f = storage.get(file_id)
        assert f.read() == FILE_CONTENT
        assert (f.filename, f.content_type) == ("restored.txt", "text/plain")
        assert storage.list().count(file_id) == 1

    def test_replace_with_itself(self, storage):
        f = storage.get(storage.create(FILE_CONTENT, "self.txt"))
        storage.replace(f, f)
        assert storage.get(f.file_id).read() == FILE_CONTENT

    # -- reading --------------------------------------------------------------

    def test_read_in_chunks(self, storage):
        f = storage.get(storage.create(FILE_CONTENT))
        assert f.read(5) == FILE_CONTENT[:5]
        assert f.read(3) == FILE_CONTENT[5:8]
        assert f.read() == FILE_CONTENT[8:]
        assert f.read() == b""
        assert f.read(10) == b""

    def test_read_zero(self, storage):
        f = storage.get(storage.create(FILE_CONTENT))
        assert f.read(0) == b""
        assert f.read() == FILE_CONTENT

    def test_close_before_read(self, storage):
        f = storage.get(storage.create(FILE_CONTENT))
        assert f.closed is False
        f.close()
        assert f.closed is True
        with pytest.raises(ValueError):
            f.read()

    def test_close_after_read(self, storage):
        f = storage.get(storage.create(FILE_CONTENT))
        f.read(1)
        f.close()
        assert f.closed is True
        with pytest.raises(ValueError):
            f.read()

    def test_context_manager_closes(self, storage):
        file_id = storage.create(FILE_CONTENT)
        with storage.get(file_id) as f:
            assert f.read() == FILE_CONTENT
        assert f.closed is True

    def test_iter_range(self, storage):
        data = bytes(range(256)) * 40
        file_id = storage.create(data)
        cases = [(0, None), (0, 1), (10, 20), (1000, None), (len(data) - 1, None), (5, len(data) + 100)]
        for start, stop in cases:
            got = b"".join(storage.get(file_id).iter_range(start, stop, chunk_size=777))
            assert got == data[start:stop], (start, stop)
        chunks = list(storage.get(file_id).iter_range(0, None, chunk_size=1000))
        assert all(len(c) <= 1000 for c in chunks)
        assert list(storage.get(file_id).iter_range(len(data), None)) in ([], [b""])

    def test_real_file(self, storage):
        f = storage.get(storage.create(FILE_CONTENT))
        real = f.real_file()
        name = type(self).__name__
        if not self.has_real_files:
            if real is not None:
                real.close()
            assert real is None, (
                "real_file() returned an operating-system file: set has_real_files = True on %s" % name)
            return
        assert real is not None, (
            "real_file() returned None: remove has_real_files = True from %s (or make real_file() "
            "return an OS file)" % name)
        with real:
            assert isinstance(real.fileno(), int)
            assert real.read() == FILE_CONTENT

    def test_concurrent_readers_during_replace(self, storage):
        """Readers never see a missing or mixed file while another thread replaces it."""
        versions = [bytes([65 + i]) * (1000 + i) for i in range(8)]
        file_id = storage.create(versions[0], "race.bin")
        errors = []
        stop = threading.Event()

        def reader():
            while not stop.is_set():
                try:
                    data = storage.get(file_id).read()
                except Exception as exc:  # noqa: BLE001 - any failure is the finding
                    errors.append(exc)
                    return
                if data not in versions:
                    errors.append(AssertionError("read %d bytes of a partial file" % len(data)))
                    return

        threads = [threading.Thread(target=reader) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            for i in range(40):
                storage.replace(file_id, versions[i % len(versions)])
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert errors == []

    # uuid.UUID ids (fidelity)
    #
    # filedepot 0.12 code passes uuid.UUID objects where ids go: one names the
    # file stored under its canonical string.  The file is stored under a
    # UUID1 (filedepot's ids) with the backup form of replace, which every
    # storage takes (GridFS too, whose own new ids are ObjectIds).

    def _store_under_uuid(self, storage: FileStorage) -> uuid.UUID:
        file_uuid = uuid.uuid1()
        foreign = ForeignStoredFile(str(file_uuid), FILE_CONTENT, "uuid.txt", "text/plain")
        storage.replace(foreign, foreign)
        return file_uuid

    def test_uuid_object_gets_the_file(self, storage):
        file_uuid = self._store_under_uuid(storage)
        f = storage.get(file_uuid)
        assert f.file_id == str(file_uuid)
        assert (f.read(), f.filename) == (FILE_CONTENT, "uuid.txt")

    def test_uuid_object_exists_replace_delete(self, storage):
        file_uuid = self._store_under_uuid(storage)
        assert storage.exists(file_uuid) is True
        assert storage.replace(file_uuid, b"REPLACED") == str(file_uuid)
        replaced = storage.get(str(file_uuid))
        assert (replaced.read(), replaced.filename) == (b"REPLACED", "uuid.txt")
        storage.delete(file_uuid)
        assert storage.exists(str(file_uuid)) is False
        assert str(file_uuid) not in storage.list()

    def test_missing_uuid_object(self, storage):
        missing = uuid.uuid1()
        with pytest.raises(IOError):
            storage.get(missing)
        assert storage.exists(missing) is False
        storage.delete(missing)
        with pytest.raises(IOError):
            storage.replace(missing, b"nothing")

    # content and metadata checks (no data loss)

    @pytest.mark.parametrize(
        "make",
        [
            lambda: bytearray(b"a bytearray"),
            lambda: memoryview(b"a memoryview"),
            lambda: array.array("i", [1, 2, 3, 4]),
            lambda: memoryview(array.array("i", [1, 2, 3, 4])),
            lambda: memoryview(array.array("d", [0.5, -1.25])),
            lambda: memoryview(b"0123456789abcdef")[::3],
            lambda: memoryview(array.array("h", range(12)))[1::2],
            lambda: memoryview(bytearray(range(24))).cast("B", (4, 6)),
            lambda: memoryview(b"")[::2],
        ],
        ids=["bytearray", "memoryview", "array-i", "view-i", "view-d", "strided", "strided-h", "2d", "empty"],
    )
    def test_every_bytes_like_stores_its_bytes(self, storage, make):
        """The stored bytes and length are the buffer's bytes, whatever its item size or layout."""
        content = make()
        expected = memoryview(content).tobytes()
        file_id = storage.create(content, "data.bin")
        f = storage.get(file_id)
        assert (f.read(), f.content_length) == (expected, len(expected))
        storage.replace(file_id, make())
        assert storage.get(file_id).read() == expected

    @pytest.mark.parametrize("bad", [123, b"name.txt", ["a"], 1.5])
    def test_non_string_filename_is_refused(self, storage, bad):
        with pytest.raises(TypeError, match="filename"):
            storage.create(FILE_CONTENT, filename=bad)
        with pytest.raises(TypeError, match="filename"):
            storage.create(FileIntent(FILE_CONTENT, bad, "text/plain"))
        file_id = storage.create(FILE_CONTENT, "kept.txt")
        with pytest.raises(TypeError, match="filename"):
            storage.replace(file_id, b"other", filename=bad)
        f = storage.get(file_id)
        assert (f.read(), f.filename) == (FILE_CONTENT, "kept.txt")
        assert storage.list() == [file_id]

    @pytest.mark.parametrize("bad", [123, b"text/plain", object()])
    def test_non_string_content_type_is_refused(self, storage, bad):
        with pytest.raises(TypeError, match="content_type"):
            storage.create(FILE_CONTENT, "a.txt", content_type=bad)
        with pytest.raises(TypeError, match="content_type"):
            storage.create(io.BytesIO(FILE_CONTENT), "a.txt", content_type=bad)
        file_id = storage.create(FILE_CONTENT, "kept.txt")
        with pytest.raises(TypeError, match="content_type"):
            storage.replace(file_id, b"other", "b.txt", content_type=bad)
        f = storage.get(file_id)
        assert (f.read(), f.content_type) == (FILE_CONTENT, "text/plain")
        assert storage.list() == [file_id]

    @pytest.mark.parametrize("bad", ["text/html\t", "text/plain\r\nSet-Cookie: a=b", "text/\x00plain", "a/b\x7f"])
    def test_content_type_with_control_characters_is_refused(self, storage, bad):
        with pytest.raises(ValueError, match="content type"):
            storage.create(FILE_CONTENT, "a.txt", bad)
        file_id = storage.create(FILE_CONTENT, "kept.txt")
        with pytest.raises(ValueError, match="content type"):
            storage.replace(file_id, b"other", "b.txt", bad)
        assert storage.get(file_id).content_type == "text/plain"
        assert storage.list() == [file_id]

    @pytest.mark.parametrize("kept", ["text/plain; charset=utf-8", "not a type", "application/x-thing+json", ""])
    def test_any_other_content_type_string_is_kept(self, storage, kept):
        f = storage.get(storage.create(FILE_CONTENT, "a.bin", kept))
        assert f.content_type == (kept or "application/octet-stream")

    @pytest.mark.parametrize(
        "name, stored",
        [
            (os.fsdecode(b"caf\xe9.txt"), "caf\ufffd.txt"),  # a Latin-1 name read from a UTF-8 file system
            (os.fsdecode("é-ok.txt".encode()), "é-ok.txt"),
            ("lone\ud800.txt", "lone\ufffd.txt"),
            ("pair\ud83d\ude00.txt", "pair\U0001f600.txt"),
        ],
        ids=["surrogateescape", "utf8", "lone", "pair"],
    )
    def test_filename_with_surrogates_is_stored_as_valid_unicode(self, storage, name, stored):
        file_id = storage.create(FILE_CONTENT, name)
        f = storage.get(file_id)
        assert f.filename == stored
        f.filename.encode("utf-8")
        assert f.read() == FILE_CONTENT
        assert file_id in storage.list()
        f = storage.get(storage.create(FieldStorageLike(FILE_CONTENT, name)))
        assert f.filename == stored
        storage.replace(file_id, b"new", name)
        assert storage.get(file_id).filename == stored

    # -- checksums (integrity) -------------------------------------------------
    #
    # Every write stores the checksum of the bytes it wrote, computed as they
    # streamed in; it is checked here against hashlib / google_crc32c directly.

    #: Algorithms whose checksum the storage reports for a streamed (large,
    #: chunked) write; empty for a storage that keeps no checksums.
    streamed_checksums: tuple = ("crc32c", "sha256", "md5")
    #: Whether the storage reports checksums at all (``False`` for the legacy ones).
    has_checksums = True

    def write_without_checksum(self, storage: FileStorage, data: bytes) -> str:
        """Store ``data`` as filedepot 0.12 did: metadata without a checksum.

        With the option off every backend writes exactly 0.12's metadata keys;
        a backend test may override this to write the old format directly.
        """
        algorithm = storage.checksum_algorithm
        storage.checksum_algorithm = None
        try:
            return storage.create(data, "old.txt")
        finally:
            storage.checksum_algorithm = algorithm

    @staticmethod
    def _independent_checksum(algorithm: str, data: bytes) -> str:
        if algorithm == "crc32c":
            import google_crc32c

            return "crc32c:%08x" % google_crc32c.value(data)
        import hashlib

        return "%s:%s" % (algorithm, hashlib.new(algorithm, data).hexdigest())

    def _checksum_of(self, storage: FileStorage, file_id: str) -> Optional[str]:
        f = storage.get(file_id)
        try:
            return f.checksum
        finally:
            f.close()

    def _use_algorithm(self, storage: FileStorage, algorithm: str) -> Optional[str]:
        """Switch ``storage`` to ``algorithm``; ``None`` for a storage that keeps no checksums.

        Such a storage is not skipped: the tests then check that it claims none.
        """
        if not self.has_checksums:
            return None
        storage.checksum_algorithm = algorithm
        return algorithm

    @pytest.mark.parametrize("algorithm", ["crc32c", "sha256", "md5"])
    def test_checksum_of_bytes_and_file_objects(self, storage, algorithm):
        kept = self._use_algorithm(storage, algorithm)
        data = b"integrity " * 101
        expected = self._independent_checksum(kept, data) if kept else None
        for content in (data, io.BytesIO(data), FieldStorageLike(data, "a.bin"), NonSeekableStream(data)):
            file_id = storage.create(content, "a.bin")
            assert self._checksum_of(storage, file_id) == expected, content

    @pytest.mark.parametrize("algorithm", ["crc32c", "sha256", "md5"])
    def test_checksum_of_a_large_stream(self, storage, algorithm):
        streamed = self._use_algorithm(storage, algorithm) in self.streamed_checksums
        data = os.urandom(self.large_size)
        file_id = storage.create(NonSeekableStream(data), "big.bin")
        expected = self._independent_checksum(algorithm, data) if streamed else None
        assert self._checksum_of(storage, file_id) == expected
        with tempfile.TemporaryFile() as f:
            f.write(data[::-1])
            f.seek(0)
            storage.replace(file_id, f)
        if streamed:
            expected = self._independent_checksum(algorithm, data[::-1])
        assert self._checksum_of(storage, file_id) == expected

    def test_checksum_follows_replace(self, storage):
        algorithm = self._use_algorithm(storage, storage.checksum_algorithm or "crc32c")
        file_id = storage.create(b"first", "a.txt")
        first = self._checksum_of(storage, file_id)
        storage.replace(file_id, b"second")
        expected = self._independent_checksum(algorithm, b"second") if algorithm else None
        assert self._checksum_of(storage, file_id) == expected
        storage.replace(file_id, b"first")
        assert self._checksum_of(storage, file_id) == first  # same bytes, same checksum

    def test_default_checksum_is_crc32c(self, storage):
        file_id = storage.create(FILE_CONTENT)
        if not self.has_checksums:
            assert self._checksum_of(storage, file_id) is None
            return
        assert storage.checksum_algorithm == "crc32c"
        assert self._checksum_of(storage, file_id) == self._independent_checksum("crc32c", FILE_CONTENT)

    def test_checksum_off_stores_none(self, storage):
        storage.checksum_algorithm = None
        file_id = storage.create(FILE_CONTENT)
        assert self._checksum_of(storage, file_id) is None
        assert storage.get(file_id).read() == FILE_CONTENT

    def test_file_written_without_checksum_loads_with_none(self, storage):
        file_id = self.write_without_checksum(storage, FILE_CONTENT)
        f = storage.get(file_id)
        assert f.checksum is None
        assert f.read() == FILE_CONTENT
        assert f.filename == "old.txt"

    # -- direct uploads (depot.uploads): markers and files under a given id ---

    #: Whether the storage keeps the markers of direct uploads; a storage that
    #: does not (set it to ``False``) must refuse them with NotImplementedError.
    supports_direct_uploads = True

    def _markers_supported(self, storage: FileStorage) -> bool:
        if self.supports_direct_uploads:
            return True
        with pytest.raises(NotImplementedError):
            storage._pending_put(storage._new_upload_id(), b"{}")
        return False

    def test_pending_markers_are_kept_apart_from_files(self, storage):
        if not self._markers_supported(storage):
            return
        before = set(storage.list())
        file_id = storage._new_upload_id()
        storage._pending_put(file_id, b'{"n": 1}')
        assert storage._pending_get(file_id) == b'{"n": 1}'
        storage._pending_put(file_id, b'{"n": 2}')  # rewritten once the backend answered
        assert storage._pending_get(file_id) == b'{"n": 2}'
        assert set(storage.list()) == before
        assert not storage.exists(file_id)
        listed = dict(storage._pending_list())
        assert list(listed) == [file_id]
        assert abs(listed[file_id] - datetime.datetime.now().timestamp()) < 600
        storage._pending_delete(file_id)
        assert storage._pending_get(file_id) is None and dict(storage._pending_list()) == {}
        storage._pending_delete(file_id)  # a missing marker is no error

    def test_claiming_a_marker_replaces_it_once(self, storage):
        """Attaching replaces the marker by a claimed one (never absent between): one caller wins."""
        if not self._markers_supported(storage):
            return
        from depot.uploads.intents import PendingUpload

        record = PendingUpload("files", storage._new_upload_id(), 1.0, 2.0, 10)
        claimed = dataclasses.replace(record, claimed_at=3.0).to_json()
        assert storage._pending_claim(record.file_id, claimed) is False  # no marker
        storage._pending_put(record.file_id, record.to_json())
        assert storage._pending_claim(record.file_id, claimed) is True
        assert storage._pending_claim(record.file_id, claimed) is False  # claimed already
        assert storage._pending_get(record.file_id) == claimed
        assert list(dict(storage._pending_list())) == [record.file_id]
        storage._pending_delete(record.file_id)
        assert storage._pending_get(record.file_id) is None and dict(storage._pending_list()) == {}

    def test_pending_marker_of_a_missing_or_invalid_id(self, storage, missing_id, invalid_id):
        if not self._markers_supported(storage):
            return
        assert storage._pending_get(missing_id) is None
        with pytest.raises(ValueError):
            storage._pending_put(invalid_id, b"{}")

    def test_store_at_creates_the_file_under_the_id(self, storage):
        if not self._markers_supported(storage):
            return
        file_id = storage._new_upload_id()
        storage._pending_put(file_id, b"{}")
        facts = storage._store_at(file_id, FILE_CONTENT, "upload.txt", "text/plain")
        assert facts.file_id == file_id
        f = storage.get(file_id)
        assert (f.read(), f.filename, f.content_type) == (FILE_CONTENT, "upload.txt", "text/plain")
        assert (facts.filename, facts.content_type) == ("upload.txt", "text/plain")
        assert file_id in storage.list()
        assert list(dict(storage._pending_list())) == [file_id]  # the marker is the attach step's to delete
        with pytest.raises(FileExistsError):
            storage._store_at(file_id, b"another upload to the same id")
        assert storage.get(file_id).read() == FILE_CONTENT
        storage.delete(file_id)
        assert storage._pending_get(file_id) == b"{}"
        storage._pending_delete(file_id)

    def test_store_at_streams_and_leaves_nothing_on_failure(self, storage):
        if not self._markers_supported(storage):
            return
        data = os.urandom(self.large_size)
        file_id = storage._new_upload_id()
        storage._store_at(file_id, NonSeekableStream(data), "big.bin")
        assert storage.get(file_id).read() == data
        broken = storage._new_upload_id()
        with pytest.raises(FailingStream.Boom):
            storage._store_at(broken, FailingStream(data[:100000]), "broken.bin")
        assert not storage.exists(broken)
        assert broken not in storage.list()
