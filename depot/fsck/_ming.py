"""The :class:`UploadedFileProperty` fields of Ming mapped classes, read document by document."""
from __future__ import annotations

from typing import Any, Iterable, Iterator, List, Optional, Tuple

from depot.fields.ming import UploadedFileProperty
from ming.odm import mapper

__all__ = ["MingSource"]

#: Documents fetched per round trip.
DOCUMENTS_PER_BATCH = 1000


class MingSource:
    """The attachments of every document of ``classes`` (Ming mapped classes).

    The collections are read with the driver directly (``_id`` and the
    attachment fields only, in batches), not through the ODM session, so
    nothing is loaded into its identity map.
    """

    def __init__(self, classes: Iterable[Any], documents_per_batch: int = DOCUMENTS_PER_BATCH) -> None:
        self.collections: List[Tuple[Any, str, List[UploadedFileProperty]]] = []
        for cls in classes:
            m = mapper(cls)
            props = [p for p in m.properties if isinstance(p, UploadedFileProperty)]
            if props:
                # Ming's stubs omit the manager (``.m``) its documents classes get at runtime.
                self.collections.append((m, m.collection.m.collection_name, props))  # type: ignore[attr-defined]
        self.documents_per_batch = documents_per_batch

    def describe(self) -> str:
        return ", ".join(
            "%s(%s)" % (name, ", ".join(p.name for p in props))
            for _, name, props in self.collections
        )

    @property
    def storages(self) -> List[Optional[str]]:
        return [p.upload_storage for _, _, props in self.collections for p in props]

    def values(self) -> Iterator[Tuple[Any, Any]]:
        for m, name, props in self.collections:
            db = m.session.impl.db
            fields = [p.name for p in props]
            cursor = db[name].find({}, dict.fromkeys(["_id", *fields], 1))
            if hasattr(cursor, "batch_size"):
                cursor = cursor.batch_size(self.documents_per_batch)
            for doc in cursor:
                for field in fields:
                    value = doc.get(field)
                    if value is not None:
                        yield [name, [str(doc["_id"])], field], value
