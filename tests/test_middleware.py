"""DepotMiddleware: the filedepot 0.12 behaviour of SPEC section 6, through WebTest."""
from __future__ import annotations

import datetime
import io
from unittest import mock

import pytest

from depot.manager import DepotManager
from depot.middleware import _BLOCK_SIZE, DepotMiddleware, FileServeApp, _FileIter
from depot.serving.etags import make_etag

from .test_middleware_support import CONTENT, LARGE_CONTENT, make_app, on_every_adapter

# The fixtures clean_manager, storage and local_storage.
pytest_plugins = ["tests.test_middleware_support"]


def test_defaults(clean_manager):
    mw = DepotMiddleware(None)
    assert mw.mountpoint == "/depot"
    assert mw.cache_max_age == 604800
    assert mw.replace_wsgi_filewrapper is False
    assert _BLOCK_SIZE == 256 * 1024


def test_mountpoint_must_be_absolute(clean_manager):
    with pytest.raises(ValueError, match="^DepotMiddleware mountpoint must be an absolute path$"):
        DepotMiddleware(None, mountpoint="depot")


def test_url_for(clean_manager):
    assert DepotManager.make_middleware(None).url_for("default/abc") == "/depot/default/abc"
    assert DepotManager.url_for("default/abc") == "/depot/default/abc"


def test_make_middleware_twice(clean_manager):
    DepotManager.make_middleware(None)
    with pytest.raises(RuntimeError):
        DepotManager.make_middleware(None)


@on_every_adapter
def test_serve_file(storage):
    app = make_app()
    fid = storage.create(CONTENT, "file.txt", "text/plain")
    f = storage.get(fid)
    resp = app.get("/depot/default/%s" % fid)
    assert resp.status == "200 OK"
    assert resp.body == CONTENT
    names = [name.lower() for name, _ in resp.headerlist]  # ASGI sends them lowercase
    # filedepot's headers, in filedepot's order, come first.
    assert names[:7] == [
        "etag", "cache-control", "expires", "content-type", "content-length", "last-modified", "content-disposition",
    ]
    assert resp.headers["Cache-Control"] == "max-age=604800, public"
    assert resp.headers["Content-Type"] == "text/plain"
    assert resp.headers["Content-Length"] == str(len(CONTENT))
    assert resp.headers["Last-Modified"] == FileServeApp.make_date(f.last_modified)
    assert resp.headers["Content-Disposition"] == "inline;filename=\"file.txt\";filename*=utf-8''file.txt"
    expires = FileServeApp.parse_date(None, resp.headers["Expires"])
    delta = expires - datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert datetime.timedelta(seconds=604790) < delta <= datetime.timedelta(seconds=604801)
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


@on_every_adapter
def test_unicode_filename(storage):
    app = make_app()
    fid = storage.create(b"x", "Крупный", "text/plain")
    disposition = app.get("/depot/default/%s" % fid).headers["Content-Disposition"]
    assert disposition == "inline;filename=\"Krupnyy\";filename*=utf-8''%D0%9A%D1%80%D1%83%D0%BF%D0%BD%D1%8B%D0%B9"


@on_every_adapter
def test_custom_cache_max_age(storage):
    app = make_app(cache_max_age=60)
    fid = storage.create(b"x", "a.txt", "text/plain")
    assert app.get("/depot/default/%s" % fid).headers["Cache-Control"] == "max-age=60, public"


def test_options_from_ini_strings(storage):
    mw = DepotMiddleware(None, cache_max_age="60", replace_wsgi_filewrapper="true", inline_types="image/svg+xml, text/html")
    assert mw.cache_max_age == 60 and mw.replace_wsgi_filewrapper is True
    assert mw.inline_policy.allows_inline("text/html")


@on_every_adapter
def test_subdirectory_mountpoint(storage):
    app = make_app(mountpoint="/hello/lfs")
    fid = storage.create(CONTENT, "file.txt", "text/plain")
    assert DepotManager.url_for("default/%s" % fid) == "/hello/lfs/default/%s" % fid
    assert app.get("/hello/lfs/default/%s" % fid).body == CONTENT
    assert app.get("/depot/default/%s" % fid).body.startswith(b"app:")


@on_every_adapter
def test_alias(storage):
    DepotManager.alias("old", "default")
    app = make_app()
    fid = storage.create(CONTENT, "file.txt", "text/plain")
    assert app.get("/depot/old/%s" % fid).body == CONTENT


@on_every_adapter
@pytest.mark.parametrize("path", ["/depotskipped", "/", "/other/default/x", "/dep"])
def test_other_paths_reach_the_app(storage, path):
    resp = make_app().get(path)
    assert resp.body == b"app:GET:" + path.encode()


@on_every_adapter
def test_post_to_a_file_url_reaches_the_app(storage):
    app = make_app()
    fid = storage.create(CONTENT, "file.txt", "text/plain")
    assert app.post("/depot/default/%s" % fid).body == b"app:POST:/depot/default/" + fid.encode()
    assert app.put("/depot/default/%s" % fid).body.startswith(b"app:PUT:")


@on_every_adapter
@pytest.mark.parametrize("path", ["/depot", "/depot/", "/depot/nodepot", "/depot/nodepot/x", "/depot/default/"])
def test_404(storage, path):
    resp = make_app().get(path, status=404)
    assert resp.status == "404 Not Found"
    assert resp.headers["Content-Type"] == "text/html"
    assert b"File Not Found" in resp.body


@on_every_adapter
def test_404_for_missing_and_malformed_ids(storage):
    app = make_app()
    app.get("/depot/default/4f4e3ab5-2d6c-4bd1-b2d0-2b1a6c1d9d3e", status=404)
    app.get("/depot/default/not-a-uuid", status=404)


@on_every_adapter
def test_404_when_the_file_disappears_before_it_is_opened(local_storage):
    app = make_app()
    fid = local_storage.create(CONTENT, "file.txt", "text/plain")
    with mock.patch("depot.io.local.LocalStoredFile.real_file", side_effect=FileNotFoundError):
        app.get("/depot/default/%s" % fid, status=404)


@on_every_adapter
def test_invalid_if_modified_since_is_400(storage):
    app = make_app()
    fid = storage.create(CONTENT, "file.txt", "text/plain")
    resp = app.get("/depot/default/%s" % fid, headers={"If-Modified-Since": "this is not a date"}, status=400)
    assert resp.headers["Content-Type"] == "text/html"


@on_every_adapter
def test_304_with_if_modified_since(storage):
    app = make_app()
    fid = storage.create(CONTENT, "file.txt", "text/plain")
    last_modified = app.get("/depot/default/%s" % fid).headers["Last-Modified"]
    resp = app.get("/depot/default/%s" % fid, headers={"If-Modified-Since": last_modified}, status=304)
    assert resp.body == b""
    assert resp.headers["Cache-Control"] == "max-age=604800, public"
    assert "ETag" in resp.headers


@on_every_adapter
def test_200_when_modified_since(storage):
    app = make_app()
    fid = storage.create(CONTENT, "file.txt", "text/plain")
    resp = app.get("/depot/default/%s" % fid, headers={"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"})
    assert resp.status == "200 OK" and resp.body == CONTENT


@on_every_adapter
def test_304_with_the_etag(storage):
    app = make_app()
    fid = storage.create(CONTENT, "file.txt", "text/plain")
    etag = app.get("/depot/default/%s" % fid).headers["ETag"]
    assert app.get("/depot/default/%s" % fid, headers={"If-None-Match": etag}, status=304).body == b""


@on_every_adapter
def test_public_url_redirects_permanently(clean_manager):
    storage = DepotManager.configure("pub", {"depot.backend": "tests.test_middleware_support.PublicMemoryStorage"})
    fid = storage.create(CONTENT, "file.txt", "text/plain")
    resp = make_app().get("/depot/pub/%s" % fid, status=301)
    assert resp.status == "301 Moved Permanently"
    assert resp.headers["Location"] == "https://cdn.example.com/files/%s" % fid
    assert resp.headers["Content-Type"] == "text/html"
    assert "Cache-Control" not in resp.headers


def test_file_serve_app_attributes(storage):
    fid = storage.create(CONTENT, "file.txt", "text/plain")
    f = storage.get(fid)
    app = FileServeApp(f, 1000)
    assert app.file is f
    assert app.filename == "file.txt"
    assert app.content_type == "text/plain"
    assert app.content_length == len(CONTENT)
    assert app.last_modified == f.last_modified
    assert app.cache_expires == 1000
    assert app.replace_wsgi_filewrapper is False
    assert app.generate_etag() == make_etag(fid, f.version, f.last_modified, len(CONTENT), f.checksum)
    f.close()


def test_parse_date():
    assert FileServeApp.parse_date(None, "Thu, 01 Jan 1970 00:00:00 GMT") == datetime.datetime(1970, 1, 1)
    with pytest.raises(RuntimeError):
        FileServeApp.parse_date(None, "garbage")


def test_make_date():
    assert FileServeApp.make_date(datetime.datetime(1970, 1, 1)) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert FileServeApp.make_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert FileServeApp.make_date(None).endswith(" GMT")


def test_has_been_modified(storage):
    fid = storage.create(CONTENT, "file.txt", "text/plain")
    f = storage.get(fid)
    app = FileServeApp(f, 1000)
    etag, when = app.generate_etag(), f.last_modified
    assert app.has_been_modified({}, etag, when)
    assert not app.has_been_modified({"HTTP_IF_NONE_MATCH": etag}, etag, when)
    assert not app.has_been_modified({"HTTP_IF_MODIFIED_SINCE": FileServeApp.make_date(when)}, etag, when)
    assert app.has_been_modified({"HTTP_IF_MODIFIED_SINCE": "Thu, 01 Jan 1970 00:00:00 GMT"}, etag, when)
    with pytest.raises(RuntimeError):
        app.has_been_modified({"HTTP_IF_MODIFIED_SINCE": "garbage"}, etag, when)
    f.close()


def test_replace_wsgi_filewrapper(storage):
    fid = storage.create(LARGE_CONTENT, "file.txt", "text/plain")
    app = FileServeApp(storage.get(fid), 1000, replace_wsgi_filewrapper=True)

    class ServerWrapper:
        def __init__(self, *args):
            raise AssertionError("the server's wrapper must not be used")

    environ = {"REQUEST_METHOD": "GET", "wsgi.file_wrapper": ServerWrapper}
    body = app(environ, lambda status, headers: None)
    assert environ["wsgi.file_wrapper"] is _FileIter
    assert isinstance(body, _FileIter)
    assert b"".join(body) == LARGE_CONTENT
    body.close()


def test_server_file_wrapper_is_used(storage):
    fid = storage.create(LARGE_CONTENT, "file.txt", "text/plain")
    calls = []

    def wrapper(filelike, block_size):
        calls.append(block_size)
        return _FileIter(filelike, block_size)

    body = FileServeApp(storage.get(fid), 1000)({"REQUEST_METHOD": "GET", "wsgi.file_wrapper": wrapper}, lambda s, h: None)
    assert b"".join(body) == LARGE_CONTENT and calls == [_BLOCK_SIZE]
    body.close()


def test_small_local_files_are_sent_as_one_chunk(local_storage):
    """Below _SMALL_BODY a copy is cheaper than the server's sendfile set-up."""
    fid = local_storage.create(CONTENT, "file.txt", "text/plain")
    f = local_storage.get(fid)

    def wrapper(filelike, block_size):
        raise AssertionError("small bodies do not need the file wrapper")

    body = FileServeApp(f, 1000)({"REQUEST_METHOD": "GET", "wsgi.file_wrapper": wrapper}, lambda s, h: None)
    assert body == [CONTENT]
    assert f.closed


def test_file_iter():
    f = io.BytesIO(b"a" * 10)
    it = _FileIter(f, 4)
    assert list(it) == [b"aaaa", b"aaaa", b"aa"]
    it.close()
    assert f.closed


def test_the_stored_file_is_closed(storage):
    fid = storage.create(CONTENT, "file.txt", "text/plain")
    for environ in (
        {"REQUEST_METHOD": "HEAD"},
        {"REQUEST_METHOD": "GET", "HTTP_IF_NONE_MATCH": "*"},
        {"REQUEST_METHOD": "GET", "HTTP_IF_MODIFIED_SINCE": "garbage"},
        {"REQUEST_METHOD": "GET", "HTTP_RANGE": "bytes=1000-"},
    ):
        f = storage.get(fid)
        FileServeApp(f, 10)(environ, lambda s, h: None)
        assert f.closed, environ
    for content in (CONTENT, LARGE_CONTENT):
        fid = storage.create(content, "file.txt", "text/plain")
        f = storage.get(fid)
        body = FileServeApp(f, 10)({"REQUEST_METHOD": "GET"}, lambda s, h: None)
        assert b"".join(body) == content
        getattr(body, "close", lambda: None)()
        assert f.closed
