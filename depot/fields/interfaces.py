"""The contracts of attached files: :class:`FileFilter` and the frozen :class:`DepotFileInfo` dict."""
from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Any, Iterable, List, Optional

from depot.manager import DepotManager

from ._lifecycle import created_files, delete_files, direct_uploads

__all__ = ["FileFilter", "DepotFileInfo"]

_IMMUTABLE = "Already saved files are immutable"


class FileFilter(metaclass=ABCMeta):
    """A step run on every new upload of a column, after the main file is stored.

    :meth:`on_save` receives the :class:`~depot.fields.upload.UploadedFile`
    unfrozen: it may add keys and store extra files with
    :meth:`~depot.fields.upload.UploadedFile.store_content`, which records
    them so that the transaction tracker removes them with the main file.
    Raising refuses the upload: what was stored for it is deleted and the
    exception reaches the code that assigned it.
    """

    @abstractmethod
    def on_save(self, uploaded_file: "DepotFileInfo") -> None:  # pragma: no cover - abstract
        """Process a freshly uploaded file."""


def _is_direct_upload(content: Any) -> bool:
    # By name: depot.uploads imports the fields' modules, not the other way round.
    return type(content).__name__ == "DirectUpload" and type(content).__module__ == "depot.uploads.attach"


class DepotFileInfo(dict, metaclass=ABCMeta):
    """The description of a stored file kept in a database column: a dict, frozen once built.

    Built from content, it stores that content in the storage ``depot_name``
    (the default storage when omitted; aliases are resolved so the row keeps
    the real name) through :meth:`process_content`.  Built from a dict, it
    restores what a database column held and stores nothing.

    Keys are readable as attributes.  Once frozen every mutation, through
    item or attribute assignment or any ``dict`` method, raises
    ``TypeError('Already saved files are immutable')``.
    """

    # The state a value carries besides its keys, never serialised: declared
    # here with defaults, so that a value restored by any means (a pickle of
    # filedepot 0.12 included) can read them.  Set with object.__setattr__
    # (__setattr__ writes keys).
    #: The content this value stored; ``None`` when restored from a row (no upload).
    original_content: Any = None
    _frozen: bool = False
    #: The paths this value's own store_content calls created: only these are
    #: deleted when the assignment fails.  A store_content override may list
    #: in ``files`` a file that already existed (deduplication), which a
    #: committed row may reference.
    _created: List[str]  # no shared default: __init__ gives every value its own list
    #: Lifecycle state owned by :mod:`depot.fields._lifecycle`: how many
    #: transaction scopes took this upload, and whether a commit settled it
    #: (no rollback may delete it then).
    _depot_claims: int = 0
    _depot_settled: bool = False

    def __init__(self, content: Any, depot_name: Optional[str] = None) -> None:
        super().__init__()
        self._thaw()
        object.__setattr__(self, "_created", [])
        if isinstance(content, dict):
            object.__setattr__(self, "original_content", None)
            dict.update(self, content)
        else:
            direct = None
            if _is_direct_upload(content):
                # Checked against its intent first; the value is built on the stored file.
                direct = content.open(depot_name)
                content, depot_name = direct, direct.storage_name
            object.__setattr__(self, "original_content", content)
            if depot_name is None:
                depot_name = DepotManager.get_default()
            resolved = DepotManager.resolve_alias(depot_name)
            if not resolved:
                raise ValueError("Storage has not been found in DEPOT")
            self["depot_name"] = resolved
            self["files"] = []
            try:
                self.process_content(content)
            except BaseException as exc:
                # A rejected upload is referenced by nothing: what it stored
                # before failing would stay in the storage for good.
                delete_files(created_files(self))
                if direct is not None and isinstance(exc, Exception):
                    raise direct.rejected(exc) from exc
                raise
            if direct is not None:
                direct.attached(kept=direct.path() in self["files"])
                # The upload's path: its claimed marker goes once the transaction ends.
                object.__setattr__(self, "_direct_upload", direct.path())
        self._freeze()

    @abstractmethod
    def process_content(
        self, content: Any, filename: Optional[str] = None, content_type: Optional[str] = None
    ) -> None:  # pragma: no cover - abstract
        """Store ``content`` and record what describes it as keys of this dict."""

    def _apply_filters(self, filters: Iterable[FileFilter], discard: bool = True) -> None:
        """Run ``on_save`` of each filter on a fresh upload (never on a value read back).

        When a filter fails, the files the filters created are deleted and the
        keys they added removed before the error propagates.  With ``discard``
        (the caller built this value for the assignment that failed, and drops
        it) the main file is deleted too; without it the value is left as it
        was before the filters ran.  Only files this value's
        :meth:`~depot.fields.upload.UploadedFile.store_content` created go:
        a path an override listed without creating it (an existing file it
        deduplicated to) is kept.
        """
        if self.original_content is None:
            return
        before = dict(self)
        files_before = list(dict.get(self, "files") or ())
        created_before = len(self._created)
        self._thaw()
        try:
            for file_filter in filters:
                file_filter.on_save(self)
        except BaseException as exc:
            created = created_files(self)
            if not discard:
                del self._created[created_before:]
                created = [path for path in created if path not in files_before]
            dict.clear(self)
            dict.update(self, before)
            dict.__setitem__(self, "files", files_before)
            # A refused direct upload goes with its claimed marker.
            delete_files(created, [path for path in direct_uploads([self]) if discard and path in created])
            if discard and self.__dict__.get("_direct_upload") and isinstance(exc, Exception):
                # The direct upload went with the files above.
                from depot.uploads import UploadRefused

                raise UploadRefused(dict.get(self, "depot_name"), dict.get(self, "file_id"), "rejected",
                                    "%s: %s" % (type(exc).__name__, exc)) from exc
            raise
        finally:
            self._freeze()

    def _freeze(self) -> None:
        object.__setattr__(self, "_frozen", True)

    def _thaw(self) -> None:
        object.__setattr__(self, "_frozen", False)

    def _check_mutable(self) -> None:
        # The class default answers while a pickle is restored (its keys come before its flag).
        if self._frozen:
            raise TypeError(_IMMUTABLE)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            pass
        prop = getattr(type(self), name, None)
        if isinstance(prop, property) and prop.fget is not None:
            # Python comes here when a property raised AttributeError (such as
            # DepotNotFoundError from ``file``): run it again so that its own
            # message reaches the caller instead of a bare AttributeError(name).
            return prop.fget(self)
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        self._check_mutable()
        try:
            dict.__delitem__(self, name)
        except KeyError:
            raise AttributeError(name) from None

    def __setitem__(self, key: Any, value: Any) -> None:
        self._check_mutable()
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: Any) -> None:
        self._check_mutable()
        dict.__delitem__(self, key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._check_mutable()
        dict.update(self, *args, **kwargs)

    def pop(self, *args: Any) -> Any:
        self._check_mutable()
        return dict.pop(self, *args)

    def popitem(self) -> Any:
        self._check_mutable()
        return dict.popitem(self)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self._check_mutable()
        return dict.setdefault(self, key, default)

    def clear(self) -> None:
        self._check_mutable()
        dict.clear(self)

    # dict's |= returns the dict itself, so a DepotFileInfo stays one (its | returns a plain dict).
    def __ior__(self, other: Any) -> "DepotFileInfo":  # type: ignore[misc]
        self._check_mutable()
        dict.update(self, other)
        return self

    def copy(self) -> dict:
        """A plain, mutable ``dict`` with the same keys."""
        return dict(self)

    def __reduce__(self) -> Any:
        # Pickled and copied as the restored form: the same keys, frozen, no upload.
        return (type(self), (dict(self),))
