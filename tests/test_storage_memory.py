import pytest

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
