"""depot-upload.js in a headless Chromium, against a small recording HTTP server.

The server here only records what the browser sends (the real storages and
the demo app are exercised by tests/test_browser_uploads.py); it lets these
tests look at the protocol itself: the order of the form fields, the
headers, the parts, the retries, the errors and the progress events.
"""
from __future__ import annotations

import email.parser
import email.policy
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List

import pytest

from depot.uploads.static import javascript_path, javascript_source

PAGE = b"<!doctype html><html><head><meta charset='utf-8'><title>js</title></head><body></body></html>"


class Recorder:
    def __init__(self) -> None:
        self.requests: List[Dict[str, Any]] = []
        self.bodies: Dict[str, bytes] = {}
        self.fail: Dict[str, List[int]] = {}  # path -> statuses to answer first, one per request
        self.lock = threading.Lock()


def _handler(recorder: Recorder):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _answer(self, status: int, body: bytes = b"", content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/depot-upload.js":
                self._answer(200, javascript_source().encode(), "text/javascript")
            else:
                self._answer(200, PAGE, "text/html")

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _record(self, body: bytes, **extra: Any) -> int:
            with recorder.lock:
                recorder.requests.append({"method": self.command, "path": self.path,
                                          "headers": self.headers, "size": len(body), **extra})
                pending = recorder.fail.get(self.path)
                return pending.pop(0) if pending else 0

        def do_PUT(self) -> None:
            body = self._body()
            status = self._record(body)
            if self.path.startswith("/session"):
                return self._resumable(status, body)
            if status:
                return self._answer(status, b"<Error><Code>SlowDown</Code><Message>try again</Message></Error>",
                                    "application/xml")
            recorder.bodies[self.path] = body
            self._answer(200, b"{}", "application/json")

        def _resumable(self, status: int, body: bytes) -> None:
            # A GCS resumable session: chunks at the offset they say, 308 until the last byte.
            kept = recorder.bodies.setdefault(self.path, b"")
            if status:
                return self._answer(status, b"busy")
            unit, _, spec = self.headers["Content-Range"].partition(" ")
            span, _, total = spec.partition("/")
            if span != "*":
                start, _, end = span.partition("-")
                assert int(start) <= len(kept), (start, len(kept))
                kept = recorder.bodies[self.path] = kept[:int(start)] + body
            if total != "*" and len(kept) == int(total):
                return self._answer(200, b"{}", "application/json")
            self.send_response(308)
            if kept:
                self.send_header("Range", "bytes=0-%d" % (len(kept) - 1))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            body = self._body()
            head = b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n"
            form = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
            parts = {part.get_param("name", header="content-disposition"): part for part in form.iter_parts()}
            status = self._record(body, fields=list(parts))
            if status:
                return self._answer(status, b"refused")
            recorder.bodies[self.path] = parts["file"].get_payload(decode=True)
            self._answer(204)

    return Handler


@pytest.fixture
def stub(tmp_path) -> Iterator[tuple]:
    recorder = Recorder()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1], recorder
    finally:
        server.shutdown()
        server.server_close()


UPLOAD = """async ({intent, name, size, type, options}) => {
  const { upload, UploadError } = await import("/depot-upload.js");
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 7 + (i >> 8)) & 255;
  const file = new File([bytes], name, { type });
  const events = [];
  try {
    const result = await upload(file, intent, { ...options, onProgress: (e) => events.push(e) });
    return { result, events };
  } catch (error) {
    return { error: String(error), name: error.name, status: error.status, events };
  }
}"""


def content(size: int) -> bytes:
    return bytes((i * 7 + (i >> 8)) & 255 for i in range(size))


def intent(url: str, method: str, **extra: Any) -> Dict[str, Any]:
    base = {"id": "abc123", "storage": "files", "method": method, "url": url, "fields": {}, "headers": {},
            "parts": None, "max_size": 10 ** 9, "content_types": [], "expires_at": 4102444800}
    base.update(extra)
    return base


def run(page: Any, base: str, the_intent: Dict[str, Any], size: int, name: str = "report.bin",
        type: str = "application/octet-stream", **options: Any) -> Dict[str, Any]:
    page.goto(base + "/")
    return page.evaluate(UPLOAD, {"intent": the_intent, "name": name, "size": size, "type": type,
                                  "options": options})


def test_the_module_is_shipped_with_the_package():
    path = javascript_path()
    assert path.name == "depot-upload.js" and path.is_file()
    assert "export async function upload(file, intent" in javascript_source()


def test_put_sends_the_raw_bytes_with_the_intent_headers(browser_page, stub):
    base, recorder = stub
    out = run(browser_page, base, intent(base + "/put/1?sig=x", "PUT", headers={"Content-Type": "text/plain",
                                                                                 "x-amz-meta-a": "b"}), 70000)
    assert out["result"] == {"id": "abc123", "storage": "files", "size": 70000}
    assert recorder.bodies["/put/1?sig=x"] == content(70000)
    (request,) = recorder.requests
    assert request["headers"]["Content-Type"] == "text/plain" and request["headers"]["x-amz-meta-a"] == "b"
    loaded = [e["loaded"] for e in out["events"]]
    assert loaded[0] == 0 and loaded[-1] == 70000 and loaded == sorted(set(loaded))


def test_post_sends_the_fields_then_the_file_last(browser_page, stub):
    base, recorder = stub
    fields = {"key": "abc123", "policy": "e30=", "x-amz-signature": "00"}
    out = run(browser_page, base, intent(base + "/post", "POST", fields=fields), 5000, name="photo.bin")
    assert out["result"]["id"] == "abc123"
    (request,) = recorder.requests
    assert request["fields"] == ["key", "policy", "x-amz-signature", "Content-Type", "file"]
    assert recorder.bodies["/post"] == content(5000)


def test_multipart_sends_each_part_to_its_url_and_retries_a_failed_one(browser_page, stub):
    base, recorder = stub
    part_size, size = 100_000, 250_001
    urls = [base + "/part/%d" % n for n in (1, 2, 3)]
    recorder.fail["/part/2"] = [503]
    out = run(browser_page, base, intent(None, "MULTIPART", parts={"part_size": part_size, "urls": urls}), size)
    assert out["result"]["size"] == size, out
    whole = content(size)
    assert [recorder.bodies["/part/%d" % n] for n in (1, 2, 3)] == [
        whole[:part_size], whole[part_size:2 * part_size], whole[2 * part_size:]]
    assert sorted(r["path"] for r in recorder.requests) == ["/part/1", "/part/2", "/part/2", "/part/3"]
    loaded = [e["loaded"] for e in out["events"]]
    assert loaded == sorted(set(loaded)) and loaded[-1] == size
    assert {e["parts"] for e in out["events"]} == {3}


@pytest.mark.parametrize("query_status", [True, False])
def test_resumable_sends_chunks_and_goes_on_after_a_failure(browser_page, stub, query_status):
    base, recorder = stub
    chunk, size = 262144, 262144 * 3 + 1000
    recorder.fail["/session"] = [0, 503]  # the second chunk fails once
    parts = {"part_size": chunk, "protocol": "gcs-resumable", "query_status": query_status}
    out = run(browser_page, base, intent(base + "/session", "RESUMABLE", parts=parts), size)
    assert out.get("result", out)["size"] == size
    assert recorder.bodies["/session"] == content(size)
    ranges = [r["headers"]["Content-Range"] for r in recorder.requests]
    again = ["bytes */%d" % size] if query_status else []
    assert ranges == ["bytes 0-262143/%d" % size, "bytes 262144-524287/%d" % size, *again,
                      "bytes 262144-524287/%d" % size, "bytes 524288-786431/%d" % size,
                      "bytes 786432-%d/%d" % (size - 1, size)]
    assert all("Content-Type" not in r["headers"] for r in recorder.requests)
    loaded = [e["loaded"] for e in out["events"]]
    assert loaded == sorted(set(loaded)) and loaded[-1] == size


def test_put_and_post_send_the_file_type_when_the_intent_fixes_none(browser_page, stub):
    base, recorder = stub
    run(browser_page, base, intent(base + "/put/typed", "PUT"), 10, type="image/png")
    run(browser_page, base, intent(base + "/put/untyped", "PUT"), 10, type="")
    run(browser_page, base, intent(base + "/put/fixed", "PUT", headers={"content-type": "text/csv"}), 10,
        type="image/png")
    types = {r["path"]: r["headers"].get("Content-Type") for r in recorder.requests}
    assert types == {"/put/typed": "image/png", "/put/untyped": "application/octet-stream",
                     "/put/fixed": "text/csv"}


def test_multipart_parts_carry_no_content_type(browser_page, stub):
    base, recorder = stub
    urls = [base + "/part/1", base + "/part/2", base + "/part/3"]
    out = run(browser_page, base, intent(None, "MULTIPART", parts={"part_size": 10, "urls": urls}), 15,
              type="image/png")
    assert out["result"]["size"] == 15
    # Only as many parts as the file needs; the intent signs up to max_size.
    assert sorted(r["path"] for r in recorder.requests) == ["/part/1", "/part/2"]
    assert all("Content-Type" not in r["headers"] for r in recorder.requests)


def test_an_empty_file_goes_as_one_empty_part(browser_page, stub):
    base, recorder = stub
    out = run(browser_page, base, intent(None, "MULTIPART", parts={"part_size": 10, "urls": [base + "/part/1"]}), 0)
    assert out["result"]["size"] == 0 and recorder.bodies["/part/1"] == b""


def test_a_final_refusal_is_not_retried_and_names_the_file(browser_page, stub):
    base, recorder = stub
    recorder.fail["/put/x"] = [403]
    out = run(browser_page, base, intent(base + "/put/x", "PUT"), 10, name="holiday.mov")
    assert out["name"] == "UploadError" and out["status"] == 403
    assert 'upload of "holiday.mov" to storage "files" failed: HTTP 403 SlowDown: try again' in out["error"]
    assert len(recorder.requests) == 1


def test_retries_are_spent_then_the_error_says_how_many(browser_page, stub):
    base, recorder = stub
    urls = [base + "/part/1", base + "/part/2"]
    recorder.fail["/part/2"] = [500, 500, 500]
    out = run(browser_page, base, intent(None, "MULTIPART", parts={"part_size": 10, "urls": urls}), 15,
              name="big.iso", retries=2)
    assert out["status"] == 500
    assert '"big.iso"' in out["error"] and "part 2 of 2" in out["error"] and "after 3 attempts" in out["error"]


@pytest.mark.parametrize("size,type,what", [
    (2000, "application/octet-stream", "at most 1000"),
    (10, "text/html", 'type "text/html" is not one of image/*, application/pdf'),
])
def test_refused_at_the_door_before_a_byte_is_sent(browser_page, stub, size, type, what):
    base, recorder = stub
    out = run(browser_page, base, intent(base + "/put/1", "PUT", max_size=1000,
                                         content_types=["image/*", "application/pdf"]), size, type=type,
              name="x.dat")
    assert out["name"] == "UploadError" and what in out["error"] and '"x.dat"' in out["error"]
    assert recorder.requests == []


def test_an_image_type_matches_a_wildcard(browser_page, stub):
    base, recorder = stub
    out = run(browser_page, base, intent(base + "/put/1", "PUT", content_types=["image/*"]), 10, type="image/png")
    assert out["result"]["size"] == 10


def test_abort_stops_the_upload(browser_page, stub):
    base, recorder = stub
    browser_page.goto(base + "/")
    out = browser_page.evaluate("""async (intent) => {
      const { upload } = await import("/depot-upload.js");
      const controller = new AbortController();
      controller.abort(new Error("user cancelled"));
      try { await upload(new Blob(["x"]), intent, { signal: controller.signal }); return "uploaded"; }
      catch (error) { return String(error); }
    }""", intent(base + "/put/1", "PUT"))
    assert out == "Error: user cancelled" and recorder.requests == []


def test_the_module_checks_its_arguments(browser_page, stub):
    base, recorder = stub
    browser_page.goto(base + "/")
    out = browser_page.evaluate("""async () => {
      const { upload } = await import("/depot-upload.js");
      const tries = [["not a blob", {id: "a", method: "PUT", url: "/"}],
                     [new Blob(["x"]), {method: "PUT", url: "/"}],
                     [new Blob(["x"]), {id: "a", method: "GET", url: "/"}]];
      const out = [];
      for (const [file, intent] of tries) {
        try { await upload(file, intent); out.push("accepted"); } catch (e) { out.push(e.name + ": " + e.message); }
      }
      return out;
    }""")
    assert out == [
        "TypeError: upload(file, intent): file must be a File or Blob",
        'TypeError: upload of "(unnamed blob)" to storage "?": intent must be the JSON of an upload intent (no "id")',
        'TypeError: upload of "(unnamed blob)" to storage "?": unknown upload method "GET"',
    ]


def test_the_module_lands_in_the_built_package(tmp_path):
    # setuptools' build_py copies exactly what a wheel gets (modules and package data).
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)],
                   check=True, cwd=root, timeout=300, capture_output=True)
    assert (tmp_path / "depot" / "static" / "depot-upload.js").read_bytes() == javascript_path().read_bytes()
