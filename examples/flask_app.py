"""The depot document library as a Flask application.

    pip install -e '.[sqlalchemy,image]' flask
    python examples/flask_app.py --port 8080

DepotMiddleware wraps Flask's WSGI application, so ``/depot/<storage>/<id>``
is answered before Flask sees the request; everything else is Flask's.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for library.py, when run as a script

from flask import Flask, abort, redirect, request  # noqa: E402

import library  # noqa: E402
from depot.manager import DepotManager  # noqa: E402


def make_app(data_dir: str) -> Flask:
    Session = library.setup(data_dir)
    app = Flask(__name__)

    @app.get("/")
    def home():
        error = library.pop_error(request.args.get("error"))
        with Session() as session:
            documents, photos = library.listing(session)
            return library.render_index(documents, photos, "Flask", error)

    @app.errorhandler(library.UploadRefused)
    def refused(exc):
        # Back to the list with the reason: a reload of that page does not post again.
        return redirect(library.error_location(str(exc)), 303)

    @app.post("/documents")
    def upload_document():
        with Session() as session:
            # Werkzeug's FileStorage carries filename and content type: depot reads them.
            library.add_document(session, request.form.get("title", ""), request.files.get("file"))
        return redirect("/", 303)

    @app.post("/documents/<int:doc_id>/replace")
    def replace_document(doc_id):
        with Session() as session:
            try:
                library.replace_document(session, doc_id, request.files.get("file"))
            except LookupError:
                abort(404)
        return redirect("/", 303)

    @app.post("/documents/<int:doc_id>/delete")
    def delete_document(doc_id):
        with Session() as session:
            try:
                library.delete_document(session, doc_id)
            except LookupError:
                abort(404)
        return redirect("/", 303)

    @app.post("/photos")
    def upload_photo():
        with Session() as session:
            library.add_photo(session, request.form.get("caption", ""), request.files.get("image"))
        return redirect("/", 303)

    app.wsgi_app = DepotManager.make_middleware(app.wsgi_app)
    return app


if __name__ == "__main__":
    library.main(make_app, __doc__)
