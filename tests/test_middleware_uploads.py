"""Direct uploads through both middlewares in-process: routing, the no-secret cases, WSGI framing.

The uploads themselves, and every refusal, are tested over real HTTP in
tests/test_uploads_http.py.
"""
from __future__ import annotations

import io
import json
import socket
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, make_server

import anyio
import pytest
import webtest

from depot.asgi import DepotMiddleware as AsgiMiddleware
from depot.manager import DepotManager
from depot.middleware import DepotMiddleware
from depot.uploads import create_upload_intent

from .test_middleware_support import asgi_fallback_app, fallback_app

pytest_plugins = ["tests.test_middleware_support"]

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


@pytest.fixture
def memory(clean_manager):
    return DepotManager.configure("default", {"depot.backend": "memory"})


def test_without_a_secret_puts_go_to_the_application(memory):
    app = webtest.TestApp(DepotManager.make_middleware(fallback_app))
    assert app.put("/depot/default/x", b"data").body == b"app:PUT:/depot/default/x"
    with pytest.raises(RuntimeError, match="needs a secret"):
        create_upload_intent(max_size=10)
    assert memory.list() == [] and list(memory._pending_list()) == []


def test_with_a_secret_only_upload_urls_are_taken(memory):
    app = webtest.TestApp(DepotManager.make_middleware(fallback_app, secret="s"))
    intent = create_upload_intent(max_size=len(PNG))
    # Other methods without an upload signature still reach the application.
    assert app.post("/depot/default/%s" % intent.id, b"x").body == b"app:POST:/depot/default/%s" % intent.id.encode()
    assert app.put("/elsewhere", b"x").body == b"app:PUT:/elsewhere"
    assert app.put("/depot/default/%s" % intent.id, PNG, status=403).json["error"] == "bad-signature"
    resp = app.delete(intent.url, status=405)
    assert resp.headers["Allow"] == "PUT"
    resp = app.put(intent.url, PNG, headers={"Content-Type": "image/png"}, status=201)
    assert resp.json == {"id": intent.id, "size": len(PNG)}
    assert memory.get(intent.id).read() == PNG


def test_upload_url_is_signed_until_the_intent_expires(memory):
    middleware = DepotManager.make_middleware(fallback_app, secret="s", link_lifetime=5)
    intent = create_upload_intent(max_size=10, expires_in=7200)
    assert intent.url.startswith("/depot/default/%s?expires=%d&signature=" % (intent.id, int(intent.expires_at)))
    assert intent.url == middleware.upload_url_for(_record(memory, intent.id))


def _record(storage, file_id):
    from depot.uploads import PendingUpload

    return PendingUpload.from_json(storage._pending_get(file_id))


def _wsgi_put(middleware, url, body, **environ):
    path, _, query = url.partition("?")
    env = {"REQUEST_METHOD": "PUT", "PATH_INFO": path, "QUERY_STRING": query, "wsgi.input": io.BytesIO(body),
           "SERVER_NAME": "x", "SERVER_PORT": "80", "wsgi.url_scheme": "http"}
    env.update(environ)
    got = {}
    data = b"".join(middleware(env, lambda status, headers: got.update(status=status)))
    return got["status"], json.loads(data)


def test_wsgi_body_without_length_needs_a_terminated_input(memory):
    middleware = DepotMiddleware(None, secret="s")
    DepotManager.set_middleware(middleware)
    intent = create_upload_intent(max_size=len(PNG))
    status, answer = _wsgi_put(middleware, intent.url, PNG)
    assert (status, answer["error"]) == ("411 Length Required", "incomplete")
    status, answer = _wsgi_put(middleware, intent.url, PNG, **{"wsgi.input_terminated": True})
    assert (status, answer) == ("201 Created", {"id": intent.id, "size": len(PNG)})


def test_wsgi_reads_no_further_than_content_length(memory):
    middleware = DepotMiddleware(None, secret="s")
    DepotManager.set_middleware(middleware)
    intent = create_upload_intent(max_size=len(PNG) * 2)
    status, answer = _wsgi_put(middleware, intent.url, PNG + b"next request", CONTENT_LENGTH=str(len(PNG)))
    assert (status, answer["size"]) == ("201 Created", len(PNG))
    assert memory.get(intent.id).read() == PNG


def _asgi_put(middleware, url, pieces, disconnect=False):
    path, _, query = url.partition("?")
    scope = {"type": "http", "method": "PUT", "path": path, "raw_path": path.encode(), "root_path": "",
             "query_string": query.encode(), "headers": [(b"content-type", b"image/png")]}
    sent = []

    async def run():
        queue = list(pieces)

        async def receive():
            if queue:
                piece = queue.pop(0)
                return {"type": "http.request", "body": piece, "more_body": bool(queue) or disconnect}
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        await middleware(scope, receive, send)

    anyio.run(run)
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def test_asgi_body_in_small_pieces(memory):
    middleware = AsgiMiddleware(asgi_fallback_app, secret="s", chunk_size=1000)
    DepotManager.set_middleware(middleware)
    intent = create_upload_intent(max_size=len(PNG))
    status, answer = _asgi_put(middleware, intent.url, [PNG[i:i + 7] for i in range(0, len(PNG), 7)])
    assert (status, answer) == (201, {"id": intent.id, "size": len(PNG)})
    assert memory.get(intent.id).read() == PNG


def test_asgi_disconnect_mid_body_stores_nothing(memory):
    middleware = AsgiMiddleware(asgi_fallback_app, secret="s", chunk_size=1000)
    DepotManager.set_middleware(middleware)
    intent = create_upload_intent(max_size=len(PNG))
    status, answer = _asgi_put(middleware, intent.url, [PNG[:1500]], disconnect=True)
    assert (status, answer["error"]) == (400, "incomplete")
    assert memory.list() == [] and memory._pending_get(intent.id) is not None


def test_an_upload_streaming_past_the_collection_stores_nothing(memory, monkeypatch):
    """Admitted in time, the body ends after gc collected the intent: refused, no file without a marker."""
    from depot.uploads import collect_pending, pending_uploads
    from depot.uploads.intents import ATTACH_GRACE

    middleware = DepotMiddleware(None, secret="s")
    DepotManager.set_middleware(middleware)
    intent = create_upload_intent(max_size=10**6, expires_in=60)
    path, _, query = intent.url.partition("?")
    admitted = middleware.admit_upload("PUT", path, query, {"CONTENT_LENGTH": str(300000)})
    source = io.BytesIO(b"x" * 300000)
    collected = []

    def slow_read(n):
        if not collected:  # a slow client: meanwhile the intent expires and gc collects it
            later = intent.expires_at + ATTACH_GRACE + 1
            monkeypatch.setattr(time, "time", lambda: later)
            collected.append(collect_pending(older_than=0))
        return source.read(n)

    response = middleware.store_upload(admitted, slow_read)
    assert collected == [[intent.id]]
    assert (response.status, json.loads(response.body)["error"]) == (403, "expired")
    assert not memory.exists(intent.id) and list(pending_uploads()) == []


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.mark.parametrize("signed", [True, False])
def test_wsgi_refused_body_of_unknown_length_is_never_read(memory, signed):
    """wsgiref gives no wsgi.input_terminated: reading the body would block the worker until the client hangs up."""
    middleware = DepotManager.make_middleware(fallback_app, secret="s")
    intent = create_upload_intent(max_size=len(PNG))
    target = intent.url if signed else "/depot/default/" + intent.id
    server = make_server("127.0.0.1", 0, middleware, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with socket.create_connection(server.server_address, timeout=5) as client:
            client.sendall(("PUT %s HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n\r\n" % target).encode())
            # The body is never sent, nor the connection closed: an answer must come all the same.
            status = client.recv(200).split(b"\r\n")[0]
    finally:
        server.shutdown()
        server.server_close()
    assert status.split()[1] == (b"411" if signed else b"403")
    assert not memory.exists(intent.id)


def test_an_unreadable_marker_store_is_503_not_404(memory, monkeypatch):
    middleware = DepotMiddleware(None, secret="s")
    DepotManager.set_middleware(middleware)
    intent = create_upload_intent(max_size=len(PNG))

    def outage(file_id):
        raise IOError("connection refused")

    monkeypatch.setattr(memory, "_pending_get", outage)
    status, answer = _wsgi_put(middleware, intent.url, PNG, CONTENT_LENGTH=str(len(PNG)))
    assert (status, answer["error"]) == ("503 Service Unavailable", "unavailable")
    assert "default" in answer["message"] and not memory.exists(intent.id)
