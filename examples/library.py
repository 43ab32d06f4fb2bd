"""The part the example applications share: storage, database, models and pages.

A small document library: documents (any file) and photos (images, stored
with a thumbnail), kept as attachments on SQLAlchemy models in SQLite, their
bytes on local disk, served by DepotMiddleware.  Each example application
(``demo_app.py`` with WebOb, ``flask_app.py``, ``starlette_app.py``) only
adds its framework's request handling on top of these functions;
``fastapi_app.py``, fully async, uses the models, the storages and the
command line.
"""
from __future__ import annotations

import argparse
import html
import os
import secrets
import signal
import sys
import tempfile
import threading
from collections import OrderedDict
from typing import Any, Callable, List, Optional, Tuple

from sqlalchemy import Column, DateTime, Integer, Unicode, create_engine, func, select
from sqlalchemy.orm import Session, declarative_base, sessionmaker

from depot.fields.sqlalchemy import UploadedFileField
from depot.fields.upload import UploadedFile
from depot.manager import DepotManager
from depot.uploads import UploadRefused as DirectUploadRefused
from depot.uploads import create_upload_intent

try:  # thumbnails need Pillow: pip install 'depot[image]'
    from depot.fields.specialized.image import UploadedImageWithThumb
except ImportError:  # pragma: no cover - depends on the installed extras
    UploadedImageWithThumb = None  # type: ignore[assignment,misc]


Base = declarative_base()  # works on SQLAlchemy 1.4 and 2.x


class Document(Base):
    __tablename__ = "documents"
    id = Column(Integer, primary_key=True)
    title = Column(Unicode(200), nullable=False)
    added = Column(DateTime, server_default=func.now())
    # Any file; its bytes go to the "files" storage, the row keeps its JSON.
    content = Column(UploadedFileField(upload_storage="files"))


class Photo(Base):
    __tablename__ = "photos"
    id = Column(Integer, primary_key=True)
    caption = Column(Unicode(200), nullable=False)
    image = Column(UploadedFileField(upload_storage="photos", upload_type=UploadedImageWithThumb)
                   if UploadedImageWithThumb is not None else Unicode(10))


class UploadRefused(ValueError):
    """What the user sent cannot be stored; the message says why."""


# A depot settings file (``--config``) whose storages replace the local folders.
_settings_file: Optional[str] = None


def use_settings(path: Optional[str]) -> None:
    """Take the "files" and "photos" storages from the depot settings file ``path``
    (TOML or INI, the format of the ``depot`` command's ``--config``) instead of local folders."""
    global _settings_file
    _settings_file = path


def configure_storages(data_dir: str) -> None:
    """The "files" and "photos" storages: on local disk below ``data_dir``, unless the settings file says otherwise."""
    storages = {name: {"depot.backend": "local", "depot.storage_path": os.path.join(data_dir, name)}
                for name in ("files", "photos")}
    if _settings_file:
        from depot.cli.config import load_settings

        for name, config in load_settings(_settings_file).storages.items():
            if name in storages:
                storages[name] = config
    for name, config in storages.items():
        DepotManager.configure(name, config)


def setup(data_dir: str) -> sessionmaker:
    """Configure the storages and the database below ``data_dir``; returns the session factory."""
    configure_storages(data_dir)
    engine = create_engine(
        "sqlite:///" + os.path.join(data_dir, "library.sqlite"),
        connect_args={"check_same_thread": False},  # the servers answer from several threads
    )
    Base.metadata.create_all(engine)
    return sessionmaker(engine, expire_on_commit=False)


def _has_file(upload: Any) -> bool:
    # Browsers send an empty part with an empty filename when no file was chosen;
    # a chosen file has a filename even when it is empty (and is stored as such).
    return upload is not None and bool(getattr(upload, "filename", None))


# Errors shown once on the page a failed form redirects to: the page after a
# POST is always reached by a 303, so reloading it never posts again.  Kept
# server-side (the URL carries a random key, not the text, so a link cannot
# put words on the page), and only the last few.
_errors: "OrderedDict[str, str]" = OrderedDict()
_errors_lock = threading.Lock()


def error_location(message: str) -> str:
    """The URL to redirect to (303) so that the list page shows ``message`` once."""
    key = secrets.token_urlsafe(8)
    with _errors_lock:
        _errors[key] = message
        while len(_errors) > 100:
            _errors.popitem(last=False)
    return "/?error=" + key


def pop_error(key: Optional[str]) -> Optional[str]:
    """The message :func:`error_location` gave ``key`` (once), or ``None``."""
    with _errors_lock:
        return _errors.pop(key, None) if key else None


def add_document(session: Session, title: str, upload: Any) -> Document:
    """Store ``upload`` (any framework's upload object) as a new document."""
    if not _has_file(upload):
        raise UploadRefused("choose a file to upload")
    doc = Document(title=title.strip() or upload.filename, content=upload)
    session.add(doc)
    session.commit()  # a failing commit would roll back and remove the stored file
    return doc


#: The largest file the direct-upload form accepts.
DIRECT_MAX_SIZE = 5 * 1024 ** 3


def direct_upload_intent(filename: Any, size: Any, content_type: Any = None) -> dict:
    """The upload intent (JSON-able) for a file the browser is about to send straight to the "files" storage.

    ``size`` is what the browser says: the intent allows exactly that many
    bytes (``size=``: the storage or the middleware refuses more, and the
    attach step refuses fewer).
    """
    if not isinstance(filename, str) or not filename:
        raise UploadRefused("choose a file to upload")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise UploadRefused("the size of %s must be a number of bytes, got %r" % (filename, size))
    if size > DIRECT_MAX_SIZE:
        raise UploadRefused("%s is %d bytes: direct uploads take at most %d" % (filename, size, DIRECT_MAX_SIZE))
    try:
        intent = create_upload_intent("files", max_size=max(size, 1), size=size, filename=filename)
    except ValueError as exc:
        raise UploadRefused("%s: %s" % (filename, exc)) from None
    return intent.as_dict()


def attach_direct_upload(session: Session, title: str, file_id: Any) -> Document:
    """A new document holding the file the browser uploaded under ``file_id``; the bytes are not copied."""
    if not isinstance(file_id, str) or not file_id:
        raise UploadRefused("no upload to attach")
    try:
        doc = Document(title="", content=UploadedFile.from_upload(file_id, "files"))
        doc.title = title.strip() or doc.content.filename
        session.add(doc)
        session.commit()  # a failing commit would roll back and remove the uploaded file
    except DirectUploadRefused as exc:  # incomplete, too large, wrong type, never permitted, attached already
        session.rollback()
        raise UploadRefused(str(exc)) from None
    return doc


def replace_document(session: Session, doc_id: int, upload: Any) -> None:
    """Give a document new content; the old file is deleted once the change is committed."""
    if not _has_file(upload):
        raise UploadRefused("choose a file to upload")
    doc = session.get(Document, doc_id)
    if doc is None:
        raise LookupError(doc_id)
    doc.content = upload
    session.commit()


def delete_document(session: Session, doc_id: int) -> None:
    doc = session.get(Document, doc_id)
    if doc is None:
        raise LookupError(doc_id)
    session.delete(doc)  # its file goes when the deletion is committed
    session.commit()


def add_photo(session: Session, caption: str, upload: Any) -> Photo:
    if UploadedImageWithThumb is None:
        raise UploadRefused("photos need Pillow: pip install 'depot[image]'")
    if not _has_file(upload):
        raise UploadRefused("choose an image to upload")
    try:
        photo = Photo(caption=caption.strip() or upload.filename, image=upload)
    except ValueError as exc:  # not an image, or an image too large to open safely
        raise UploadRefused(str(exc)) from None
    session.add(photo)
    session.commit()
    return photo


def listing(session: Session) -> Tuple[List[Document], List[Photo]]:
    documents = list(session.scalars(select(Document).order_by(Document.id.desc())))
    photos = list(session.scalars(select(Photo).order_by(Photo.id.desc())))
    return documents, photos


_STYLE = """body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;width:100%;margin-top:1rem}td,th{padding:.3rem .5rem;border-bottom:1px solid #ddd;text-align:left}
td.nowrap{white-space:nowrap}form.inline{display:inline}form.upload{background:#f5f5f5;padding:.6rem;border-radius:4px}
.photos{display:flex;flex-wrap:wrap;gap:1rem;margin-top:1rem}.photos figure{margin:0;text-align:center}
.photos img{border:1px solid #ccc;border-radius:3px}
.error{background:#fee;border:1px solid #c00;padding:.5rem}small{color:#666}
#direct-upload{margin-top:.5rem}#direct-upload progress{vertical-align:middle}"""


def _size(uploaded: Any) -> str:
    try:
        with uploaded.file as f:  # the row does not keep the length: ask the storage
            n = f.content_length
    except IOError:
        return "missing"
    return "%d B" % n if n < 1024 else "%.1f KiB" % (n / 1024) if n < 1024 * 1024 else "%.1f MiB" % (n / 1048576)


# The direct-upload form's script: ask the application for an intent, send
# the file straight to the storage with depot-upload.js, then ask the
# application to attach it.  Each progress event is also dispatched as a
# "depot-upload-progress" DOM event (what a page's own widgets can follow).
DIRECT_UPLOAD_SCRIPT = """
import { upload } from "/static/depot-upload.js";
const form = document.getElementById("direct-upload");
const bar = form.querySelector("progress");
const status = form.querySelector(".status");
const button = form.querySelector("button");

async function postJSON(url, data) {
  const response = await fetch(url, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error || url + ": HTTP " + response.status);
  return answer;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = form.elements.file.files[0];
  if (!file) return;
  button.disabled = true;
  bar.hidden = false;
  bar.value = 0;
  status.className = "status";
  status.textContent = "asking for an upload intent";
  try {
    const intent = await postJSON("/uploads/intent", { filename: file.name, size: file.size, type: file.type });
    status.textContent = "uploading (" + intent.method + ")";
    const { id } = await upload(file, intent, {
      onProgress: (progress) => {
        bar.value = progress.total ? progress.loaded / progress.total : 1;
        status.textContent = "uploading (" + intent.method + "): " + Math.floor(bar.value * 100) + "%";
        form.dispatchEvent(new CustomEvent("depot-upload-progress", { detail: progress, bubbles: true }));
      },
    });
    status.textContent = "attaching";
    const attached = await postJSON("/uploads/attach", { id, title: form.elements.title.value });
    location.assign(attached.location);
  } catch (error) {
    status.className = "status error";
    status.textContent = error && error.message ? error.message : String(error);
    button.disabled = false;
  }
});
"""

DIRECT_UPLOAD_FORM = """<h3>Direct upload</h3>
<p>The browser sends the file straight to the storage (S3, GCS, or DepotMiddleware for local files),
with <code>depot-upload.js</code>; the application only attaches it.</p>
<form id="direct-upload" class="upload"><input name="title" placeholder="Title">
<input type="file" name="file" required> <button>Upload directly</button>
<progress value="0" max="1" hidden></progress> <span class="status" role="status"></span></form>
<script type="module">{script}</script>"""


def render_index(documents: List[Document], photos: List[Photo], framework: str, error: Optional[str] = None,
                 direct_upload: bool = False) -> str:
    """The whole page: upload forms, the documents table and the photo wall.

    ``direct_upload`` adds the direct-upload form: the application must then
    answer ``/static/depot-upload.js``, ``POST /uploads/intent`` and
    ``POST /uploads/attach`` (see demo_app.py).
    """
    e = html.escape
    rows = []
    for doc in documents:
        c = doc.content
        rows.append(
            "<tr><td>{title}</td><td><a href='{url}'>{name}</a></td><td>{type}</td><td class='nowrap'>{size}</td>"
            "<td class='nowrap'><form class='inline' method='post' action='/documents/{id}/replace' enctype='multipart/form-data'>"
            "<input type='file' name='file' required> <button>Replace</button></form> "
            "<form class='inline' method='post' action='/documents/{id}/delete'><button>Delete</button></form>"
            "</td></tr>".format(title=e(doc.title), url=e(c.url), name=e(c.filename), type=e(c.content_type),
                                size=_size(c), id=doc.id)
        )
    figures = [
        "<figure><a href='{url}'><img src='{thumb}' alt='{caption}'></a><figcaption>{caption}</figcaption></figure>"
        .format(url=e(p.image.url), thumb=e(p.image.thumb_url), caption=e(p.caption))
        for p in photos
    ]
    photo_form = (
        "<form class='upload' method='post' action='/photos' enctype='multipart/form-data'>"
        "<input name='caption' placeholder='Caption'> <input type='file' name='image' accept='image/*' required> "
        "<button>Upload photo</button></form>"
        if UploadedImageWithThumb is not None else "<p>Install Pillow (<code>pip install 'depot[image]'</code>) for photos.</p>"
    )
    return """<!doctype html><html><head><meta charset="utf-8"><title>depot demo</title><style>{style}</style></head>
<body><h1>depot demo <small>({framework})</small></h1>
{error}
<p>Files are stored by depot (on local disk unless <code>--config</code> names other storages) and attached to
SQLAlchemy rows in SQLite;
links go through DepotMiddleware (try a <code>Range</code> request, or an HTML upload: it downloads, sandboxed).</p>
<h2>Documents</h2>
<form class="upload" method="post" action="/documents" enctype="multipart/form-data">
<input name="title" placeholder="Title"> <input type="file" name="file" required> <button>Upload</button></form>
{direct}
<table><tr><th>Title</th><th>File</th><th>Type</th><th>Size</th><th></th></tr>{rows}</table>
<h2>Photos</h2>{photo_form}<div class="photos">{figures}</div>
</body></html>""".format(style=_STYLE, framework=e(framework), rows="".join(rows), figures="".join(figures),
                         photo_form=photo_form, error="<p class='error'>%s</p>" % e(error) if error else "",
                         direct=DIRECT_UPLOAD_FORM.format(script=DIRECT_UPLOAD_SCRIPT) if direct_upload else "")


def main(make_app: Callable[[str], Callable], doc: str, serve: Optional[Callable[..., None]] = None) -> None:
    """Command line of every example: parse the options, build the app, serve it.

    ``serve(app, host, port, data)`` runs the server (default: :func:`serve_wsgi`).
    """
    serve = serve or serve_wsgi
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0 picks a free one)")
    parser.add_argument("--data", help="folder for the files and the database (default: a temporary folder, "
                                       "removed on exit)")
    parser.add_argument("--config", help="depot settings file (TOML or INI, as for the depot command) whose "
                                         "[depot.storages.files] and [depot.storages.photos] replace the local "
                                         "folders, for example an S3 bucket")
    args = parser.parse_args()
    use_settings(args.config)
    # Stopped by a signal as by Ctrl-C, so the temporary folder is removed either way.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.data:
        os.makedirs(args.data, exist_ok=True)
        serve(make_app(args.data), args.host, args.port, args.data)
        return
    with tempfile.TemporaryDirectory(prefix="depot-demo-") as data:
        serve(make_app(data), args.host, args.port, data + ", removed on exit")


def announce(host: str, port: int, data: str) -> None:
    """The line the examples print once listening (their tests read it)."""
    print("depot demo running at http://%s:%d/  (data in %s; Ctrl-C to stop)" % (host, port, data), flush=True)


def serve_wsgi(app: Callable, host: str, port: int, data: str) -> None:
    """Serve ``app`` with the development server of ``depot serve`` and print its URL."""
    from depot.cli.serve import listen_error, run_server

    try:
        run_server(app, host, port, lambda host, port: announce(host, port, data))
    except OSError as exc:  # the port is taken, or the address is not ours
        sys.exit("%s: %s" % (os.path.basename(sys.argv[0]), listen_error(host, port, exc)))


def serve_asgi(app: Any, host: str, port: int, data: str) -> None:
    """Serve the ASGI ``app`` with uvicorn on ``host:port`` (0: a free port) and print its URL."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:  # the port is taken, or the address is not ours
        from depot.cli.serve import listen_error

        sys.exit("%s: %s" % (os.path.basename(sys.argv[0]), listen_error(host, port, exc)))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    real_startup = server.startup

    async def startup(sockets: Any = None) -> None:
        await real_startup(sockets)
        announce(*sock.getsockname()[:2], data)

    server.startup = startup  # type: ignore[method-assign]
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the stopping signal once it has shut down
        pass
