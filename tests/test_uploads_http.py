"""Direct uploads to the middleware over real HTTP: gunicorn and waitress (WSGI), uvicorn and granian (ASGI).

Every server runs ``APP_MODULE``: the middleware (with a secret) in front of
a small control application that creates upload intents and reports what a
storage holds, over three storages: local, memory and GridFS.  Intents are
made inside the server (a memory storage's markers live there).  Each
upload is checked at the edge: the status, then that the file is served
(success) or that nothing at all was stored (refusals).
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import time
import uuid
from urllib.parse import urlencode

import pytest

from depot.io import checksums
from depot.serving.signing import UPLOAD, LinkSigner

from ._procs import LOOPBACK, free_ports, http_status, start_server

SECRET = "uploads-http-secret"
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(300 * 1024)  # several chunks of every server
MAX_SIZE = len(PNG) + 1000

APP_MODULE = '''
import json, os
from urllib.parse import parse_qs

from depot.manager import DepotManager
from depot.uploads import create_upload_intent

DepotManager.configure("local", {"depot.storage_path": os.environ["DEPOT_TEST_ROOT"]})
DepotManager.configure("mem", {"depot.backend": "memory"})
DepotManager.configure("grid", {"depot.backend": "depot.io.gridfs.GridFSStorage",
                                "depot.mongouri": os.environ["DEPOT_TEST_MONGO"]})
SECRET = os.environ["DEPOT_TEST_SECRET"]


def control(method, path, query, body):
    """(status, JSON-able) for the control endpoints; None for anything else."""
    args = {k: v[0] for k, v in parse_qs(query).items()}
    if path == "/ping":
        return 200, "pong"
    if path == "/intent" and method == "POST":
        options = json.loads(body)
        intent = create_upload_intent(options.pop("storage"), **options)
        return 200, intent.as_dict()
    if path == "/state":
        storage = DepotManager.get(args["storage"])
        file_id = args["id"]
        state = {"exists": storage.exists(file_id), "list": storage.list(),
                 "pending": storage._pending_get(file_id) is not None}
        if args["storage"] == "local":
            root = os.environ["DEPOT_TEST_ROOT"]
            state["leftovers"] = sorted(set(os.listdir(root)) - set(state["list"]) - {".depot-pending"})
        if args["storage"] == "grid":
            files, chunks = storage._files, storage._chunks
            state["leftovers"] = sorted(str(i) for i in set(chunks.distinct("files_id")) - set(files.distinct("_id")))
        if state["exists"]:
            state["url"] = DepotManager.get_middleware().url_for("%s/%s" % (args["storage"], file_id))
        return 200, state
    return None


def wsgi_control(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    answer = control(environ["REQUEST_METHOD"], environ["PATH_INFO"], environ.get("QUERY_STRING", ""), body)
    status, value = answer if answer is not None else (404, "not found")
    data = json.dumps(value).encode()
    start_response("%d X" % status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


async def asgi_control(scope, receive, send):
    if scope["type"] != "http":
        from depot.asgi import _without_app  # lifespan: nothing to start

        return await _without_app(scope, receive, send)
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    answer = control(scope["method"], scope["path"], scope["query_string"].decode(), body)
    status, value = answer if answer is not None else (404, "not found")
    data = json.dumps(value).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


if os.environ["DEPOT_TEST_KIND"] == "wsgi":
    application = DepotManager.make_middleware(wsgi_control, secret=SECRET)
else:
    application = DepotManager.make_asgi_middleware(asgi_control, secret=SECRET)
'''


def _server_argv(name, port):
    if name == "gunicorn":
        return [sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class", "sync", "--bind",
                "%s:%d" % (LOOPBACK, port), "depot_uploads_app:application"]
    if name == "waitress":  # reads the whole body (de-chunked) before calling the application
        return [sys.executable, "-m", "waitress", "--listen=%s:%d" % (LOOPBACK, port), "--threads=2",
                "depot_uploads_app:application"]
    if name == "uvicorn":
        return [sys.executable, "-m", "uvicorn", "--host", LOOPBACK, "--port", str(port), "--workers", "1",
                "--lifespan", "on", "--no-access-log", "depot_uploads_app:application"]
    return [sys.executable, "-m", "granian", "--interface", "asgi", "--host", LOOPBACK, "--port", str(port),
            "--workers", "1", "--no-access-log", "depot_uploads_app:application"]


class Server:
    def __init__(self, name, port, root):
        self.name = name
        self.port = port
        self.root = root

    def request(self, method, path, body=None, headers=None, chunked=False):
        """``(status, headers, body)`` over a fresh connection; ``chunked`` sends the body in pieces."""
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=60)
        try:
            if chunked:
                pieces = [body[i:i + 50000] for i in range(0, len(body), 50000)]
                conn.request(method, path, body=iter(pieces), headers=headers or {}, encode_chunked=True)
            else:
                conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def intent(self, storage, **options):
        options.setdefault("max_size", MAX_SIZE)
        status, _, body = self.request("POST", "/intent", json.dumps(dict(options, storage=storage)).encode())
        assert status == 200, body
        return json.loads(body)

    def state(self, storage, file_id):
        status, _, body = self.request("GET", "/state?" + urlencode({"storage": storage, "id": file_id}))
        assert status == 200, body
        return json.loads(body)

    def alive(self):
        return http_status("http://%s:%d/ping" % (LOOPBACK, self.port)) == 200


@pytest.fixture(scope="module")
def mongo_uri(mongo_server):
    with mongo_server.fresh_database() as uri:
        yield uri


@pytest.fixture(scope="module", params=["gunicorn", "waitress", "uvicorn", "granian"])
def server(request, tmp_path_factory, mongo_uri):
    name = request.param
    root = str(tmp_path_factory.mktemp("uploads-%s" % name) / "files")
    os.makedirs(root)

    def launch(process):
        (process.workdir / "depot_uploads_app.py").write_text(APP_MODULE)
        (port,) = free_ports(1)
        env = dict(os.environ, DEPOT_TEST_ROOT=root, DEPOT_TEST_MONGO=mongo_uri, DEPOT_TEST_SECRET=SECRET,
                   DEPOT_TEST_KIND="wsgi" if name in ("gunicorn", "waitress") else "asgi",
                   PYTHONPATH=os.pathsep.join([str(process.workdir), os.getcwd()]))
        process.spawn(_server_argv(name, port), env=env)
        process.wait_until(lambda: http_status("http://%s:%d/ping" % (LOOPBACK, port)) == 200, timeout=60)
        return Server(name, port, root)

    process, srv = start_server("uploads-" + name, launch)
    yield srv
    process.stop()


@pytest.fixture(params=["local", "mem", "grid"])
def storage(request):
    return request.param


def assert_nothing_stored(server, storage, file_id, pending=True):
    state = server.state(storage, file_id)
    assert not state["exists"] and file_id not in state["list"], state
    assert state.get("leftovers", []) == [], state
    assert state["pending"] is pending, state  # a refused upload keeps its intent: the browser may try again


def test_upload_then_served(server, storage):
    intent = server.intent(storage, content_types=["image/*"], filename="photo.png")
    status, headers, body = server.request("PUT", intent["url"], PNG, {"Content-Type": "image/png"})
    assert status == 201, body
    assert json.loads(body) == {"id": intent["id"], "size": len(PNG)}
    assert headers["content-type"] == "application/json"
    state = server.state(storage, intent["id"])
    assert state["exists"] and state["pending"]  # attached later by the application
    status, headers, body = server.request("GET", state["url"])
    assert status == 200 and body == PNG
    assert headers["content-type"] == "image/png" and "photo.png" in headers["content-disposition"]


def test_chunked_upload_with_checksum(server, storage):
    intent = server.intent(storage, checksum=checksums.compute("sha256", PNG))
    status, _, body = server.request("PUT", intent["url"], PNG, {"Content-Type": "image/png"}, chunked=True)
    assert status == 201, body
    assert json.loads(body)["size"] == len(PNG)
    assert server.request("GET", server.state(storage, intent["id"])["url"])[2] == PNG


def test_wrong_checksum(server, storage):
    intent = server.intent(storage, checksum=checksums.compute("crc32c", PNG + b"x"))
    status, _, body = server.request("PUT", intent["url"], PNG, {"Content-Type": "image/png"})
    assert (status, json.loads(body)["error"]) == (400, "bad-checksum")
    assert_nothing_stored(server, storage, intent["id"])


def test_expired_intent(server, storage):
    intent = server.intent(storage, expires_in=1)
    time.sleep(max(0.0, intent["expires_at"] - time.time()) + 0.1)
    status, _, body = server.request("PUT", intent["url"], PNG, {"Content-Type": "image/png"})
    assert (status, json.loads(body)["error"]) == (403, "expired")
    assert_nothing_stored(server, storage, intent["id"])


def _tampered(url):
    head, _, signature = url.rpartition("signature=")
    return head + "signature=" + ("A" if signature[0] != "A" else "B") + signature[1:]


def test_tampered_signature(server, storage):
    intent = server.intent(storage)
    status, _, body = server.request("PUT", _tampered(intent["url"]), PNG)
    assert (status, json.loads(body)["error"]) == (403, "bad-signature")
    longer = intent["url"].replace("expires=", "expires=1")
    assert server.request("PUT", longer, PNG)[0] == 403
    assert_nothing_stored(server, storage, intent["id"])


def test_signatures_of_downloads_and_uploads_are_not_interchangeable(server, storage):
    intent = server.intent(storage)
    path = "%s/%s" % (storage, intent["id"])
    download = "/depot/%s?%s" % (path, LinkSigner(SECRET, 600).sign(path))
    status, _, body = server.request("PUT", download, PNG)
    assert (status, json.loads(body)["error"]) == (403, "bad-signature")
    assert server.request("GET", intent["url"])[0] == 403
    assert_nothing_stored(server, storage, intent["id"])


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_size_over_the_limit(server, storage, chunked):
    intent = server.intent(storage, max_size=len(PNG) - 1)
    status, _, body = server.request("PUT", intent["url"], PNG, {"Content-Type": "image/png"}, chunked=chunked)
    assert (status, json.loads(body)["error"]) == (413, "too-large")
    assert_nothing_stored(server, storage, intent["id"])


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_an_exact_size_refuses_any_other(server, storage, chunked):
    intent = server.intent(storage, size=len(PNG))
    for body, status, code in [(PNG + b"x", 413, "too-large"), (PNG[:-1], 400, "incomplete")]:
        answer, _, text = server.request("PUT", intent["url"], body, {"Content-Type": "image/png"}, chunked=chunked)
        assert (answer, json.loads(text)["error"]) == (status, code)
        assert_nothing_stored(server, storage, intent["id"])
    assert server.request("PUT", intent["url"], PNG, {"Content-Type": "image/png"}, chunked=chunked)[0] == 201


@pytest.mark.parametrize("declared, content", [("text/html", PNG), ("image/png", b"<html>" + PNG),
                                               (None, b"%PDF-1.7\n" + PNG)], ids=["declared", "sniffed", "undeclared"])
def test_wrong_content_type(server, storage, declared, content):
    intent = server.intent(storage, content_types=["image/png", "image/jpeg"])
    headers = {"Content-Type": declared} if declared else {}
    status, _, body = server.request("PUT", intent["url"], content, headers)
    assert (status, json.loads(body)["error"]) == (415, "bad-type")
    assert_nothing_stored(server, storage, intent["id"])


def test_file_already_uploaded(server, storage):
    intent = server.intent(storage)
    assert server.request("PUT", intent["url"], PNG, {"Content-Type": "image/png"})[0] == 201
    status, _, body = server.request("PUT", intent["url"], b"\x89PNG\r\n\x1a\nother", {"Content-Type": "image/png"})
    assert (status, json.loads(body)["error"]) == (409, "already-uploaded")
    assert server.request("GET", server.state(storage, intent["id"])["url"])[2] == PNG


def test_never_an_intent(server, storage):
    intent = server.intent(storage)  # an id of the right form for the storage, then one never handed out
    other = str(uuid.uuid4()) if storage != "grid" else "%024x" % int.from_bytes(os.urandom(12), "big")
    url = intent["url"].split("?")[0].replace(intent["id"], other)
    path = "%s/%s" % (storage, other)
    signed = "%s?%s" % (url, LinkSigner(SECRET, 600).sign(path, purpose=UPLOAD))
    status, _, body = server.request("PUT", signed, PNG)
    assert (status, json.loads(body)["error"]) == (404, "not-an-intent")
    assert_nothing_stored(server, storage, other, pending=False)


def test_other_methods_on_an_upload_url(server, storage):
    intent = server.intent(storage)
    status, headers, _ = server.request("POST", intent["url"], PNG)
    assert (status, headers["allow"]) == (405, "PUT")
    assert_nothing_stored(server, storage, intent["id"])


def _send_part_then_reset(server, url, chunked):
    """Send the head and part of a large body, then reset the connection."""
    with socket.create_connection((LOOPBACK, server.port), timeout=10) as sock:
        framing = "Transfer-Encoding: chunked" if chunked else "Content-Length: %d" % (50 * 1024 * 1024)
        sock.sendall(("PUT %s HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n%s\r\n\r\n" % (url, framing)).encode())
        part = PNG[:200 * 1024]
        sock.sendall(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
        time.sleep(0.3)  # the server is now inside the body
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_disconnect_mid_body_leaves_nothing(server, storage, chunked):
    intent = server.intent(storage, max_size=60 * 1024 * 1024)
    _send_part_then_reset(server, intent["url"], chunked)
    deadline = time.monotonic() + 10
    while True:  # the server notices the reset in its own time
        try:
            assert_nothing_stored(server, storage, intent["id"])
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert server.alive()
    # The intent is still good: the browser may try again.
    assert server.request("PUT", intent["url"], PNG, {"Content-Type": "image/png"})[0] == 201


def _final_response(sock, wait):
    """The bytes of the first final (not 1xx) response within ``wait`` seconds, else ``None``."""
    sock.settimeout(wait)
    data = b""
    try:
        while True:
            while data.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"):
                data = data[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
            if b"\r\n\r\n" in data and data.endswith(b"}"):
                return data
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except socket.timeout:
        return None


def test_declared_too_large_is_refused_before_the_body_is_sent(server, storage):
    """A client waiting for ``100 Continue`` gets the 413 instead, without sending the body.

    As curl does, the client sends the body anyway when no answer comes
    within a second: waitress reads whole bodies before the application sees
    the request, so it needs it.
    """
    intent = server.intent(storage)
    declared = 8 * 1024 * 1024  # more than the middleware reads to drain a refused body
    with socket.create_connection((LOOPBACK, server.port), timeout=20) as sock:
        sock.sendall(("PUT %s HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: %d\r\n"
                      "Expect: 100-continue\r\n\r\n" % (intent["url"], declared)).encode())
        data = _final_response(sock, 1.5)
        body_sent = data is None
        if body_sent:
            sock.sendall(b"\0" * declared)
            data = _final_response(sock, 20)
    assert data.startswith(b"HTTP/1.1 413 "), data
    assert body_sent == (server.name == "waitress")
    assert_nothing_stored(server, storage, intent["id"])
