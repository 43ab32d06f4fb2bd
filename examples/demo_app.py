"""depot demo: a document library as a plain WSGI application with WebOb.

Upload documents and photos, list them, download them through
DepotMiddleware, replace and delete them.  Files live on local disk and are
attached to SQLAlchemy rows in SQLite: there is no server to set up.

    pip install -e '.[sqlalchemy,web,image]'
    python examples/demo_app.py            # then open the printed URL

Options: ``--port 0`` picks a free port, ``--data DIR`` keeps the files and
the database in DIR (by default a temporary folder, removed on exit),
``--config FILE`` takes the storages from a depot settings file (an S3
bucket, a GCS bucket...).

The "direct upload" form sends the file from the browser straight to the
storage with depot's ``depot-upload.js`` (served here at
``/static/depot-upload.js``): the page asks ``POST /uploads/intent`` for an
upload intent, uploads, then ``POST /uploads/attach`` attaches the upload
to a new document with ``UploadedFile.from_upload``.  Local files are
uploaded to DepotMiddleware, which takes signed uploads because it has a
secret (so its download links are signed too).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for library.py, when run as a script

from webob import Request, Response  # noqa: E402
from webob.exc import HTTPNotFound, HTTPSeeOther  # noqa: E402

import library  # noqa: E402
from depot.manager import DepotManager  # noqa: E402
from depot.uploads.static import JAVASCRIPT_CONTENT_TYPE, javascript_path  # noqa: E402


def json_response(status: int, data: dict) -> Response:
    return Response(json.dumps(data), status=status, content_type="application/json", charset="utf-8")


def json_body(request: Request) -> dict:
    """The JSON object posted to the direct-upload endpoints.

    Only ``application/json`` is taken: a page of another site cannot send
    it without the browser asking this one first (CORS preflight).
    """
    if request.content_type != "application/json":
        raise library.UploadRefused("send JSON (Content-Type: application/json)")
    try:
        data = json.loads(request.body)
    except ValueError:
        raise library.UploadRefused("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise library.UploadRefused("the request body must be a JSON object")
    return data


def make_app(data_dir: str):
    """The WSGI application, wrapped in DepotMiddleware (which serves ``/depot/...``)."""
    Session = library.setup(data_dir)

    def index(request: Request) -> Response:
        error = library.pop_error(request.GET.get("error"))
        with Session() as session:
            documents, photos = library.listing(session)
            page = library.render_index(documents, photos, "plain WSGI + WebOb", error, direct_upload=True)
        return Response(page, charset="utf-8")

    def direct_upload(path: str, request: Request) -> Response:
        """``POST /uploads/intent`` and ``POST /uploads/attach``: JSON in, JSON out."""
        try:
            data = json_body(request)
            if path == "/uploads/intent":
                return json_response(200, library.direct_upload_intent(
                    data.get("filename"), data.get("size"), data.get("type")))
            with Session() as session:
                doc = library.attach_direct_upload(session, str(data.get("title") or ""), data.get("id"))
                return json_response(201, {"id": doc.id, "location": "/"})
        except library.UploadRefused as exc:
            return json_response(400, {"error": str(exc)})

    def app(environ, start_response):
        request = Request(environ)
        path, method = request.path_info, request.method
        if method == "POST" and path in ("/uploads/intent", "/uploads/attach"):
            return direct_upload(path, request)(environ, start_response)
        if method in ("GET", "HEAD") and path == "/static/depot-upload.js":
            script = Response(body=javascript_path().read_bytes(), content_type=JAVASCRIPT_CONTENT_TYPE)
            return script(environ, start_response)
        try:
            with Session() as session:
                if method == "POST" and path == "/documents":
                    library.add_document(session, request.POST.get("title", ""), request.POST.get("file"))
                elif method == "POST" and path == "/photos":
                    library.add_photo(session, request.POST.get("caption", ""), request.POST.get("image"))
                elif method == "POST" and re.fullmatch(r"/documents/\d+/replace", path):
                    library.replace_document(session, int(path.split("/")[2]), request.POST.get("file"))
                elif method == "POST" and re.fullmatch(r"/documents/\d+/delete", path):
                    library.delete_document(session, int(path.split("/")[2]))
                elif method in ("GET", "HEAD") and path == "/":
                    return index(request)(environ, start_response)
                else:
                    return HTTPNotFound()(environ, start_response)
        except library.UploadRefused as exc:
            # Back to the list with the reason: a reload of that page does not post again.
            return HTTPSeeOther(location=library.error_location(str(exc)))(environ, start_response)
        except LookupError:
            return HTTPNotFound()(environ, start_response)
        # After a change, back to the list (a reload then does not post again).
        return HTTPSeeOther(location="/")(environ, start_response)

    # The secret signs the upload URLs of local files (and so the download links):
    # a new one each run, so a restart voids the links and intents handed out.
    return DepotManager.make_middleware(app, secret=secrets.token_urlsafe(32))


if __name__ == "__main__":
    library.main(make_app, __doc__)
