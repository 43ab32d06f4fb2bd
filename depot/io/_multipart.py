"""Upload planning for the object stores: one request for small content, a stream for large.

A source of unknown size is peeked at (:func:`plan_upload`,
:class:`HeadThenRest`) rather than read whole, so memory stays bounded
whatever the size; the storages then send the stream as a multipart
(S3) or resumable (GCS) upload.
"""
from __future__ import annotations

import io
from typing import Any, Optional, Tuple

from depot.io import utils

__all__ = ["remaining_size", "read_head", "HeadThenRest", "plan_upload"]


def remaining_size(fileobj: Any) -> Optional[int]:
    """Bytes left between the position of a seekable ``fileobj`` and its end, else ``None``.

    The position is restored.  Objects that claim to seek but fail (HTTP
    bodies, other storages' files) count as not seekable.
    """
    seekable = getattr(fileobj, "seekable", None)
    try:
        if seekable is None or not seekable():
            return None
        position = fileobj.tell()
        end = fileobj.seek(0, io.SEEK_END)
        fileobj.seek(position)
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(end, int) or not isinstance(position, int):
        return None
    return max(end - position, 0)


def read_head(fileobj: Any, limit: int) -> bytes:
    """Read up to ``limit`` bytes, fewer only at the end of the stream."""
    parts = []
    missing = limit
    while missing > 0:
        chunk = fileobj.read(min(missing, utils.CHUNK_SIZE))
        if not chunk:
            break
        utils.check_chunk(chunk)
        parts.append(chunk)
        missing -= len(chunk)
    return b"".join(parts)


class HeadThenRest(io.RawIOBase):
    """A forward-only stream: bytes already read from ``rest``, then the rest of it.

    Lets an upload peek at the start of a non-seekable stream (to choose a
    single request or a multipart one) without reading the whole of it.
    ``tell()`` counts the bytes handed out; ``seek`` only to that position
    is allowed, which is all a chunked uploader asks of a stream it cannot
    rewind.
    """

    def __init__(self, head: bytes, rest: Any) -> None:
        self._head: Any = memoryview(head) if head else None
        self._rest = rest
        self._position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        # Fills the buffer unless the stream ends: uploaders take a short
        # read for the end of the stream and would send undersized parts.
        target = memoryview(buffer).cast("B")
        filled = 0
        if self._head is not None:
            filled = min(len(target), len(self._head))
            target[:filled] = self._head[:filled]
            # Dropped once consumed: even an empty slice would keep the whole head alive.
            self._head = self._head[filled:] if filled < len(self._head) else None
        rest_readinto = getattr(self._rest, "readinto", None)
        while filled < len(target):
            if rest_readinto is not None and not isinstance(self._rest, io.TextIOBase):
                n = rest_readinto(target[filled:])  # straight into the buffer: no copy
            else:
                chunk = self._rest.read(len(target) - filled)
                utils.check_chunk(chunk)
                n = len(chunk)
                target[filled : filled + n] = chunk
            if not n:
                break
            filled += n
        self._position += filled
        return filled

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if (whence, offset) not in ((io.SEEK_SET, self._position), (io.SEEK_CUR, 0)):
            raise io.UnsupportedOperation("stream can only move forward")
        return self._position

    def seekable(self) -> bool:
        return False


def plan_upload(content: Any, threshold: int) -> Tuple[Optional[bytes], Any]:
    """Decide between one request and a chunked upload for ``content``.

    Returns ``(data, None)`` when the content is at most ``threshold`` bytes
    (then read into ``data``), else ``(None, stream)``: a stream positioned at
    0 that yields the whole content.  A non-seekable source is read only up
    to ``threshold + 1`` bytes here, so memory stays bounded.
    """
    if isinstance(content, (bytes, bytearray, memoryview)):
        data = bytes(content)
        return (data, None) if len(data) <= threshold else (None, io.BytesIO(data))
    size = remaining_size(content)
    if size is not None and size > threshold and content.tell() == 0:
        return None, content
    head = read_head(content, threshold + 1)
    if len(head) <= threshold:
        return head, None
    return None, HeadThenRest(head, content)
