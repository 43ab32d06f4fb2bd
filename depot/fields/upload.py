""":class:`UploadedFile`: the JSON value a file column holds."""
from __future__ import annotations

import json
from typing import Any, Optional, Tuple

from depot.io.interfaces import FileStorage, StoredFile
from depot.manager import DepotManager, DepotNotFoundError

from ._storing import store
from .interfaces import DepotFileInfo

__all__ = ["UploadedFile"]


class UploadedFile(DepotFileInfo):
    """A file stored in a depot, described by a frozen dict serialised as JSON.

    Keys: ``depot_name``, ``files`` (the ``'<depot>/<id>'`` path of every file
    stored for this value, extra files of filters included), ``file_id``,
    ``path``, ``filename``, ``content_type``, ``uploaded_at`` (a
    ``'YYYY-MM-DD HH:MM:SS'`` UTC string) and ``_public_url``, plus whatever
    filters and subclasses add.

    Keys ending in ``_url`` whose value is ``None`` next to a ``_path`` key of
    the same prefix (thumbnails stored while no middleware was registered)
    are resolved through the middleware when read.
    """

    def process_content(
        self, content: Any, filename: Optional[str] = None, content_type: Optional[str] = None
    ) -> None:
        path, facts = self._store(content, filename, content_type)
        self["file_id"] = facts.file_id
        self["path"] = path
        self["filename"] = facts.filename
        self["content_type"] = facts.content_type
        self["uploaded_at"] = facts.uploaded_at
        self["_public_url"] = facts.public_url

    def _store(self, content: Any, filename: Optional[str], content_type: Optional[str]):
        facts = store(self.depot, content, filename, content_type)
        path = "%s/%s" % (self["depot_name"], facts.file_id)
        self["files"].append(path)
        return path, facts

    def store_content(
        self, content: Any, filename: Optional[str] = None, content_type: Optional[str] = None
    ) -> Tuple[str, str]:
        """Store an extra file (a thumbnail...) with this one; returns ``(path, file_id)``.

        The path is added to ``files``, so the transaction tracker deletes the
        extra file together with the main one.
        """
        path, facts = self._store(content, filename, content_type)
        return path, facts.file_id

    def encode(self) -> str:
        """The JSON text stored in the database column."""
        return json.dumps(self)

    @classmethod
    def decode(cls, data: str) -> "UploadedFile":
        """Rebuild the value from :meth:`encode`'s JSON (nothing is stored)."""
        return cls(json.loads(data))

    def __getitem__(self, key: Any) -> Any:
        value = dict.__getitem__(self, key)
        if value is None and isinstance(key, str) and key.endswith("_url"):
            path = dict.get(self, key[:-4] + "_path")
            if path is not None:
                return DepotManager.get_middleware().url_for(path)
        return value

    @property
    def url(self) -> str:
        """The public URL of the file, or the URL the registered middleware serves it at."""
        return self._url_of("_public_url", "path")

    def _url_of(self, public_url_key: str, path_key: str) -> str:
        """The public URL stored under ``public_url_key``, else the middleware's URL of the path."""
        public_url = dict.get(self, public_url_key)
        if public_url:
            return public_url
        return DepotManager.get_middleware().url_for(dict.__getitem__(self, path_key))

    @property
    def depot(self) -> FileStorage:
        """The storage holding the file."""
        return DepotManager.get(dict.__getitem__(self, "depot_name"))  # type: ignore[return-value]

    @property
    def file(self) -> StoredFile:
        """A new :class:`StoredFile` opened on the content at every access.

        :class:`~depot.manager.DepotNotFoundError` (an :class:`AttributeError`,
        as filedepot's ``None.get``) when the storage is not configured.
        """
        depot = self.depot
        if depot is None:
            raise DepotNotFoundError(
                "No depot named %r is configured (file %s)" % (dict.get(self, "depot_name"), dict.get(self, "path"))
            )
        return depot.get(dict.__getitem__(self, "file_id"))
