"""The URLs of stored files, as :class:`~depot.fields.upload.UploadedFile` gives them.

Two rules keep links in rows from breaking:

- a row never holds an expiring link: a filter records the middleware's
  *unsigned* path (:func:`link_to_store`), and reading it gives a freshly
  signed link when the middleware signs (:func:`stored_link`);
- reading a URL never fails where filedepot 0.12 gave one: without a
  registered middleware, a file whose storage can sign URLs (private S3 or
  GCS) gets a freshly signed URL from the storage (:func:`file_url`).
"""
from __future__ import annotations

from typing import Any, Optional
from urllib.parse import urlsplit

from depot.manager import DepotManager

__all__ = ["file_url", "stored_link", "link_to_store"]


def _storage_url(path: str) -> Optional[str]:
    """The URL the storage itself gives the file at ``path`` (signed when private), if any."""
    try:
        stored = DepotManager.get_file(path)
    except (IOError, ValueError, LookupError):
        return None
    try:
        return stored.public_url
    finally:
        stored.close()


def file_url(public_url: Optional[str], path: str) -> str:
    """``public_url`` if any, else the registered middleware's URL of ``path``.

    Without a middleware, the storage's own URL of the file: private S3 and
    GCS files get a signed URL valid for the storage's ``url_expires``
    seconds (one hour by default), fresh at every call.  A storage that has
    no URL at all (local, memory, GridFS) raises filedepot's
    ``RuntimeError('No WSGI middleware currently registered')``.
    """
    if public_url:
        return public_url
    try:
        middleware = DepotManager.get_middleware()
    except RuntimeError:
        url = _storage_url(path)
        if url is None:
            raise
        return url
    return middleware.url_for(path)


def _is_middleware_link(value: str) -> bool:
    # A path on this site (filedepot's url_for gave '/depot/<storage>/<id>'),
    # as opposed to a storage's absolute URL.
    parts = urlsplit(value)
    return not parts.scheme and not parts.netloc


def stored_link(value: Any, path: str) -> Any:
    """What reading a ``<name>_url`` key kept next to ``<name>_path`` gives.

    ``None`` (recorded while no middleware was registered) is resolved now.
    When the middleware signs links, a stored middleware link (unsigned, or
    signed and maybe expired by older versions) is replaced by a freshly
    signed one; the row keeps its value.
    """
    if value is None:
        return file_url(None, path)
    if isinstance(value, str) and _is_middleware_link(value):
        try:
            middleware = DepotManager.get_middleware()
        except RuntimeError:
            return value
        if getattr(middleware, "signer", None) is not None:
            return middleware.url_for(path)
    return value


def link_to_store(path: str) -> Optional[str]:
    """The URL of ``path`` a filter records in the row: the middleware's, never signed.

    ``None`` when no middleware is registered yet (:func:`stored_link`
    resolves it when read).  Without a secret this is exactly the
    middleware's :meth:`url_for`, as in filedepot, overrides included.
    """
    try:
        middleware = DepotManager.get_middleware()
    except RuntimeError:
        return None
    if getattr(middleware, "signer", None) is None:
        return middleware.url_for(path)
    return middleware.url_for(path, signed=False)
