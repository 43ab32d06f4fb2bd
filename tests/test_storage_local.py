import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import tracemalloc
import uuid

import pytest

from depot.io import local
from depot.io.local import LocalFileStorage, LocalStoredFile
from depot.testing import FailingStream, StorageConformance


def write_legacy(storage, data, metadata):
    """A file laid out as filedepot 0.12 writes it (uuid1 id); returns its id."""
    file_id = str(uuid.uuid1())
    folder = os.path.join(storage.storage_path, file_id)
    os.makedirs(folder)
    with open(os.path.join(folder, "file"), "wb") as f:
        f.write(data)
    with open(os.path.join(folder, "metadata.json"), "w") as f:
        json.dump(metadata, f)
    return file_id


class TestLocalStorage(StorageConformance):
    has_real_files = True

    @pytest.fixture
    def storage(self, tmp_path):
        return LocalFileStorage(str(tmp_path / "files"))

    def test_layout_is_compatible(self, storage):
        file_id = storage.create(b"data", "a.txt")
        folder = os.path.join(storage.storage_path, file_id)
        assert sorted(os.listdir(folder)) == ["file", "metadata.json"]
        with open(os.path.join(folder, "metadata.json")) as f:
            metadata = json.load(f)
        assert metadata["filename"] == "a.txt"
        assert metadata["content_type"] == "text/plain"
        assert metadata["content_length"] == 4
        assert len(metadata["last_modified"]) == 19
        f = storage.get(file_id)
        assert f._metadata_path == os.path.join(folder, "metadata.json")
        assert f._file_path == os.path.join(folder, "file")

    def test_reads_files_written_by_filedepot(self, storage):
        """A folder laid out by filedepot 0.12 (uuid1 id) is read as is."""
        file_id = write_legacy(storage, b"legacy", {"filename": "old.txt", "content_type": "text/plain",
                                                    "content_length": 6, "last_modified": "2015-06-01 10:20:30"})
        f = storage.get(file_id)
        assert (f.read(), f.filename, f.last_modified.year) == (b"legacy", "old.txt", 2015)
        assert file_id in storage.list()

    def test_missing_metadata_fields_get_defaults(self, storage):
        file_id = str(uuid.uuid4())
        folder = os.path.join(storage.storage_path, file_id)
        os.makedirs(folder)
        with open(os.path.join(folder, "metadata.json"), "w") as f:
            f.write("{}")
        f = storage.get(file_id)
        assert (f.filename, f.content_type, f.last_modified) == ("unnamed", "application/octet-stream", None)

    def test_unservable_facts_written_earlier_are_read_as_servable(self, storage):
        """filedepot 0.12 stored any name and type: they are read as the closest value that works."""
        cases = [
            ({"filename": "caf\udce9.txt", "content_type": "text/plain"}, ("caf\ufffd.txt", "text/plain")),
            ({"filename": 123, "content_type": 456}, ("123", "application/octet-stream")),
            ({"filename": None, "content_type": "text/html\r\nX: y"}, (None, "application/octet-stream")),
        ]
        for metadata, facts in cases:
            f = storage.get(write_legacy(storage, b"old", metadata))
            assert (f.filename, f.content_type) == facts
            assert f.read() == b"old"

    @pytest.mark.parametrize("payload", ["{not json", '{"last_modified": "yesterday"}', "[1, 2]"])
    def test_corrupted_metadata(self, storage, payload):
        file_id = storage.create(b"x")
        with open(os.path.join(storage.storage_path, file_id, "metadata.json"), "w") as f:
            f.write(payload)
        with pytest.raises(ValueError, match="Invalid file metadata for %s" % file_id):
            storage.get(file_id)

    def test_storage_path_is_kept_and_created_on_first_write(self, tmp_path):
        path = str(tmp_path / "not" / "yet")
        storage = LocalFileStorage(path)
        assert storage.storage_path == path
        assert storage.list() == []
        assert not os.path.exists(path)
        storage.create(b"x")
        assert os.path.isdir(path)

    def test_storage_path_is_required(self):
        with pytest.raises(TypeError):
            LocalFileStorage()
        with pytest.raises(ValueError):
            LocalFileStorage("")

    def test_relative_path_does_not_follow_cwd(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        storage = LocalFileStorage("relative")
        file_id = storage.create(b"x")
        monkeypatch.chdir("/")
        assert storage.get(file_id).read() == b"x"
        assert os.path.isdir(tmp_path / "relative" / file_id)

    def test_list_skips_foreign_entries(self, storage):
        file_id = storage.create(b"x")
        for stray in ("README", ".new-abc.tmp", "12345", "notes.txt"):
            os.makedirs(os.path.join(storage.storage_path, stray))
        assert storage.list() == [file_id]

    def test_failed_writes_leave_no_temporary_files(self, storage):
        file_id = storage.create(b"x")
        with pytest.raises(FailingStream.Boom):
            storage.create(FailingStream(b"y" * 5000))
        with pytest.raises(FailingStream.Boom):
            storage.replace(file_id, FailingStream(b"y" * 5000))
        assert os.listdir(storage.storage_path) == [file_id]
        assert sorted(os.listdir(os.path.join(storage.storage_path, file_id))) == ["file", "metadata.json"]

    def test_delete_leaves_nothing(self, storage):
        file_id = storage.create(b"x")
        storage.delete(file_id)
        assert os.listdir(storage.storage_path) == []

    def test_delete_removes_the_pair_by_name(self, storage, monkeypatch):
        """An ordinary folder goes with two unlinks and an rmdir, not a tree walk (a third of the time)."""
        file_id = storage.create(b"x")
        walks = []
        monkeypatch.setattr(local.shutil, "rmtree", lambda *a, **k: walks.append(a))
        storage.delete(file_id)
        assert walks == []
        assert os.listdir(storage.storage_path) == []

    def test_delete_removes_unexpected_entries_too(self, storage):
        file_id = storage.create(b"x")
        folder = os.path.join(storage.storage_path, file_id)
        open(os.path.join(folder, ".file-0123.tmp"), "wb").close()  # left by an earlier version
        os.unlink(os.path.join(folder, "file"))
        storage.delete(file_id)
        assert os.listdir(storage.storage_path) == []

    def test_any_uuid_form_is_accepted(self, storage):
        for form in (str(uuid.uuid4()).upper(), uuid.uuid4().hex, "urn:uuid:%s" % uuid.uuid4()):
            assert storage.exists(form) is False
            with pytest.raises(IOError):
                storage.get(form)

    @pytest.mark.parametrize("bad", ["../etc/passwd", "..", "/etc", "a/b", "", None, 12])
    def test_path_like_ids_are_invalid(self, storage, bad):
        with pytest.raises(ValueError):
            storage.get(bad)

    def test_iter_range_seeks(self, storage, monkeypatch):
        data = os.urandom(100000)
        f = storage.get(storage.create(data))
        reads = []
        real_open = open

        class Spy(io.BufferedReader):
            def read(self, n=-1):
                out = super().read(n)
                reads.append(len(out))
                return out

        monkeypatch.setattr(local, "open", lambda p, m="r", **kw: Spy(io.FileIO(p, m, **kw)), raising=False)
        assert b"".join(f.iter_range(90000, 90010)) == data[90000:90010]
        assert sum(reads) == 10
        monkeypatch.setattr(local, "open", real_open, raising=False)

    def test_streamed_copy_memory_is_bounded(self, storage):
        """Storing 64 MiB from a stream allocates about a chunk, not the file."""
        size = 64 * 1024 * 1024

        class Zeros(io.RawIOBase):
            left = size

            def readable(self):
                return True

            def readinto(self, b):
                n = min(len(b), self.left)
                b[:n] = bytes(n)
                self.left -= n
                return n

        tracemalloc.start()
        try:
            file_id = storage.create(Zeros())
            for _ in storage.get(file_id).iter_range(0, None):
                pass
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert storage.get(file_id).content_length == size
        assert peak < 8 * 1024 * 1024

    def test_kernel_copy_from_real_file(self, storage, tmp_path):
        source = tmp_path / "source.bin"
        data = os.urandom(3 * 1024 * 1024 + 17)
        source.write_bytes(data)
        with open(source, "rb") as f:
            f.read(17)  # copying starts at the current position, like a stream would
            file_id = storage.create(f)
            assert f.tell() == len(data)
        assert storage.get(file_id).read() == data[17:]

    def test_crash_mid_replace_keeps_previous_version(self, storage):
        """A process killed while replacing leaves the previous version whole."""
        file_id = storage.create(b"previous version", "keep.txt")
        script = textwrap.dedent(
            """
            import os, sys
            from depot.io.local import LocalFileStorage

            class Dying:
                sent = 0
                def read(self, n=-1):
                    if self.sent > 1024 * 1024:
                        os._exit(3)  # no cleanup at all, as in a power cut or SIGKILL
                    self.sent += 65536
                    return b"z" * 65536

            LocalFileStorage(sys.argv[1]).replace(sys.argv[2], Dying(), "new.bin")
            """
        )
        proc = subprocess.run([sys.executable, "-c", script, storage.storage_path, file_id])
        assert proc.returncode == 3
        f = storage.get(file_id)
        assert (f.read(), f.filename) == (b"previous version", "keep.txt")
        assert storage.list() == [file_id]

    def test_concurrent_creates(self, storage):
        ids = []

        def worker():
            for _ in range(50):
                ids.append(storage.create(b"x"))

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(storage.list()) == sorted(ids)

    def test_cached_metadata_follows_every_write(self, storage):
        """Facts cached by get() never outlive the version they describe."""
        file_id = storage.create(b"one", "a.txt", "text/plain")
        assert storage.get(file_id).filename == "a.txt"
        for name in ("b.txt", "c.txt", "d.txt"):  # same sizes, same second
            storage.replace(file_id, b"two", name, "text/csv")
            f = storage.get(file_id)
            assert (f.filename, f.content_type, f.read()) == (name, "text/csv", b"two")
        storage.delete(file_id)
        with pytest.raises(IOError):
            storage.get(file_id)
        storage.replace(f, f)  # recreated under the same id
        assert storage.get(file_id).filename == "d.txt"

    def test_cached_metadata_sees_edits_in_place(self, storage):
        file_id = storage.create(b"x", "a.txt")
        storage.get(file_id)
        path = os.path.join(storage.storage_path, file_id, "metadata.json")
        with open(path, "r+") as f:
            metadata = json.load(f)
            metadata["filename"] = "renamed-by-hand.txt"
            f.seek(0)
            json.dump(metadata, f)
        assert storage.get(file_id).filename == "renamed-by-hand.txt"

    def test_metadata_cache_is_bounded(self, storage, monkeypatch):
        cache = local._MetadataCache(max_entries=8)
        monkeypatch.setattr(local, "_METADATA", cache)
        monkeypatch.setattr(local, "SETTLED_AFTER_NS", 0)  # cached at once
        ids = [storage.create(b"x", "f%d" % i) for i in range(20)]
        for i, file_id in enumerate(ids):
            assert storage.get(file_id).filename == "f%d" % i
            assert 0 < len(cache._entries) <= 8

    def test_stored_file_class(self, storage):
        f = storage.get(storage.create(b"x"))
        assert isinstance(f, LocalStoredFile)
        assert f.public_url is None
