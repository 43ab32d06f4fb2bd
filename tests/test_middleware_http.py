"""DepotMiddleware beyond filedepot: RFC 9110 ranges, preconditions, HEAD, ETags, safe serving."""
from __future__ import annotations

import datetime
import json
import os
import re
from unittest import mock

import pytest

from depot.io.interfaces import StoredFile
from depot.middleware import _BoundedFile, _FileIter
from depot.serving.dates import parse_http_date

from .test_middleware_support import CONTENT, LARGE_CONTENT, configure_default, make_app, on_every_adapter

# The fixtures clean_manager, storage and local_storage.
pytest_plugins = ["tests.test_middleware_support"]

ENTITY_TAG = re.compile(r'(W/)?"[\x21\x23-\x7e\x80-\xff]*"\Z')


@pytest.fixture
def served(storage):
    """(TestApp, url, file id) of a text file holding CONTENT."""
    fid = storage.create(CONTENT, "file.txt", "text/plain")
    return make_app(), "/depot/default/%s" % fid, fid


@on_every_adapter
@pytest.mark.parametrize(
    "header, start, stop",
    [("bytes=0-9", 0, 10), ("bytes=10-", 10, 108), ("bytes=-5", 103, 108), ("bytes=100-500", 100, 108),
     ("bytes=0-0", 0, 1), ("bytes=107-107", 107, 108)],
)
def test_single_range(served, header, start, stop):
    app, url, _ = served
    resp = app.get(url, headers={"Range": header}, status=206)
    assert resp.body == CONTENT[start:stop]
    assert resp.headers["Content-Range"] == "bytes %d-%d/%d" % (start, stop - 1, len(CONTENT))
    assert resp.headers["Content-Length"] == str(stop - start)
    assert resp.headers["Accept-Ranges"] == "bytes"


@on_every_adapter
def test_accept_ranges_on_200(served):
    app, url, _ = served
    assert app.get(url).headers["Accept-Ranges"] == "bytes"


@on_every_adapter
@pytest.mark.parametrize("header", ["bytes=108-", "bytes=1000-2000", "bytes=-0"])
def test_unsatisfiable(served, header):
    app, url, _ = served
    resp = app.get(url, headers={"Range": header}, status=416)
    assert resp.headers["Content-Range"] == "bytes */108"
    assert CONTENT not in resp.body


@on_every_adapter
@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "bytes=5-1", "pages=1-2", "bytes=x", "bytes=" + "0-0," * 5000])
def test_ignored_ranges_send_the_whole_file(served, header):
    app, url, _ = served
    resp = app.get(url, headers={"Range": header}, status=200)
    assert resp.body == CONTENT


@on_every_adapter
def test_if_range(served):
    app, url, _ = served
    first = app.get(url)
    etag, last_modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert app.get(url, headers={"Range": "bytes=0-3", "If-Range": etag}).status_int == 206
    assert app.get(url, headers={"Range": "bytes=0-3", "If-Range": '"stale"'}).body == CONTENT
    # A date validates only once its second is over (a later write could share it).
    later = parse_http_date(last_modified) + datetime.timedelta(seconds=5)
    with mock.patch("depot.serving.plan.utcnow_naive", return_value=later):
        assert app.get(url, headers={"Range": "bytes=0-3", "If-Range": last_modified}).status_int == 206
    assert app.get(url, headers={"Range": "bytes=0-3", "If-Range": "Thu, 01 Jan 1970 00:00:00 GMT"}).status_int == 200


@on_every_adapter
@pytest.mark.parametrize("inm", ["{tag}", '"a", {tag}', "W/{tag}", "*", ' "x" ,W/{tag} '])
def test_if_none_match_forms(served, inm):
    app, url, _ = served
    etag = app.get(url).headers["ETag"]
    resp = app.get(url, headers={"If-None-Match": inm.format(tag=etag)}, status=304)
    assert resp.body == b""
    assert {name.lower() for name in resp.headers} >= {"etag", "cache-control", "last-modified"}
    assert "Content-Length" not in resp.headers or resp.headers["Content-Length"] == "0"


@on_every_adapter
def test_if_none_match_wins_over_if_modified_since(served):
    app, url, _ = served
    last_modified = app.get(url).headers["Last-Modified"]
    resp = app.get(url, headers={"If-None-Match": '"other"', "If-Modified-Since": last_modified})
    assert resp.status_int == 200 and resp.body == CONTENT
    # and a malformed If-Modified-Since is then ignored, not a 400
    assert app.get(url, headers={"If-None-Match": '"other"', "If-Modified-Since": "junk"}).status_int == 200


@on_every_adapter
def test_if_match_and_if_unmodified_since(served):
    app, url, _ = served
    etag = app.get(url).headers["ETag"]
    assert app.get(url, headers={"If-Match": etag}).status_int == 200
    app.get(url, headers={"If-Match": '"other"'}, status=412)
    app.get(url, headers={"If-Unmodified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}, status=412)


@on_every_adapter
def test_head_same_headers_no_content(served):
    app, url, _ = served
    get = app.get(url)
    with mock.patch.object(StoredFile, "iter_range", side_effect=AssertionError("HEAD read content")), \
            mock.patch("depot.io.memory.MemoryStoredFile.read", side_effect=AssertionError("HEAD read content")), \
            mock.patch("depot.io.local.LocalStoredFile.read", side_effect=AssertionError("HEAD read content")), \
            mock.patch("depot.io.local.LocalStoredFile.real_file", side_effect=AssertionError("HEAD opened content")):
        head = app.head(url)
    assert head.body == b""
    # Expires may tick a second between the two requests on a busy machine.
    assert [h for h in head.headerlist if h[0].lower() != "expires"] == [
        h for h in get.headerlist if h[0].lower() != "expires"
    ]
    assert [h[0] for h in head.headerlist] == [h[0] for h in get.headerlist]


@on_every_adapter
def test_etag_valid_and_changes_within_a_second_with_the_same_length(storage):
    app = make_app()
    fid = storage.create(b"aaaa", "file.txt", "text/plain")
    url = "/depot/default/%s" % fid
    with mock.patch("depot.io.utils.timestamp", return_value="2026-01-01 00:00:00"):
        storage.replace(fid, b"bbbb")
        first = app.get(url)
        storage.replace(fid, b"cccc")
        second = app.get(url)
    assert first.headers["Last-Modified"] == second.headers["Last-Modified"]
    assert first.headers["Content-Length"] == second.headers["Content-Length"]
    assert ENTITY_TAG.match(first.headers["ETag"]) and ENTITY_TAG.match(second.headers["ETag"])
    assert first.headers["ETag"] != second.headers["ETag"]
    assert second.body == b"cccc"
    # the stale tag no longer validates: the client gets the new content
    assert app.get(url, headers={"If-None-Match": first.headers["ETag"]}).body == b"cccc"
    assert app.get(url, headers={"Range": "bytes=0-1", "If-Range": first.headers["ETag"]}).body == b"cccc"


@on_every_adapter
@pytest.mark.parametrize(
    "content_type",
    ["text/html", "application/xhtml+xml", "image/svg+xml", "text/xml", "application/javascript", "text/html; charset=utf-8"],
)
def test_active_content_is_downloaded_in_a_sandbox(storage, content_type):
    app = make_app()
    fid = storage.create(b"<script>alert(1)</script>", "evil.html", content_type)
    resp = app.get("/depot/default/%s" % fid)
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    assert resp.headers["Content-Security-Policy"] == "sandbox"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


@on_every_adapter
def test_inline_types_allow_list(storage):
    app = make_app(inline_types=["image/svg+xml"])
    fid = storage.create(b"<svg/>", "a.svg", "image/svg+xml")
    resp = app.get("/depot/default/%s" % fid)
    assert resp.headers["Content-Disposition"] == "inline;filename=\"a.svg\";filename*=utf-8''a.svg"
    assert "Content-Security-Policy" not in resp.headers


def _store_content_type(storage, fid, value):
    """Write ``value`` as the stored type, as an older version would have (create() refuses it)."""
    if hasattr(storage, "files"):
        storage.files[fid]["metadata"]["content_type"] = value
        return
    path = storage.get(fid)._metadata_path
    with open(path) as f:
        metadata = json.load(f)
    metadata["content_type"] = value
    with open(path, "w") as f:
        json.dump(metadata, f)


@on_every_adapter
def test_hostile_metadata_gives_well_formed_headers(storage):
    app = make_app()
    fid = storage.create(b"x", 'a"b\r\nSet-Cookie: x=1.txt', "text/plain")
    _store_content_type(storage, fid, "text/plain\r\nX-Evil: 1")
    resp = app.get("/depot/default/%s" % fid)
    assert "Set-Cookie" not in resp.headers and "X-Evil" not in resp.headers
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert len(resp.headers.getall("Content-Disposition")) == 1
    assert resp.headers["Content-Disposition"].startswith('inline;filename="a\\"bSet-Cookie: x=1.txt";')


@on_every_adapter
@pytest.mark.parametrize(
    "path",
    ["/depot/default/..%2F..%2Fetc%2Fpasswd", "/depot/default/../../etc/passwd", "/depot/default/%2e%2e",
     "/depot/default/..", "/depot/x/default/{id}", "/depot/default/{id}/", "/depot/default/{id}/file",
     "/depot/default/{id}/metadata.json", "/depot/default/" + "a" * 5000, "/depot/default/%00",
     "/depot/default/%C3%A9", "/depot/default//{id}"],
)
def test_odd_paths_are_clean_404s(served, path):
    app, _, fid = served
    resp = app.get(path.format(id=fid), status=404, expect_errors=True)
    assert resp.status == "404 Not Found"
    assert CONTENT not in resp.body


@on_every_adapter
def test_memory_ranges_use_iter_range_not_read(storage):
    """Ranges are read with iter_range; nothing before the range is read."""
    app = make_app()
    fid = storage.create(CONTENT, "file.txt", "text/plain")
    seen = []
    original = type(storage.get(fid)).iter_range

    def spy(self, start=0, stop=None, chunk_size=1):
        seen.append((start, stop))
        return original(self, start, stop, chunk_size)

    with mock.patch.object(type(storage.get(fid)), "iter_range", spy), \
            mock.patch.object(type(storage.get(fid)), "real_file", lambda self: None), \
            mock.patch.object(type(storage.get(fid)), "read", side_effect=AssertionError("read from the start")):
        assert app.get("/depot/default/%s" % fid, headers={"Range": "bytes=50-59"}).body == CONTENT[50:60]
    assert seen == [(50, 60)]


def test_local_files_go_to_the_file_wrapper_as_real_files(local_storage):
    """Zero-copy: the server's wrapper gets an OS file positioned at the range start."""
    fid = local_storage.create(LARGE_CONTENT, "file.txt", "text/plain")
    size = len(LARGE_CONTENT)
    handed = []

    class Wrapper(_FileIter):
        def __init__(self, filelike, block_size):
            handed.append((filelike, os.lseek(filelike.fileno(), 0, os.SEEK_CUR)))
            super().__init__(filelike, block_size)

    app = make_app()
    app.extra_environ = {"wsgi.file_wrapper": Wrapper}
    url = "/depot/default/%s" % fid
    assert app.get(url).body == LARGE_CONTENT
    assert app.get(url, headers={"Range": "bytes=100-"}).body == LARGE_CONTENT[100:]
    assert app.get(url, headers={"Range": "bytes=10-%d" % (size - 10)}).body == LARGE_CONTENT[10:size - 9]
    assert app.get(url, headers={"Range": "bytes=10-19"}).body == LARGE_CONTENT[10:20]  # small: copied
    (full, at0), (tail, at100), (middle, at10) = handed
    assert at0 == 0 and at100 == 100 and at10 == 10
    assert not isinstance(full, _BoundedFile) and not isinstance(tail, _BoundedFile)
    assert isinstance(middle, _BoundedFile)
    assert full.closed and tail.closed and middle._real.closed


def test_bounded_file_reads_only_its_range(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(CONTENT)
    real = open(path, "rb")
    real.seek(10)
    bounded = _BoundedFile(real, 5)
    assert bounded.fileno() == real.fileno()
    assert bounded.read(3) == CONTENT[10:13]
    assert bounded.read() == CONTENT[13:15]
    assert bounded.read(100) == b""
    bounded.close()
    assert real.closed


@on_every_adapter
def test_length_comes_from_the_opened_file(local_storage):
    """If the content changes after the metadata was read, the length sent matches the bytes sent."""
    app = make_app()
    fid = local_storage.create(b"short", "file.txt", "text/plain")
    from depot.io.local import LocalStoredFile

    original_real_file = LocalStoredFile.real_file

    def replaced_meanwhile(self):
        local_storage.replace(fid, b"a much longer content")
        return original_real_file(self)

    with mock.patch.object(LocalStoredFile, "real_file", replaced_meanwhile):
        resp = app.get("/depot/default/%s" % fid)
    assert resp.body == b"a much longer content"
    assert resp.headers["Content-Length"] == str(len(resp.body))


def _stale_get(storage, fid):
    """Make the next ``get`` of ``fid`` return a handle taken now: the test's replace then lands between get and open."""
    stale = [storage.get(fid)]
    original = storage.get

    def get(file_or_id):
        return stale.pop() if stale else original(file_or_id)

    return mock.patch.object(storage, "get", get)


_DESCRIBING = ("ETag", "Last-Modified", "Content-Disposition", "Content-Type", "Content-Length")
_OLD, _NEW = b"the old content, longer than the new one", b"new bytes"


def _replaced_meanwhile(storage, app):
    """A file whose old version (another date, name, type and size) a request's get() sees, but not its open.

    The url, the patch that makes it so for the next request, and the old version's ETag.
    """
    with mock.patch("depot.io.utils.timestamp", return_value="2020-01-02 03:04:05"):
        fid = storage.create(_OLD, "old.txt", "text/plain")
    url = "/depot/default/%s" % fid
    old_etag = app.head(url).headers["ETag"]
    stale = _stale_get(storage, fid)
    storage.replace(fid, _NEW, "new.csv", "text/csv")
    return url, stale, old_etag


@pytest.fixture(params=["memory", "local", "gridfs"])
def replaceable(request, clean_manager):
    """The default storage, also on GridFS, whose handles would otherwise follow a replace silently at the first read."""
    return configure_default(request, request.param)


@on_every_adapter
def test_a_replace_before_the_open_is_described_whole(replaceable):
    """Every header describing the content is the version sent, not the one get() saw."""
    app = make_app()
    url, stale, old_etag = _replaced_meanwhile(replaceable, app)
    with stale:
        torn = app.get(url)
    assert torn.body == _NEW
    fresh = app.get(url)
    assert [torn.headers[name] for name in _DESCRIBING] == [fresh.headers[name] for name in _DESCRIBING]
    assert torn.headers["ETag"] != old_etag and torn.headers["Content-Length"] == str(len(_NEW))
    assert "new.csv" in torn.headers["Content-Disposition"] and torn.headers["Content-Type"].startswith("text/csv")
    assert "2020" not in torn.headers["Last-Modified"]


@on_every_adapter
def test_a_replace_before_the_open_is_judged_by_the_new_version(replaceable):
    """Preconditions and ranges are decided again against the version opened: 304, 416, If-Range."""
    app = make_app()
    url, stale, _ = _replaced_meanwhile(replaceable, app)
    new_etag = app.head(url).headers["ETag"]
    with stale:
        not_modified = app.get(url, headers={"If-None-Match": new_etag}, status=304)
    assert not_modified.body == b"" and not_modified.headers["ETag"] == new_etag

    url, stale, _ = _replaced_meanwhile(replaceable, app)
    with stale:
        unsatisfiable = app.get(url, headers={"Range": "bytes=%d-" % len(_NEW)}, status=416)
    assert unsatisfiable.headers["Content-Range"] == "bytes */%d" % len(_NEW)

    # A download resumed with the old version's validator gets the new version whole, not a part of it.
    url, stale, old_etag = _replaced_meanwhile(replaceable, app)
    with stale:
        resumed = app.get(url, headers={"Range": "bytes=4-", "If-Range": old_etag}, status=200)
    assert resumed.body == _NEW and "Content-Range" not in resumed.headers

    url, stale, old_etag = _replaced_meanwhile(replaceable, app)
    with stale:
        app.get(url, headers={"If-Match": old_etag}, status=412)


@on_every_adapter
def test_not_modified_and_errors_open_no_content(local_storage):
    app = make_app()
    fid = local_storage.create(LARGE_CONTENT, "file.txt", "text/plain")
    url = "/depot/default/%s" % fid
    etag = app.get(url).headers["ETag"]
    with mock.patch("depot.io.local.LocalStoredFile.real_file", side_effect=AssertionError("content opened")):
        app.get(url, headers={"If-None-Match": etag}, status=304)
        app.get(url, headers={"If-Match": '"other"'}, status=412)
        app.get(url, headers={"Range": "bytes=999999999-"}, status=416)
        app.get(url, headers={"If-Modified-Since": "junk"}, status=400)
