"""Sphinx configuration for the depot documentation (``sphinx-build -W docs docs/_build/html``)."""
from __future__ import annotations

import importlib.util
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

import depot  # noqa: E402

project = "depot"
author = "the depot authors"
copyright = "depot authors, MIT licence"
release = depot.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

# Backend and ORM libraries are optional extras: the reference must build on a
# machine without them, so only the ones that are missing are mocked (mocking
# an installed one would document SQLAlchemy's TypeDecorator as a mock).
_OPTIONAL = ["boto3", "botocore", "boto", "pymongo", "gridfs", "bson", "google", "ming", "PIL", "webob", "sqlalchemy"]


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


autodoc_mock_imports = [module for module in _OPTIONAL if _missing(module)]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
autoclass_content = "both"
# Third-party base classes (SQLAlchemy's TypeDecorator...) carry docstrings with
# cross-references into their own docs: document only what depot writes.
autodoc_inherit_docstrings = False
napoleon_google_docstring = False

templates_path: list = []
exclude_patterns = ["_build", "_screenshots"]
html_theme = "alabaster"
html_theme_options = {
    "description": "File storage for web applications, attached to database models",
    "fixed_sidebar": True,
    # Wide enough for 88 characters of code beside the sidebar: a 1280 px
    # window shows every code block whole (tests/test_docs.py keeps lines short).
    "page_width": "1160px",
}
html_static_path = ["_static"]
html_css_files = ["depot.css"]
