"""Where the browser module ``depot-upload.js`` is, so that applications can serve it.

The module ships inside the package (``depot/static/depot-upload.js``); an
application serves it like any static file, for example with Flask::

    from depot.uploads.static import javascript_path

    @app.get("/static/depot-upload.js")
    def depot_upload_js():
        return send_file(javascript_path(), mimetype="text/javascript")

It must be served with a JavaScript content type (``text/javascript``):
browsers refuse to run an ES module served as anything else.
"""
from __future__ import annotations

import importlib.resources
import pathlib

__all__ = ["JAVASCRIPT_NAME", "JAVASCRIPT_CONTENT_TYPE", "javascript_path", "javascript_source"]

#: The file name of the module inside the package's ``static`` folder.
JAVASCRIPT_NAME = "depot-upload.js"
#: The content type browsers require for an ES module.
JAVASCRIPT_CONTENT_TYPE = "text/javascript; charset=utf-8"


def javascript_path() -> pathlib.Path:
    """The path of ``depot-upload.js`` on disk (installed packages are directories, never zips here)."""
    resource = importlib.resources.files("depot").joinpath("static", JAVASCRIPT_NAME)
    # A wheel installs depot as plain files; a zipped install would need
    # importlib.resources.as_file, which a long-lived path cannot offer.
    path = pathlib.Path(str(resource))
    if not path.is_file():
        raise FileNotFoundError("depot's browser module is missing from the installed package: %s" % path)
    return path


def javascript_source() -> str:
    """The text of ``depot-upload.js`` (UTF-8)."""
    return importlib.resources.files("depot").joinpath("static", JAVASCRIPT_NAME).read_text(encoding="utf-8")
