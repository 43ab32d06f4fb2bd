"""Import optional libraries with an error that says which extra installs them.

The one place that words the install hint: :func:`require` for the modules
that import a library, :func:`missing_dependency` for the backend registry
when a backend module fails on a library it imports plainly.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Optional

DISTRIBUTION = "depot"


class MissingDependency(ImportError):
    """An optional library is not installed; the message names the extra that installs it."""


def install_hint(extra: str) -> str:
    return "pip install '%s[%s]'" % (DISTRIBUTION, extra)


def missing_dependency(feature: str, extra: str, exc: ImportError, package: Optional[str] = None) -> MissingDependency:
    """The error for ``feature`` failing to import (``exc``), naming the extra that provides it."""
    what = "the %r package, which is not installed" % package if package else "a package that is not installed"
    return MissingDependency("%s needs %s: %s (%s)" % (feature, what, install_hint(extra), exc))


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependency` naming the extra that provides it.

    ``feature`` says what needs it (``'depot.io.boto3.S3Storage'``), so the
    message tells the user both what failed and how to fix it.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise missing_dependency(feature, extra, exc, module.split(".")[0]) from exc
