""":class:`UploadedFile`: the JSON value a file column holds."""
from __future__ import annotations

import json
from typing import Any, Optional, Tuple

from depot.io.interfaces import FileStorage, StoredFile
from depot.manager import DepotManager, DepotNotFoundError

from ._links import file_url, stored_link
from ._storing import UploadFacts, read_back, store
from .interfaces import DepotFileInfo

__all__ = ["UploadedFile"]


class UploadedFile(DepotFileInfo):
    """A file stored in a depot, described by a frozen dict serialised as JSON.

    Keys: ``depot_name``, ``files`` (the ``'<depot>/<id>'`` path of every file
    stored for this value, extra files of filters included), ``file_id``,
    ``path``, ``filename``, ``content_type``, ``uploaded_at`` (a
    ``'YYYY-MM-DD HH:MM:SS'`` UTC string) and ``_public_url``, plus whatever
    filters and subclasses add.

    Keys ending in ``_url`` next to a ``_path`` key of the same prefix
    (thumbnails) are resolved when read: ``None`` (stored while no
    middleware was registered) through the middleware, and a middleware link
    is signed afresh when the middleware signs links (rows never keep
    expiring links).
    """

    # Declared as DepotFileInfo's attribute state: what the last
    # store_content call learned from the write (path, facts), kept for
    # _stored_facts so that nothing is read back.
    _last_stored: Optional[Tuple[str, UploadFacts]] = None

    def process_content(
        self, content: Any, filename: Optional[str] = None, content_type: Optional[str] = None
    ) -> None:
        attached = self._attach_direct(content, filename, content_type)
        if attached is not None:
            path, file_id = attached
        else:
            path, file_id = self.store_content(content, filename, content_type)
        facts = self._stored_facts(path, file_id)
        self["file_id"] = file_id
        self["path"] = path
        self["filename"] = facts.filename
        self["content_type"] = facts.content_type
        self["uploaded_at"] = facts.uploaded_at
        self["_public_url"] = facts.public_url

    def store_content(
        self, content: Any, filename: Optional[str] = None, content_type: Optional[str] = None
    ) -> Tuple[str, str]:
        """Store a file of this value in its depot; returns ``(path, file_id)``.

        Every file goes through it, as in filedepot: the main file
        (:meth:`process_content`), the thumbnails of
        :class:`~depot.fields.specialized.image.UploadedImageWithThumb` and of
        :class:`~depot.fields.filters.thumbnails.WithThumbnailFilter`.  A
        subclass may override it (to rename the file, to pick another storage);
        whatever it stores must be appended to ``files`` and returned as
        ``'<depot>/<id>'``, so that the transaction tracker deletes it with the
        main file.  When the assignment fails (a filter raises), only the files
        this base method created are deleted: an override that stores by other
        means must delete its own files on failure, or call ``super()``.
        """
        facts = store(self.depot, content, filename, content_type)
        path = "%s/%s" % (dict.__getitem__(self, "depot_name"), facts.file_id)
        self["files"].append(path)
        # Only files created here are deleted when the assignment fails (see DepotFileInfo).
        self._created.append(path)
        # Kept for _stored_facts: the write already told what a read back would.
        object.__setattr__(self, "_last_stored", (path, facts))
        return path, facts.file_id

    def _attach_direct(
        self, content: Any, filename: Optional[str], content_type: Optional[str]
    ) -> Optional[Tuple[str, str]]:
        """Reference a direct upload's stored file as this value's main file: ``(path, file_id)``.

        Only for the content of a direct upload being attached
        (:class:`~depot.uploads.attach.UploadContent`) to this value's
        storage, with the stored file's own name and type; ``None`` otherwise
        (the content is then stored as any other, a copy: a value type
        renaming the file, say).  Not through :meth:`store_content`: nothing
        is stored.  The file is recorded as created by this value, so a
        failing filter or a rollback deletes it.
        """
        from depot.uploads.attach import UploadContent

        if not isinstance(content, UploadContent):
            return None
        if content.storage_name != dict.__getitem__(self, "depot_name"):
            return None
        if filename not in (None, content.filename) or content_type not in (None, content.content_type):
            return None
        path = content.path()
        self["files"].append(path)
        self._created.append(path)
        return path, content.file_id

    def _stored_facts(self, path: str, file_id: str) -> UploadFacts:
        """The facts of the file :meth:`store_content` just returned as ``(path, file_id)``.

        They come from the write itself, unless an override of
        :meth:`store_content` stored the file by other means: it is then read
        back from the storage its path names, as filedepot always did.
        """
        last = self._last_stored
        object.__setattr__(self, "_last_stored", None)
        if last is not None and last[0] == path and last[1].file_id == file_id:
            return last[1]
        depot_name = path.split("/", 1)[0]
        storage = DepotManager.get(depot_name)
        if storage is None:
            raise ValueError("store_content returned %r: no storage named %r" % (path, depot_name))
        return read_back(storage, file_id)

    @classmethod
    def from_upload(cls, file_id: str, storage: Optional[str] = None) -> Any:
        """A file uploaded directly by the browser (see :mod:`depot.uploads`), ready to be assigned to a field.

        Returns a :class:`~depot.uploads.attach.DirectUpload`: assigning it to
        a file field attaches the stored file without copying it, once it
        passed the checks of its intent and the field's validators and
        filters.  ``storage`` is the name the intent was created for
        (``None``: the field's storage).
        """
        from depot.uploads.attach import DirectUpload

        return DirectUpload(file_id, storage, cls)

    def encode(self) -> str:
        """The JSON text stored in the database column."""
        return json.dumps(self)

    @classmethod
    def decode(cls, data: str) -> "UploadedFile":
        """Rebuild the value from :meth:`encode`'s JSON (nothing is stored)."""
        return cls(json.loads(data))

    def __getitem__(self, key: Any) -> Any:
        value = dict.__getitem__(self, key)
        if isinstance(key, str) and key.endswith("_url"):
            path = dict.get(self, key[:-4] + "_path")
            if path is not None:
                return stored_link(value, path)
        return value

    @property
    def url(self) -> str:
        """The public URL of the file, or the URL the registered middleware serves it at.

        Without a middleware, private S3/GCS files get a freshly signed URL
        from their storage (see :func:`depot.fields._links.file_url`).
        """
        return self._url_of("_public_url", "path")

    def _url_of(self, public_url_key: str, path_key: str) -> str:
        """The public URL stored under ``public_url_key``, else the URL of the path (:func:`file_url`)."""
        return file_url(dict.get(self, public_url_key), dict.__getitem__(self, path_key))

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
