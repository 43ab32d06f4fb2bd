"""URLs kept in rows: never signed, never expiring, served by the middleware."""
from __future__ import annotations

import io
import json
import time
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from depot.fields.filters.thumbnails import WithThumbnailFilter
from depot.fields.upload import UploadedFile

from .test_middleware_support import make_app, on_every_adapter

pytest_plugins = ["tests.test_middleware_support"]

pytestmark = on_every_adapter


def png():
    out = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def thumbnailed():
    value = UploadedFile(png(), "default")
    value._apply_filters([WithThumbnailFilter((20, 10))])
    return value


@pytest.fixture
def signed_app(storage):
    return make_app(secret="s3cret", link_lifetime=600)


def test_thumbnail_url_in_the_row_is_unsigned_and_read_signed(signed_app):
    value = thumbnailed()
    stored = json.loads(value.encode())["thumb_20x10_url"]
    assert stored == "/depot/" + value.thumb_20x10_path  # no expires, no signature
    with mock.patch("time.time", return_value=time.time()):  # both reads sign within the same second
        url = value.thumb_20x10_url
        assert set(parse_qs(urlsplit(url).query)) == {"expires", "signature"}
        assert signed_app.get(url).content_type == "image/png"
        assert value["thumb_20x10_url"] == value.thumb_20x10_url.split("?")[0] + "?" + urlsplit(url).query


def test_thumbnail_url_keeps_working_after_links_expire(signed_app):
    value = UploadedFile.decode(thumbnailed().encode())  # as read back from the row
    old_link = value.thumb_20x10_url
    later = time.time() + 3600
    with mock.patch("time.time", return_value=later):
        signed_app.get(old_link, status=403)  # a signed link handed out earlier has expired
        fresh = value.thumb_20x10_url  # read again: signed now, valid now
        assert fresh != old_link
        assert signed_app.get(fresh).status_int == 200
        assert signed_app.get(value.url).status_int == 200
    assert "signature" not in json.loads(value.encode())["thumb_20x10_url"]


def test_signed_thumbnail_urls_stored_by_older_versions_are_resigned(signed_app):
    value = thumbnailed()
    row = json.loads(value.encode())
    # A link signed (and long expired) by an earlier release, as rows may hold.
    row["thumb_20x10_url"] = "/depot/%s?expires=1&signature=abc" % value.thumb_20x10_path
    reread = UploadedFile.decode(json.dumps(row))
    assert signed_app.get(reread.thumb_20x10_url).status_int == 200


def test_without_secret_rows_hold_exactly_the_middleware_url(storage):
    make_app(mountpoint="/media")
    value = thumbnailed()
    assert json.loads(value.encode())["thumb_20x10_url"] == "/media/" + value.thumb_20x10_path
    assert value.thumb_20x10_url == "/media/" + value.thumb_20x10_path


def test_absolute_thumbnail_urls_are_returned_as_stored(signed_app):
    value = thumbnailed()
    row = json.loads(value.encode())
    row["thumb_20x10_url"] = "https://cdn.example.com/t.png"
    assert UploadedFile.decode(json.dumps(row)).thumb_20x10_url == "https://cdn.example.com/t.png"


def test_url_without_middleware_on_local_storage_raises_as_012(storage):
    value = UploadedFile(b"data", "default")
    with pytest.raises(RuntimeError, match="^No WSGI middleware currently registered$"):
        value.url
