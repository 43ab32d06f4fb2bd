"""Where storage backends live: short names, dotted paths and the extras that install them.

Backends are imported only when configured, so a project that uses local
storage never imports boto3 or pymongo.
"""
from __future__ import annotations

import importlib
from typing import Dict, NamedTuple, Optional, Type

from depot._optional import MissingDependency, missing_dependency

__all__ = ["BackendInfo", "BackendNotFoundError", "known_backends", "resolve_backend", "load_backend"]


class BackendNotFoundError(LookupError, AttributeError):
    """The backend's module imported but has no class of that name.

    It is an :class:`AttributeError`, what filedepot raised (its ``getattr``
    on the module), so existing handlers keep working.  It cannot also be an
    :class:`ImportError`: CPython forbids a class deriving from both (their
    instance layouts conflict).
    """


class BackendInfo(NamedTuple):
    path: str
    extra: Optional[str]


_KNOWN: Dict[str, BackendInfo] = {
    "memory": BackendInfo("depot.io.memory.MemoryFileStorage", None),
    "local": BackendInfo("depot.io.local.LocalFileStorage", None),
    "gridfs": BackendInfo("depot.io.gridfs.GridFSStorage", "gridfs"),
    "s3": BackendInfo("depot.io.boto3.S3Storage", "s3"),
    "boto3": BackendInfo("depot.io.boto3.S3Storage", "s3"),
    "awss3": BackendInfo("depot.io.awss3.S3Storage", "awss3"),
    "gcs": BackendInfo("depot.io.gcs.GCSStorage", "gcs"),
}
_EXTRA_BY_MODULE = {info.path.rsplit(".", 1)[0]: info.extra for info in _KNOWN.values()}


def known_backends() -> Dict[str, BackendInfo]:
    """The short names accepted for ``depot.backend``, e.g. ``'s3'`` or ``'local'``."""
    return dict(_KNOWN)


def resolve_backend(backend: str) -> str:
    """The dotted class path for a short name; any other value is taken as a dotted path."""
    info = _KNOWN.get(backend)
    return info.path if info is not None else backend


def load_backend(backend: str) -> Type:
    """Import and return the storage class named by ``backend`` (short name or dotted path)."""
    path = resolve_backend(backend)
    if not isinstance(path, str) or "." not in path:
        raise ValueError(
            "Unknown storage backend %r: use a dotted class path or one of %s"
            % (backend, ", ".join(sorted(_KNOWN)))
        )
    module_name, class_name = path.rsplit(".", 1)
    try:
        module = importlib.import_module(module_name)
    except MissingDependency:
        raise  # the backend's require() already named the extra
    except ImportError as exc:
        extra = _EXTRA_BY_MODULE.get(module_name)
        missing_module_itself = isinstance(exc, ModuleNotFoundError) and exc.name == module_name
        if extra is None or missing_module_itself:
            raise
        raise missing_dependency("Storage backend %s" % path, extra, exc) from exc
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise BackendNotFoundError("Module %s has no storage class %s" % (module_name, class_name)) from None
