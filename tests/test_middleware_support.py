"""Fixtures and helpers shared by the middleware test modules (no tests here)."""
from __future__ import annotations

import pytest
import webtest

from depot.io.memory import MemoryFileStorage, MemoryStoredFile
from depot.manager import DepotManager

CONTENT = b"0123456789abcdefghijklmnopqrstuvwxyz" * 3  # 108 bytes, every offset distinct enough
#: Above the size the middleware copies instead of handing to the server's file wrapper.
LARGE_CONTENT = bytes(range(256)) * 1024 + b"tail"


def fallback_app(environ, start_response):
    """The application behind the middleware: says who answered."""
    body = b"app:" + environ["REQUEST_METHOD"].encode() + b":" + environ["PATH_INFO"].encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def clean_manager():
    DepotManager._clear()
    yield DepotManager
    DepotManager._clear()


@pytest.fixture(params=["memory", "local"])
def storage(request, clean_manager, tmp_path):
    """The default storage, ``'default'``: each test runs on memory and on local storage."""
    if request.param == "memory":
        config = {"depot.backend": "depot.io.memory.MemoryFileStorage"}
    else:
        config = {"depot.backend": "depot.io.local.LocalFileStorage", "depot.storage_path": str(tmp_path / "files")}
    return DepotManager.configure("default", config)


@pytest.fixture
def local_storage(clean_manager, tmp_path):
    return DepotManager.configure("default", {"depot.storage_path": str(tmp_path / "files")})


def make_app(app=fallback_app, **options) -> webtest.TestApp:
    """A registered middleware around ``app``, under WebTest (with its WSGI lint)."""
    return webtest.TestApp(DepotManager.make_middleware(app, **options))


class _PublicFile(MemoryStoredFile):
    @property
    def public_url(self):
        return "https://cdn.example.com/files/%s" % self.file_id


class _SignedPublicFile(MemoryStoredFile):
    public_url_signed = True

    @property
    def public_url(self):
        return "https://bucket.example.com/%s?X-Amz-Expires=60&X-Amz-Signature=abc" % self.file_id


class PublicMemoryStorage(MemoryFileStorage):
    """Memory storage whose files have a permanent public URL (like public S3)."""

    file_class = _PublicFile

    def get(self, file_or_id):
        f = super().get(file_or_id)
        f.__class__ = self.file_class
        return f


class SignedMemoryStorage(PublicMemoryStorage):
    """Memory storage whose files have a signed, expiring URL (like private S3)."""

    file_class = _SignedPublicFile
