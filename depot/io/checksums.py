"""Checksums of stored content, computed while the bytes stream in.

A checksum is stored with a file's metadata as ``"<algorithm>:<hex digest>"``
(``"crc32c:1a2b3c4d"``) and exposed as :attr:`StoredFile.checksum`; files
written by filedepot 0.12 or before checksums existed have none (``None``).
Every backend's write path feeds the bytes it writes to one :class:`Hasher`
from :func:`new_hasher`, so the content is never read a second time.
"""
from __future__ import annotations

import base64
import hashlib
from typing import Any, Optional, Tuple

import google_crc32c

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGORITHM",
    "ChecksumMismatch",
    "Hasher",
    "HashingReader",
    "check_algorithm",
    "compute",
    "new_hasher",
    "parse",
    "base64_digest",
    "crc32c_base64",
]

#: CRC32C is computed by the CPU's own instruction (SSE 4.2 / ARMv8) through
#: google-crc32c, at several GB/s: the default, so checksums cost nothing
#: next to the disk or the network.  It catches bit rot and broken transfers,
#: not tampering: pick ``sha256`` for that.
DEFAULT_ALGORITHM = "crc32c"
ALGORITHMS = ("crc32c", "sha256", "md5")
_OFF = ("none", "off", "false", "")


class ChecksumMismatch(IOError):
    """Content whose checksum is not the expected one (a broken transfer, bit rot)."""

    def __init__(self, message: str, expected: Optional[str] = None, actual: Optional[str] = None) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


def check_algorithm(value: Any) -> Optional[str]:
    """The storage option ``checksum`` normalised: an algorithm name, or ``None`` for off.

    Settings come as strings, so ``"none"`` / ``"off"`` / ``"false"`` / ``""``
    turn checksums off like ``None`` and ``False``.
    """
    if value is None or value is False:
        return None
    if not isinstance(value, str):
        raise ValueError("checksum must be one of %s or None, got %r" % (", ".join(ALGORITHMS), value))
    name = value.strip().lower()
    if name in _OFF:
        return None
    if name not in ALGORITHMS:
        raise ValueError("Unknown checksum algorithm %r: use one of %s or None" % (value, ", ".join(ALGORITHMS)))
    return name


class Hasher:
    """Accumulates the checksum of bytes fed to :meth:`update` in order."""

    __slots__ = ("algorithm", "_crc", "_hash")

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._crc = 0
        self._hash = None if algorithm == "crc32c" else hashlib.new(algorithm)

    def update(self, data: Any) -> None:
        if self._hash is None:
            if type(data) is not bytes:
                # google-crc32c takes only immutable buffers; copy_stream hands it bytes.
                data = bytes(data)
            self._crc = google_crc32c.extend(self._crc, data)
        else:
            self._hash.update(data)

    def hexdigest(self) -> str:
        if self._hash is None:
            return "%08x" % self._crc
        return self._hash.hexdigest()

    def digest(self) -> bytes:
        if self._hash is None:
            return self._crc.to_bytes(4, "big")
        return self._hash.digest()

    def result(self) -> str:
        """The checksum as stored: ``"<algorithm>:<hex digest>"``."""
        return "%s:%s" % (self.algorithm, self.hexdigest())


class HashingReader:
    """A stream that feeds every byte read from ``stream`` to ``hasher``, once, in order.

    For uploaders that read the content themselves (GCS resumable uploads):
    the checksum is taken as the bytes go out, not in a second pass.  An
    uploader that seeks back to send a piece again (a retried request) gets
    the bytes again, but they are hashed only the first time.
    """

    def __init__(self, stream: Any, hasher: Hasher) -> None:
        self._stream = stream
        self._hasher = hasher
        self._position = 0
        self._hashed = 0  # bytes [0, _hashed) went into the hasher

    def read(self, size: int = -1) -> bytes:
        if self._position > self._hashed:
            raise ValueError("cannot checksum a stream read with bytes skipped")
        data = self._stream.read(size)
        end = self._position + len(data)
        if end > self._hashed:
            self._hasher.update(data[self._hashed - self._position :] if self._hashed > self._position else data)
            self._hashed = end
        self._position = end
        return data

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self._stream.seek(offset, whence)
        self._position = position
        return position

    def seekable(self) -> bool:
        return bool(self._stream.seekable())

    def readable(self) -> bool:
        return True


def new_hasher(algorithm: Optional[str]) -> Optional[Hasher]:
    """A :class:`Hasher` for a normalised algorithm (see :func:`check_algorithm`), ``None`` for off."""
    return None if algorithm is None else Hasher(algorithm)


def compute(algorithm: str, data: Any) -> str:
    """The stored form of the checksum of ``data`` (bytes) with ``algorithm``."""
    hasher = Hasher(algorithm)
    hasher.update(data)
    return hasher.result()


def parse(checksum: Optional[str]) -> Optional[Tuple[str, str]]:
    """``(algorithm, hex digest)`` of a stored checksum; ``None`` if absent or not understood.

    A value this version cannot read (written by hand, or by a later version
    with another algorithm) counts as no checksum rather than as a mismatch.
    """
    if not isinstance(checksum, str):
        return None
    algorithm, sep, digest = checksum.partition(":")
    if not sep or algorithm not in ALGORITHMS or not digest:
        return None
    return algorithm, digest


def readable(checksum: Any) -> Optional[str]:
    """A checksum read back from metadata, or ``None`` when it is not one this version understands."""
    return checksum if parse(checksum) is not None else None


def crc32c_base64(data: bytes) -> str:
    """The CRC32C of ``data`` as S3's ``x-amz-checksum-crc32c`` carries it."""
    return base64_digest(google_crc32c.value(data).to_bytes(4, "big"))


def base64_digest(digest: bytes) -> str:
    """A digest as S3 and GCS transmit checksums: base64 of its bytes (CRC32C: 4, big-endian)."""
    return base64.b64encode(digest).decode("ascii")
