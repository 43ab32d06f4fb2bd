"""The URLs of stored files, made in one place.

A stored file has up to three kinds of URL:

- its storage's own URL: a permanent public one (public S3/GCS files, kept
  in the row as ``_public_url``), or one the storage signs afresh at every
  call (private S3/GCS files);
- the registered middleware's path, ``<mountpoint>/<storage>/<id>``;
- that path signed, when the middleware has a secret.

The last two are the middleware's ``url_for``
(:func:`depot.serving.paths.mount_url` for depot's own middlewares), a hook
0.12 code overrides.

:class:`Links` applies the rules between them; :class:`~depot.manager.DepotManager`
holds the one made for the middleware registered now
(:meth:`~depot.manager.DepotManager.links`), and
:attr:`UploadedFile.url <depot.fields.upload.UploadedFile.url>`, the
thumbnail keys and :meth:`DepotManager.url_for
<depot.manager.DepotManager.url_for>` all ask it.  Two rules keep links in
rows from breaking:

- a row never holds an expiring link: a filter records the middleware's
  *unsigned* path (:meth:`Links.to_store`), and reading it gives a freshly
  signed link when the middleware signs (:meth:`Links.resolve_stored`);
- reading a URL never fails where filedepot 0.12 gave one: without a
  registered middleware, a file whose storage can sign URLs (private S3 or
  GCS) gets a freshly signed URL from the storage (:meth:`Links.url`).
"""
from __future__ import annotations

from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from depot.io.interfaces import StoredFile

__all__ = ["Links", "NO_MIDDLEWARE"]

#: filedepot 0.12's message when a URL needs a middleware and none is registered.
NO_MIDDLEWARE = "No WSGI middleware currently registered"


def _is_middleware_link(value: str) -> bool:
    # A path on this site (filedepot's url_for gave '/depot/<storage>/<id>'),
    # as opposed to a storage's absolute URL.
    parts = urlsplit(value)
    return not parts.scheme and not parts.netloc


class Links:
    """How the URLs of stored files are made while ``middleware`` (or none) is registered.

    ``middleware`` is any object with filedepot's ``url_for(path)``; a
    :class:`depot.middleware.DepotMiddleware` or :class:`depot.asgi.DepotMiddleware`
    also signs (its ``signer``) and takes ``signed=False``.  Its ``url_for``
    is always what is called, so a subclass overriding it (filedepot's
    hook) decides the middleware's URLs.  ``open_file`` opens
    ``'<storage>/<file id>'`` (:meth:`DepotManager.get_file
    <depot.manager.DepotManager.get_file>`), for the storage's own URL.
    """

    __slots__ = ("middleware", "_open_file")

    def __init__(self, middleware: Any, open_file: Callable[[str], StoredFile]) -> None:
        self.middleware = middleware
        self._open_file = open_file

    @property
    def signs(self) -> bool:
        """Whether the middleware's URLs are signed (and expire)."""
        return getattr(self.middleware, "signer", None) is not None

    def served(self, path: str) -> str:
        """The middleware's URL of ``path``, signed when it signs.

        Raises filedepot's ``RuntimeError('No WSGI middleware currently registered')``
        when none is.
        """
        if self.middleware is None:
            raise RuntimeError(NO_MIDDLEWARE)
        return self.middleware.url_for(path)

    def url(self, public_url: Optional[str], path: str) -> str:
        """``public_url`` if any, else the middleware's URL of ``path`` (:meth:`served`).

        Without a middleware, the storage's own URL of the file: private S3
        and GCS files get a signed URL valid for the storage's
        ``url_expires`` seconds (one hour by default), fresh at every call.
        A storage that has no URL at all (local, memory, GridFS) raises
        filedepot's ``RuntimeError('No WSGI middleware currently registered')``.
        """
        if public_url:
            return public_url
        if self.middleware is None:
            url = self._storage_url(path)
            if url is None:
                raise RuntimeError(NO_MIDDLEWARE)
            return url
        return self.middleware.url_for(path)

    def to_store(self, path: str) -> Optional[str]:
        """The URL of ``path`` a filter records in the row: the middleware's, never signed.

        ``None`` when no middleware is registered yet (:meth:`resolve_stored`
        resolves it when read).  Without a secret this is exactly the
        middleware's ``url_for``, as in filedepot, overrides included.
        """
        if self.middleware is None:
            return None
        if not self.signs:
            return self.middleware.url_for(path)
        return self.middleware.url_for(path, signed=False)

    def resolve_stored(self, value: Any, path: str) -> Any:
        """What reading a ``<name>_url`` key kept next to ``<name>_path`` gives.

        ``None`` (recorded while no middleware was registered) is resolved
        now (:meth:`url`).  When the middleware signs links, a stored
        middleware link (unsigned, or signed and maybe expired by older
        versions) is replaced by a freshly signed one; the row keeps its value.
        """
        if value is None:
            return self.url(None, path)
        if isinstance(value, str) and self.signs and _is_middleware_link(value):
            return self.middleware.url_for(path)
        return value

    def _storage_url(self, path: str) -> Optional[str]:
        """The URL the storage itself gives the file at ``path`` (signed when private), if any."""
        try:
            stored = self._open_file(path)
        except (IOError, ValueError, LookupError):
            return None
        try:
            return stored.public_url
        finally:
            stored.close()
