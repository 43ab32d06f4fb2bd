"""Every file id of a storage, a page at a time.

:meth:`FileStorage.list` returns one list of every id, which on a large
bucket is a large list.  Where the backend can be walked lazily (a directory
scan, S3's paginated listing, a MongoDB cursor) the ids are yielded as they
arrive; other storages fall back to :meth:`~FileStorage.list`.
"""
from __future__ import annotations

import os
from typing import Iterable, Iterator, List, Optional, TypeVar

from depot.io._pending_objects import is_marker_name
from depot.io import utils
from depot.io.interfaces import FileStorage

__all__ = ["iter_ids", "batches", "PAGE_SIZE"]

T = TypeVar("T")

#: Ids asked from an object store per request, and written to the index per batch.
PAGE_SIZE = 1000


def iter_ids(storage: FileStorage, page_size: Optional[int] = None) -> Iterator[str]:
    """The ids of ``storage``, as :meth:`FileStorage.list` would give them, without building the list."""
    page_size = page_size or PAGE_SIZE
    for kind, walk in _WALKERS:
        if _is_a(storage, kind):
            return walk(storage, page_size)
    return iter(storage.list())


def batches(items: Iterable[T], size: Optional[int] = None) -> Iterator[List[T]]:
    """Lists of up to ``size`` (default :data:`PAGE_SIZE`) consecutive items."""
    return utils.batches(items, size or PAGE_SIZE)


def _is_a(storage: FileStorage, dotted: str) -> bool:
    # Matched by name so that no backend's optional dependency is imported;
    # a subclass with its own list() keeps it (it may filter ids).
    module, _, name = dotted.rpartition(".")
    for cls in type(storage).__mro__:
        if cls.__module__ == module and cls.__name__ == name:
            return getattr(type(storage), "list", None) is getattr(cls, "list", None)
    return False


def _local(storage: FileStorage, page_size: int) -> Iterator[str]:
    from depot.io.local import LocalFileStorage

    assert isinstance(storage, LocalFileStorage)
    root = storage._root  # noqa: SLF001 - the folder list() reads, resolved once by the storage
    try:
        entries = os.scandir(root)
    except FileNotFoundError:  # nothing stored yet
        return
    with entries:
        for entry in entries:
            if _valid_local_id(storage, entry.name):
                yield entry.name


def _valid_local_id(storage: FileStorage, name: str) -> bool:
    try:
        storage._check_file_id(name)  # noqa: SLF001
    except ValueError:
        return False
    return True


def _s3(storage: FileStorage, page_size: int) -> Iterator[str]:
    driver = storage._bucket_driver  # type: ignore[attr-defined]  # noqa: SLF001 - filedepot's own attribute
    cut = len(driver.prefix)
    # boto3's collection fetches one page of page_size keys per request, lazily.
    for obj in driver.bucket.objects.filter(Prefix=driver.prefix).page_size(page_size):
        name = obj.key[cut:]
        if not is_marker_name(name):  # a direct upload's marker, not a file
            yield name


def _gridfs(storage: FileStorage, page_size: int) -> Iterator[str]:
    files = storage._files  # type: ignore[attr-defined]  # noqa: SLF001
    for doc in files.find({}, {"_id": 1}, batch_size=page_size):
        yield str(doc["_id"])


def _gcs(storage: FileStorage, page_size: int) -> Iterator[str]:
    cut = len(storage._prefix)  # type: ignore[attr-defined]  # noqa: SLF001
    blobs = storage.client.list_blobs(  # type: ignore[attr-defined]
        storage.bucket, prefix=storage._prefix or None, page_size=page_size  # type: ignore[attr-defined]  # noqa: SLF001
    )
    for blob in blobs:
        name = blob.name[cut:]
        if not is_marker_name(name):  # a direct upload's marker, not a file
            yield name


_WALKERS = (
    ("depot.io.local.LocalFileStorage", _local),
    ("depot.io.boto3.S3Storage", _s3),
    ("depot.io.gridfs.GridFSStorage", _gridfs),
    ("depot.io.gcs.GCSStorage", _gcs),
)
