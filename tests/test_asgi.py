"""depot.asgi.DepotMiddleware in-process: what only the ASGI adapter does.

The HTTP behaviour it shares with the WSGI middleware is tested by the
middleware test modules, which run on both adapters; tests/test_asgi_servers.py
runs it under real uvicorn and granian servers.
"""
from __future__ import annotations

import os
import threading
from unittest import mock
from urllib.parse import quote_from_bytes

import anyio
import psutil
import pytest

import depot.asgi
from depot.asgi import CHUNK_SIZE
from depot.asgi import DepotMiddleware
from depot.io.memory import MemoryFileStorage, MemoryStoredFile
from depot.manager import DepotManager
from depot.middleware import FileServeApp

from .test_middleware_compat import ODD_IDS, KeyedStorage
from .test_middleware_support import CONTENT, AsgiTestApp, asgi_fallback_app

pytest_plugins = ["tests.test_middleware_support"]

#: Large enough for several chunks.
BIG = os.urandom(3 * CHUNK_SIZE + 123)


def run(app, scope, incoming=(), respond_after=None):
    """Call ``app`` with ``scope``; ``incoming`` messages are received in turn. Returns what it sent."""
    sent = []
    queue = list(incoming)

    async def main():
        async def receive():
            if queue:
                return queue.pop(0)
            await anyio.sleep_forever()

        async def send(message):
            sent.append(message)

        await app(scope, receive, send)

    anyio.run(main)
    return sent


def http_scope(path, method="GET", **extra):
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": [], "asgi": {"version": "3.0"}}
    scope.update(extra)
    return scope


def test_registered_by_the_manager(clean_manager):
    mw = DepotManager.make_asgi_middleware(asgi_fallback_app, mountpoint="/media")
    assert isinstance(mw, DepotMiddleware) and DepotManager.get_middleware() is mw
    assert DepotManager.url_for("default/abc") == "/media/default/abc"
    with pytest.raises(RuntimeError):
        DepotManager.make_asgi_middleware(asgi_fallback_app)
    with pytest.raises(RuntimeError):
        DepotManager.make_middleware(None)


def test_chunk_size(local_storage):
    fid = local_storage.create(BIG, "a.bin", "application/octet-stream")
    mw = DepotManager.make_asgi_middleware(asgi_fallback_app, chunk_size=100000)
    resp = AsgiTestApp(mw).get("/depot/default/%s" % fid)
    sizes = [len(m["body"]) for m in resp.messages[1:]]
    assert resp.body == BIG and max(sizes) == 100000 and len(sizes) == len(BIG) // 100000 + 2
    for wrong in (0, -1, "big"):
        with pytest.raises(ValueError, match="chunk_size"):
            DepotMiddleware(None, chunk_size=wrong)


def test_same_options_as_wsgi(clean_manager):
    mw = DepotMiddleware(None, "/m", "60", "true", inline_types="image/svg+xml", x_sendfile="true", secret="s")
    assert (mw.mountpoint, mw.cache_max_age) == ("/m", 60)
    assert mw.inline_policy.allows_inline("image/svg+xml") and mw.offload and mw.signer
    with pytest.raises(ValueError, match="absolute"):
        DepotMiddleware(None, mountpoint="depot")


@pytest.mark.parametrize("kind", ["lifespan", "websocket"])
def test_other_scopes_reach_the_app_untouched(clean_manager, kind):
    seen = []

    async def app(scope, receive, send):
        seen.append((scope, receive, send))

    mw = DepotMiddleware(app)
    scope = {"type": kind, "path": "/depot/default/x", "asgi": {"version": "3.0"}}

    async def receive():
        return {"type": kind + ".connect"}

    async def send(message):
        pass

    anyio.run(mw, scope, receive, send)
    assert seen == [(scope, receive, send)]


def test_without_an_app(clean_manager):
    mw = DepotMiddleware(None)
    lifespan = run(mw, {"type": "lifespan"}, [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    assert [m["type"] for m in lifespan] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert run(mw, {"type": "websocket", "path": "/"}, [{"type": "websocket.connect"}])[0]["type"] == "websocket.close"
    assert run(mw, http_scope("/depot/default/x", "POST"))[0]["status"] == 405
    assert (b"allow", b"GET, HEAD") in run(mw, http_scope("/depot", "PUT"))[0]["headers"]
    assert run(mw, http_scope("/elsewhere"))[0]["status"] == 404


def test_root_path(storage):
    mw = DepotManager.make_asgi_middleware(asgi_fallback_app)
    fid = storage.create(CONTENT, "a.txt", "text/plain")
    path = "/depot/default/%s" % fid
    # Servers give the full path with root_path (uvicorn --root-path) or without it (older conventions).
    for scope in (http_scope("/api" + path, root_path="/api"), http_scope(path, root_path="/api")):
        sent = run(mw, scope)
        assert sent[0]["status"] == 200 and sent[1]["body"] == CONTENT
    assert run(mw, http_scope("/apix" + path, root_path="/api"))[1]["body"].startswith(b"app:")


def test_raw_path_tells_invalid_utf8_from_a_real_replacement_character(clean_manager):
    DepotManager._depots["keys"] = storage = KeyedStorage({"\ufffd": b"replacement"})
    mw = DepotManager.make_asgi_middleware(None)
    # What uvicorn gives for /depot/keys/%FF: the path with U+FFFD, the raw bytes as sent.
    with mock.patch.object(storage, "get", side_effect=AssertionError("storage asked")):
        assert run(mw, http_scope("/depot/keys/\ufffd", raw_path=b"/depot/keys/%FF"))[0]["status"] == 404
    sent = run(mw, http_scope("/depot/keys/\ufffd", raw_path=b"/depot/keys/%EF%BF%BD"))
    assert sent[1]["body"] == b"replacement"
    # Servers without raw_path: the decoded path.
    assert run(mw, http_scope("/depot/keys/\ufffd", raw_path=None))[1]["body"] == b"replacement"
    assert run(mw, http_scope("/api/depot/keys/\ufffd", raw_path=b"/api/depot/keys/%EF%BF%BD", root_path="/api"))[1][
        "body"] == b"replacement"


@pytest.mark.parametrize("file_id", ODD_IDS)
def test_ids_the_storage_accepts_are_served(clean_manager, file_id):
    DepotManager._depots["keys"] = KeyedStorage({file_id: file_id.encode("utf-8") * 3})
    mw = DepotManager.make_asgi_middleware(asgi_fallback_app)
    assert AsgiTestApp(mw).get(mw.url_for("keys/%s" % file_id)).body == file_id.encode("utf-8") * 3


def test_file_app_class_hooks_get_a_wsgi_environ(storage):
    seen = []

    class NeverModified(FileServeApp):
        def has_been_modified(self, environ, etag, last_modified):
            seen.append(environ)
            return False

    class Middleware(DepotMiddleware):
        file_app_class = NeverModified

    fid = storage.create(CONTENT, "a.txt", "text/plain")
    resp = AsgiTestApp(Middleware(asgi_fallback_app)).get(
        "/depot/default/%s?x=1" % fid, headers={"If-None-Match": '"a"', "X-Thing": "b"}, status=304
    )
    assert resp.body == b""
    environ = seen[0]
    assert (environ["REQUEST_METHOD"], environ["PATH_INFO"], environ["QUERY_STRING"]) == (
        "GET", "/depot/default/%s" % fid, "x=1")
    assert environ["HTTP_IF_NONE_MATCH"] == '"a"' and environ["HTTP_X_THING"] == "b"
    assert environ["asgi.scope"]["type"] == "http"


def test_repeated_headers_are_one_list(storage):
    fid = storage.create(CONTENT, "a.txt", "text/plain")
    mw = DepotManager.make_asgi_middleware(asgi_fallback_app)
    etag = AsgiTestApp(mw).get("/depot/default/%s" % fid).headers["ETag"]
    scope = http_scope("/depot/default/%s" % fid, headers=[(b"if-none-match", b'"x"'), (b"if-none-match", etag.encode())])
    assert run(mw, scope)[0]["status"] == 304


def test_header_names_clients_choose_are_not_all_remembered(storage):
    fid = storage.create(CONTENT, "a.txt", "text/plain")
    mw = DepotManager.make_asgi_middleware(asgi_fallback_app)
    for i in range(400):
        headers = [(b"x-random-%d" % i, b"1")]
        assert run(mw, http_scope("/depot/default/%s" % fid, headers=headers))[0]["status"] == 200
    assert len(depot.asgi._KEYS) <= depot.asgi._MAX_KEYS


def test_without_anyio_the_import_error_names_the_extra():
    import subprocess
    import sys

    code = "import sys; sys.modules['anyio'] = None\ntry:\n    import depot.asgi\nexcept ImportError as e:\n    print(e)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "depot[asgi]" in out and "anyio" in out


def test_a_starlette_application_behind_it(storage):
    """Wrapped as the docs say, through httpx's in-process ASGI transport."""
    httpx = pytest.importorskip("httpx")
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request):
        return PlainTextResponse("hello " + request.path_params["name"])

    app = DepotManager.make_asgi_middleware(Starlette(routes=[Route("/hello/{name}", hello)]))
    fid = storage.create(BIG, "a.bin", "application/octet-stream")

    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            assert (await client.get("/hello/you")).text == "hello you"
            resp = await client.get(DepotManager.url_for("default/%s" % fid), headers={"Range": "bytes=5-"})
            assert resp.status_code == 206 and resp.content == BIG[5:]
            assert (await client.get("/depot/default/missing")).status_code == 404

    anyio.run(main)


def messages_for(app, url, **kwargs):
    resp = app.get(url, **kwargs)
    return resp, [m for m in resp.messages if m["type"] != "http.response.start"]


def test_bodies_by_kind(local_storage):
    mw = DepotManager.make_asgi_middleware(asgi_fallback_app)
    fid = local_storage.create(BIG, "a.bin", "application/octet-stream")
    small = local_storage.create(CONTENT, "a.txt", "text/plain")
    url = "/depot/default/%s" % fid
    with_pathsend, plain = AsgiTestApp(mw, pathsend=True), AsgiTestApp(mw)
    # A whole local file: one pathsend message with the absolute path of the data file.
    resp, body = messages_for(with_pathsend, url)
    assert [m["type"] for m in body] == ["http.response.pathsend"] and resp.body == BIG
    assert os.path.isabs(body[0]["path"]) and open(body[0]["path"], "rb").read() == BIG
    # pathsend cannot send a part: ranges are streamed.
    resp, body = messages_for(with_pathsend, url, headers={"Range": "bytes=10-"})
    assert resp.status_int == 206 and resp.body == BIG[10:]
    assert {m["type"] for m in body} == {"http.response.body"} and len(body) > 2
    # Without the extension: chunks of at most CHUNK_SIZE, then the end.
    resp, body = messages_for(plain, url)
    assert resp.body == BIG and max(len(m["body"]) for m in body) == CHUNK_SIZE and body[-1] == {
        "type": "http.response.body", "body": b"", "more_body": False}
    # Small files are one message.
    resp, body = messages_for(with_pathsend, "/depot/default/%s" % small)
    assert [m["body"] for m in body] == [CONTENT]


def test_chunks_are_read_off_the_event_loop(clean_manager, tmp_path):
    local = DepotManager.configure("local", {"depot.storage_path": str(tmp_path / "files")})
    memory = DepotManager.configure("memory", {"depot.backend": "memory"})
    mw = DepotManager.make_asgi_middleware(asgi_fallback_app)
    threads = []
    pread, iter_range = os.pread, MemoryStoredFile.iter_range

    def recording_pread(*args):
        threads.append(threading.get_ident())
        return pread(*args)

    def recording_iter_range(self, *args):
        for chunk in iter_range(self, *args):
            threads.append(threading.get_ident())
            yield chunk

    loop_threads = []

    async def app(scope, receive, send):
        loop_threads.append(threading.get_ident())
        await mw(scope, receive, send)

    with mock.patch.object(depot.asgi.os, "pread", recording_pread), \
            mock.patch.object(MemoryStoredFile, "iter_range", recording_iter_range):
        assert AsgiTestApp(app).get("/depot/local/%s" % local.create(BIG, "a", "x/y")).body == BIG
        memory_id = memory.create(BIG, "a", "x/y")
        assert AsgiTestApp(app).get("/depot/memory/%s" % memory_id, headers={"Range": "bytes=1-"}).body == BIG[1:]
    assert len(threads) >= 8 and loop_threads[0] not in threads


class RecordingFile(MemoryStoredFile):
    log: list = []

    def read(self, n=-1):
        chunk = super().read(n)
        RecordingFile.log.append(len(chunk))
        return chunk

    def close(self, *args, **kwargs):
        RecordingFile.log.append("closed")
        super().close()


class RecordingStorage(MemoryFileStorage):
    def get(self, file_or_id):
        f = super().get(file_or_id)
        f.__class__ = RecordingFile
        return f


@pytest.fixture
def recording(clean_manager):
    storage = RecordingStorage()
    DepotManager._depots["rec"] = storage
    RecordingFile.log = []
    return storage


def test_disconnect_stops_reading_and_closes(recording):
    size = 40 * CHUNK_SIZE
    fid = recording.create(b"x" * size, "a.bin", "application/octet-stream")
    app = AsgiTestApp(DepotManager.make_asgi_middleware(asgi_fallback_app))
    app.get("/depot/rec/%s" % fid, disconnect_after=2 * CHUNK_SIZE)
    assert RecordingFile.log[-1] == "closed"
    assert sum(n for n in RecordingFile.log if n != "closed") <= 4 * CHUNK_SIZE


def test_send_raising_oserror_stops_reading_and_closes(recording):
    """ASGI 2.4 servers report a gone client by raising OSError from send, and may never send http.disconnect."""
    fid = recording.create(b"x" * (40 * CHUNK_SIZE), "a.bin", "application/octet-stream")
    mw = DepotManager.make_asgi_middleware(asgi_fallback_app)
    sent = []

    async def main():
        async def receive():
            await anyio.sleep_forever()

        async def send(message):
            if len(sent) >= 3:
                raise OSError("gone")
            sent.append(message)

        with anyio.fail_after(10):
            await mw(http_scope("/depot/rec/%s" % fid), receive, send)

    anyio.run(main)
    assert RecordingFile.log[-1] == "closed"
    assert sum(n for n in RecordingFile.log if n != "closed") <= 4 * CHUNK_SIZE


@pytest.mark.parametrize("extensions", [{}, {"http.response.pathsend": {}}])
@pytest.mark.parametrize("fail_at", [0, 1])
def test_a_client_gone_before_the_body_is_no_error(local_storage, extensions, fail_at):
    """send raising OSError (ASGI 2.4) at the start or at a one-message body: quiet, and the file is closed."""
    small = local_storage.create(CONTENT, "a.txt", "text/plain")
    big = local_storage.create(BIG, "a.bin", "application/octet-stream")
    mw = DepotManager.make_asgi_middleware(asgi_fallback_app)
    opened = []
    original = type(local_storage.get(small)).real_file

    def spy(self):
        opened.append(original(self))
        return opened[-1]

    def serve(fid):
        sent = []

        async def receive():
            await anyio.sleep_forever()

        async def send(message):
            if len(sent) == fail_at:
                raise OSError("gone")
            sent.append(message)

        anyio.run(mw, http_scope("/depot/default/%s" % fid, extensions=extensions), receive, send)

    for fid in (small, big):
        with mock.patch.object(type(local_storage.get(small)), "real_file", spy):
            serve(fid)
        assert opened[-1].closed


def test_a_read_error_is_not_taken_for_a_disconnect(local_storage):
    fid = local_storage.create(BIG, "a.bin", "application/octet-stream")
    mw = DepotManager.make_asgi_middleware(asgi_fallback_app)
    with mock.patch.object(depot.asgi.os, "pread", side_effect=OSError(5, "Input/output error")), \
            pytest.raises(BaseException) as raised:
        run(mw, http_scope("/depot/default/%s" % fid), [{"type": "http.request", "body": b""}])
    assert "Input/output error" in repr(raised.value) or any(
        "Input/output error" in repr(e) for e in getattr(raised.value, "exceptions", ()))


def test_disconnect_closes_a_local_file(local_storage):
    fid = local_storage.create(BIG * 8, "a.bin", "application/octet-stream")
    app = AsgiTestApp(DepotManager.make_asgi_middleware(asgi_fallback_app))
    data_file = os.path.realpath(local_storage.get(fid).real_file().name)

    def open_data_files():
        return [f for f in psutil.Process().open_files() if os.path.realpath(f.path) == data_file]

    real_open = []
    original = type(local_storage.get(fid)).real_file

    def spy(self):
        real_open.append(original(self))
        return real_open[-1]

    with mock.patch.object(type(local_storage.get(fid)), "real_file", spy):
        app.get("/depot/default/%s" % fid, disconnect_after=CHUNK_SIZE)
    assert real_open and real_open[0].closed
    assert open_data_files() == []


# -- the two adapters answer alike ----------------------------------------------------------


@pytest.mark.parametrize("seed, signed", [(11, False), (12, True)])
def test_random_requests_get_the_same_answer_from_both_adapters(tmp_path, seed, signed):
    """Differential: random paths and headers, once through WSGI and once through ASGI."""
    import random
    import time

    from depot.middleware import DepotMiddleware as WSGIMiddleware

    from .test_middleware_fuzz import call, random_header, random_path
    from .test_middleware_support import fallback_app

    DepotManager._clear()
    try:
        local = DepotManager.configure("default", {"depot.storage_path": str(tmp_path / "files")})
        memory = DepotManager.configure("mem", {"depot.backend": "memory"})
        ids = {"default": [local.create(CONTENT, "a.txt", "text/plain"), local.create(BIG, "b.bin", "x/y")],
               "mem": [memory.create(CONTENT, "b.html", "text/html"), memory.create(BIG, "c.bin", "x/y")]}
        options = {"secret": "k", "link_lifetime": 60} if signed else {}
        wsgi, asgi = WSGIMiddleware(fallback_app, **options), DepotMiddleware(asgi_fallback_app, **options)
        urls = [wsgi.url_for("%s/%s" % (name, fid)) for name, fids in ids.items() for fid in fids]
        rng = random.Random(seed)
        compared = set()
        with mock.patch("time.time", return_value=time.time()):
            for _ in range(600):
                if rng.random() < 0.6:
                    path, _, query = rng.choice(urls).partition("?")
                else:
                    path, query = random_path(rng, ids, "/depot"), rng.choice(["", "expires=1&signature=x"])
                method = rng.choice(["GET", "GET", "GET", "HEAD", "POST"])
                headers = {}
                for name in ("Range", "If-Range", "If-None-Match", "If-Modified-Since", "If-Match"):
                    if rng.random() < (0.5 if name == "Range" else 0.15):
                        headers[name] = random_header(rng, '"x"').encode("latin-1", "replace").decode("latin-1")
                environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query}
                environ.update(("HTTP_" + k.upper().replace("-", "_"), v) for k, v in headers.items())
                status, wsgi_headers, wsgi_body = call(wsgi, environ)
                raw = path.encode("latin-1")
                scope = http_scope(raw.decode("utf-8", "replace"), method, raw_path=quote_from_bytes(raw, "/").encode(),
                                   query_string=query.encode("latin-1"),
                                   headers=[(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()])
                sent = run(asgi, scope, [{"type": "http.request", "body": b"", "more_body": False}])
                if wsgi_body.startswith(b"app:"):
                    assert sent[1]["body"].startswith(b"app:"), (environ, sent[0])
                    continue
                assert sent[0]["status"] == int(status[:3]), (environ, status, sent[0])
                assert [(k.decode(), v.decode("latin-1")) for k, v in sent[0]["headers"]] == [
                    (k.lower(), v) for k, v in wsgi_headers], environ
                body = b"".join(m.get("body", b"") for m in sent[1:])
                assert body == (b"" if method == "HEAD" else wsgi_body), environ
                compared.add(sent[0]["status"])
        assert {200, 404} | ({403} if signed else {206, 304, 416}) <= compared, compared
    finally:
        DepotManager._clear()
