"""What the S3 and GCS direct-upload targets share: lifetimes, content types, part sizes.

Pure functions over a :class:`~depot.uploads.PendingUpload` record (no cloud
library imported), used by :mod:`depot.io._s3_uploads` and
:mod:`depot.io._gcs_uploads`.
"""
from __future__ import annotations

import math
import mimetypes
import time
from typing import Any, NoReturn, Optional, Tuple

from depot.io.utils import DEFAULT_CONTENT_TYPE

__all__ = [
    "MB",
    "LARGE_UPLOAD",
    "seconds_left",
    "fixed_content_type",
    "type_family",
    "initial_content_type",
    "wishes",
    "wants_parts",
    "size_range",
    "refuse",
]

MB = 1024 * 1024
#: An intent allowing more than this is uploaded in parts unless the application says otherwise:
#: a browser that loses its connection then re-sends one part, not the whole file.
LARGE_UPLOAD = 64 * MB


def seconds_left(record: Any, now: Optional[float] = None, longest: Optional[int] = None) -> int:
    """Whole seconds until ``record`` expires (at least 1, at most ``longest``), for signing URLs.

    Rounded up: a URL never outlives its intent by more than a second, and
    never dies before it.
    """
    left = max(1, math.ceil(record.expires_at - (time.time() if now is None else now)))
    return left if longest is None else min(left, longest)


def fixed_content_type(record: Any) -> Optional[str]:
    """The one content type the upload may have, when the intent allows exactly one (no family)."""
    types = tuple(record.content_types)
    if len(types) == 1 and not types[0].endswith("/*"):
        return types[0]
    return None


def type_family(record: Any) -> Optional[str]:
    """``'image/'`` when the intent allows exactly one family (``'image/*'``), else ``None``."""
    types = tuple(record.content_types)
    if len(types) == 1 and types[0].endswith("/*"):
        return types[0][:-1]
    return None


def _allowed(content_type: str, record: Any) -> bool:
    from depot.uploads.intents import type_allowed

    return type_allowed(content_type, tuple(record.content_types))


def initial_content_type(record: Any) -> str:
    """The content type an upload in parts is created with, before any byte is known.

    Parts carry no type of their own, so it is fixed when the upload is
    created: the intent's only type, else the one the filename suggests
    when it is allowed, else ``application/octet-stream``.  The attach step
    still checks the type sniffed from the bytes.
    """
    fixed = fixed_content_type(record)
    if fixed is not None:
        return fixed
    guessed = mimetypes.guess_type(record.filename)[0] if record.filename else None
    if guessed and _allowed(guessed, record):
        return guessed
    return DEFAULT_CONTENT_TYPE


def wishes(record: Any) -> Tuple[Optional[bool], Optional[int], Optional[str]]:
    """``(multipart wanted, part size, method)`` the application asked for in ``record.multipart``."""
    asked = record.multipart or {}
    method = asked.get("method")
    return asked.get("wanted"), asked.get("part_size"), method.upper() if isinstance(method, str) else None


def wants_parts(record: Any, threshold: int = LARGE_UPLOAD) -> bool:
    """Whether the upload goes in parts: asked for, or (unless refused) allowed to exceed ``threshold``."""
    wanted, part_size, _ = wishes(record)
    if wanted is not None:
        return wanted
    return part_size is not None or record.max_size > threshold


def size_range(record: Any) -> Tuple[int, int]:
    """``(least, most)`` bytes the upload may have: ``(size, size)`` when the intent gave the exact size."""
    return (0, record.max_size) if record.size is None else (record.size, record.size)


def replaced(storage_name: str, file_id: str) -> Any:
    """The :class:`~depot.uploads.UploadRefused` (``incomplete``) of an upload replaced while it was attached.

    A URL still valid (an S3 POST policy) wrote other bytes after the
    checks began: nothing is attached, nothing deleted, the intent stays;
    attaching again checks the new upload.
    """
    from depot.uploads.intents import UploadRefused

    return UploadRefused(storage_name, file_id, "incomplete", "another upload replaced it while it was being checked "
                         "and attached; nothing was attached: attach it again to check the new file")


def refuse(storage: Any, record: Any, code: str, reason: str) -> NoReturn:
    """Remove the upload and its marker, then raise :class:`~depot.uploads.UploadRefused` (``code``).

    For refusals a backend finds while completing an upload: like the
    attach step's own, a refused upload does not linger.
    """
    from depot.uploads._api import discard_upload
    from depot.uploads.intents import UploadRefused

    discard_upload(storage, record)
    raise UploadRefused(record.storage, record.file_id, code, reason)
