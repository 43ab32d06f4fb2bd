"""DepotMiddleware under a real gunicorn (sync worker, sendfile) on 127.0.0.1."""
from __future__ import annotations

import http.client
import json
import os
import sys
import textwrap

import pytest

from depot.io.local import LocalFileStorage
from depot.middleware import DepotMiddleware

from ._procs import LOOPBACK, free_ports, http_status, start_server

pytest.importorskip("gunicorn")

SECRET = b"NEVER-SERVED"
BIG = os.urandom(3 * 1024 * 1024 + 17)  # several sendfile calls' worth, odd length

APP_MODULE = textwrap.dedent(
    '''
    """WSGI app for the gunicorn tests: two middlewares in front of an upload endpoint."""
    import os
    from urllib.parse import parse_qs

    from depot.manager import DepotManager
    from depot.middleware import DepotMiddleware

    DepotManager.configure("default", {"depot.storage_path": os.environ["DEPOT_TEST_ROOT"]})
    DepotManager.configure("mem", {"depot.backend": "memory"})


    def upload(environ, start_response):
        """POST /upload/<storage>?filename=..&content_type=.. stores the body, answers the id."""
        if environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"].startswith("/upload/"):
            query = parse_qs(environ.get("QUERY_STRING", ""))
            data = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            storage = DepotManager.get(environ["PATH_INFO"][len("/upload/"):])
            body = storage.create(data, query["filename"][0], query["content_type"][0]).encode()
        else:
            body = ("app:%s:%s" % (environ["REQUEST_METHOD"], environ["PATH_INFO"])).encode("latin-1")
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]


    signed = DepotMiddleware(upload, mountpoint="/signed", secret="gunicorn-secret", link_lifetime=60)
    application = DepotManager.make_middleware(signed)
    '''
)


class Server:
    def __init__(self, port: int, root: str) -> None:
        self.port = port
        self.root = root

    def request(self, method, path, headers=None, body=None):
        """(status, headers dict, body) over a fresh connection, path sent verbatim."""
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=30)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for name, value in (headers or {}).items():
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def upload(self, storage, data, filename="f.bin", content_type="application/octet-stream"):
        status, _, body = self.request(
            "POST", "/upload/%s?filename=%s&content_type=%s" % (storage, filename, content_type), body=data
        )
        assert status == 200
        return body.decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("gunicorn-files")
    (root / "secret.txt").write_bytes(SECRET)

    def launch(process):
        (process.workdir / "depot_gunicorn_app.py").write_text(APP_MODULE)
        (port,) = free_ports(1)
        env = dict(os.environ, DEPOT_TEST_ROOT=str(root / "files"), PYTHONPATH=os.getcwd())
        process.spawn(
            [sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class", "sync", "--bind",
             "%s:%d" % (LOOPBACK, port), "--chdir", str(process.workdir), "depot_gunicorn_app:application"],
            env=env,
        )
        process.wait_until(lambda: http_status("http://%s:%d/ping" % (LOOPBACK, port)) == 200)
        return Server(port, str(root / "files"))

    process, srv = start_server("gunicorn", launch)
    yield srv
    process.stop()


@pytest.fixture(scope="module")
def big(server):
    fid = LocalFileStorage(server.root).create(BIG, "big.bin", "application/octet-stream")
    return "/depot/default/%s" % fid


def test_whole_file(server, big):
    status, headers, body = server.request("GET", big)
    assert status == 200
    assert headers["content-length"] == str(len(BIG)) and body == BIG
    assert headers["accept-ranges"] == "bytes"
    assert headers["x-content-type-options"] == "nosniff"
    assert "transfer-encoding" not in headers


@pytest.mark.parametrize(
    "header, start, stop",
    [("bytes=0-9", 0, 10), ("bytes=1000000-2000000", 1000000, 2000001), ("bytes=-5", len(BIG) - 5, len(BIG)),
     ("bytes=3000000-", 3000000, len(BIG)), ("bytes=5-%d" % (10 * len(BIG)), 5, len(BIG))],
)
def test_ranges_with_sendfile(server, big, header, start, stop):
    status, headers, body = server.request("GET", big, {"Range": header})
    assert status == 206
    assert body == BIG[start:stop]
    assert headers["content-range"] == "bytes %d-%d/%d" % (start, stop - 1, len(BIG))


def test_416(server, big):
    status, headers, body = server.request("GET", big, {"Range": "bytes=%d-" % len(BIG)})
    assert status == 416 and headers["content-range"] == "bytes */%d" % len(BIG)
    assert BIG[:64] not in body


def test_head(server, big):
    _, get_headers, _ = server.request("GET", big)
    status, headers, body = server.request("HEAD", big)
    assert status == 200 and body == b""
    assert headers["content-length"] == str(len(BIG))
    for name in ("etag", "last-modified", "content-type", "content-disposition", "cache-control", "accept-ranges"):
        assert headers[name] == get_headers[name]


def test_conditional(server, big):
    _, headers, _ = server.request("GET", big)
    status, h304, body = server.request("GET", big, {"If-None-Match": 'W/"x", ' + headers["etag"]})
    assert status == 304 and body == b""
    assert h304["etag"] == headers["etag"] and h304["last-modified"] == headers["last-modified"]
    assert server.request("GET", big, {"If-Modified-Since": headers["last-modified"]})[0] == 304
    assert server.request("GET", big, {"If-Modified-Since": "garbage"})[0] == 400
    status, _, body = server.request("GET", big, {"Range": "bytes=0-1", "If-Range": '"old"'})
    assert status == 200 and body == BIG


def test_memory_storage_ranges(server):
    fid = server.upload("mem", b"hello memory world", "m.txt", "text/plain")
    status, headers, body = server.request("GET", "/depot/mem/" + fid, {"Range": "bytes=6-11"})
    assert (status, body) == (206, b"memory")
    status, headers, body = server.request("GET", "/depot/mem/" + fid)
    assert (status, body) == (200, b"hello memory world")
    assert headers["content-disposition"] == "inline;filename=\"m.txt\";filename*=utf-8''m.txt"


def test_html_is_served_as_attachment(server):
    fid = server.upload("mem", b"<script>alert(1)</script>", "x.html", "text/html")
    _, headers, _ = server.request("GET", "/depot/mem/" + fid)
    assert headers["content-disposition"].startswith("attachment;")
    assert headers["content-security-policy"] == "sandbox"


def test_dispatch(server, big):
    assert server.request("POST", big, body=b"")[2] == b"app:POST:" + big.encode()
    assert server.request("GET", "/depotskipped")[2] == b"app:GET:/depotskipped"


@pytest.mark.parametrize(
    "path",
    ["/depot/default/..%2F..%2Fsecret.txt", "/depot/default/%2e%2e/%2e%2e/secret.txt", "/depot/../secret.txt",
     "/depot/default/../secret.txt", "/depot/default/secret.txt", "/depot/%2e%2e/secret.txt",
     "/depot/default/%00", "/depot/default/" + "a" * 3000, "/depot/x/default/{id}", "/depot/default/{id}/metadata.json",
     "/depot/default/{id}%2Fmetadata.json"],
)
def test_odd_paths(server, big, path):
    fid = big.rsplit("/", 1)[1]
    status, _, body = server.request("GET", path.format(id=fid))
    assert status in (400, 404)  # 400 only from gunicorn's own request-line checks
    assert SECRET not in body and b"last_modified" not in body


def test_signed_links(server, big):
    fid = big.rsplit("/", 1)[1]
    url = DepotMiddleware(None, mountpoint="/signed", secret="gunicorn-secret", link_lifetime=60).url_for(
        "default/" + fid
    )
    status, headers, body = server.request("GET", url, {"Range": "bytes=0-99"})
    assert status == 206 and body == BIG[:100]
    assert headers["cache-control"].endswith("private")
    assert server.request("GET", "/signed/default/" + fid)[0] == 403
    assert server.request("GET", url.replace("expires=", "expires=1"))[0] == 403
    forged = DepotMiddleware(None, mountpoint="/signed", secret="wrong", link_lifetime=60).url_for("default/" + fid)
    assert server.request("GET", forged)[0] == 403


def test_new_content_new_etag(server):
    storage = LocalFileStorage(server.root)
    fid = storage.create(b"aaaa", "v.txt", "text/plain")
    first = server.request("GET", "/depot/default/" + fid)
    storage.replace(fid, b"bbbb")
    second = server.request("GET", "/depot/default/" + fid)
    assert second[2] == b"bbbb"
    assert first[1]["etag"] != second[1]["etag"]
    assert json.dumps(second[1]["etag"])  # a plain str header
