"""Fixtures and helpers shared by the middleware test modules (no tests here).

The HTTP tests run on both adapters: a module (or test) that uses the
``adapter`` fixture runs once under the WSGI middleware (through WebTest),
once under the ASGI one, and once under the ASGI one with a server that
offers ``http.response.pathsend``; :func:`make_app` gives the client of the
adapter in use.
"""
from __future__ import annotations

from typing import List, Optional
from urllib.parse import unquote

import anyio
import pytest
import webtest
from webob.headers import ResponseHeaders

from depot.io.memory import MemoryFileStorage, MemoryStoredFile
from depot.manager import DepotManager
from depot.serving.core import status_line

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


def configure_default(request, backend):
    """Configure ``backend`` (memory, local or gridfs) as the default storage, ``'default'``, for the test."""
    if backend == "memory":
        config = {"depot.backend": "depot.io.memory.MemoryFileStorage"}
    elif backend == "local":
        tmp_path = request.getfixturevalue("tmp_path")
        config = {"depot.backend": "depot.io.local.LocalFileStorage", "depot.storage_path": str(tmp_path / "files")}
    else:
        uri = request.getfixturevalue("mongo_database_uri")
        config = {"depot.backend": "depot.io.gridfs.GridFSStorage", "depot.mongouri": uri}
    storage = DepotManager.configure("default", config)
    if backend == "gridfs":
        request.addfinalizer(storage._cli.close)
    return storage


@pytest.fixture(params=["memory", "local"])
def storage(request, clean_manager):
    """The default storage, ``'default'``: each test runs on memory and on local storage."""
    return configure_default(request, request.param)


@pytest.fixture
def local_storage(clean_manager, tmp_path):
    return DepotManager.configure("default", {"depot.storage_path": str(tmp_path / "files")})


async def asgi_fallback_app(scope, receive, send):
    """:func:`fallback_app` for ASGI."""
    body = ("app:%s:%s" % (scope["method"], scope["path"])).encode("utf-8")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


ADAPTERS = ["wsgi", "asgi", "asgi-pathsend"]
_adapter = {"name": "wsgi"}


@pytest.fixture(params=ADAPTERS)
def adapter(request):
    """Which middleware :func:`make_app` builds: each test using this runs on every adapter."""
    _adapter["name"] = request.param
    yield request.param
    _adapter["name"] = "wsgi"


#: Marks a test (or, as ``pytestmark``, a module) to run on every adapter.
on_every_adapter = pytest.mark.usefixtures("adapter")


def make_app(app=fallback_app, **options):
    """A registered middleware around ``app``, with a client for it (WebTest's API).

    Under WSGI it is WebTest itself (with its WSGI lint); under ASGI an
    :class:`AsgiTestApp` around :func:`asgi_fallback_app`.
    """
    name = _adapter["name"]
    if name == "wsgi":
        return webtest.TestApp(DepotManager.make_middleware(app, **options))
    assert app is fallback_app, "ASGI tests run with asgi_fallback_app"
    return AsgiTestApp(DepotManager.make_asgi_middleware(asgi_fallback_app, **options), pathsend=name == "asgi-pathsend")


class AsgiResponse:
    """A response as an :class:`AsgiTestApp` got it (the attributes of WebTest's responses that tests use)."""

    def __init__(self, status: int, headerlist: List[tuple], body: bytes, messages: List[dict]) -> None:
        self.status_int = status
        self.status = status_line(status)
        self.headerlist = headerlist
        self.headers = ResponseHeaders(headerlist)
        self.body = body
        self.messages = messages

    @property
    def content_type(self) -> Optional[str]:
        value = self.headers.get("Content-Type")
        return None if value is None else value.split(";")[0]


class AsgiTestApp:
    """Drives an ASGI application in-process as an ASGI server would, checking the messages it sends.

    ``pathsend=True`` offers the ``http.response.pathsend`` extension (the
    file at the path is then read as the body).  ``disconnect_after``: the
    client disconnects once that many body bytes have arrived.
    """

    def __init__(self, app, pathsend: bool = False) -> None:
        self.app = app
        self.pathsend = pathsend

    def request(self, method: str, url: str, headers=None, status=None, expect_errors=False, disconnect_after=None):
        path, _, query = url.partition("?")
        extensions = {"http.response.pathsend": {}} if self.pathsend else {}
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": unquote(path), "raw_path": path.encode("utf-8"),
            "query_string": query.encode("latin-1"), "root_path": "",
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80), "extensions": extensions,
        }
        messages: List[dict] = []
        received = {"body": 0}

        async def run():
            gone = anyio.Event()
            requested = False

            async def receive():
                nonlocal requested
                if not requested:
                    requested = True
                    return {"type": "http.request", "body": b"", "more_body": False}
                await gone.wait()
                return {"type": "http.disconnect"}

            async def send(message):
                if gone.is_set():
                    return  # as uvicorn (ASGI 2.3) does: only http.disconnect tells

                if messages:
                    assert messages[0]["type"] == "http.response.start", messages
                    assert messages[-1]["type"] != "http.response.pathsend", "message after pathsend"
                    last = messages[-1]
                    assert last["type"] == "http.response.start" or last.get("more_body"), "message after the end"
                else:
                    assert message["type"] == "http.response.start", message
                if message["type"] == "http.response.pathsend":
                    assert self.pathsend, "pathsend without the extension"
                    assert message["path"].startswith("/"), message
                messages.append(message)
                received["body"] += len(message.get("body", b""))
                if disconnect_after is not None and received["body"] >= disconnect_after:
                    gone.set()
                    await anyio.sleep(0)  # let the application see http.disconnect

            await self.app(scope, receive, send)

        anyio.run(run)
        start = messages[0]
        body = b""
        for message in messages[1:]:
            if message["type"] == "http.response.pathsend":
                with open(message["path"], "rb") as f:
                    body += f.read()
            else:
                body += message.get("body", b"")
        if disconnect_after is None:
            assert messages[-1]["type"] == "http.response.pathsend" or not messages[-1].get("more_body"), messages[-1]
        headerlist = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start["headers"]]
        assert all(k == k.lower() for k, _ in headerlist), headerlist
        resp = AsgiResponse(start["status"], headerlist, b"" if method == "HEAD" else body, messages)
        if method == "HEAD":
            assert body == b"", "a body for HEAD"
        if status is not None:
            assert resp.status_int == status or resp.status == status, (resp.status, status, body[:200])
        elif not expect_errors:
            assert resp.status_int < 400, (resp.status, body[:200])
        return resp

    def get(self, url, **kwargs):
        return self.request("GET", url, **kwargs)

    def head(self, url, **kwargs):
        return self.request("HEAD", url, **kwargs)

    def post(self, url, **kwargs):
        return self.request("POST", url, **kwargs)

    def put(self, url, **kwargs):
        return self.request("PUT", url, **kwargs)



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
