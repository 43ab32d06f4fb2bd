"""Random paths and headers: never a 5xx, never a byte from outside the storage."""
from __future__ import annotations

import io
import random
import re
from unittest import mock

import pytest

from depot.manager import DepotManager
from depot.middleware import DepotMiddleware

from .test_middleware_support import fallback_app

pytest_plugins = ["tests.test_middleware_support"]

SECRET = b"TOP-SECRET-OUTSIDE-THE-STORAGE"
STORED = b"stored-content-" * 20
ITERATIONS = 3000
HEADER_VALUE = re.compile(r"[\x20-\x7e\t]*\Z")


@pytest.fixture
def world(tmp_path):
    """A local and a memory storage, plus files that must never be served."""
    DepotManager._clear()
    root = tmp_path / "files"
    local = DepotManager.configure("default", {"depot.storage_path": str(root)})
    memory = DepotManager.configure("mem", {"depot.backend": "memory"})
    DepotManager.alias("old", "default")
    ids = {
        "default": [local.create(STORED, "a.txt", "text/plain"), local.create(b"", "empty", "text/plain")],
        "mem": [memory.create(STORED, "b.html", "text/html")],
    }
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (root / "secret.txt").write_bytes(SECRET)
    (root / ids["default"][0] / "extra").write_bytes(SECRET)
    yield ids
    DepotManager._clear()


def random_path(rng, ids, mount):
    fid = rng.choice(ids["default"] + ids["mem"])
    pieces = [
        fid, fid.upper(), fid + "/", fid[:-1], fid + "x", "..", ".", "", "%2e%2e", "..%2f..%2fsecret.txt",
        "../secret.txt", "secret.txt", "../../secret.txt", fid + "/../secret.txt", fid + "/extra",
        fid + "/metadata.json", fid + "/file", "%00", "\x00", "a\\b", "\u00e9", "\xff" * 3, "x" * rng.randint(1, 600),
        "%" + "".join(rng.choice("0123456789abcdefgz%") for _ in range(4)), "~", "-", "_", ";", "?",
        "".join(chr(rng.randint(0, 255)) for _ in range(rng.randint(1, 20))),
    ]
    names = ["default", "mem", "old", "nodepot", "", "..", "DEFAULT", "default\x00", "\u00e9"]
    parts = [rng.choice(names) if rng.random() < 0.8 else rng.choice(pieces)]
    parts += [rng.choice(pieces) for _ in range(rng.choice([0, 1, 1, 1, 1, 2, 3]))]
    prefix = rng.choice([mount, mount, mount, mount + "/", mount + "x", "", "/", mount.upper()])
    return prefix + "/" + "/".join(parts)


def random_header(rng, etag):
    choices = [
        lambda: "bytes=%d-%d" % (rng.randint(-5, 400), rng.randint(-5, 400)),
        lambda: "bytes=%d-" % rng.randint(0, 600),
        lambda: "bytes=-%d" % rng.randint(0, 400),
        lambda: "bytes=" + ",".join("%d-%d" % (rng.randint(0, 9), rng.randint(0, 9)) for _ in range(rng.randint(1, 50))),
        lambda: etag,
        lambda: "W/" + etag,
        lambda: "*",
        lambda: '"%s"' % rng.random(),
        lambda: "Thu, 01 Jan 1970 00:00:00 GMT",
        lambda: "Sun, 06 Nov 99999 08:49:37 GMT",
        lambda: "Fri, 31 Dec 2100 23:59:59 GMT",
        lambda: "".join(chr(rng.randint(0, 255)) for _ in range(rng.randint(0, 300))),
        lambda: "9" * rng.randint(1, 5000),
    ]
    return rng.choice(choices)()


def call(mw, environ):
    seen = {}

    def start_response(status, headers, exc_info=None):
        assert exc_info is None
        seen["status"], seen["headers"] = status, headers

    result = mw(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return seen["status"], seen["headers"], body


@pytest.mark.parametrize("seed, signed", [(1, False), (2, False), (3, True)])
def test_fuzz(world, seed, signed):
    rng = random.Random(seed)
    options = {"secret": "k", "link_lifetime": 60} if signed else {}
    mw = DepotMiddleware(fallback_app, mountpoint="/depot", **options)
    valid_urls = [mw.url_for("%s/%s" % (name, fid)) for name, fids in world.items() for fid in fids]
    get_etag = {}
    statuses = set()
    for _ in range(ITERATIONS):
        if rng.random() < 0.5:
            url = rng.choice(valid_urls)
            path, _, query = url.partition("?")
        else:
            path = random_path(rng, world, "/depot")
            query = rng.choice(["", "expires=1&signature=x", "".join(chr(rng.randint(32, 126)) for _ in range(30))])
        environ = {
            "REQUEST_METHOD": rng.choice(["GET", "GET", "GET", "HEAD", "POST", "OPTIONS", "get"]),
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "wsgi.input": io.BytesIO(b""),
        }
        if rng.random() < 0.5:
            environ["wsgi.file_wrapper"] = _ServerWrapper
        for key in ("HTTP_RANGE", "HTTP_IF_RANGE", "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_IF_MATCH",
                    "HTTP_IF_UNMODIFIED_SINCE"):
            if rng.random() < (0.6 if key == "HTTP_RANGE" else 0.2):
                environ[key] = random_header(rng, get_etag.get(path, '"x"'))
        status, headers, body = call(mw, environ)
        code = int(status[:3])
        statuses.add(code)
        assert code < 500, (environ, status)
        assert SECRET not in body, environ
        assert b'"last_modified"' not in body, environ
        for name, value in headers:
            assert isinstance(name, str) and isinstance(value, str)
            assert HEADER_VALUE.match(value), (name, value)
        fields = dict(headers)
        if "ETag" in fields:
            get_etag[path] = fields["ETag"]
        if body.startswith(b"app:"):
            continue
        if code == 200 and environ["REQUEST_METHOD"] == "GET":
            assert body in (STORED, b""), environ
            assert fields["Content-Length"] == str(len(body))
        elif code == 206:
            first, last = map(int, fields["Content-Range"].split()[1].split("/")[0].split("-"))
            assert body == STORED[first:last + 1]
        elif environ["REQUEST_METHOD"] == "HEAD" or code in (304, 416):
            assert STORED not in body
    # The random walk reached the interesting answers, not only 404s.
    expected = {200, 404} | ({403} if signed else {206, 304, 416, 412, 400})
    assert expected <= statuses, statuses


class _ServerWrapper:
    """A server's file wrapper that uses fileno() like gunicorn's sendfile path would."""

    def __init__(self, filelike, block_size):
        self.filelike, self.block_size = filelike, block_size

    def __iter__(self):
        while True:
            chunk = self.filelike.read(self.block_size)
            if not chunk:
                return
            yield chunk

    def close(self):
        self.filelike.close()


# Printable ASCII only: PEP 3333 forbids control characters in header values,
# and a tab or a byte above 0x7e is something some front server mangles.
STRICT_HEADER_VALUE = re.compile(r"[\x20-\x7e]*\Z")
_NASTY = "\x00\x01\t\n\r\x0b\x0c\x1b\x7f\x80\x85\x9f\xa0\u2028\u2029\ufeff\ud800\"\\;,= %/'<>"


def nasty_text(rng, base):
    chars = list(base)
    for _ in range(rng.randint(1, 6)):
        chars.insert(rng.randint(0, len(chars)), rng.choice(_NASTY))
    return "".join(chars)


def _stored_unchecked(storage, content, filename, content_type):
    # create() now refuses such types at the door; files written by filedepot
    # 0.12 or older depot versions may still hold them, and must serve cleanly.
    with mock.patch("depot.io.utils.check_content_type", lambda value: value):
        return storage.create(content, filename, content_type)


@pytest.mark.parametrize("backend", ["memory", "local"])
def test_headers_from_stored_metadata_never_carry_control_characters(tmp_path, backend):
    rng = random.Random(20241130)
    DepotManager._clear()
    try:
        config = {"depot.backend": backend, "depot.storage_path": str(tmp_path / "files")}
        storage = DepotManager.configure("default", config)
        mw = DepotMiddleware(fallback_app)
        base_types = ["text/html", "text/plain; charset=utf-8", "image/png", "application/json"]
        cases = [("text/html\t", "a.html"), ("text/plain\r\nX-Injected: 1", "b.txt"), ("text/plain", "c\r\nd.txt")]
        cases += [(nasty_text(rng, rng.choice(base_types)), nasty_text(rng, "report.pdf")) for _ in range(150)]
        for content_type, filename in cases:
            try:
                fid = _stored_unchecked(storage, b"payload", filename, content_type)
            except (ValueError, UnicodeError):
                continue  # refused at the door is fine too
            for method in ("GET", "HEAD"):
                status, headers, _ = call(mw, {"REQUEST_METHOD": method, "PATH_INFO": "/depot/default/" + fid,
                                              "QUERY_STRING": "", "wsgi.input": io.BytesIO(b"")})
                assert status == "200 OK", (content_type, filename, status)
                for name, value in headers:
                    assert STRICT_HEADER_VALUE.match(value), (name, value, content_type, filename)
                fields = dict(headers)
                assert fields["Content-Type"].strip() == fields["Content-Type"]
        # The case of the report: served without its tab (and, being HTML, as an attachment).
        fid = _stored_unchecked(storage, b"<p>x</p>", "a.html", "text/html\t")
        _, headers, _ = call(mw, {"REQUEST_METHOD": "GET", "PATH_INFO": "/depot/default/" + fid,
                                  "QUERY_STRING": "", "wsgi.input": io.BytesIO(b"")})
        # The serving layer strips the tab; local storage already reads such a type as octet-stream.
        served_type = dict(headers)["Content-Type"]
        assert served_type in ("text/html", "application/octet-stream")
        if served_type == "text/html":  # active content is never rendered inline
            assert dict(headers)["Content-Disposition"].startswith("attachment")
    finally:
        DepotManager._clear()


def test_redirect_location_never_carries_control_characters(clean_manager):
    from depot.io.memory import MemoryStoredFile

    from .test_middleware_support import PublicMemoryStorage

    class OddFile(MemoryStoredFile):
        @property
        def public_url(self):
            return "https://cdn.example.com/a\tb\r\nc\x00d\u00e9?x=\x7f"

    class OddURL(PublicMemoryStorage):
        file_class = OddFile

    storage = OddURL()
    DepotManager._depots["odd"] = storage
    fid = storage.create(b"x", "a.txt", "text/plain")
    status, headers, _ = call(DepotMiddleware(fallback_app), {"REQUEST_METHOD": "GET", "PATH_INFO": "/depot/odd/" + fid,
                                                              "QUERY_STRING": "", "wsgi.input": io.BytesIO(b"")})
    assert status.startswith("301")
    for name, value in headers:
        assert STRICT_HEADER_VALUE.match(value), (name, value)
