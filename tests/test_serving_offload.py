"""Offload headers (depot.serving.offload) and cache headers (depot.serving.caching)."""
import pytest

from depot.serving.caching import cache_headers
from depot.serving.offload import Offload, parse_accel_mapping


def test_accel_mapping_forms():
    assert parse_accel_mapping({"/var/depot": "/protected"}) == (("/var/depot/", "/protected/"),)
    assert parse_accel_mapping("/var/depot=/protected/, /var/depot/deep=/deep") == (
        ("/var/depot/deep/", "/deep/"),
        ("/var/depot/", "/protected/"),
    )
    assert parse_accel_mapping(None) == ()
    with pytest.raises(ValueError):
        parse_accel_mapping("/var/depot")
    with pytest.raises(ValueError):
        parse_accel_mapping({"/var/depot": "relative"})


def test_x_accel_redirect():
    offload = Offload(x_accel_redirect={"/var/depot": "/protected"})
    assert offload
    assert offload.header_for("/var/depot/abc/file") == ("X-Accel-Redirect", "/protected/abc/file")
    assert offload.header_for("/var/depot/a b/file") == ("X-Accel-Redirect", "/protected/a%20b/file")
    assert offload.header_for("/var/depotx/abc/file") is None
    assert offload.header_for("/elsewhere/file") is None


def test_x_sendfile():
    offload = Offload(x_sendfile=True)
    assert offload.header_for("/var/depot/abc/file") == ("X-Sendfile", "/var/depot/abc/file")
    assert offload.header_for("/var/dépôt/abc/file") is None
    assert offload.header_for("/var/depot/a\r\nb") is None


def test_disabled():
    assert not Offload()


def test_cache_headers():
    assert cache_headers(604800, now=0) == ("max-age=604800, public", "Thu, 08 Jan 1970 00:00:00 GMT")
    assert cache_headers(600, link_remaining=60, now=0) == ("max-age=60, private", "Thu, 01 Jan 1970 00:01:00 GMT")
    assert cache_headers(30, link_remaining=60, now=0)[0] == "max-age=30, private"
    # The memo must not return another max-age's value within the same second.
    assert cache_headers(1, now=5)[1] == "Thu, 01 Jan 1970 00:00:06 GMT"
    assert cache_headers(2, now=5)[1] == "Thu, 01 Jan 1970 00:00:07 GMT"
