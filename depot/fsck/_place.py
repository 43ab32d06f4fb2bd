"""Where a storage keeps its files, to tell when two storage names share them.

Two configured names can point at the same files (the same directory, the
same bucket and prefix): a file referenced as ``a/<id>`` is then listed as
``b/<id>`` too, and would look like an orphan of ``b``.  ``fsck`` compares
the places of the storages it deletes from with those of every other
storage in play and deletes nothing where they overlap.

Backends are recognised by class name so that no optional dependency is
imported.  When in doubt two places are taken to overlap (the endpoint or
server of an object store is ignored): refusing a deletion loses nothing.
"""
from __future__ import annotations

import os
from typing import Any, Tuple

from depot.io.interfaces import FileStorage

__all__ = ["place", "overlap", "describe"]

#: ``(kind, container, key prefix)``: files of the container whose key starts with the prefix.
Place = Tuple[str, Any, str]


def _is_a(storage: FileStorage, dotted: str) -> bool:
    module, _, name = dotted.rpartition(".")
    return any(cls.__module__ == module and cls.__name__ == name for cls in type(storage).__mro__)


def place(storage: FileStorage) -> Place:
    """The place of ``storage``'s files; an unknown backend is only the same place as itself."""
    if _is_a(storage, "depot.io.local.LocalFileStorage"):
        return ("local", os.path.realpath(storage._root), "")  # type: ignore[attr-defined]  # noqa: SLF001
    if _is_a(storage, "depot.io.boto3.S3Storage") or _is_a(storage, "depot.io._awss3_boto.S3Storage"):
        driver = storage._bucket_driver  # type: ignore[attr-defined]  # noqa: SLF001
        return ("s3", driver.bucket.name, driver.prefix)
    if _is_a(storage, "depot.io.gcs.GCSStorage"):
        return ("gcs", storage.bucket.name, storage._prefix)  # type: ignore[attr-defined]  # noqa: SLF001
    if _is_a(storage, "depot.io.gridfs.GridFSStorage"):
        return ("gridfs", (storage._db.name, storage._collection), "")  # type: ignore[attr-defined]  # noqa: SLF001
    if _is_a(storage, "depot.io.memory.MemoryFileStorage"):
        return ("memory", id(storage.files), "")  # type: ignore[attr-defined]
    return ("object", id(storage), "")


def overlap(a: Place, b: Place) -> bool:
    """Whether some file can be listed in both places (one prefix inside the other)."""
    return a[:2] == b[:2] and (a[2].startswith(b[2]) or b[2].startswith(a[2]))


def describe(where: Place) -> str:
    kind, container, prefix = where
    if kind in ("local", "s3", "gcs"):
        return "%s %s%s" % (kind, container, "/" + prefix if prefix else "")
    if kind == "gridfs":
        return "gridfs %s.%s" % container
    return "the same %s storage" % kind
