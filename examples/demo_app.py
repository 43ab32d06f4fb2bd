"""depot demo: a document library as a plain WSGI application with WebOb.

Upload documents and photos, list them, download them through
DepotMiddleware, replace and delete them.  Files live on local disk and are
attached to SQLAlchemy rows in SQLite: there is no server to set up.

    pip install -e '.[sqlalchemy,web,image]'
    python examples/demo_app.py            # then open the printed URL

Options: ``--port 0`` picks a free port, ``--data DIR`` keeps the files and
the database in DIR (by default a temporary folder, removed on exit).
"""
from __future__ import annotations

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for library.py, when run as a script

from webob import Request, Response  # noqa: E402
from webob.exc import HTTPNotFound, HTTPSeeOther  # noqa: E402

import library  # noqa: E402
from depot.manager import DepotManager  # noqa: E402


def make_app(data_dir: str):
    """The WSGI application, wrapped in DepotMiddleware (which serves ``/depot/...``)."""
    Session = library.setup(data_dir)

    def index(request: Request) -> Response:
        error = library.pop_error(request.GET.get("error"))
        with Session() as session:
            documents, photos = library.listing(session)
            page = library.render_index(documents, photos, "plain WSGI + WebOb", error)
        return Response(page, charset="utf-8")

    def app(environ, start_response):
        request = Request(environ)
        path, method = request.path_info, request.method
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

    return DepotManager.make_middleware(app)


if __name__ == "__main__":
    library.main(make_app, __doc__)
