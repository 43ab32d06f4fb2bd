"""Checksums (issue 15, integrity): the option, cheap --verify, ``depot verify`` on disk and GridFS.

The per-backend checks (checksum after create/replace equals hashlib /
google_crc32c, 0.12-written files load with None) are in the conformance
suite (depot/testing.py, "checksums (integrity)").
"""
import hashlib
import json
import os

import google_crc32c
import pytest

from depot.cli.copying import CopyError, CopyOutcome, copy_file
from depot.cli.errors import ExitCode
from depot.io import checksums, local
from depot.io.local import LocalFileStorage
from depot.io.memory import MemoryFileStorage
from depot.manager import DepotManager

pytestmark = pytest.mark.usefixtures("no_ambient_settings")


@pytest.fixture
def run(run_cli):
    return run_cli


# -- the option ------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("crc32c", "crc32c"), ("SHA256", "sha256"), (" md5 ", "md5"),
    (None, None), (False, None), ("none", None), ("off", None), ("", None),
])
def test_option_values(tmp_path, value, expected):
    assert LocalFileStorage(str(tmp_path), checksum=value).checksum_algorithm == expected


@pytest.mark.parametrize("bad", ["crc64", "sha1", 3])
def test_unknown_algorithm_is_refused_at_construction(tmp_path, bad):
    with pytest.raises(ValueError, match="checksum"):
        LocalFileStorage(str(tmp_path), checksum=bad)


def test_setting_from_configuration(tmp_path):
    storage = DepotManager.from_config(
        {"depot.backend": "depot.io.local.LocalFileStorage", "depot.storage_path": str(tmp_path),
         "depot.checksum": "sha256"}
    )
    file_id = storage.create(b"configured")
    assert storage.get(file_id).checksum == "sha256:" + hashlib.sha256(b"configured").hexdigest()


def test_local_metadata_key_and_old_metadata(tmp_path):
    storage = LocalFileStorage(str(tmp_path))
    file_id = storage.create(b"abc", "a.txt")
    meta_path = tmp_path / file_id / "metadata.json"
    metadata = json.loads(meta_path.read_bytes())
    assert metadata["checksum"] == "crc32c:%08x" % google_crc32c.value(b"abc")
    # Exactly what filedepot 0.12 wrote: no checksum key.
    del metadata["checksum"]
    meta_path.write_text(json.dumps(metadata))
    f = storage.get(file_id)
    assert f.checksum is None and f.read() == b"abc"
    # A value this version does not understand counts as none, not as a mismatch.
    metadata["checksum"] = "blake3:00"
    os.unlink(meta_path)
    meta_path.write_text(json.dumps(metadata))
    assert storage.get(file_id).checksum is None


def test_bytes_like_content_is_hashed_as_its_bytes(tmp_path):
    storage = LocalFileStorage(str(tmp_path))
    for content in (bytearray(b"xyz"), memoryview(b"xyz")):
        assert storage.get(storage.create(content)).checksum == checksums.compute("crc32c", b"xyz")


def test_the_stream_is_read_once(tmp_path):
    reads = []

    class Counting:
        def __init__(self, data):
            self._data = data

        def read(self, n=-1):
            reads.append(n)
            chunk, self._data = (self._data, b"") if n < 0 else (self._data[:n], self._data[n:])
            return chunk

    data = os.urandom(3 * 1024 * 1024 + 7)
    storage = LocalFileStorage(str(tmp_path))
    file_id = storage.create(Counting(data))
    assert storage.get(file_id).checksum == checksums.compute("crc32c", data)
    # Every piece once and the end: one pass, no rewind.
    assert len(reads) == -(-len(data) // local.HASHED_CHUNK_SIZE) + 1
    assert set(reads) == {local.HASHED_CHUNK_SIZE}


# -- cp / migrate --verify: stored checksums instead of reading back -----------


class ReadCountingStorage(MemoryFileStorage):
    def __init__(self, **options):
        super().__init__(**options)
        self.reads = 0

    def get(self, file_or_id):
        f = super().get(file_or_id)
        storage = self
        read = f.read

        def counted(n=-1):
            storage.reads += 1
            return read(n)

        f.read = counted
        return f


class FlipInTransit(MemoryFileStorage):
    """Receives the bytes with the first one flipped: its own checksum is of what arrived."""

    def _save(self, file_id, content, filename, content_type):
        data = bytearray(content.read())
        data[0] ^= 0x01
        return super()._save(file_id, bytes(data), filename, content_type)


def test_verify_compares_stored_checksums_without_reading_the_copy():
    source = MemoryFileStorage()
    file_id = source.create(b"precious bytes", "p.txt")
    target = ReadCountingStorage()
    assert copy_file(lambda: source.get(file_id), target, file_id, skip_existing=False, verify=True) is CopyOutcome.COPIED
    assert target.reads == 0
    # Already there with the same checksum: skipped, again without reading the copy.
    assert copy_file(lambda: source.get(file_id), target, file_id, verify=True) is CopyOutcome.SKIPPED
    assert target.reads == 0


def test_verify_with_another_algorithm_reads_the_copy_back():
    source = MemoryFileStorage(checksum="sha256")
    file_id = source.create(b"precious bytes", "p.txt")
    target = ReadCountingStorage()  # crc32c
    assert copy_file(lambda: source.get(file_id), target, file_id, skip_existing=False, verify=True) is CopyOutcome.COPIED
    assert target.reads > 0


def test_verify_catches_a_transfer_broken_on_the_way():
    source = MemoryFileStorage()
    file_id = source.create(b"precious bytes", "p.txt")
    with pytest.raises(CopyError, match="verification failed: the copy"):
        copy_file(lambda: source.get(file_id), FlipInTransit(), file_id, skip_existing=False, verify=True)


def test_verify_catches_a_source_that_rotted(tmp_path):
    source = LocalFileStorage(str(tmp_path))
    file_id = source.create(b"precious bytes", "p.txt")
    with open(os.path.join(str(tmp_path), file_id, "file"), "r+b") as data:
        data.write(b"P")  # one byte rots on the disk, the stored checksum stays
    with pytest.raises(CopyError, match="differ from its stored checksum"):
        copy_file(lambda: source.get(file_id), MemoryFileStorage(), file_id, skip_existing=False, verify=True)


def test_migrate_verify_between_local_storages(run, tmp_path):
    old = LocalFileStorage(str(tmp_path / "old"))
    ids = [old.create(b"file %d" % i) for i in range(3)]
    opts = ("--local", "old=%s" % (tmp_path / "old"), "--local", "new=%s" % (tmp_path / "new"))
    code, out, err = run(*opts, "migrate", "--verify", "old", "new")
    assert code == 0, err
    new = LocalFileStorage(str(tmp_path / "new"))
    assert [new.get(i).checksum for i in ids] == [old.get(i).checksum for i in ids]


# -- depot verify ----------------------------------------------------------------


def _flip_byte_on_disk(storage_path, file_id, offset=5):
    path = storage_path / file_id / "file"
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x20
    path.write_bytes(bytes(data))  # in place: the metadata (and its checksum) stay


def test_verify_finds_a_byte_flipped_on_local_disk(run, tmp_path):
    files = tmp_path / "files"
    storage = LocalFileStorage(str(files))
    good = storage.create(os.urandom(3 * 1024 * 1024), "good.bin")
    bad = storage.create(os.urandom(100000), "bad.bin")
    old = LocalFileStorage(str(files), checksum=None).create(b"written by 0.12")
    opts = ("--local", "files=%s" % files)
    code, out, err = run(*opts, "verify")
    assert code == ExitCode.OK, err
    assert "3 files: 2 ok, 0 mismatched, 1 without checksum, 0 failed" in out

    _flip_byte_on_disk(files, bad)
    code, out, err = run(*opts, "verify")
    assert code == ExitCode.FAILURES
    assert "storage files, file %s: checksum mismatch" % bad in err
    assert good not in err and old not in err
    assert "2 ok" not in out and "1 ok, 1 mismatched" in out
    # Only the named ids; the good one alone passes.
    assert run(*opts, "verify", "files", good)[0] == ExitCode.OK
    assert run(*opts, "verify", "files", good, bad)[0] == ExitCode.FAILURES


def test_info_shows_the_checksum(run, tmp_path):
    files = tmp_path / "files"
    file_id = LocalFileStorage(str(files)).create(b"abc")
    code, out, err = run("--local", "files=%s" % files, "info", file_id)
    assert "checksum:       crc32c:%08x" % google_crc32c.value(b"abc") in out
    code, out, err = run("--local", "files=%s" % files, "info", "--json", file_id)
    assert json.loads(out)["checksum"] == "crc32c:%08x" % google_crc32c.value(b"abc")


def test_verify_missing_id_exits_3(run, tmp_path):
    files = tmp_path / "files"
    good = LocalFileStorage(str(files)).create(b"fine")
    missing = "00000000-0000-4000-8000-000000000000"
    code, out, err = run("--local", "files=%s" % files, "verify", "files", good, missing)
    assert code == ExitCode.NOT_FOUND
    assert missing in err
    assert "1 ok" in out


def test_verify_draws_progress(run, tmp_path):
    files = tmp_path / "files"
    LocalFileStorage(str(files)).create(os.urandom(2 * 1024 * 1024))
    code, out, err = run("--progress", "--local", "files=%s" % files, "verify")
    assert code == 0
    assert "verify files" in err  # the progress line, on stderr


def test_verify_finds_a_byte_flipped_in_a_gridfs_chunk(run, mongo_database_uri):
    from depot.io import gridfs as gridfs_module
    storage = gridfs_module.GridFSStorage(mongo_database_uri, chunk_size=1024)
    try:
        good = storage.create(os.urandom(5000), "good.bin")
        bad = storage.create(os.urandom(5000), "bad.bin")
        opts = ("--backend", "mongo=gridfs", "-o", "mongo.mongouri=" + mongo_database_uri,
                "-o", "mongo.chunk_size=1024")
        assert run(*opts, "verify", "mongo")[0] == ExitCode.OK
        oid = gridfs_module.ObjectId(bad)
        chunk = storage._chunks.find_one({"files_id": oid, "n": 2})
        data = bytearray(chunk["data"])
        data[10] ^= 0x01
        storage._chunks.update_one({"_id": chunk["_id"]}, {"$set": {"data": bytes(data)}})
        code, out, err = run(*opts, "verify", "mongo")
        assert code == ExitCode.FAILURES
        assert "file %s: checksum mismatch" % bad in err and good not in err
        assert "1 ok, 1 mismatched" in out
    finally:
        storage._cli.close()


# -- local and GridFS: what was written is checked before it is visible --------
#
# The free check is the size the backend reports for what it holds (local: an
# fstat of the open data file; GridFS: the server's count of the chunks it
# stored) against the bytes that were checksummed.  A byte changed in place
# keeps the size: ``depot verify`` (above) finds those.


def _lossy_write_new(real):
    def write_new(path, data, size=False, **options):
        # The checksum was taken of ``data``; the last byte never reaches the disk.
        return real(path, bytes(data)[:-1], size, **options)
    return write_new


def _lossy_write_content(real):
    def write_content(content, dst, chunk_size=1024 * 1024, hasher=None):
        class Dropping:
            def write(self, data):
                return dst.write(bytes(data)[:-1] if len(data) > 1 else data)

            def flush(self):
                dst.flush()

        return real(content, Dropping(), chunk_size, hasher)
    return write_content


@pytest.mark.parametrize("algorithm", ["crc32c", "sha256", "md5"])
@pytest.mark.parametrize("kind", ["bytes", "stream"])
def test_local_write_that_lost_bytes_is_not_published(tmp_path, monkeypatch, algorithm, kind):
    storage = LocalFileStorage(str(tmp_path), checksum=algorithm)
    kept = storage.create(b"previous content", "a.txt")
    if kind == "bytes":
        monkeypatch.setattr(local, "_write_new", _lossy_write_new(local._write_new))
    else:
        monkeypatch.setattr(local.utils, "write_content", _lossy_write_content(local.utils.write_content))

    def content():
        data = os.urandom(3 * 1024 * 1024 + 5)
        return data if kind == "bytes" else NonSeekable(data)

    with pytest.raises(checksums.ChecksumMismatch, match=r"LocalFileStorage .*file .* not stored"):
        storage.create(content(), "b.bin")
    with pytest.raises(checksums.ChecksumMismatch, match="file %s not stored" % kept):
        storage.replace(kept, content())
    monkeypatch.undo()
    assert storage.list() == [kept]
    assert sorted(os.listdir(tmp_path)) == [kept]  # no staging folder left behind
    assert storage.get(kept).read() == b"previous content"


class NonSeekable:
    def __init__(self, data):
        self._data = data

    def read(self, n=-1):
        chunk, self._data = (self._data, b"") if n is None or n < 0 else (self._data[:n], self._data[n:])
        return chunk


def test_gridfs_chunk_cut_on_the_way_is_not_published(mongo_database_uri, monkeypatch):
    from depot.io import gridfs as gridfs_module

    storage = gridfs_module.GridFSStorage(mongo_database_uri, chunk_size=1024)
    # Two chunks an insert: the 5 chunks go in three (one acknowledged insert is checked by its answer).
    monkeypatch.setattr(gridfs_module, "BATCH_BYTES", 2048)
    try:
        kept = storage.create(b"previous content", "a.txt")
        real_insert = storage._chunks.insert_many

        def cut_on_the_way(docs, *args, **kwargs):
            # The chunks were checksummed; the server receives the last one cut short.
            docs = list(docs)
            docs[-1] = dict(docs[-1], data=docs[-1]["data"][:-1])
            return real_insert(docs, *args, **kwargs)

        monkeypatch.setattr(storage._chunks, "insert_many", cut_on_the_way)
        for write in (lambda: storage.create(os.urandom(5000), "b.bin"),
                      lambda: storage.replace(kept, NonSeekable(os.urandom(5000)))):
            with pytest.raises(checksums.ChecksumMismatch, match="GridFSStorage .*not stored: 5 chunks of 5000"):
                write()
        monkeypatch.undo()
        assert storage.list() == [kept]
        assert storage.get(kept).read() == b"previous content"
        assert storage._chunks.count_documents({}) == 1  # the chunks sent were removed
    finally:
        storage._cli.close()
