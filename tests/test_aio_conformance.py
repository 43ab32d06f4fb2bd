"""The storage conformance suite through the async API, on every backend and real servers.

Each storage is wrapped in :class:`~depot.io.aio.AsyncStorage` and then back
in the blocking interface by :class:`~depot.io.aio_sync.SyncStorage`, whose
calls run on an event loop in another thread: every test of
:class:`~depot.testing.StorageConformance` then goes through the async code
paths (worker threads, async reads, ``iter_range`` as an async generator).
"""
from __future__ import annotations

import uuid

import pytest

pytest.importorskip("anyio")

from anyio.from_thread import start_blocking_portal  # noqa: E402

from depot.io.aio import AsyncStorage  # noqa: E402
from depot.io.aio_sync import SyncStorage  # noqa: E402
from depot.io.local import LocalFileStorage  # noqa: E402
from depot.io.memory import MemoryFileStorage  # noqa: E402
from depot.testing import StorageConformance  # noqa: E402
from tests.servers import unique_name  # noqa: E402


@pytest.fixture(scope="module")
def portal():
    with start_blocking_portal() as portal:
        yield portal


class ThroughAsync(StorageConformance):
    """The suite on ``backend`` (a fixture of the subclass) seen through the async API."""

    # Direct uploads work on the configured (sync) storages, not through the facade.
    supports_direct_uploads = False

    @pytest.fixture
    def storage(self, backend, portal):
        return SyncStorage(AsyncStorage(backend), portal)

    def test_calls_reach_the_backend_through_the_facade(self, storage, backend):
        file_id = storage.create(b"through")
        assert backend.get(file_id).read() == b"through"
        assert type(storage.get(file_id).afile.file) is type(backend.get(file_id))


class TestMemoryThroughAsync(ThroughAsync):
    @pytest.fixture
    def backend(self):
        return MemoryFileStorage()


class TestLocalThroughAsync(ThroughAsync):
    has_real_files = True

    @pytest.fixture
    def backend(self, tmp_path):
        return LocalFileStorage(str(tmp_path / "files"))


class TestGridFSThroughAsync(ThroughAsync):
    @pytest.fixture
    def backend(self, mongo_database_uri):
        pytest.importorskip("pymongo")
        from depot.io.gridfs import GridFSStorage

        storage = GridFSStorage(mongo_database_uri)
        yield storage
        storage._cli.close()

    @pytest.fixture
    def missing_id(self):
        from bson import ObjectId

        return str(ObjectId())

    @pytest.fixture
    def invalid_id(self):
        return "not-an-object-id"

    @pytest.fixture
    def backup_storage(self, mongo_database_uri):
        from depot.io.gridfs import GridFSStorage

        storage = GridFSStorage(mongo_database_uri, collection="backup")
        yield storage
        storage._cli.close()


@pytest.fixture(scope="module")
def bucket():
    return unique_name("depot-aio")


class TestS3ThroughAsync(ThroughAsync):
    @pytest.fixture
    def backend(self, seaweedfs_server, bucket):
        pytest.importorskip("boto3")
        from depot.io.boto3 import S3Storage

        return S3Storage(
            seaweedfs_server.access_key, seaweedfs_server.secret_key, bucket=bucket,
            endpoint_url=seaweedfs_server.endpoint_url, region_name=seaweedfs_server.region,
            prefix="t-%s/" % uuid.uuid4().hex[:12],
        )


class TestGCSThroughAsync(ThroughAsync):
    @pytest.fixture
    def backend(self, gcs_emulator_env, bucket):
        pytest.importorskip("google.cloud.storage")
        from depot.io.gcs import GCSStorage

        return GCSStorage(bucket=bucket, project_id=gcs_emulator_env.project, prefix="t-%s/" % uuid.uuid4().hex[:12])


# -- a backend that is native async: the facade awaits its own methods ------------------


class NativeAsyncMemoryStorage(MemoryFileStorage):
    """A memory storage with coroutine methods, standing for a future native-async backend.

    Each coroutine records its call and must run on the event loop thread,
    where a blocking backend's methods never run.
    """

    def __init__(self, **options):
        super().__init__(**options)
        self.native_calls = []

    def _native(self, name, method, *args):
        self.native_calls.append(name)
        return method(*args)

    async def aget(self, file_or_id):
        return NativeAsyncMemoryFile.of(self._native("get", self.get, file_or_id))

    async def acreate(self, content, filename=None, content_type=None):
        return self._native("create", self.create, content, filename, content_type)

    async def acreate_with_facts(self, content, filename=None, content_type=None):
        return self._native("create_with_facts", self.create_with_facts, content, filename, content_type)

    async def areplace(self, file_or_id, content, filename=None, content_type=None):
        return self._native("replace", self.replace, file_or_id, content, filename, content_type)

    async def adelete(self, file_or_id):
        return self._native("delete", self.delete, file_or_id)

    async def aexists(self, file_or_id):
        return self._native("exists", self.exists, file_or_id)

    async def alist(self):
        return self._native("list", self.list)


class NativeAsyncMemoryFile:
    """Adds ``aread`` to a memory stored file."""

    @classmethod
    def of(cls, stored):
        stored.aread_calls = 0

        async def aread(n=-1):
            stored.aread_calls += 1
            return stored.read(n)

        stored.aread = aread
        return stored


class TestNativeAsyncThroughAsync(ThroughAsync):
    @pytest.fixture
    def backend(self):
        return NativeAsyncMemoryStorage()

    def test_native_methods_are_awaited(self, storage, backend):
        file_id = storage.create(b"native")
        f = storage.get(file_id)
        assert f.read() == b"native"
        storage.replace(file_id, b"again")
        assert storage.exists(file_id)
        storage.list()
        storage.delete(file_id)
        assert backend.native_calls == ["create", "get", "replace", "exists", "list", "delete"]
        assert f.afile.file.aread_calls == 1
