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
