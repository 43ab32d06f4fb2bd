"""GridFSStorage against a real MongoDB-protocol server (secantusd)."""
import datetime
import itertools
import threading
import tracemalloc
from unittest import mock

import pytest

pytest.importorskip("pymongo", reason="GridFS tests need pymongo: pip install -e '.[testing]'")

import gridfs  # noqa: E402
import pymongo  # noqa: E402
from bson import ObjectId  # noqa: E402

from depot.io import gridfs as gridfs_module  # noqa: E402
from depot.io.gridfs import GridFSStorage  # noqa: E402
from depot.testing import FailingStream, NonSeekableStream, StorageConformance  # noqa: E402
from tests._procs import free_ports  # noqa: E402


@pytest.fixture
def gridfs_storage(mongo_database_uri):
    storage = GridFSStorage(mongo_database_uri)
    yield storage
    storage._cli.close()


class TestGridFSConformance(StorageConformance):
    @pytest.fixture
    def storage(self, gridfs_storage):
        return gridfs_storage

    @pytest.fixture
    def missing_id(self):
        return str(ObjectId())

    @pytest.fixture
    def invalid_id(self):
        return "not-an-object-id"

    @pytest.fixture
    def backup_storage(self, mongo_database_uri):
        storage = GridFSStorage(mongo_database_uri, collection="backup")
        yield storage
        storage._cli.close()


def _chunk_docs(storage, files_id):
    return list(storage._db[storage._collection + ".chunks"].find({"files_id": files_id}).sort("n", 1))


def test_compatible_layout_and_attributes(gridfs_storage):
    storage = gridfs_storage
    assert storage._collection == "filedepot"
    assert isinstance(storage._cli, pymongo.MongoClient)
    assert isinstance(storage._gridfs, gridfs.GridFS)
    file_id = storage.create(b"data", "a.txt")
    assert len(file_id) == 24
    doc = storage._db["filedepot.files"].find_one({"_id": ObjectId(file_id)})
    assert (doc["filename"], doc["contentType"], doc["length"]) == ("a.txt", "text/plain", 4)
    assert len(doc["last_modified"]) == 19
    assert isinstance(doc["uploadDate"], datetime.datetime)
    assert [c["data"] for c in _chunk_docs(storage, ObjectId(file_id))] == [b"data"]
    assert storage.get(file_id).version != storage.get(storage.create(b"data", "a.txt")).version


def test_pymongo_gridfs_reads_what_depot_writes_even_after_replace(gridfs_storage):
    storage = gridfs_storage
    file_id = storage.create(b"first", "a.txt")
    assert storage._gridfs.get(ObjectId(file_id)).read() == b"first"
    storage.replace(file_id, b"second version")
    out = storage._gridfs.get(ObjectId(file_id))
    assert (out.read(), out.filename) == (b"second version", "a.txt")


def test_reads_files_written_outside_depot(gridfs_storage):
    storage = gridfs_storage
    oid = storage._gridfs.put(b"x" * 1000, chunkSize=64)
    f = storage.get(str(oid))
    assert (f.filename, f.content_type, f.last_modified) == (None, None, None)
    assert f.read() == b"x" * 1000
    assert b"".join(storage.get(str(oid)).iter_range(100, 300, 50)) == b"x" * 200
    assert str(oid) in storage.list()
    storage.replace(str(oid), b"replaced", "named.txt")
    assert storage.get(str(oid)).read() == b"replaced"


def test_handle_reads_content_rewritten_by_another_tool(gridfs_storage):
    storage = gridfs_storage
    file_id = storage.create(b"x" * 1000)
    f = storage.get(file_id)
    storage._gridfs.delete(ObjectId(file_id))
    storage._gridfs.put(b"y" * 500, _id=ObjectId(file_id), chunkSize=64)
    assert f.read() == b"y" * 500


def test_invalid_last_modified_is_none(gridfs_storage):
    oid = gridfs_storage._gridfs.put(b"x", filename="a.txt", last_modified="yesterday")
    assert gridfs_storage.get(str(oid)).last_modified is None


def test_list_has_every_file_including_unnamed(gridfs_storage):
    storage = gridfs_storage
    ids = {storage.create(b"same", "same.txt") for _ in range(3)}
    ids.add(str(storage._gridfs.put(b"no name at all")))
    assert sorted(storage.list()) == sorted(ids)


def test_non_seekable_short_reads_give_full_chunks(mongo_database_uri):
    storage = GridFSStorage(mongo_database_uri, chunk_size=10000)
    data = bytes(range(256)) * 200
    file_id = storage.create(NonSeekableStream(data, chunk=3001), "stream.bin")
    chunks = _chunk_docs(storage, ObjectId(file_id))
    assert [len(c["data"]) for c in chunks] == [10000] * 5 + [1200]
    assert storage.get(file_id).read() == data


def test_ranges_fetch_only_their_chunks(mongo_database_uri):
    storage = GridFSStorage(mongo_database_uri, chunk_size=1000)
    data = bytes(range(250)) * 20
    file_id = storage.create(data)
    # With the first chunks gone, only a read that needs them can fail.
    storage._db["filedepot.chunks"].delete_many({"files_id": ObjectId(file_id), "n": {"$lt": 2}})
    assert b"".join(storage.get(file_id).iter_range(2500, 4100, 300)) == data[2500:4100]
    with pytest.raises(gridfs.errors.CorruptGridFile):
        storage.get(file_id).read()


def test_write_memory_is_bounded_by_chunks(mongo_database_uri):
    storage = GridFSStorage(mongo_database_uri)
    size = 24 * 1024 * 1024
    tracemalloc.start()
    try:
        file_id = storage.create(NonSeekableStream(b"z" * size, chunk=65536), "big.bin")
        _, peak_write = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        f = storage.get(file_id)
        total = 0
        while chunk := f.read(256 * 1024):
            total += len(chunk)
        _, peak_read = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == size
    # The source itself holds `size` bytes; the copy adds a few batches at most.
    assert peak_write - size < 16 * 1024 * 1024
    assert peak_read - size < 16 * 1024 * 1024


def test_failures_leave_no_chunks(gridfs_storage):
    storage = gridfs_storage
    chunks = storage._db["filedepot.chunks"]
    file_id = storage.create(b"keep", "keep.txt")
    with pytest.raises(FailingStream.Boom):
        storage.create(FailingStream(b"x" * 600000))
    with pytest.raises(FailingStream.Boom):
        storage.replace(file_id, FailingStream(b"x" * 600000))
    assert chunks.count_documents({}) == 1
    storage.replace(file_id, b"new")
    assert [c["data"] for c in chunks.find()] == [b"new"]
    storage.delete(file_id)
    assert chunks.count_documents({}) == 0


class _OneChunkPerQuery:
    """Chunks collection whose queries end after one document.

    secantusd serves a cursor from a snapshot, so a replace never shows up
    in an open cursor there; MongoDB's cursors do see it.  Ending every
    query after one chunk makes each chunk a fresh look at the collection.
    """

    def __init__(self, collection):
        self._collection = collection

    def __getattr__(self, name):
        return getattr(self._collection, name)

    def find(self, *args, **kwargs):
        return self._collection.find(*args, **kwargs).limit(1)


def test_partially_read_handle_never_mixes_versions(mongo_database_uri):
    storage = GridFSStorage(mongo_database_uri, chunk_size=1000)
    storage._chunks = _OneChunkPerQuery(storage._chunks)
    file_id = storage.create(b"a" * 5000)
    f = storage.get(file_id)
    assert f.read(10) == b"a" * 10
    storage.replace(file_id, b"b" * 5000)
    with pytest.raises(IOError, match="replaced while it was being read"):
        f.read()
    # Nothing delivered yet: a stream restarts on the new version.
    g = storage.get(file_id)
    storage.replace(file_id, b"c" * 4000)
    assert g.read() == b"c" * 4000
    assert b"".join(storage.get(file_id).iter_range(3990, None, 7)) == b"c" * 10


def test_real_file_pins_the_version_it_describes(gridfs_storage):
    """A handle opened (real_file(), as the serving core does) after a replace reports and reads the new version."""
    storage = gridfs_storage
    file_id = storage.create(b"old content", "old.txt", "text/plain")
    f = storage.get(file_id)
    old_version = f.version
    storage.replace(file_id, b"new", "new.csv", "text/csv")
    assert f.real_file() is None
    assert (f.filename, f.content_type, f.content_length) == ("new.csv", "text/csv", 3)
    assert f.version != old_version and f.version == storage.get(file_id).version
    assert f.checksum == storage.get(file_id).checksum
    assert b"".join(f.iter_range(1)) == b"ew" and f.read() == b"new"
    # Pinned: a later replace is not followed silently, even before the first byte.
    g = storage.get(file_id)
    g.real_file()
    storage.replace(file_id, b"newer")
    with pytest.raises(IOError, match="replaced while it was being read"):
        g.read()
    # Not opened: a handle still follows a replace, as in filedepot.
    h = storage.get(file_id)
    storage.replace(file_id, b"newest")
    assert h.read() == b"newest"


def test_open_cursor_reads_one_consistent_version(mongo_database_uri, monkeypatch):
    monkeypatch.setattr(gridfs_module, "BATCH_BYTES", 1000)  # one chunk per round trip
    storage = GridFSStorage(mongo_database_uri, chunk_size=1000)
    file_id = storage.create(b"a" * 5000)
    f = storage.get(file_id)
    assert f.read(10) == b"a" * 10
    storage.replace(file_id, b"b" * 5000)
    try:
        rest = f.read()
    except IOError:
        return  # a server whose cursors see the replace
    assert rest == b"a" * 4990


def test_missing_chunk_is_corruption_not_a_replace(gridfs_storage):
    file_id = gridfs_storage.create(b"abc")
    gridfs_storage._db["filedepot.chunks"].delete_many({})
    with pytest.raises(gridfs.errors.CorruptGridFile, match="missing or truncated chunk 0"):
        gridfs_storage.get(file_id).read()


def test_unfinished_swap_is_readable_and_finished_by_next_writer(gridfs_storage):
    """A writer that died after recording its swap: readers see its version, the next writer completes it."""
    storage = gridfs_storage
    file_id = storage.create(b"old content", "file.txt")
    oid, gen = ObjectId(file_id), ObjectId()
    storage._db["filedepot.chunks"].insert_one({"files_id": gen, "n": 0, "data": b"new content", "_depot_gen": gen})
    doc = storage._files_doc(11, "file.txt", "text/plain", gen)
    stale = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    storage._db["filedepot.files"].update_one(
        {"_id": oid}, {"$set": {"_depot_replacing": {"gen": gen, "doc": doc, "since": stale}}}
    )
    assert storage.get(file_id).read() == b"new content"
    assert storage._gridfs.get(oid).read() == b"old content"  # other tools see the last finished version
    storage.replace(file_id, b"newest")
    assert storage.get(file_id).read() == b"newest"
    assert storage._gridfs.get(oid).read() == b"newest"
    assert [c["data"] for c in storage._db["filedepot.chunks"].find()] == [b"newest"]
    assert "_depot_replacing" not in storage._db["filedepot.files"].find_one({"_id": oid})


def test_concurrent_writers_take_turns(gridfs_storage):
    storage = gridfs_storage
    file_id = storage.create(b"start")
    written, errors = set(), []

    def writer(name):
        for i in range(10):
            content = ("%s-%d " % (name, i)).encode() * (100 + i)
            try:
                storage.replace(file_id, content)
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(exc)
            written.add(content)

    threads = [threading.Thread(target=writer, args=(name,)) for name in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    final = storage.get(file_id).read()
    assert final in written
    doc = storage._db["filedepot.files"].find_one({"_id": ObjectId(file_id)})
    assert "_depot_replacing" not in doc
    chunks = list(storage._db["filedepot.chunks"].find())
    assert [c["files_id"] for c in chunks] == [ObjectId(file_id)]
    assert chunks[0]["_depot_gen"] == doc["_depot_gen"]


def test_swap_caught_halfway_through_moving_chunks(mongo_database_uri):
    storage = GridFSStorage(mongo_database_uri, chunk_size=4)
    file_id = storage.create(b"old-old-old-")
    oid, gen = ObjectId(file_id), ObjectId()
    chunks = storage._db["filedepot.chunks"]
    chunks.insert_many([{"files_id": gen, "n": n, "data": d, "_depot_gen": gen}
                        for n, d in enumerate([b"new-", b"new-", b"new"])])
    storage._db["filedepot.files"].update_one(
        {"_id": oid}, {"$set": {"_depot_replacing": {"gen": gen, "doc": storage._files_doc(11, "f", "t/p", gen)}}}
    )
    # Old chunk 2 still under the file's id, new chunk 0 already moved there.
    chunks.delete_many({"files_id": oid, "n": {"$lt": 2}})
    chunks.update_one({"files_id": gen, "n": 0}, {"$set": {"files_id": oid}})
    assert storage.get(file_id).read() == b"new-new-new"
    assert b"".join(storage.get(file_id).iter_range(5, None, 2)) == b"ew-new"
    storage._finish_swap(oid, storage._db["filedepot.files"].find_one({"_id": oid})["_depot_replacing"])
    assert storage._gridfs.get(oid).read() == b"new-new-new"
    assert chunks.count_documents({}) == 3


def test_collect_garbage_removes_only_old_ownerless_chunks(gridfs_storage):
    storage = gridfs_storage
    chunks = storage._db["filedepot.chunks"]
    kept = storage.create(b"kept")
    swapping = storage.create(b"old")
    old_time = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2)
    pending_gen = ObjectId.from_datetime(old_time)
    crashed = ObjectId.from_datetime(old_time - datetime.timedelta(seconds=1))
    in_flight = ObjectId()
    storage._db["filedepot.files"].update_one(
        {"_id": ObjectId(swapping)},
        {"$set": {"_depot_replacing": {"gen": pending_gen, "doc": storage._files_doc(3, "f", "t/p", pending_gen)}}},
    )
    for files_id in (pending_gen, crashed, in_flight):
        chunks.insert_one({"files_id": files_id, "n": 0, "data": b"new", "_depot_gen": files_id})
    assert storage.collect_garbage() == 1
    assert chunks.count_documents({"files_id": crashed}) == 0
    assert chunks.count_documents({}) == 4
    assert storage.get(kept).read() == b"kept" and storage.get(swapping).read() == b"new"
    assert storage.collect_garbage(older_than=0) == 1  # with no grace, the upload "in flight" goes too
    assert storage.collect_garbage() == 0


def test_delete_during_unfinished_swap_removes_both_chunk_sets(gridfs_storage):
    storage = gridfs_storage
    file_id = storage.create(b"old")
    gen = ObjectId()
    storage._db["filedepot.chunks"].insert_one({"files_id": gen, "n": 0, "data": b"new", "_depot_gen": gen})
    storage._db["filedepot.files"].update_one(
        {"_id": ObjectId(file_id)},
        {"$set": {"_depot_replacing": {"gen": gen, "doc": storage._files_doc(3, "u", "t/p", gen)}}},
    )
    storage.delete(file_id)
    assert storage._db["filedepot.chunks"].count_documents({}) == 0
    assert storage.exists(file_id) is False


def test_uri_without_database_uses_default(mongo_server):
    storage = GridFSStorage(mongo_server.uri)
    try:
        assert storage._db.name == "filedepot"
    finally:
        storage._cli.close()
    storage = GridFSStorage(mongo_server.uri, database="other_db")
    assert storage._db.name == "other_db"
    storage._cli.close()


def test_unreachable_server_names_the_uri():
    (port,) = free_ports(1)
    uri = "mongodb://user:s3cret@127.0.0.1:%d/files?serverSelectionTimeoutMS=200" % port
    storage = GridFSStorage(uri)
    with pytest.raises(pymongo.errors.ServerSelectionTimeoutError) as info:
        storage.create(b"data")
    message = str(info.value)
    assert "mongodb://user:***@127.0.0.1:%d/files" % port in message
    assert "s3cret" not in message
    with pytest.raises(pymongo.errors.ServerSelectionTimeoutError, match="127.0.0.1:%d" % port):
        storage.list()


def test_chunk_size_option(mongo_database_uri):
    with pytest.raises(ValueError):
        GridFSStorage(mongo_database_uri, chunk_size="0")
    storage = GridFSStorage(mongo_database_uri, chunk_size="4")
    file_id = storage.create(b"0123456789")
    assert [c["data"] for c in _chunk_docs(storage, ObjectId(file_id))] == [b"0123", b"4567", b"89"]
    assert storage.get(file_id).read(5) == b"01234"


def test_ids_are_checked(gridfs_storage):
    # 12 raw bytes are an ObjectId (filedepot accepted them): see TestFiledepotForms.
    for bad in ("x" * 24, 12345, None, b"12345678901", "123456789012"):
        with pytest.raises(ValueError):
            gridfs_storage.get(bad)


def test_registry_short_name():
    from depot.io.registry import load_backend

    assert load_backend("gridfs") is GridFSStorage


def test_served_by_the_middleware_with_ranges(mongo_database_uri):
    webtest = pytest.importorskip("webtest")
    from depot.manager import DepotManager

    storage = DepotManager.configure(
        "mongo", {"depot.backend": "gridfs", "depot.mongouri": mongo_database_uri, "depot.chunk_size": "1000"}
    )
    data = bytes(range(256)) * 20
    file_id = storage.create(data, "data.bin")
    app = webtest.TestApp(DepotManager.make_middleware(lambda environ, start_response: []))
    full = app.get("/depot/mongo/%s" % file_id)
    assert full.body == data
    etag = full.headers["ETag"]
    part = app.get("/depot/mongo/%s" % file_id, headers={"Range": "bytes=2500-4100"}, status=206)
    assert part.body == data[2500:4101]
    storage.replace(file_id, b"same length".ljust(len(data), b"!"))
    assert app.get("/depot/mongo/%s" % file_id).headers["ETag"] != etag
    storage._cli.close()


# -- UUID ids of other storages, through the backup form ------------------------------------

UUID = "3f2b9c4e-8d1a-4e6b-9f00-1c2d3e4f5a6b"


@pytest.fixture
def local_file(tmp_path):
    """Make StoredFiles of local storages: UUID ids that GridFS never gave out."""
    from depot.io.local import LocalFileStorage

    count = itertools.count()

    def make(data, filename="migrated.bin", file_id=None):
        path = tmp_path / ("local-%d" % next(count))
        local = LocalFileStorage(str(path))
        new_id = local.create(data, filename)
        if file_id is not None:
            # Another source holding the same id, as a second migration would.
            (path / new_id).rename(path / file_id)
            new_id = file_id
        return local.get(new_id)

    return make


def test_backup_form_keeps_a_uuid_id(mongo_database_uri, local_file):
    storage = GridFSStorage(mongo_database_uri, chunk_size=1000)
    data = bytes(range(256)) * 20
    source = local_file(data, "data.bin")
    file_id = source.file_id
    assert storage.replace(source, source) == file_id
    doc = storage._db["filedepot.files"].find_one({"_id": file_id})
    assert (doc["filename"], doc["length"], "_depot_replacing" in doc) == ("data.bin", len(data), False)
    assert {c["files_id"] for c in storage._db["filedepot.chunks"].find()} == {file_id}
    assert storage._gridfs.get(file_id).read() == data  # any GridFS tool reads it

    f = storage.get(file_id)
    assert (f.file_id, f.filename, f.content_type, f.content_length) == (
        file_id, "data.bin", "application/octet-stream", len(data))
    assert f.read() == data
    assert b"".join(storage.get(file_id).iter_range(2500, 4100, 300)) == data[2500:4100]
    assert storage.exists(file_id) is True
    other = storage.create(b"objectid")
    assert sorted(storage.list()) == sorted([file_id, other])

    storage.replace(file_id, b"second")
    assert storage.get(file_id).read() == b"second"
    again = local_file(b"third", "third.txt", file_id)
    assert storage.replace(again, again) == file_id
    assert (storage.get(file_id).read(), storage.get(file_id).filename) == (b"third", "third.txt")
    assert storage.collect_garbage(older_than=0) == 0
    assert storage.get(file_id).read() == b"third"

    storage.delete(file_id)
    assert storage.exists(file_id) is False
    assert storage._db["filedepot.chunks"].count_documents({"files_id": file_id}) == 0
    with pytest.raises(IOError):
        storage.get(file_id)
    with pytest.raises(IOError):
        storage.replace(file_id, b"plain replace of a missing id")
    assert storage.exists(file_id) is False
    storage._cli.close()


def test_malformed_ids_are_still_refused(gridfs_storage):
    refused = (
        UUID.upper(), UUID.replace("-", ""), "urn:uuid:" + UUID, "{%s}" % UUID, UUID[:-1] + "g",
        "3f2b9c4e8-d1a-4e6b-9f00-1c2d3e4f5a6b", "urn:" + UUID.replace("-", ""), "x" * 24, "x" * 36,
    )
    for bad in refused:
        for call in (gridfs_storage.get, gridfs_storage.exists, gridfs_storage.delete):
            with pytest.raises(ValueError, match="Invalid file id"):
                call(bad)
        with pytest.raises(ValueError, match="Invalid file id"):
            gridfs_storage.replace(bad, b"x")
    assert gridfs_storage.exists(UUID) is False
    assert gridfs_storage.exists(str(ObjectId())) is False
    assert gridfs_storage.list() == []


def test_concurrent_backup_writers_of_one_new_id(gridfs_storage, local_file):
    """Two writers creating the same new id: one creates it, the other replaces it, no chunk is lost."""
    storage = gridfs_storage
    errors = []
    for _ in range(5):
        storage.delete(UUID)
        barrier = threading.Barrier(2)

        def writer(source, barrier=barrier):
            barrier.wait()
            try:
                storage.replace(source, source)
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(exc)

        sources = [local_file(name * 300, name.decode(), UUID) for name in (b"a", b"b")]
        threads = [threading.Thread(target=writer, args=(source,)) for source in sources]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert storage.get(UUID).read() in (b"a" * 300, b"b" * 300)
        doc = storage._db["filedepot.files"].find_one({"_id": UUID})
        assert "_depot_replacing" not in doc
        chunks = list(storage._db["filedepot.chunks"].find())
        assert [(c["files_id"], c["_depot_gen"]) for c in chunks] == [(UUID, doc["_depot_gen"])]


def test_crash_while_creating_a_uuid_file_is_finished_by_next_writer(gridfs_storage, local_file, monkeypatch):
    storage = gridfs_storage
    source = local_file(b"first", "first.txt")
    file_id = source.file_id

    def crash(oid, swap):
        raise KeyboardInterrupt

    monkeypatch.setattr(storage, "_finish_swap", crash)
    with pytest.raises(KeyboardInterrupt):
        storage.replace(source, source)
    monkeypatch.undo()
    # The files document is there with its swap recorded: readers see the file,
    # garbage collection keeps its chunks, the next writer finishes the swap.
    assert "_depot_replacing" in storage._db["filedepot.files"].find_one({"_id": file_id})
    assert storage.get(file_id).read() == b"first"
    assert storage.collect_garbage(older_than=0) == 0
    assert storage.get(file_id).read() == b"first"
    monkeypatch.setattr(gridfs_module, "STALE_SWAP_SECONDS", 0.0)
    storage.replace(file_id, b"second")
    assert storage._gridfs.get(file_id).read() == b"second"
    assert [c["data"] for c in storage._db["filedepot.chunks"].find()] == [b"second"]
    assert "_depot_replacing" not in storage._db["filedepot.files"].find_one({"_id": file_id})


def test_collect_garbage_of_chunks_under_string_ids(gridfs_storage):
    storage = gridfs_storage
    chunks = storage._db["filedepot.chunks"]
    long_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2)
    old_gen, fresh_gen = ObjectId.from_datetime(long_ago), ObjectId()
    deleted_midway = "11111111-2222-4333-8444-555555555555"
    # A delete that died after the files document went: its chunks carry their generation.
    chunks.insert_one({"files_id": deleted_midway, "n": 0, "data": b"old", "_depot_gen": old_gen})
    # A backup-form write moving fresh chunks under an id made two hours ago.
    old_oid = ObjectId.from_datetime(long_ago)
    chunks.insert_one({"files_id": old_oid, "n": 0, "data": b"new", "_depot_gen": fresh_gen})
    # Other tools' uploads under a string id and a document id: their age is unknown.
    chunks.insert_one({"files_id": "someone-elses-id", "n": 0, "data": b"?"})
    chunks.insert_one({"files_id": {"tool": "x", "n": 1}, "n": 0, "data": b"?"})
    assert storage.collect_garbage() == 1
    assert chunks.count_documents({"files_id": deleted_midway}) == 0
    assert chunks.count_documents({}) == 3
    assert storage.collect_garbage(older_than=0) == 1
    assert [c["files_id"] for c in chunks.find()] == ["someone-elses-id", {"tool": "x", "n": 1}]


def test_uuid_file_served_by_the_middleware(mongo_database_uri, local_file):
    webtest = pytest.importorskip("webtest")
    from depot.manager import DepotManager

    storage = DepotManager.configure("mongo", {"depot.backend": "gridfs", "depot.mongouri": mongo_database_uri})
    source = local_file(b"0123456789" * 50, "page.txt")
    storage.replace(source, source)
    app = webtest.TestApp(DepotManager.make_middleware(lambda environ, start_response: []))
    full = app.get("/depot/mongo/%s" % source.file_id)
    assert (full.body, full.content_type) == (b"0123456789" * 50, "text/plain")
    part = app.get("/depot/mongo/%s" % source.file_id, headers={"Range": "bytes=5-14"}, status=206)
    assert part.body == b"5678901234"
    app.get("/depot/mongo/%s" % UUID.upper(), status=404)
    storage._cli.close()


def test_create_with_facts_goes_through_a_subclass_create(mongo_database_uri):
    class Audited(GridFSStorage):
        created: list = []

        def create(self, content, filename=None, content_type=None):
            file_id = super().create(content, filename, content_type)
            self.created.append(file_id)
            return file_id

    storage = Audited(mongo_database_uri, collection="audited")
    try:
        facts = storage.create_with_facts(b"x", "a.txt")
        assert Audited.created == [facts.file_id]
        assert (facts.filename, facts.content_type) == ("a.txt", "text/plain")
    finally:
        for file_id in storage.list():
            storage.delete(file_id)
        storage._cli.close()


# -- names filedepot 0.12 code uses ------------------------------------------------------


class TestFiledepotForms:
    def test_twelve_byte_ids(self, gridfs_storage):
        storage = gridfs_storage
        file_id = storage.create(b"binary id", "b.txt")
        raw = ObjectId(file_id).binary
        assert isinstance(raw, bytes) and len(raw) == 12
        f = storage.get(raw)
        assert (f.file_id, f.read(), f.filename) == (file_id, b"binary id", "b.txt")
        assert storage.exists(raw) is True
        assert storage.replace(raw, b"replaced") == file_id
        assert storage.get(file_id).read() == b"replaced"
        storage.delete(raw)
        assert storage.exists(file_id) is False
        with pytest.raises(IOError):
            storage.get(raw)

    @pytest.mark.parametrize("bad", [b"", b"short", b"thirteen byte", "twelve chars"])
    def test_other_byte_strings_are_invalid(self, gridfs_storage, bad):
        with pytest.raises(ValueError, match="Invalid file id"):
            gridfs_storage.get(bad)

    @pytest.mark.parametrize("keyword", [False, True])
    def test_stored_file_from_a_gridout(self, gridfs_storage, keyword):
        from depot.io.gridfs import GridFSStoredFile

        storage = gridfs_storage
        with mock.patch("depot.io.utils.timestamp", return_value="2001-02-03 04:05:06"):
            file_id = storage.create(b"0123456789" * 100, "g.bin", "application/x-g")
        gridout = storage._gridfs.get(ObjectId(file_id))
        f = GridFSStoredFile(file_id=file_id, gridout=gridout) if keyword else GridFSStoredFile(file_id, gridout)
        assert (f.file_id, f.filename, f.content_type, f.content_length) == (
            file_id, "g.bin", "application/x-g", 1000
        )
        assert f.last_modified == datetime.datetime(2001, 2, 3, 4, 5, 6)
        assert f.read(5) == b"01234"
        assert f.read(7) == b"5678901"
        assert len(f.read()) == 988
        assert b"".join(f.iter_range(995, 1000, chunk_size=2)) == b"56789"
        f.close()
        assert f.closed is True
        with pytest.raises(ValueError):
            f.read()
