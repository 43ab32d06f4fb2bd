"""``depot migrate`` against real servers: local disk to S3 (SeaweedFS), GridFS (secantusd) and GCS."""
from __future__ import annotations

import json
import os

import pytest

# depot's own modules are imported plainly: one that does not import fails the run, never skips it.
import depot.io.gcs  # noqa: F401 - the 'gcs' backend the GCS tests build through the CLI
from depot.cli.errors import ExitCode
from depot.io import gridfs as gridfs_module
from depot.io.local import LocalFileStorage
from tests.servers import unique_name


pytestmark = pytest.mark.usefixtures("no_ambient_settings")


@pytest.fixture
def run(run_cli):
    return run_cli


def fill(storage, count):
    return sorted(storage.create(os.urandom(3000 + 97 * i), "file-%d.bin" % i) for i in range(count))


def break_metadata(storage, file_id):
    path = storage.get(file_id)._metadata_path
    with open(path) as f:
        good = f.read()
    with open(path, "w") as f:
        f.write("{broken")
    return path, good


# -- local disk -> S3 -------------------------------------------------------------

def s3_settings(tmp_path, server, bucket, files_backend):
    """A settings file with the local storage and an S3 one; ``files`` may be switched to S3."""
    s3 = """
backend = "s3"
access_key_id = "{key}"
secret_access_key = "{secret}"
bucket = "{bucket}"
endpoint_url = "{endpoint}"
region_name = "{region}"
policy = "private"
""".format(key=server.access_key, secret=server.secret_key, bucket=bucket, endpoint=server.endpoint_url,
           region=server.region)
    local, disk = ('backend = "local"\nstorage_path = "%s"\n' % (tmp_path / name) for name in ("files", "disk"))
    path = tmp_path / ("depot-%s.toml" % files_backend)
    files = local if files_backend == "local" else s3
    path.write_text("[depot]\ndefault = \"files\"\n[depot.storages.files]\n%s\n[depot.storages.s3]\n%s\n"
                    "[depot.storages.disk]\n%s" % (files, s3, disk))
    return path


def test_migrate_local_to_s3_with_a_failure_then_resume_and_switch(run, tmp_path, seaweedfs_server):
    storage = LocalFileStorage(str(tmp_path / "files"))
    ids = fill(storage, 8)
    bucket = unique_name("cli")
    config = s3_settings(tmp_path, seaweedfs_server, bucket, "local")
    metadata_path, good = break_metadata(storage, ids[3])

    code, out, err = run("-c", config, "migrate", "files", "s3", "--verify")
    assert code == ExitCode.FAILURES
    assert "8 files: 7 copied" in out and "1 failed" in out
    assert "storage files, file %s: not copied to s3" % ids[3] in err

    with open(metadata_path, "w") as f:
        f.write(good)
    code, out, err = run("-c", config, "migrate", "--jobs", "4", "files", "s3", "--verify")
    assert code == 0, err
    assert "8 files: 1 copied" in out and "7 already there, 0 failed; content verified" in out
    code, out, _ = run("-c", config, "ls", "-s", "s3")
    assert out.split() == ids

    # The application now points the name "files" at S3: every stored
    # reference ('files/<id>') still finds its file, with its metadata.
    switched = s3_settings(tmp_path, seaweedfs_server, bucket, "s3")
    for file_id in ids:
        code, out, _ = run("-c", switched, "info", "--json", "files/" + file_id)
        facts = json.loads(out)
        original = storage.get(file_id)
        assert (facts["filename"], facts["content_type"], facts["content_length"]) == (
            original.filename, original.content_type, original.content_length)
        assert facts["public_url"].startswith(seaweedfs_server.endpoint_url)  # presigned: private bucket
    target = tmp_path / "back.bin"
    assert run("-c", switched, "get", ids[5], "-o", target)[0] == 0
    assert target.read_bytes() == storage.get(ids[5]).read()

    # And back again, S3 to local disk, into an empty directory.
    code, out, _ = run("-c", config, "migrate", "-j", "3", "s3", "disk", "--verify")
    assert code == 0 and "8 files: 8 copied" in out
    for name in ("files", "s3", "disk"):
        assert run("-c", config, "rm", "-s", name, *ids)[0] == 0


# -- GridFS ----------------------------------------------------------------------------


class InterruptingGridFS(gridfs_module.GridFSStorage):
    """GridFS storage that is 'Ctrl-C'ed after a number of writes."""

    def __init__(self, interrupt_after, **options):
        super().__init__(**options)
        self.writes_left = int(interrupt_after)

    def replace(self, *args, **kwargs):
        if self.writes_left == 0:
            raise KeyboardInterrupt
        self.writes_left -= 1
        return super().replace(*args, **kwargs)


def migrate_interrupted_then_resumed(run, interrupting, resuming, source, target, total, first):
    """Migrate with ``--verify`` under options that stop after ``first`` copies, then again to the end.

    Returns the ids the target lists afterwards.
    """
    code, out, err = run(*interrupting, "migrate", source, target, "--verify")
    assert code == ExitCode.INTERRUPTED
    assert "%d files: %d copied" % (total, first) in out
    assert "interrupted after %d of %d files" % (first, total) in err
    code, out, err = run(*resuming, "migrate", "-j", "2", source, target, "--verify")
    assert code == 0, err
    assert "%d files: %d copied" % (total, total - first) in out
    assert "%d already there, 0 failed; content verified" % first in out
    return run(*resuming, "ls", "-s", target)[1].split()


def test_migrate_between_gridfs_storages_interrupted_and_resumed(run, mongo_database_uri):
    source = gridfs_module.GridFSStorage(mongo_database_uri)
    try:
        ids = fill(source, 7)
    finally:
        source._cli.close()
    opts = ("--backend", "old=gridfs", "-o", "old.mongouri=" + mongo_database_uri,
            "--backend", "new=tests.test_cli_backends.InterruptingGridFS",
            "-o", "new.mongouri=" + mongo_database_uri, "-o", "new.collection=moved", "-o", "new.interrupt_after=3")
    resumed = ("--backend", "old=gridfs", "-o", "old.mongouri=" + mongo_database_uri,
               "--backend", "new=gridfs", "-o", "new.mongouri=" + mongo_database_uri, "-o", "new.collection=moved")
    assert migrate_interrupted_then_resumed(run, opts, resumed, "old", "new", 7, 3) == ids
    source = gridfs_module.GridFSStorage(mongo_database_uri)
    try:
        for file_id in ids:
            code, out, _ = run(*resumed, "info", "--json", "new/" + file_id)
            original = source.get(file_id)
            assert json.loads(out)["filename"] == original.filename
            code, out, _ = run(*resumed, "get", "new/" + file_id, "-o", "copy.bin")
            with open("copy.bin", "rb") as f:
                assert f.read() == original.read()
    finally:
        source._cli.close()


def test_migrate_local_to_gridfs_keeps_uuids_interrupted_and_resumed(run, tmp_path, mongo_database_uri):
    storage = LocalFileStorage(str(tmp_path / "files"))
    ids = fill(storage, 6)
    local = ("--local", "files=%s" % (tmp_path / "files"))
    interrupting = (*local, "--backend", "mongo=tests.test_cli_backends.InterruptingGridFS",
                    "-o", "mongo.mongouri=" + mongo_database_uri, "-o", "mongo.interrupt_after=2")
    opts = (*local, "--backend", "mongo=gridfs", "-o", "mongo.mongouri=" + mongo_database_uri)
    assert migrate_interrupted_then_resumed(run, interrupting, opts, "files", "mongo", 6, 2) == ids
    target = gridfs_module.GridFSStorage(mongo_database_uri)
    try:
        for file_id in ids:
            copy, original = target.get(file_id), storage.get(file_id)
            assert (copy.filename, copy.content_type, copy.read()) == (
                original.filename, original.content_type, original.read())
        assert target.collect_garbage(older_than=0) == 0
        assert sorted(target.list()) == ids
    finally:
        target._cli.close()
    code, out, _ = run(*opts, "get", "mongo/" + ids[4], "-o", "copy.bin")
    with open("copy.bin", "rb") as f:
        assert f.read() == storage.get(ids[4]).read()


def test_migrate_gridfs_with_objectids_to_local_is_refused(run, tmp_path, mongo_database_uri):
    """A GridFS holding UUIDs and ObjectIds: every kind of id is checked before anything is copied."""
    mongo = gridfs_module.GridFSStorage(mongo_database_uri)
    try:
        migrated = LocalFileStorage(str(tmp_path / "old"))
        source = migrated.get(migrated.create(b"from disk"))
        # Sorted first, the UUID alone would pass the check.
        (tmp_path / "old" / source.file_id).rename(tmp_path / "old" / ("0" * 8 + source.file_id[8:]))
        source = migrated.get("0" * 8 + source.file_id[8:])
        mongo.replace(source, source)
        mongo.create(b"native")
    finally:
        mongo._cli.close()
    code, out, err = run("--local", "disk=%s" % (tmp_path / "disk"),
                         "--backend", "mongo=gridfs", "-o", "mongo.mongouri=" + mongo_database_uri,
                         "migrate", "mongo", "disk")
    assert code == ExitCode.USAGE
    assert "storage 'disk' cannot hold the ids of 'mongo'" in err
    assert out == "" and not (tmp_path / "disk").exists()


# -- local disk -> Google Cloud Storage ------------------------------------------------------

def test_migrate_local_to_gcs_keeps_ids_and_verifies(run, tmp_path, gcs_emulator_env):
    storage = LocalFileStorage(str(tmp_path / "files"))
    ids = fill(storage, 5)
    opts = ("--local", "files=%s" % (tmp_path / "files"), "--backend", "gcs=gcs",
            "-o", "gcs.bucket=" + unique_name("cli-gcs"), "-o", "gcs.project_id=" + gcs_emulator_env.project,
            "-o", "gcs.policy=private", "-o", "gcs.prefix=uploads/")
    code, out, err = run(*opts, "migrate", "-j", "2", "files", "gcs", "--verify")
    assert code == 0, err
    assert "5 files: 5 copied" in out and "content verified" in out
    code, out, _ = run(*opts, "ls", "-s", "gcs", "--json")
    listed = [json.loads(line) for line in out.splitlines()]
    assert [item["id"] for item in listed] == ids
    for item in listed:
        original = storage.get(item["id"])
        assert (item["filename"], item["content_length"]) == (original.filename, original.content_length)
    code, out, _ = run(*opts, "migrate", "files", "gcs")
    assert "5 already there" in out
