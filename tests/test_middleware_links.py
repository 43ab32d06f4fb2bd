"""Signed links, redirects to public URLs and offloading to the front server."""
from __future__ import annotations

import time
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest

from depot.manager import DepotManager

from .test_middleware_support import CONTENT, make_app, on_every_adapter

# The fixtures clean_manager, storage, local_storage and adapter.
pytest_plugins = ["tests.test_middleware_support"]

pytestmark = on_every_adapter


@pytest.fixture
def signed(storage):
    app = make_app(secret="s3cret", link_lifetime=600)
    fid = storage.create(CONTENT, "file.txt", "text/plain")
    return app, fid


def test_url_for_signs(signed):
    app, fid = signed
    url = DepotManager.url_for("default/%s" % fid)
    parts = urlsplit(url)
    assert parts.path == "/depot/default/%s" % fid
    query = parse_qs(parts.query)
    assert set(query) == {"expires", "signature"}
    assert 595 <= int(query["expires"][0]) - time.time() <= 600
    resp = app.get(url)
    assert resp.body == CONTENT
    assert resp.headers["Cache-Control"].endswith(", private")
    assert int(resp.headers["Cache-Control"].split("=")[1].split(",")[0]) <= 600


def test_unsigned_tampered_and_expired_links_are_403(signed):
    app, fid = signed
    url = DepotManager.url_for("default/%s" % fid)
    app.get("/depot/default/%s" % fid, status=403)
    path, query = url.split("?")
    other = DepotManager.get().create(b"other", "o.txt", "text/plain")
    app.get("/depot/default/%s?%s" % (other, query), status=403)
    expires = parse_qs(query)["expires"][0]
    app.get(url.replace(expires, str(int(expires) + 1000)), status=403)
    signature = parse_qs(query)["signature"][0]
    app.get(url.replace(signature, signature[::-1]), status=403)
    with mock.patch("time.time", return_value=time.time() + 601):
        app.get(url, status=403)
    assert app.get(url).status_int == 200


def test_signature_is_checked_before_the_storage(signed):
    app, fid = signed
    with mock.patch.object(DepotManager, "get", side_effect=AssertionError("storage reached")):
        app.get("/depot/default/%s?expires=9999999999&signature=x" % fid, status=403)


def test_head_and_ranges_through_signed_links(signed):
    app, fid = signed
    url = DepotManager.url_for("default/%s" % fid)
    assert app.head(url).headers["Content-Length"] == str(len(CONTENT))
    assert app.get(url, headers={"Range": "bytes=0-4"}).body == CONTENT[:5]


def test_uploaded_file_url_is_signed(signed):
    from depot.fields import upload
    app, _ = signed
    uploaded = upload.UploadedFile(CONTENT)
    url = uploaded.url
    assert "signature=" in url
    assert app.get(url).body == CONTENT


def test_signed_public_url_redirects_temporarily(clean_manager):
    storage = DepotManager.configure("priv", {"depot.backend": "tests.test_middleware_support.SignedMemoryStorage"})
    fid = storage.create(CONTENT, "file.txt", "text/plain")
    resp = make_app().get("/depot/priv/%s" % fid, status=302)
    assert resp.headers["Location"] == "https://bucket.example.com/%s?X-Amz-Expires=60&X-Amz-Signature=abc" % fid
    assert resp.headers["Cache-Control"] == "no-store"


def test_x_sendfile(local_storage):
    app = make_app(x_sendfile=True)
    fid = local_storage.create(CONTENT, "file.txt", "text/plain")
    resp = app.get("/depot/default/%s" % fid, headers={"Range": "bytes=0-1"})
    assert resp.status_int == 200 and resp.body == b""
    path = resp.headers["X-Sendfile"]
    with open(path, "rb") as f:
        assert f.read() == CONTENT
    assert "Content-Length" not in resp.headers
    assert resp.headers["Content-Disposition"].startswith("inline;")
    # conditional requests are still answered here
    app.get("/depot/default/%s" % fid, headers={"If-None-Match": resp.headers["ETag"]}, status=304)
    assert app.head("/depot/default/%s" % fid).headers["X-Sendfile"] == path


def test_x_accel_redirect(local_storage, tmp_path):
    app = make_app(x_accel_redirect="%s=/protected" % (tmp_path / "files"))
    fid = local_storage.create(CONTENT, "file.txt", "text/plain")
    resp = app.get("/depot/default/%s" % fid)
    assert resp.headers["X-Accel-Redirect"] == "/protected/%s/file" % fid
    assert resp.body == b""


def test_offload_skips_storages_without_local_files(clean_manager, tmp_path):
    storage = DepotManager.configure("mem", {"depot.backend": "depot.io.memory.MemoryFileStorage"})
    app = make_app(x_sendfile=True)
    fid = storage.create(CONTENT, "file.txt", "text/plain")
    resp = app.get("/depot/mem/%s" % fid, headers={"Range": "bytes=0-1"})
    assert "X-Sendfile" not in resp.headers
    assert resp.status_int == 206 and resp.body == CONTENT[:2]


def test_offload_outside_the_mapped_directory_serves_directly(local_storage):
    app = make_app(x_accel_redirect={"/somewhere/else": "/protected"})
    fid = local_storage.create(CONTENT, "file.txt", "text/plain")
    resp = app.get("/depot/default/%s" % fid)
    assert "X-Accel-Redirect" not in resp.headers and resp.body == CONTENT
