"""What filedepot 0.12 code relies on in the middleware: hooks, ids, stored URLs, constructor values."""
from __future__ import annotations

import datetime
import io

import pytest
import webtest

import depot.middleware
from depot.io.interfaces import StoredFile
from depot.manager import DepotManager
from depot.middleware import DepotMiddleware, FileServeApp

from .test_middleware_support import CONTENT, PublicMemoryStorage, fallback_app, make_app

pytest_plugins = ["tests.test_middleware_support"]

WHEN = datetime.datetime(2020, 5, 17, 10, 30, 0)


# -- hooks of FileServeApp (11.6) -------------------------------------------------


class NeverModified(FileServeApp):
    def has_been_modified(self, environ, etag, last_modified):
        return False


class AlwaysModified(FileServeApp):
    def has_been_modified(self, environ, etag, last_modified):
        return True


class EpochDates(FileServeApp):
    """Understands ``If-Modified-Since: @<unix time>`` and writes dates the same way."""

    def parse_date(self, value):
        if not value.startswith("@"):
            raise RuntimeError(value)
        return datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=int(value[1:]))

    @classmethod
    def make_date(cls, d):
        if isinstance(d, datetime.datetime):
            return "@%d" % (d - datetime.datetime(1970, 1, 1)).total_seconds()
        return "@%d" % d


class CustomEtag(FileServeApp):
    def generate_etag(self):
        return '"custom-%s"' % self.content_length


def middleware_app(app_class, **options):
    class Middleware(DepotMiddleware):
        file_app_class = app_class

    mw = Middleware(fallback_app, **options)
    DepotManager.set_middleware(mw)
    return webtest.TestApp(mw)


def test_has_been_modified_override_decides_304(storage):
    fid = storage.create(CONTENT, "a.txt", "text/plain")
    resp = middleware_app(NeverModified).get("/depot/default/%s" % fid, status=304)
    assert resp.body == b""
    DepotManager._middleware = None
    plain_etag = make_app().get("/depot/default/%s" % fid).headers["ETag"]
    DepotManager._middleware = None
    resp = middleware_app(AlwaysModified).get("/depot/default/%s" % fid, headers={"If-None-Match": plain_etag})
    assert resp.status_int == 200 and resp.body == CONTENT


def test_has_been_modified_override_through_the_wsgi_callable(storage):
    fid = storage.create(CONTENT, "a.txt", "text/plain")
    app = webtest.TestApp(lambda environ, start_response: NeverModified(storage.get(fid), 60)(environ, start_response))
    assert app.get("/whatever", status=304).body == b""


def test_has_been_modified_override_when_module_attribute_is_patched(storage, monkeypatch):
    fid = storage.create(CONTENT, "a.txt", "text/plain")
    monkeypatch.setattr(depot.middleware, "FileServeApp", NeverModified)
    make_app().get("/depot/default/%s" % fid, status=304)


def test_parse_date_override_reads_if_modified_since(storage):
    fid = storage.create(CONTENT, "a.txt", "text/plain")
    app = middleware_app(EpochDates)
    app.get("/depot/default/%s" % fid, headers={"If-Modified-Since": "@99999999999"}, status=304)
    app.get("/depot/default/%s" % fid, headers={"If-Modified-Since": "@0"}, status=200)
    # What the default parse_date reads is no date for this subclass: 400 as filedepot.
    app.get("/depot/default/%s" % fid, headers={"If-Modified-Since": "Thu, 01 Jan 2099 00:00:00 GMT"}, status=400)


def test_make_date_override_formats_last_modified_and_expires(storage):
    fid = storage.create(CONTENT, "a.txt", "text/plain")
    f = storage.get(fid)
    resp = middleware_app(EpochDates, cache_max_age=60).get("/depot/default/%s" % fid)
    assert resp.headers["Last-Modified"] == EpochDates.make_date(f.last_modified)
    expires = int(resp.headers["Expires"][1:])
    now = (datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.datetime(1970, 1, 1))
    assert abs(expires - (now.total_seconds() + 60)) <= 2
    # The default keeps RFC 1123 dates.
    DepotManager._middleware = None
    assert make_app().get("/depot/default/%s" % fid).headers["Last-Modified"].endswith(" GMT")


def test_generate_etag_override(storage):
    fid = storage.create(CONTENT, "a.txt", "text/plain")
    app = middleware_app(CustomEtag)
    etag = '"custom-%d"' % len(CONTENT)
    assert app.get("/depot/default/%s" % fid).headers["ETag"] == etag
    app.get("/depot/default/%s" % fid, headers={"If-None-Match": etag}, status=304)


# -- hooks of DepotMiddleware (11.6) ------------------------------------------------


class Custom404(DepotMiddleware):
    def _404_response(self, start_response):
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("X-Custom", "yes")])
        return [b"nothing here"]


class Custom404WithEnviron(DepotMiddleware):
    def _404_response(self, environ, start_response):
        body = ("no %s" % environ["PATH_INFO"]).encode()
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [body]


class Custom301(DepotMiddleware):
    def _301_response(self, start_response, location):
        start_response("301 Moved Permanently", [("Location", location + "?via=cdn"), ("Content-Type", "text/plain")])
        return [b"moved"]


@pytest.mark.parametrize("path", ["/depot/default/missing-file", "/depot/nodepot/abc", "/depot/default", "/depot/"])
def test_404_override(storage, path):
    mw = Custom404(fallback_app)
    resp = webtest.TestApp(mw).get(path, status=404)
    assert resp.body == b"nothing here" and resp.headers["X-Custom"] == "yes"


def test_404_override_taking_environ(storage):
    resp = webtest.TestApp(Custom404WithEnviron(fallback_app)).get("/depot/default/missing", status=404)
    assert resp.body == b"no /depot/default/missing"


def test_404_override_for_a_file_deleted_while_served(local_storage):
    fid = local_storage.create(CONTENT, "a.txt", "text/plain")

    class Vanishing(FileServeApp):
        def generate_etag(self):
            raise OSError("deleted meanwhile")

    class Middleware(Custom404):
        file_app_class = Vanishing

    assert webtest.TestApp(Middleware(fallback_app)).get("/depot/default/%s" % fid, status=404).body == b"nothing here"


def test_301_override(clean_manager):
    storage = PublicMemoryStorage()
    DepotManager._depots["cdn"] = storage
    fid = storage.create(CONTENT, "a.txt", "text/plain")
    resp = webtest.TestApp(Custom301(fallback_app)).get("/depot/cdn/%s" % fid, status=301)
    assert resp.body == b"moved"
    assert resp.headers["Location"] == "https://cdn.example.com/files/%s?via=cdn" % fid


# -- ids the storage accepts (11.7) ------------------------------------------------


class _KeyedFile(StoredFile):
    def __init__(self, file_id, data):
        super().__init__(file_id, filename="f.txt", content_type="text/plain", last_modified=WHEN,
                         content_length=len(data))
        self._stream = io.BytesIO(data)

    def read(self, n=-1):
        return self._stream.read(n)

    def close(self, *args, **kwargs):
        self._stream.close()

    @property
    def closed(self):
        return self._stream.closed


class KeyedStorage:
    """A custom storage whose ids are application keys (``user:42``); refuses ids with ``bad``."""

    def __init__(self, files):
        self.files = files

    def get(self, file_id):
        if "bad" in file_id:
            raise ValueError("Invalid file id %r" % file_id)
        try:
            return _KeyedFile(file_id, self.files[file_id])
        except KeyError:
            raise IOError("File %s not existing" % file_id) from None


ODD_IDS = ["user:42", "a+b", "a b", "50%", "x?y#z", "caf\u00e9", "\u4e2d\u6587", "a..b", ".hidden", "~x", "a=b&c"]


@pytest.fixture
def keyed(clean_manager):
    files = {file_id: file_id.encode("utf-8") * 3 for file_id in ODD_IDS}
    DepotManager._depots["keys"] = KeyedStorage(files)
    mw = DepotManager.make_middleware(fallback_app)
    return mw, webtest.TestApp(mw)


@pytest.mark.parametrize("file_id", ODD_IDS)
def test_ids_the_storage_accepts_are_served(keyed, file_id):
    mw, app = keyed
    url = mw.url_for("keys/%s" % file_id)
    assert "?" not in url and "#" not in url and " " not in url
    assert app.get(url).body == file_id.encode("utf-8") * 3


def test_url_encoded_forms_of_an_id_are_served(keyed):
    _, app = keyed
    assert app.get("/depot/keys/user%3A42").body == b"user:42" * 3
    assert app.get("/depot/keys/user:42").body == b"user:42" * 3
    assert app.get("/depot/keys/a%2Bb").body == b"a+b" * 3
    assert app.get("/depot/keys/caf%C3%A9").body == "caf\u00e9".encode() * 3


@pytest.mark.parametrize(
    "path", ["/depot/keys/badid", "/depot/keys/unknown", "/depot/keys/..", "/depot/keys/.", "/depot/keys/a%00b",
             "/depot/keys/a%0Ab", "/depot/keys/a%5Cb", "/depot/keys/a%2F..%2Fb", "/depot/keys/%FF"]
)
def test_ids_the_storage_refuses_and_impossible_ids_are_404(keyed, path):
    _, app = keyed
    app.get(path, status=404)


def test_impossible_ids_never_reach_the_storage(clean_manager):
    seen = []

    class Recording(KeyedStorage):
        def get(self, file_id):
            seen.append(file_id)
            return super().get(file_id)

    DepotManager._depots["keys"] = Recording({})
    app = webtest.TestApp(DepotManager.make_middleware(fallback_app))
    for path in ["/depot/keys/..", "/depot/keys/a%00b", "/depot/keys/a%5Cb", "/depot/keys/a%1Fb", "/depot/keys/a%7Fb"]:
        app.get(path, status=404)
    app.get("/depot/keys/user:1", status=404)
    assert seen == ["user:1"]


def test_signed_links_to_odd_ids(clean_manager):
    DepotManager._depots["keys"] = KeyedStorage({"a b:\u00e9": b"data"})
    mw = DepotManager.make_middleware(fallback_app, secret="s3cret")
    app = webtest.TestApp(mw)
    assert app.get(mw.url_for("keys/a b:\u00e9")).body == b"data"


# -- URLs 0.12 generated (11.8) -----------------------------------------------------


def test_urls_of_a_mountpoint_with_trailing_slash_are_served(storage):
    fid = storage.create(CONTENT, "a.txt", "text/plain")
    app = make_app(mountpoint="/files/")
    # filedepot 0.12: '/'.join(('/files/', 'default/<id>'))
    assert app.get("/files//default/%s" % fid).body == CONTENT
    assert app.get("/files/default/%s" % fid).body == CONTENT
    assert app.get(DepotManager.url_for("default/%s" % fid)).body == CONTENT
    assert app.get("/files/default", status=404)
    app.get("/files//%s" % fid, status=404)


def test_thumbnail_urls_stored_by_012_are_served(storage):
    fid = storage.create(CONTENT, "thumb.png", "image/png")
    app = make_app(mountpoint="/files/")
    row = {"thumb_128x128_url": "/files//default/%s" % fid}
    assert app.get(row["thumb_128x128_url"]).body == CONTENT


# -- constructor values 0.12 took (11.10) ---------------------------------------------


def test_cache_max_age_none(storage):
    fid = storage.create(CONTENT, "a.txt", "text/plain")
    mw = DepotMiddleware(fallback_app, cache_max_age=None)
    assert mw.cache_max_age is None
    DepotManager.set_middleware(mw)
    resp = webtest.TestApp(mw).get("/depot/default/%s" % fid)
    assert resp.headers["Cache-Control"] == "no-cache" and resp.body == CONTENT
    expires = FileServeApp.parse_date(None, resp.headers["Expires"])
    assert expires <= datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    etag = resp.headers["ETag"]
    assert webtest.TestApp(mw).get("/depot/default/%s" % fid, headers={"If-None-Match": etag}, status=304)


@pytest.mark.parametrize(
    "value, expected",
    [(0, 0), (60, 60), (60.7, 60), (True, 1), (False, 0), (-5, 0), ("3600", 3600), (" 120 ", 120), ("none", None),
     (float("inf"), 2**31 - 1), (10**20, 2**31 - 1)],
)
def test_cache_max_age_values(storage, value, expected):
    fid = storage.create(CONTENT, "a.txt", "text/plain")
    mw = DepotMiddleware(fallback_app, cache_max_age=value)
    assert mw.cache_max_age == expected
    resp = webtest.TestApp(mw).get("/depot/default/%s" % fid)
    assert resp.headers["Cache-Control"] == ("no-cache" if expected is None else "max-age=%d, public" % expected)


@pytest.mark.parametrize("value", ["soon", float("nan"), object()])
def test_cache_max_age_that_is_no_number(clean_manager, value):
    with pytest.raises(ValueError, match="cache_max_age"):
        DepotMiddleware(None, cache_max_age=value)


@pytest.mark.parametrize(
    "value, expected", [(None, False), (0, False), (1, True), ("yes", True), ("false", False), ("anything", True),
                        ([], False), ([1], True)]
)
def test_replace_wsgi_filewrapper_values(clean_manager, value, expected):
    assert DepotMiddleware(None, replace_wsgi_filewrapper=value).replace_wsgi_filewrapper is expected


def test_positional_arguments_and_app_none(storage):
    fid = storage.create(CONTENT, "a.txt", "text/plain")
    mw = DepotMiddleware(None, "/media", 10, True)
    assert (mw.app, mw.mountpoint, mw.cache_max_age, mw.replace_wsgi_filewrapper) == (None, "/media", 10, True)
    assert webtest.TestApp(mw).get("/media/default/%s" % fid).headers["Cache-Control"] == "max-age=10, public"


def test_root_mountpoint(storage):
    fid = storage.create(CONTENT, "a.txt", "text/plain")
    app = make_app(mountpoint="/")
    assert DepotManager.url_for("default/%s" % fid) == "/default/%s" % fid
    assert app.get("/default/%s" % fid).body == CONTENT
    # filedepot 0.12 joined '/' and the path into '//default/<id>'.
    assert app.get("//default/%s" % fid).body == CONTENT
