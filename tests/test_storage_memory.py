import hashlib
import io
import os

import google_crc32c
import pytest

from depot.io import checksums, utils
from depot.io.memory import MemoryFileStorage
from depot.testing import StorageConformance


class TestMemoryStorage(StorageConformance):
    has_real_files = False
    @pytest.fixture
    def storage(self):
        return MemoryFileStorage()

    def test_options_are_ignored(self):
        storage = MemoryFileStorage(storage_path="/ignored", anything=1)
        assert storage.files == {}

    def test_no_public_url(self, storage):
        assert storage.get(storage.create(b"x")).public_url is None

    def test_storages_do_not_share_files(self):
        a, b = MemoryFileStorage(), MemoryFileStorage()
        file_id = a.create(b"x")
        assert not b.exists(file_id)

    def test_handle_taken_before_replace_reads_the_new_pair(self, storage):
        """As in filedepot a handle reads the new content; its facts follow, so they never mix."""
        file_id = storage.create(b"old content", "old.txt")
        f = storage.get(file_id)
        storage.replace(file_id, b"new", "new.csv")
        assert f.filename == "old.txt"
        assert f.read() == b"new"
        assert (f.filename, f.content_type, f.content_length) == ("new.csv", "text/csv", 3)
        storage.replace(file_id, b"newer", "newer.txt")
        assert list(f.iter_range(0, None)) == [b"new"]  # the version it started reading
        assert f.version != storage.get(file_id).version


class _CountingReader(io.BufferedReader):
    """A plain file that records the size of every read (still a real descriptor)."""

    def __init__(self, path, grow_by=b""):
        super().__init__(io.FileIO(path, "rb"))
        self.path, self.grow_by, self.reads = path, grow_by, []

    def read(self, n=-1):
        out = super().read(n)
        self.reads.append(n)
        if self.grow_by:  # another process appends while this one reads
            with open(self.path, "ab") as f:
                f.write(self.grow_by)
            self.grow_by = b""
        return out


class _ShortReads(io.FileIO):
    """Unbuffered reads that return less than asked, as a raw file may."""

    def read(self, n=-1):
        return super().read(min(n, 1000) if n >= 0 else 1000)


def test_plain_file_is_read_in_one_call(tmp_path, monkeypatch):
    """A file of known size goes straight into the stored bytes: one read, no chunked copy."""
    data = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "src").write_bytes(data)
    monkeypatch.setattr(utils, "copy_stream", lambda *a, **k: pytest.fail("copied in chunks"))
    storage = MemoryFileStorage()
    with _CountingReader(str(tmp_path / "src")) as f:
        f.seek(17)  # stored from the current position, like any stream
        file_id = storage.create(f)
        assert f.reads == [len(data) - 17, 1]  # the whole, then the end check
    assert storage.get(file_id).read() == data[17:]


def test_plain_file_grown_while_read_is_stored_whole(tmp_path):
    data, tail = os.urandom(100000), b"appended meanwhile"
    (tmp_path / "src").write_bytes(data)
    storage = MemoryFileStorage()
    with _CountingReader(str(tmp_path / "src"), grow_by=tail) as f:
        file_id = storage.create(f)
    assert storage.get(file_id).read() == data + tail


def test_short_reads_of_a_plain_file_are_completed(tmp_path):
    data = os.urandom(5500)
    (tmp_path / "src").write_bytes(data)
    storage = MemoryFileStorage()
    with _ShortReads(str(tmp_path / "src")) as f:
        file_id = storage.create(f)
    assert storage.get(file_id).read() == data


def test_bytes_io_is_stored_from_its_position():
    storage = MemoryFileStorage()
    content = io.BytesIO(b"skipped|kept")
    content.read(8)
    assert storage.get(storage.create(content)).read() == b"kept"
    content = io.BytesIO(b"whole")
    file_id = storage.create(content)
    content.seek(0)
    content.write(b"W")  # the buffer handed over is copied before the caller changes it
    assert storage.get(file_id).read() == b"whole"


def test_checksum_is_taken_when_first_asked_and_kept(monkeypatch):
    storage = MemoryFileStorage()
    computed = []
    real = checksums.compute
    monkeypatch.setattr(checksums, "compute", lambda *a: computed.append(a[0]) or real(*a))
    file_id = storage.create(b"some bytes", "a.txt")
    assert computed == []  # writing costs no checksum: the bytes never leave the process
    expected = "crc32c:" + "%08x" % google_crc32c.value(b"some bytes")
    assert storage.get(file_id).checksum == expected
    assert storage.get(file_id).checksum == expected
    assert computed == ["crc32c"]  # once per entry


def test_checksum_follows_the_entry_a_handle_reads():
    storage = MemoryFileStorage(checksum="sha256")
    file_id = storage.create(b"old", "a.txt")
    handle = storage.get(file_id)
    storage.replace(file_id, b"new")
    assert handle.read() == b"new"  # looked up at the first read, as in filedepot
    assert handle.checksum == "sha256:" + hashlib.sha256(b"new").hexdigest()


def test_no_checksum_when_turned_off_or_written_as_0_12_did():
    storage = MemoryFileStorage(checksum=None)
    assert storage.get(storage.create(b"x")).checksum is None
    storage.files["9a8b7c6d-0000-4000-8000-000000000000"] = {
        "data": b"y", "metadata": {"filename": "y", "content_type": "text/plain",
                                   "content_length": 1, "last_modified": None}, "version": 0}
    assert storage.get("9a8b7c6d-0000-4000-8000-000000000000").checksum is None
