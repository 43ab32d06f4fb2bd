"""Each example application, started as a user would and used over HTTP."""
from __future__ import annotations

import html
import io
import re
import subprocess
import sys

import pytest

from tests._examples import ROOT, running_example

requests = pytest.importorskip("requests")
pytest.importorskip("sqlalchemy")

EXAMPLES = {
    "demo_app.py": ("webob",),
    "flask_app.py": ("flask",),
    "starlette_app.py": ("starlette", "uvicorn", "multipart"),
}


@pytest.fixture(params=sorted(EXAMPLES))
def app_url(request, tmp_path):
    """Start one example on a free port; yields its base URL."""
    for module in EXAMPLES[request.param]:
        pytest.importorskip(module)
    with running_example(request.param, tmp_path) as url:
        yield url


def links(page, storage):
    """The links to the files of ``storage`` on ``page``, as their paths with any signature query."""
    return [html.unescape(link) for link in re.findall(r"(/depot/%s/[0-9a-f-]{36}(?:\?[^'\"]*)?)" % storage, page)]


def path_of(link):
    """The link without its signature (signed links change with time)."""
    return link.partition("?")[0]


def png(width, height):
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def test_upload_list_download_replace_delete(app_url):
    home = requests.get(app_url + "/", timeout=10)
    assert home.status_code == 200 and "depot demo" in home.text

    notes = b"first line\n" * 5000
    posted = requests.post(app_url + "/documents", data={"title": "My notes"},
                           files={"file": ("notes.txt", notes, "text/plain")}, allow_redirects=False, timeout=10)
    assert (posted.status_code, posted.headers["Location"].endswith("/")) == (303, True)

    page = requests.get(app_url + "/", timeout=10).text
    assert "My notes" in page and "notes.txt" in page
    (link,) = links(page, "files")
    served = requests.get(app_url + link, timeout=10)
    assert served.status_code == 200 and served.content == notes
    assert served.headers["Content-Type"] == "text/plain"
    assert served.headers["Content-Disposition"].startswith('inline;filename="notes.txt"')
    part = requests.get(app_url + link, headers={"Range": "bytes=11-21"}, timeout=10)
    assert (part.status_code, part.content) == (206, notes[11:22])

    # A second document: an HTML upload is downloaded, sandboxed, never rendered on the site.
    requests.post(app_url + "/documents", data={"title": ""},
                  files={"file": ("page.html", b"<script>alert(1)</script>", "text/html")}, timeout=10)
    page = requests.get(app_url + "/", timeout=10).text
    html_link, notes_link = links(page, "files")  # newest first
    assert path_of(notes_link) == path_of(link)
    risky = requests.get(app_url + html_link, timeout=10)
    assert risky.headers["Content-Disposition"].startswith("attachment;")
    assert risky.headers["Content-Security-Policy"] == "sandbox"

    doc_id = re.findall(r"/documents/(\d+)/replace", page)[-1]  # the notes' row
    replaced = requests.post(app_url + "/documents/%s/replace" % doc_id,
                             files={"file": ("notes-v2.txt", b"second version", "text/plain")},
                             allow_redirects=False, timeout=10)
    assert replaced.status_code == 303
    page = requests.get(app_url + "/", timeout=10).text
    assert path_of(link) not in page and "notes-v2.txt" in page
    assert requests.get(app_url + link, timeout=10).status_code == 404  # the old file went with the commit
    (new_link,) = [x for x in links(page, "files") if path_of(x) != path_of(html_link)]
    assert requests.get(app_url + new_link, timeout=10).content == b"second version"

    deleted = requests.post(app_url + "/documents/%s/delete" % doc_id, allow_redirects=False, timeout=10)
    assert deleted.status_code == 303
    assert requests.get(app_url + new_link, timeout=10).status_code == 404
    assert "notes-v2.txt" not in requests.get(app_url + "/", timeout=10).text

    assert requests.post(app_url + "/documents/9999/replace", files={"file": ("x", b"x")},
                         allow_redirects=False, timeout=10).status_code == 404
    assert requests.post(app_url + "/documents/%s/delete" % doc_id, allow_redirects=False,
                         timeout=10).status_code == 404  # already deleted


def test_an_empty_file_is_stored(app_url):
    posted = requests.post(app_url + "/documents", data={"title": "Empty"},
                           files={"file": ("empty.txt", b"", "text/plain")}, allow_redirects=False, timeout=10)
    assert posted.status_code == 303 and "error" not in posted.headers["Location"]
    page = requests.get(app_url + "/", timeout=10).text
    assert "empty.txt" in page and "class='error'" not in page
    (link,) = links(page, "files")
    served = requests.get(app_url + link, timeout=10)
    assert (served.status_code, served.content, served.headers["Content-Length"]) == (200, b"", "0")


def test_an_error_redirects_so_a_reload_does_not_post_again(app_url):
    # No file chosen: the browser sends an empty part with an empty filename.
    refused = requests.post(app_url + "/documents", data={"title": "nothing"},
                            files={"file": ("", b"", "application/octet-stream")}, allow_redirects=False, timeout=10)
    assert refused.status_code == 303
    location = refused.headers["Location"]
    assert re.search(r"/\?error=[\w-]+$", location) and "choose" not in location  # a key, not the text
    shown = requests.get(app_url + location if location.startswith("/") else location, timeout=10)
    assert shown.status_code == 200 and "<p class='error'>choose a file to upload</p>" in shown.text
    # Reloading the page the browser is on is a GET: nothing posted, and the message was shown once.
    again = requests.get(app_url + location if location.startswith("/") else location, timeout=10)
    assert again.status_code == 200 and "class='error'" not in again.text
    assert "nothing" not in again.text  # no document was added


def test_a_port_in_use_is_a_message(tmp_path):
    import socket

    pytest.importorskip("flask")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, str(ROOT / "examples" / "flask_app.py"), "--port", str(port),
                                 "--data", str(tmp_path / "data")], capture_output=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == b""
    assert result.stderr.decode() == (
        "flask_app.py: port %d is in use on 127.0.0.1: choose another with --port, or --port 0 for a free one\n"
        % port)


def test_photos_get_thumbnails(app_url):
    pytest.importorskip("PIL")
    big = png(1500, 1000)
    posted = requests.post(app_url + "/photos", data={"caption": "Red"},
                           files={"image": ("red.png", big, "image/png")}, allow_redirects=False, timeout=10)
    assert posted.status_code == 303
    page = requests.get(app_url + "/", timeout=10).text
    full, thumb = links(page, "photos")
    assert "alt='Red'" in page
    from PIL import Image

    image = Image.open(io.BytesIO(requests.get(app_url + full, timeout=10).content))
    assert max(image.size) == 1024  # reduced to max_size
    thumbnail = requests.get(app_url + thumb, timeout=10)
    assert thumbnail.headers["Content-Type"] == "image/png"
    assert max(Image.open(io.BytesIO(thumbnail.content)).size) == 128

    not_image = requests.post(app_url + "/photos", data={"caption": "bad"},
                              files={"image": ("fake.png", b"not an image at all", "image/png")}, timeout=10)
    assert not_image.history[0].status_code == 303 and "class='error'" in not_image.text
    assert len(links(requests.get(app_url + "/", timeout=10).text, "photos")) == 2
