"""The registry of configured storages: names, aliases, the default, the middleware and the links it makes."""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional

from depot.io.interfaces import FileStorage, StoredFile
from depot.io.registry import BackendNotFoundError, load_backend
from depot.links import NO_MIDDLEWARE, Links

if TYPE_CHECKING:  # anyio is an optional dependency
    from depot.io.aio import AsyncStorage

__all__ = [
    "DepotManager",
    "DepotNotFoundError",
    "BackendNotFoundError",
    "get_depot",
    "get_file",
    "configure",
    "set_default",
]

DEFAULT_BACKEND = "depot.io.local.LocalFileStorage"


class DepotNotFoundError(LookupError, AttributeError):
    """No storage is configured under that name.

    It is also an :class:`AttributeError`, which is what filedepot raised in
    :meth:`DepotManager.get_file` for an unknown storage, so existing
    ``except AttributeError`` handlers keep working.
    """


class DepotManager:
    """Takes care of the storages configured for the application.

    Storages are created from a settings dict with :meth:`configure` and
    looked up by name with :meth:`get`; the first one configured is the
    default.  :meth:`alias` gives a storage a second name, so that the
    default can move to a new storage while files saved on the old one keep
    being found under the name recorded with them.

    The registry is process-wide class state, guarded by a lock.
    """

    _default_depot: Optional[str] = None
    _depots: Dict[str, FileStorage] = {}
    _middleware: Any = None
    # Made for _middleware by links(); never read elsewhere.
    _links: Optional[Links] = None
    _aliases: Dict[str, str] = {}
    _lock = threading.RLock()

    @classmethod
    def set_default(cls, name: str) -> None:
        """Make ``name`` (a storage or an alias of one) the default storage."""
        with cls._lock:
            resolved = cls.resolve_alias(name)
            if resolved is None:
                raise RuntimeError("%s depot has not been configured" % (name,))
            cls._default_depot = resolved

    @classmethod
    def get_default(cls) -> str:
        """The name of the default storage."""
        default = cls._default_depot
        if default is None:
            raise RuntimeError("No depots have been configured!")
        return default

    @classmethod
    def set_middleware(cls, mw: Any, *, replace: bool = False) -> None:
        """Register ``mw`` as the middleware that builds file URLs.

        A second registration raises (as in filedepot) unless ``replace`` is true.
        """
        with cls._lock:
            if cls._middleware is not None and not replace:
                raise RuntimeError("There is already a WSGI middleware registered")  # 0.12 message; see replace
            cls._middleware = mw

    @classmethod
    def get_middleware(cls) -> Any:
        mw = cls._middleware
        if mw is None:
            raise RuntimeError(NO_MIDDLEWARE)
        return mw

    @classmethod
    def links(cls) -> Links:
        """The :class:`~depot.links.Links` that make stored files' URLs with the middleware registered now.

        :attr:`UploadedFile.url <depot.fields.upload.UploadedFile.url>`,
        the thumbnail keys and :meth:`url_for` all go through it.
        """
        links = cls._links
        # Rebuilt when the middleware changed, also by code that assigns
        # _middleware itself (filedepot's own tests do): links never outlive it.
        if links is None or links.middleware is not cls._middleware:
            links = cls._links = Links(cls._middleware, cls.get_file)
        return links

    @classmethod
    def get(cls, name: Optional[str] = None) -> Optional[FileStorage]:
        """The storage called ``name`` (or an alias of it); the default when ``name`` is None.

        An unknown name gives ``None``, and so does asking for the default
        while nothing is configured, as in filedepot: callers that need a
        storage check for ``None`` (or use :meth:`get_default`, which raises).
        """
        if name is None:
            name = cls._default_depot
        depot = cls._depots.get(name) if name is not None else None  # every request served asks: no alias first
        if depot is not None:
            return depot
        resolved = cls.resolve_alias(name)
        return cls._depots.get(resolved) if resolved is not None else None

    @classmethod
    def get_async(cls, name: Optional[str] = None) -> "Optional[AsyncStorage]":
        """:meth:`get`, as an :class:`~depot.io.aio.AsyncStorage` whose operations are awaited.

        ``None`` for an unknown name, as :meth:`get`.  Needs ``anyio``
        (``pip install 'depot[async]'``).
        """
        storage = cls.get(name)
        if storage is None:
            return None
        from depot.io.aio import AsyncStorage

        return AsyncStorage(storage)

    @classmethod
    def get_file(cls, path: str) -> StoredFile:
        """The file at ``'<storage>/<file_id>'``, the form of ``UploadedFile.path``."""
        depot_name, file_id = path.split("/", 1)
        depot = cls.get(depot_name)
        if depot is None:
            raise DepotNotFoundError("No depot named %r is configured (path %r)" % (depot_name, path))
        return depot.get(file_id)

    @classmethod
    def url_for(cls, path: str) -> str:
        """The URL the registered middleware serves ``'<storage>/<file_id>'`` at."""
        return cls.links().served(path)

    @classmethod
    def configure(cls, name: str, config: Optional[Mapping[str, Any]], prefix: str = "depot.") -> FileStorage:
        """Create the storage ``name`` from ``config`` and register it.

        ``config`` holds ``<prefix>backend`` (a dotted class path or a short
        name such as ``'local'`` or ``'s3'``; local storage by default) and the
        backend's options as ``<prefix><option>``.  The first storage
        configured becomes the default.
        """
        with cls._lock:
            if name in cls._depots:
                raise RuntimeError("Depot %s has already been configured" % (name,))
            # Built before anything is registered: a failing backend leaves no trace.
            try:
                depot = cls.from_config(config, prefix)
            except (TypeError, ValueError) as exc:
                if len(exc.args) == 1 and isinstance(exc.args[0], str):
                    exc.args = ("%s (configuring storage %r)" % (exc.args[0], name),)  # same exception, named
                raise
            cls._depots[name] = depot
            if cls._default_depot is None:
                cls._default_depot = name
            return depot

    @classmethod
    def alias(cls, alias: str, name: str) -> None:
        """Let ``alias`` refer to the storage ``name``; an existing alias may be re-pointed."""
        with cls._lock:
            if name not in cls._depots:
                raise ValueError("You can only alias an existing storage, %s not found" % (name,))
            if alias in cls._depots:
                raise ValueError("Cannot use an existing storage name as an alias, will break existing files.")
            cls._aliases[alias] = name

    @classmethod
    def resolve_alias(cls, name: Optional[str]) -> Optional[str]:
        """The storage name ``name`` refers to, following aliases; ``None`` if unknown."""
        seen = set()
        while name and name not in cls._depots:
            if name in seen:
                return None
            seen.add(name)
            name = cls._aliases.get(name)
        return name

    @classmethod
    def create_upload_intent(cls, storage: Optional[str] = None, **options: Any) -> Any:
        """:func:`depot.uploads.create_upload_intent`: permit the browser to upload one file directly."""
        from depot.uploads import create_upload_intent

        return create_upload_intent(storage, **options)

    @classmethod
    def make_middleware(cls, app: Any, *, replace: bool = False, **options: Any) -> Any:
        """Wrap ``app`` in a :class:`~depot.middleware.DepotMiddleware` and register it.

        ``replace=True`` swaps an already registered middleware instead of raising.
        """
        from depot.middleware import DepotMiddleware

        return cls._register_new(DepotMiddleware, app, options, replace)

    @classmethod
    def make_asgi_middleware(cls, app: Any, *, replace: bool = False, **options: Any) -> Any:
        """Wrap the ASGI ``app`` in a :class:`depot.asgi.DepotMiddleware` (same options) and register it.

        ``replace=True`` swaps an already registered middleware instead of raising.
        """
        from depot.asgi import DepotMiddleware

        return cls._register_new(DepotMiddleware, app, options, replace)

    @classmethod
    def _register_new(cls, middleware_class: Any, app: Any, options: Mapping[str, Any], replace: bool) -> Any:
        with cls._lock:
            mw = middleware_class(app, **options)
            cls.set_middleware(mw, replace=replace)
            return mw

    @classmethod
    def from_config(cls, config: Optional[Mapping[str, Any]], prefix: str = "depot.") -> FileStorage:
        """Create (without registering) the storage described by ``config``.

        A backend module that does not define the named class raises
        :class:`~depot.io.registry.BackendNotFoundError`, an
        :class:`AttributeError` as in filedepot; a module that does not import
        raises :class:`ImportError`.
        """
        config = config or {}
        backend = config.get(prefix + "backend", DEFAULT_BACKEND)
        options = {
            key[len(prefix):]: value
            for key, value in config.items()
            if key.startswith(prefix) and key != prefix + "backend"
        }
        return cls._new(backend, **options)

    @classmethod
    def _new(cls, backend: str, **options: Any) -> FileStorage:
        return load_backend(backend)(**options)

    @classmethod
    def _clear(cls) -> None:
        """Forget every storage, alias and the middleware (for test suites)."""
        with cls._lock:
            cls._default_depot = None
            cls._depots = {}
            cls._middleware = None
            cls._links = None
            cls._aliases = {}


get_depot = DepotManager.get
get_file = DepotManager.get_file
configure = DepotManager.configure
set_default = DepotManager.set_default
