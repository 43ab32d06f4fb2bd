"""The transport-neutral core (depot.serving.core): one decision per request, one body choice."""
from __future__ import annotations

from http import HTTPStatus
from unittest import mock

import pytest
import webtest

from depot.io.local import LocalFileStorage
from depot.io.memory import MemoryFileStorage
from depot.middleware import DepotMiddleware, FileServeApp
from depot.serving import core
from depot.serving.core import (
    SMALL_BODY, FileSpan, Redirect, Response, ServingCore, StoredSpan, choose_body, page, redirect,
    respond_file, status_line,
)
from depot.serving.offload import Offload

pytest_plugins = ["tests.test_middleware_support"]

BIG = bytes(range(256)) * ((SMALL_BODY // 256) + 10)


@pytest.fixture
def local(tmp_path):
    return LocalFileStorage(str(tmp_path / "files"))


def test_status_lines_use_rfc_9110_phrases():
    assert status_line(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE) == "416 Range Not Satisfiable"
    assert status_line(HTTPStatus.PARTIAL_CONTENT) == "206 Partial Content"
    assert status_line(404) == "404 Not Found"


def test_pages():
    p = page(HTTPStatus.NOT_FOUND)
    assert p.status is HTTPStatus.NOT_FOUND
    assert b"<title>404 Not Found</title>" in p.body and b"File Not Found" in p.body
    assert p.headers == [("Content-Type", "text/html"), ("Content-Length", str(len(p.body)))]
    p = page(HTTPStatus.METHOD_NOT_ALLOWED, [("Allow", "GET, HEAD")])
    assert p.headers[0] == ("Allow", "GET, HEAD") and b"Method Not Allowed" in p.body


def test_redirects():
    permanent = redirect("https://cdn.example.com/a b\r\nX: y", permanent=True)
    assert permanent.status is HTTPStatus.MOVED_PERMANENTLY
    assert dict(permanent.headers)["Location"] == "https://cdn.example.com/a%20b%0D%0AX:%20y"
    assert "Cache-Control" not in dict(permanent.headers)
    assert isinstance(permanent.body, Redirect) and permanent.body.location == "https://cdn.example.com/a b\r\nX: y"
    temporary = redirect("https://bucket.example.com/k?X-Amz-Signature=s", permanent=False)
    assert temporary.status is HTTPStatus.FOUND and ("Cache-Control", "no-store") in temporary.headers
    assert dict(temporary.headers)["Content-Length"] == str(len(temporary.body.page))


def test_choose_body_small_local_is_read_and_everything_closed(local):
    fid = local.create(b"0123456789", "a.txt", "text/plain")
    f = local.get(fid)
    real = f.real_file()
    assert choose_body(f, real, 2, 5, 10) == b"234"
    assert real.closed and f.closed


def test_choose_body_large_local_is_a_file_span(local):
    fid = local.create(BIG, "a.bin", "application/octet-stream")
    f = local.get(fid)
    real = f.real_file()
    body = choose_body(f, real, 0, len(BIG), len(BIG))
    assert isinstance(body, FileSpan) and body.whole and body.real is real and not real.closed
    Response(HTTPStatus.OK, [], body).close()
    assert real.closed
    part = choose_body(local.get(fid), local.get(fid).real_file(), 10, len(BIG) - 10, len(BIG))
    assert isinstance(part, FileSpan) and not part.whole and (part.start, part.stop) == (10, len(BIG) - 10)
    part.real.close()


def test_choose_body_other_storages():
    storage = MemoryFileStorage()
    small = storage.get(storage.create(b"0123456789", "a.txt", "text/plain"))
    assert choose_body(small, None, 3, 6, 10) == b"345" and small.closed
    large_id = storage.create(BIG, "a.bin", "application/octet-stream")
    whole = choose_body(storage.get(large_id), None, 0, len(BIG), len(BIG))
    assert isinstance(whole, StoredSpan) and whole.whole
    part = choose_body(storage.get(large_id), None, 1, len(BIG), len(BIG))
    assert isinstance(part, StoredSpan) and not part.whole
    unknown = choose_body(storage.get(large_id), None, 0, None, None)
    assert isinstance(unknown, StoredSpan) and unknown.whole and unknown.stop is None
    for body in (whole, part, unknown):
        Response(HTTPStatus.OK, [], body).close()
        assert body.file.closed


def _app(f, **options):
    return FileServeApp(f, 60, **options)


def test_decided_once_even_when_offloaded(local):
    """The headers are computed once per request, offload and ranges included (no re-planning)."""
    fid = local.create(BIG, "a.bin", "application/octet-stream")
    calls = []
    original = core.content_headers

    def counting(*args, **kwargs):
        calls.append(kwargs.get("ranges", True))
        return original(*args, **kwargs)

    with mock.patch.object(core, "content_headers", counting):
        offloaded = respond_file(_app(local.get(fid), offload=Offload(x_sendfile=True)),
                                 {"REQUEST_METHOD": "GET", "HTTP_RANGE": "bytes=0-1"})
        assert calls == [False]
        assert offloaded.status is HTTPStatus.OK and offloaded.body is None
        headers = dict(offloaded.headers)
        assert "X-Sendfile" in headers and "Content-Length" not in headers and "Accept-Ranges" not in headers
        calls.clear()
        ranged = respond_file(_app(local.get(fid)), {"REQUEST_METHOD": "GET", "HTTP_RANGE": "bytes=0-99999"})
        assert calls == [True] and ranged.status is HTTPStatus.PARTIAL_CONTENT
        ranged.close()


def test_hooks_are_asked_once(local):
    fid = local.create(b"x", "a.txt", "text/plain")

    class Counting(FileServeApp):
        etags = modified = 0

        def generate_etag(self):
            Counting.etags += 1
            return super().generate_etag()

        def has_been_modified(self, environ, etag, last_modified):
            Counting.modified += 1
            return super().has_been_modified(environ, etag, last_modified)

    response = respond_file(Counting(local.get(fid), 60), {"REQUEST_METHOD": "GET"})
    assert (Counting.etags, Counting.modified) == (1, 1) and response.body == b"x"


@pytest.mark.parametrize(
    "environ, status",
    [({"REQUEST_METHOD": "HEAD"}, HTTPStatus.OK), ({"REQUEST_METHOD": "GET", "HTTP_IF_NONE_MATCH": "*"}, 304),
     ({"REQUEST_METHOD": "GET", "HTTP_IF_MATCH": '"x"'}, 412), ({"REQUEST_METHOD": "GET", "HTTP_RANGE": "bytes=9999999-"}, 416),
     ({"REQUEST_METHOD": "GET", "HTTP_IF_MODIFIED_SINCE": "junk"}, 400)],
)
def test_no_content_opened_without_a_body(local, environ, status):
    fid = local.create(BIG, "a.bin", "application/octet-stream")
    f = local.get(fid)
    with mock.patch.object(type(f), "real_file", side_effect=AssertionError("content opened")):
        response = respond_file(_app(f), environ)
    assert response.status == status and f.closed
    assert response.body is None or isinstance(response.body, bytes)


def test_a_failure_closes_the_file(local):
    fid = local.create(BIG, "a.bin", "application/octet-stream")
    f = local.get(fid)
    opened = []
    original = type(f).real_file

    def real_file(self):
        opened.append(original(self))
        return opened[-1]

    with mock.patch.object(type(f), "real_file", real_file), \
            mock.patch.object(core, "content_headers", side_effect=KeyError("boom")), pytest.raises(KeyError):
        respond_file(_app(f), {"REQUEST_METHOD": "GET"})
    assert f.closed and opened[0].closed


def test_a_replace_before_the_open_plans_again_with_the_hooks(local):
    """Replaced between get() and the open: the hooks judge the version opened, which is closed if not sent."""
    fid = local.create(BIG, "old.bin", "application/octet-stream")
    stale = local.get(fid)
    local.replace(fid, b"new", "new.txt", "text/plain")
    seen = []

    class Named(FileServeApp):
        def generate_etag(self):
            return '"%s-%s"' % (self.filename, self.content_length)

        def has_been_modified(self, environ, etag, last_modified):
            seen.append((etag, last_modified))
            return super().has_been_modified(environ, etag, last_modified)

    opened = []
    original = type(stale).real_file

    def real_file(self):
        opened.append(original(self))
        return opened[-1]

    with mock.patch.object(type(stale), "real_file", real_file):
        response = respond_file(Named(stale, 60), {"REQUEST_METHOD": "GET", "HTTP_IF_NONE_MATCH": '"new.txt-3"'})
    assert response.status == HTTPStatus.NOT_MODIFIED and response.body is None
    assert stale.closed and opened[0].closed
    assert [etag for etag, _ in seen] == ['"old.bin-%d"' % len(BIG), '"new.txt-3"']
    assert seen[1][1] == local.get(fid).last_modified


def test_a_replace_of_a_memory_file_before_its_first_read_is_described_whole():
    storage = MemoryFileStorage()
    fid = storage.create(BIG, "old.bin", "application/octet-stream")
    stale = storage.get(fid)
    storage.replace(fid, b"new", "new.txt", "text/plain")
    response = respond_file(_app(stale), {"REQUEST_METHOD": "GET"})
    headers = dict(response.headers)
    assert response.body == b"new" and headers["Content-Length"] == "3" and headers["Content-Type"].startswith("text/plain")
    assert headers["ETag"] == _app(storage.get(fid)).generate_etag()


def test_unrouted_without_an_application():
    mw = ServingCore(None, "/files")
    assert mw.unrouted("POST", "/files/default/x").status is HTTPStatus.METHOD_NOT_ALLOWED
    assert ("Allow", "GET, HEAD") in mw.unrouted("DELETE", "/files").headers
    assert mw.unrouted("GET", "/elsewhere").status is HTTPStatus.NOT_FOUND
    assert mw.serves("GET", "/files/a/b") and mw.serves("HEAD", "/files") and not mw.serves("POST", "/files/a/b")
    assert not mw.serves("GET", "/filesx/a/b")


def test_wsgi_middleware_without_an_application(clean_manager):
    app = webtest.TestApp(DepotMiddleware(None))
    resp = app.post("/depot/default/x", status=405)
    assert resp.headers["Allow"] == "GET, HEAD"
    app.get("/other", status=404)
