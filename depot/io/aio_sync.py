"""The blocking storage API over an :class:`~depot.io.aio.AsyncStorage`.

:class:`SyncStorage` is a :class:`~depot.io.interfaces.FileStorage` whose
every call runs the matching coroutine of an AsyncStorage on an event loop
living in another thread (an :class:`anyio.from_thread.BlockingPortal`).
It lets blocking code (a WSGI application, the command line, a test suite)
use a storage whose backend is native async, and it is how the conformance
suite checks the async API: every test then goes through the async code
paths::

    from anyio.from_thread import start_blocking_portal

    with start_blocking_portal() as portal:
        storage = SyncStorage(AsyncStorage(backend), portal)
        storage.create(b"data")

Never call it from the portal's own event loop thread: it would wait for
itself.
"""
from __future__ import annotations

from typing import IO, Any, Iterator, List, Optional

from anyio.from_thread import BlockingPortal

from depot.io.aio import AsyncStorage, AsyncStoredFile
from depot.io.interfaces import DEFAULT_CHUNK_SIZE, FileStorage, StoredFacts, StoredFile

__all__ = ["SyncStorage", "SyncStoredFile"]


def _async_side(value: Any) -> Any:
    return value.afile if isinstance(value, SyncStoredFile) else value


class SyncStoredFile(StoredFile):
    """A :class:`StoredFile` whose reads await an :class:`AsyncStoredFile` through a portal."""

    def __init__(self, afile: AsyncStoredFile, portal: BlockingPortal) -> None:
        super().__init__(
            afile.file_id, afile.filename, afile.content_type, afile.last_modified, afile.content_length,
            checksum=getattr(afile, "checksum", None),
        )
        self.afile = afile
        self._portal = portal

    def __getattr__(self, name: str) -> Any:
        if name in ("afile", "_portal"):
            raise AttributeError(name)
        return getattr(self.afile, name)

    @property
    def public_url(self) -> Optional[str]:
        return self.afile.public_url

    @property
    def public_url_signed(self) -> bool:  # type: ignore[override]
        return self.afile.public_url_signed

    @property
    def closed(self) -> bool:
        return self.afile.closed

    # Declared by StoredFile, so __getattr__ would not reach the wrapped file's.
    @property
    def version(self) -> Optional[str]:
        return self.afile.version

    @property
    def local_path(self) -> Optional[str]:
        return self.afile.local_path

    def read(self, n: int = -1) -> bytes:
        return self._portal.call(self.afile.read, n)

    def close(self, *args: Any, **kwargs: Any) -> None:
        try:
            self._portal.call(self.afile.close)
        except RuntimeError:
            # The portal has stopped (a file garbage-collected late): close directly.
            self.afile.file.close()

    def __del__(self) -> None:
        # Garbage collection runs a finalizer on whichever thread happens to
        # allocate, possibly one of the portal's worker threads while its
        # loop, stopping, waits for them: waiting for the portal there never
        # ends.  So no portal here (io.IOBase's finalizer would close through
        # it): the wrapped file is closed directly, as after the portal stops.
        afile = self.__dict__.get("afile")
        if afile is not None and not afile.closed:
            afile.file.close()

    def real_file(self) -> Optional[IO[bytes]]:
        return self._portal.call(self.afile.real_file)

    def iter_range(
        self, start: int = 0, stop: Optional[int] = None, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> Iterator[bytes]:
        chunks = self.afile.iter_range(start, stop, chunk_size)
        try:
            while True:
                try:
                    yield self._portal.call(chunks.__anext__)
                except StopAsyncIteration:
                    return
        finally:
            self._portal.call(chunks.aclose)


class SyncStorage(FileStorage):
    """The :class:`FileStorage` interface of ``storage``, each call run through ``portal``."""

    def __init__(self, storage: AsyncStorage, portal: BlockingPortal) -> None:
        self.storage = storage
        self._portal = portal

    # The checksum option is the wrapped backend's: reading or changing it here
    # is reading or changing it there.
    @property
    def checksum_algorithm(self) -> Optional[str]:
        return self.storage.storage.checksum_algorithm

    @checksum_algorithm.setter
    def checksum_algorithm(self, value: Optional[str]) -> None:
        self.storage.storage.checksum_algorithm = value

    def _call(self, method: Any, *args: Any) -> Any:
        return self._portal.call(method, *(_async_side(a) for a in args))

    def get(self, file_or_id: Any) -> SyncStoredFile:
        return SyncStoredFile(self._call(self.storage.get, file_or_id), self._portal)

    def create(self, content: Any, filename: Optional[str] = None, content_type: Optional[str] = None) -> str:
        return self._call(self.storage.create, content, filename, content_type)

    def create_with_facts(
        self, content: Any, filename: Optional[str] = None, content_type: Optional[str] = None
    ) -> StoredFacts:
        return self._call(self.storage.create_with_facts, content, filename, content_type)

    def replace(
        self, file_or_id: Any, content: Any, filename: Optional[str] = None, content_type: Optional[str] = None
    ) -> str:
        return self._call(self.storage.replace, file_or_id, content, filename, content_type)

    def delete(self, file_or_id: Any) -> None:
        self._call(self.storage.delete, file_or_id)

    def exists(self, file_or_id: Any) -> bool:
        return self._call(self.storage.exists, file_or_id)

    def list(self) -> List[str]:
        return self._call(self.storage.list)

    def __repr__(self) -> str:
        return "<SyncStorage %r>" % (self.storage,)
