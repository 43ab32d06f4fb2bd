"""Direct uploads from a headless Chromium through the demo app's form, to real storages.

The demo (examples/demo_app.py, started as a user would) runs on local
storage (uploads go to DepotMiddleware), on SeaweedFS (S3) and on
fake-gcs-server (GCS) through its ``--config`` settings file.  The browser
fills the "direct upload" form; the page asks the app for an intent, sends
the bytes straight to the storage with depot-upload.js and has the app
attach the upload to a new row, whose link then serves the same bytes.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, List
from urllib.parse import urljoin

import pytest

from tests._examples import running_example
from tests.servers import unique_name

requests = pytest.importorskip("requests")
pytest.importorskip("sqlalchemy")
pytest.importorskip("webob")

MB = 1024 * 1024


@dataclass
class Demo:
    url: str
    backend: str
    storage_url: str  # where the browser must send the bytes (the app itself for local storage)


def _settings(backend: str, request: Any) -> tuple[str, dict, str]:
    """(TOML settings of the "files" storage, environment additions, storage endpoint)."""
    if backend == "s3":
        server = request.getfixturevalue("seaweedfs_server")
        toml = (
            '[depot.storages.files]\nbackend = "s3"\nendpoint_url = "%s"\naccess_key_id = "%s"\n'
            'secret_access_key = "%s"\nregion_name = "%s"\nbucket = "%s"\n'
            # SeaweedFS serves no anonymous reads: private objects, served through signed URLs.
            'policy = "private"\n'
            % (server.endpoint_url, server.access_key, server.secret_key, server.region, unique_name("depot-web"))
        )
        return toml, {}, server.endpoint_url
    server = request.getfixturevalue("gcs_server")
    toml = '[depot.storages.files]\nbackend = "gcs"\nbucket = "%s"\nproject_id = "test"\n' % unique_name("depot-web")
    return toml, {"STORAGE_EMULATOR_HOST": server.endpoint}, server.endpoint


@pytest.fixture(scope="module")
def demo(request, tmp_path_factory) -> Iterator[Demo]:
    """The demo app on the storage named by the (indirect) parameter: local, s3 or gcs.

    One per module and storage (starting it is the slow part); the tests tell
    their rows apart by title.
    """
    backend = request.param
    tmp_path = tmp_path_factory.mktemp("demo-%s" % backend)
    env = {k: v for k, v in os.environ.items() if k != "STORAGE_EMULATOR_HOST"}
    args: List[str] = []
    storage_url = None
    if backend != "local":
        toml, extra, storage_url = _settings(backend, request)
        config = tmp_path / "depot.toml"
        config.write_text(toml)
        env.update(extra)
        args = ["--config", str(config)]
    with running_example("demo_app.py", tmp_path, *args, env=env) as url:
        yield Demo(url, backend, storage_url or url)


def random_file(path: Path, size: int, chunk: int = 4 * MB) -> str:
    """Write ``size`` random bytes to ``path`` a chunk at a time; their sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        left = size
        while left:
            block = os.urandom(min(chunk, left))
            digest.update(block)
            out.write(block)
            left -= len(block)
    return digest.hexdigest()


def served_sha256(url: str) -> tuple[int, str]:
    """Download ``url`` (following the middleware's redirects) in chunks: (size, sha256)."""
    digest = hashlib.sha256()
    size = 0
    with requests.get(url, stream=True, timeout=60) as response:
        assert response.status_code == 200, (response.status_code, response.text[:500])
        for block in response.iter_content(MB):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def document_links(page: Any) -> List[tuple[str, str]]:
    """(title, file link) of each document row on the page the browser shows, newest first."""
    return [tuple(row) for row in page.eval_on_selector_all(
        "table tr", "rows => rows.slice(1).map(r => [r.cells[0].textContent, r.cells[1].querySelector('a')"
                    ".getAttribute('href')])")]


# Logged by the page itself, in sessionStorage (which outlives the navigation
# back to the list): every XMLHttpRequest and fetch as [method, url, status]
# once it ends (status 0: failed on the network), and each progress event.
# Playwright's own request events can miss requests while a route is removed.
_PAGE_LOG = """(() => {
  const append = (key, entry) => {
    const log = JSON.parse(sessionStorage.getItem(key) || "[]");
    log.push(entry);
    sessionStorage.setItem(key, JSON.stringify(log));
  };
  const open = XMLHttpRequest.prototype.open;
  XMLHttpRequest.prototype.open = function (method, url, ...rest) {
    const absolute = new URL(url, location.href).href;
    this.addEventListener("loadend", () => append("depotTestRequests", [method, absolute, this.status]));
    return open.call(this, method, url, ...rest);
  };
  const realFetch = window.fetch;
  window.fetch = async (url, init = {}) => {
    const absolute = new URL(url, location.href).href;
    try {
      const response = await realFetch(url, init);
      append("depotTestRequests", [init.method || "GET", absolute, response.status]);
      return response;
    } catch (error) {
      append("depotTestRequests", [init.method || "GET", absolute, 0]);
      throw error;
    }
  };
  document.addEventListener("depot-upload-progress", (e) => append("depotTestProgress", e.detail));
})();"""


class Recorder:
    """What the page sent where (with the answer's status), and the progress events the form dispatched."""

    def __init__(self, page: Any) -> None:
        self.page = page
        page.add_init_script(_PAGE_LOG)

    def _log(self, key: str) -> List[Any]:
        return self.page.evaluate("(key) => JSON.parse(sessionStorage.getItem(key) || '[]')", key)

    @property
    def requests(self) -> List[tuple[str, str, int]]:
        return [tuple(entry) for entry in self._log("depotTestRequests")]

    @property
    def progress(self) -> List[dict]:
        return self._log("depotTestProgress")


def upload_through_form(page: Any, demo: Demo, path: Path, title: str, timeout: float = 120_000) -> None:
    """Choose ``path`` in the direct-upload form, submit, and wait for the list page the app sends back."""
    page.goto(demo.url + "/")
    form = page.locator("#direct-upload")
    form.locator("input[name=title]").fill(title)
    form.locator("input[type=file]").set_input_files(str(path))
    form.locator("button").click()  # the form's handler disables the button before its first await
    # Done when the page the app sends back shows a fresh form, or the form shows an error.
    page.wait_for_function(
        """() => {
          const form = document.getElementById("direct-upload");
          const status = form && form.querySelector(".status");
          return status && (status.classList.contains("error")
                            || (!form.querySelector("button").disabled && status.textContent === ""));
        }""", timeout=timeout, polling=250)
    error = form.locator(".status.error")
    if error.count():
        pytest.fail("the direct upload failed: %s" % error.inner_text())


def check_served(demo: Demo, page: Any, title: str, size: int, sha256: str) -> None:
    rows = document_links(page)
    links = [link for row_title, link in rows if row_title == title]
    assert len(links) == 1, rows
    # A local file is served by the middleware (a path); S3 and GCS ones by the storage (a signed URL).
    assert served_sha256(urljoin(demo.url + "/", links[0])) == (size, sha256)


@pytest.mark.parametrize("demo", ["local", "s3", "gcs"], indirect=True, scope="module")
def test_direct_upload_through_the_demo_form(demo, browser_page, tmp_path):
    path = tmp_path / "field-notes.bin"
    sha256 = random_file(path, 3 * MB + 17)
    seen = Recorder(browser_page)

    upload_through_form(browser_page, demo, path, "Field notes")

    check_served(demo, browser_page, "Field notes", 3 * MB + 17, sha256)
    # The bytes went to the storage, not through the application's own routes.
    sent = [(method, url) for method, url, status in seen.requests if method in ("POST", "PUT")]
    app_posts = [url for method, url in sent if url.startswith(demo.url + "/uploads/")]
    assert app_posts == [demo.url + "/uploads/intent", demo.url + "/uploads/attach"]
    to_storage = [(method, url) for method, url in sent if url not in app_posts]
    assert to_storage and all(url.startswith(demo.storage_url) for method, url in to_storage), sent
    if demo.backend == "local":
        assert [url.split("?")[0] for method, url in to_storage] and all(
            "/depot/files/" in url for method, url in to_storage)
    loaded = [event["loaded"] for event in seen.progress]
    assert loaded[-1] == 3 * MB + 17 and loaded == sorted(set(loaded))


@pytest.mark.parametrize("demo", ["s3"], indirect=True, scope="module")
def test_a_200_mb_upload_in_parts_survives_a_failed_part(demo, browser_page, tmp_path):
    size = 200 * MB
    path = tmp_path / "video.bin"
    sha256 = random_file(path, size)
    seen = Recorder(browser_page)
    aborted: List[str] = []

    def fail_part_2(route: Any) -> None:
        aborted.append(route.request.url)
        route.abort("connectionreset")

    # Once: the route then goes away, and with it the interception that slows every request down.
    browser_page.route(re.compile(r"[?&]partNumber=2(&|$)"), fail_part_2, times=1)

    upload_through_form(browser_page, demo, path, "Big video", timeout=600_000)

    check_served(demo, browser_page, "Big video", size, sha256)
    parts = [url for method, url, status in seen.requests if method == "PUT" and "partNumber=" in url]
    numbers = sorted(int(re.search(r"[?&]partNumber=(\d+)", url).group(1)) for url in parts)
    count = max(numbers)
    assert count > 2 and numbers == sorted(list(range(1, count + 1)) + [2])  # part 2 twice, the others once
    assert len(aborted) == 1 and (aborted[0], 0) in [(url, status) for m, url, status in seen.requests]
    check_progress(seen.progress, size, count)


@pytest.mark.parametrize("demo", ["gcs"], indirect=True, scope="module")
def test_a_large_upload_to_a_gcs_resumable_session_survives_a_failed_chunk(demo, browser_page, tmp_path):
    size = 70 * MB  # over the size from which intents are uploaded in parts
    path = tmp_path / "survey.bin"
    sha256 = random_file(path, size)
    seen = Recorder(browser_page)
    aborted: List[str] = []

    def fail_first_chunk(route: Any) -> None:
        aborted.append(route.request.headers.get("content-range", ""))
        route.abort("connectionreset")

    browser_page.route(re.compile(r"[?&]upload_id="), fail_first_chunk, times=1)

    upload_through_form(browser_page, demo, path, "Survey", timeout=600_000)

    check_served(demo, browser_page, "Survey", size, sha256)
    chunks = [status for method, url, status in seen.requests if method == "PUT" and "upload_id=" in url]
    assert len(aborted) == 1 and aborted[0].startswith("bytes 0-")
    assert len(chunks) > 2 and chunks[0] == 0 and chunks[-1] in (200, 201)  # the first chunk failed, then sent again
    check_progress(seen.progress, size, 1)


def check_progress(events: List[dict], size: int, parts: int) -> None:
    loaded = [event["loaded"] for event in events]
    assert loaded == sorted(set(loaded)) and loaded[0] == 0 and loaded[-1] == size and len(loaded) >= 3
    assert {event["parts"] for event in events} == {parts}
    if parts > 1 and size % parts == 0:
        # Progress moves within parts (XMLHttpRequest upload events), not only when a part ends.
        assert any(value % (size // parts) for value in loaded), loaded


@pytest.mark.parametrize("demo", ["local"], indirect=True, scope="module")
def test_a_failed_upload_is_shown_on_the_page_naming_the_file(demo, browser_page, tmp_path):
    path = tmp_path / "holiday.mov"
    random_file(path, 1000)
    # Every attempt to reach the storage fails: the page says so, and nothing is attached.
    browser_page.route(re.compile(r"/depot/files/"), lambda route: route.abort("connectionreset"))
    browser_page.goto(demo.url + "/")
    form = browser_page.locator("#direct-upload")
    form.locator("input[type=file]").set_input_files(str(path))
    form.locator("button").click()
    status = form.locator(".status.error")
    status.wait_for(timeout=60_000)
    assert status.inner_text().startswith('upload of "holiday.mov" to storage "files" failed: network error '
                                          "after 4 attempts")
    browser_page.goto(demo.url + "/")
    assert not [title for title, link in document_links(browser_page) if title == "holiday.mov"]


@pytest.mark.parametrize("demo", ["local"], indirect=True, scope="module")
def test_the_demo_endpoints_refuse_what_they_cannot_take(demo):
    def post(path, **kwargs):
        answer = requests.post(demo.url + path, timeout=10, **kwargs)
        return answer.status_code, answer.json()

    assert post("/uploads/intent", data=b'{"filename": "a.bin", "size": 1}') == (
        400, {"error": "send JSON (Content-Type: application/json)"})  # a cross-site form cannot send JSON
    assert post("/uploads/intent", json={"filename": "a.bin", "size": -1}) == (
        400, {"error": "the size of a.bin must be a number of bytes, got -1"})
    status, answer = post("/uploads/intent", json={"filename": "a.bin", "size": 6 * 1024 ** 3})
    assert status == 400 and answer["error"].startswith("a.bin is 6442450944 bytes: direct uploads take at most")

    never = "0b1b2a76-6c5e-4a0e-9b8e-3f2d1c0b9a87"
    status, answer = post("/uploads/attach", json={"id": never})
    assert status == 400 and "Upload %s to storage files refused (not-an-intent)" % never in answer["error"]

    # An upload attached once cannot be attached again (to a second row).
    status, intent = post("/uploads/intent", json={"filename": "once.txt", "size": 5, "type": "text/plain"})
    assert status == 200 and intent["method"] == "PUT"
    put = requests.put(urljoin(demo.url + "/", intent["url"]), data=b"hello", timeout=10,
                       headers={"Content-Type": "text/plain"})
    assert put.status_code == 201, put.text
    assert post("/uploads/attach", json={"id": intent["id"], "title": "Once"}) == (201, {"id": ANY_ID, "location": "/"})
    status, answer = post("/uploads/attach", json={"id": intent["id"], "title": "Twice"})
    assert status == 400 and "refused (not-an-intent)" in answer["error"]


class _AnyId:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, int) and other > 0


ANY_ID = _AnyId()
