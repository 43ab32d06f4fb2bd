"""examples/fastapi_app.py under a real uvicorn process, used over HTTP with httpx."""
from __future__ import annotations

import importlib.util
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
for _module in ("fastapi", "uvicorn", "multipart", "aiosqlite", "greenlet", "anyio", "PIL"):
    pytest.importorskip(_module)

ROOT = Path(__file__).resolve().parent.parent
#: With depot's ASGI DepotMiddleware the example is wrapped in it: ranges and ETags then work too.
HAS_ASGI_MIDDLEWARE = importlib.util.find_spec("depot.asgi") is not None
EXAMPLE = ROOT / "examples" / "fastapi_app.py"


@pytest.fixture
def server(tmp_path):
    """The example on a free port: yields ``(base URL, data folder)``."""
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--port", "0", "--data", str(data)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    )
    try:
        line = proc.stdout.readline().decode()
        match = re.match(r"depot demo running at (http://127\.0\.0\.1:\d+)/  \(data in (.*); Ctrl-C to stop\)", line)
        assert match, (line, proc.stderr.read().decode() if proc.poll() is not None else "")
        yield match.group(1), data
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def png(width, height):
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def stored_ids(data, storage):
    folder = data / storage
    return {name for name in os.listdir(folder) if not name.startswith(".")} if folder.exists() else set()


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_upload_list_download_replace_delete(server):
    url, data = server
    notes = b"first line\n" * 50000
    with httpx.Client(base_url=url, timeout=30) as client:
        posted = client.post("/documents", data={"title": "My notes"}, files={"file": ("notes.txt", notes, "text/plain")})
        assert posted.status_code == 201, posted.text
        doc = posted.json()
        assert (doc["title"], doc["filename"], doc["content_type"]) == ("My notes", "notes.txt", "text/plain")
        assert client.get("/documents").json() == [doc]

        served = client.get(doc["url"])
        assert served.status_code == 200 and served.content == notes
        assert served.headers["content-type"].startswith("text/plain")
        assert served.headers["content-disposition"].startswith('inline;filename="notes.txt"')
        assert client.head(doc["url"]).headers["content-length"] == str(len(notes))
        ranged = client.get(doc["url"], headers={"Range": "bytes=10-19"})
        if HAS_ASGI_MIDDLEWARE:
            assert (ranged.status_code, ranged.content) == (206, notes[10:20])
        else:  # the fallback route of the example streams whole files
            assert (ranged.status_code, ranged.content) == (200, notes)

        # A raw body, streamed as it arrives; an HTML file is downloaded, never rendered.
        big = os.urandom(3 * 1024 * 1024 + 5)
        raw = client.put("/documents/raw/page.html", content=big, headers={"content-type": "text/html"}).json()
        risky = client.get(raw["url"])
        assert risky.content == big and risky.headers["content-disposition"].startswith("attachment")
        assert risky.headers["x-content-type-options"] == "nosniff"

        old_id = doc["url"].rsplit("/", 1)[1]
        replaced = client.post("/documents/%d/replace" % doc["id"], files={"file": ("v2.txt", b"version 2")}).json()
        assert client.get(replaced["url"]).content == b"version 2"
        wait_until(lambda: old_id not in stored_ids(data, "files"))  # deleted after the commit, off the loop
        assert client.get(doc["url"]).status_code == 404

        assert client.delete("/documents/%d" % doc["id"]).status_code == 204
        wait_until(lambda: stored_ids(data, "files") == {raw["url"].rsplit("/", 1)[1]})
        assert [d["id"] for d in client.get("/documents").json()] == [raw["id"]]

        assert client.get("/depot/files/not-an-id").status_code == 404
        assert client.get("/depot/nowhere/%s" % old_id).status_code == 404


def test_photos_get_thumbnails(server):
    url, data = server
    with httpx.Client(base_url=url, timeout=30) as client:
        photo = client.post("/photos", data={"caption": "red"}, files={"image": ("red.png", png(400, 300), "image/png")})
        assert photo.status_code == 201, photo.text
        photo = photo.json()
        assert client.get("/photos").json() == [photo]
        from PIL import Image

        thumb = client.get(photo["thumbnail_url"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(thumb.content)).size == (128, 96)
        assert Image.open(io.BytesIO(client.get(photo["url"]).content)).size == (400, 300)

        refused = client.post("/photos", files={"image": ("fake.png", b"not an image", "image/png")})
        assert refused.status_code == 400
        assert len(stored_ids(data, "photos")) == 2  # the photo and its thumbnail, nothing of the refused one
