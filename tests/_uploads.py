"""Helpers of the direct-upload tests: a storage of every backend, a middleware that signs upload URLs.

The middleware's upload endpoint is tested over HTTP elsewhere; the core
tests only need its ``upload_url_for`` to hand out an intent, and write the
bytes with ``storage._store_at`` as the endpoint does.
"""
from __future__ import annotations

import uuid
import warnings

import pytest

from depot.manager import DepotManager
from tests.servers import unique_name

BACKENDS = ["memory", "local", "gridfs", "s3", "awss3", "gcs"]
#: A PNG signature and the start of its header: enough for the sniffer.
PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 40


class UploadURLs:
    """Stands in for the registered middleware: the URL it would sign for an upload."""

    def upload_url_for(self, record):
        return "/depot/%s/%s?expires=%d&signature=test" % (record.storage, record.file_id, record.expires_at)

    def url_for(self, path):
        return "/depot/" + path


def settings_for(request, backend, tmp_path):
    """``depot.*`` settings of an empty storage of ``backend`` on its real server."""
    if backend == "memory":
        return {"depot.backend": "memory"}
    if backend == "local":
        return {"depot.backend": "depot.io.local.LocalFileStorage", "depot.storage_path": str(tmp_path / "files")}
    if backend == "gridfs":
        uri = request.getfixturevalue("mongo_database_uri")
        return {"depot.backend": "depot.io.gridfs.GridFSStorage", "depot.mongouri": uri}
    prefix = "u-%s/" % uuid.uuid4().hex[:12]
    if backend in ("s3", "awss3"):
        s = request.getfixturevalue("seaweedfs_server")
        settings = {"depot.access_key_id": s.access_key, "depot.secret_access_key": s.secret_key,
                    "depot.bucket": _bucket(backend), "depot.prefix": prefix}
        if backend == "s3":
            settings.update({"depot.backend": "depot.io.boto3.S3Storage", "depot.endpoint_url": s.endpoint_url,
                             "depot.region_name": s.region})
        else:
            settings.update({"depot.backend": "depot.io.awss3.S3Storage", "depot.host": s.endpoint_url})
        return settings
    assert backend == "gcs", backend
    g = request.getfixturevalue("gcs_emulator_env")
    return {"depot.backend": "depot.io.gcs.GCSStorage", "depot.bucket": _bucket("gcs"),
            "depot.project_id": g.project, "depot.prefix": prefix}


_buckets: dict = {}


def _bucket(kind):
    # One bucket per kind for the session, a prefix per test: SeaweedFS has room for a few buckets only.
    if kind not in _buckets:
        _buckets[kind] = unique_name("depot-up-%s" % kind)
    return _buckets[kind]


def configure(request, backend, tmp_path, name="files"):
    """Configure ``name`` as an empty storage of ``backend`` and register the stand-in middleware."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # awss3 is deprecated, and says so
        storage = DepotManager.configure(name, settings_for(request, backend, tmp_path))
    if DepotManager._middleware is None:
        DepotManager.set_middleware(UploadURLs())
    return storage


@pytest.fixture(name="backend", params=BACKENDS)
def backend_fixture(request):
    return request.param


@pytest.fixture(name="storage")
def storage_fixture(request, backend, tmp_path):
    """The storage ``files`` of ``backend``, the default one, with upload URLs signed."""
    return configure(request, backend, tmp_path)
