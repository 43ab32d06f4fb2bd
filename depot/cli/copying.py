"""Copying one file between storages under the same id, with optional verification.

The copy uses the backup form of :meth:`FileStorage.replace`: the target is
given a StoredFile as both the id and the content, which creates the file
under that id whether or not it exists there.  The source is wrapped so that
the bytes the target reads are counted (for the progress line) and hashed
(for ``--verify``) on the way, without a second read of the source.

The hash uses the algorithm of the source's stored checksum when it has one
(:attr:`StoredFile.checksum`): ``--verify`` then compares it with the
checksum the target stored while receiving the bytes, instead of reading the
copy back, and also catches a source whose bytes no longer match its own
checksum.  Otherwise SHA-256 of the bytes sent and of the copy read back.
"""
from __future__ import annotations

import enum
from typing import Any, Callable, Optional, Tuple

from depot.io import checksums
from depot.io.interfaces import FileStorage, StoredFile
from depot.io.utils import DEFAULT_NAME, iter_file

__all__ = ["CopyOutcome", "CopyError", "copy_file", "digest_of"]


class CopyOutcome(enum.Enum):
    COPIED = "copied"
    SKIPPED = "skipped"


class CopyError(Exception):
    """The copy of one file failed or did not verify; the message says why."""


class _CountingSource(StoredFile):
    """``source`` under its own id and metadata, hashing and counting what is read."""

    def __init__(self, source: StoredFile, on_bytes: Callable[[int], None]) -> None:
        super().__init__(
            source.file_id,
            # A file written outside depot may have no name; without one the
            # target would look for an existing file to take it from.
            source.filename or DEFAULT_NAME,
            source.content_type,
            source.last_modified,
            source.content_length,
        )
        self._source = source
        self._on_bytes = on_bytes
        self.hash = checksums.Hasher(_algorithm_of(source))
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._source.read(n)
        if data:
            self.hash.update(data)
            self.size += len(data)
            self._on_bytes(len(data))
        return data

    def close(self, *args: Any, **kwargs: Any) -> None:
        self._source.close()

    @property
    def closed(self) -> bool:
        return self._source.closed


def _algorithm_of(f: StoredFile) -> str:
    """The algorithm of ``f``'s stored checksum, else SHA-256."""
    parsed = checksums.parse(getattr(f, "checksum", None))
    return parsed[0] if parsed else "sha256"


def digest_of(f: StoredFile, algorithm: str = "sha256") -> Tuple[str, int]:
    """``(checksum, size)`` of everything left to read in ``f`` (checksum as stored: ``alg:hex``)."""
    h = checksums.Hasher(algorithm)
    size = 0
    for chunk in iter_file(f):
        h.update(chunk)
        size += len(chunk)
    return h.result(), size


def _stored_or_read(f: StoredFile, algorithm: str) -> Tuple[str, Optional[int]]:
    """``f``'s stored checksum if it has one in ``algorithm`` (no read), else :func:`digest_of`."""
    checksum = getattr(f, "checksum", None)
    parsed = checksums.parse(checksum)
    if parsed is not None and parsed[0] == algorithm:
        assert checksum is not None  # parse() found an algorithm in it
        return checksum, f.content_length
    return digest_of(f, algorithm)


def _existing(target: FileStorage, file_id: str) -> Optional[StoredFile]:
    if not target.exists(file_id):
        return None
    try:
        return target.get(file_id)
    except IOError:  # deleted between the two calls
        return None


def copy_file(
    open_source: Callable[[], StoredFile],
    target: FileStorage,
    file_id: str,
    *,
    skip_existing: bool = True,
    verify: bool = False,
    on_bytes: Callable[[int], None] = lambda n: None,
) -> CopyOutcome:
    """Copy the file ``open_source()`` returns to ``target`` under ``file_id``.

    With ``skip_existing``, a file already in the target with the same length
    is left alone (and with ``verify``, only if its content is identical too;
    otherwise it is copied again).  With ``verify``, the copy is read back and
    its SHA-256 compared to the bytes sent, and its filename and content
    type to the source's (without reading it back when the target stored
    a checksum of the source's algorithm).  Raises :class:`CopyError` when
    the copy is incomplete or differs; storage errors propagate.
    """
    source = open_source()
    try:
        if skip_existing:
            existing = _existing(target, file_id)
            if existing is not None:
                with existing:
                    if existing.content_length == source.content_length:
                        if not verify:
                            return CopyOutcome.SKIPPED
                        algorithm = _algorithm_of(source)
                        if _stored_or_read(existing, algorithm) == _stored_or_read(source, algorithm):
                            return CopyOutcome.SKIPPED
                        source.close()  # read to the end by the comparison
                        source = open_source()
        counted = _CountingSource(source, on_bytes)
        target.replace(counted, counted)
    finally:
        source.close()
    if source.content_length is not None and counted.size != source.content_length:
        raise CopyError(
            "source gave %d bytes but its length is %d" % (counted.size, source.content_length)
        )
    if verify:
        sent = counted.hash.result()
        if source.checksum is not None and checksums.parse(source.checksum) and source.checksum != sent:
            raise CopyError(
                "verification failed: the source's bytes (%s) differ from its stored checksum (%s); "
                "run depot verify on the source" % (sent, source.checksum)
            )
        with target.get(file_id) as copy:
            digest, size = _stored_or_read(copy, counted.hash.algorithm)
            names = (copy.filename, copy.content_type)
        if (digest, size) != (sent, counted.size):
            raise CopyError(
                "verification failed: the copy has %s bytes (%s), the source %d bytes (%s)"
                % (size, digest[:24], counted.size, sent[:24])
            )
        if names != (counted.filename, counted.content_type):
            raise CopyError(
                "verification failed: the copy is named %r (%s), the source %r (%s)"
                % (names[0], names[1], counted.filename, counted.content_type)
            )
    return CopyOutcome.COPIED
