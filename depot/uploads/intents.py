"""The records of direct uploads: what the server keeps, what the browser gets, why one is refused.

A direct upload goes in three steps.  The application asks for an
:class:`UploadIntent` (:func:`depot.uploads.create_upload_intent`), which
first writes a :class:`PendingUpload` record (the *marker*) beside the
storage's files, then asks the storage how the browser uploads
(:class:`UploadTarget`).  The browser sends the bytes straight to the
storage (or to the middleware for local, memory and GridFS storages).  The
application then attaches the id to a field, which checks the upload
against the record (:func:`depot.uploads.finish_upload`) and *claims* it:
the marker is replaced by the record with ``claimed_at`` set (see
:func:`claimed`), never deleted, so the file keeps a marker until its row
is committed.  ``depot gc --pending-older-than`` removes an upload whose
marker is still pending once its intent expired (the file, then the
marker); of a claimed marker it removes only the marker, once claimed
longer ago than the given age, and ``depot fsck`` then judges the file
from the rows like any other.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

__all__ = [
    "UploadRefused",
    "PendingUpload",
    "UploadIntent",
    "UploadTarget",
    "REFUSAL_CODES",
    "ATTACH_GRACE",
    "STREAM_GRACE",
    "CLAIM_TIMEOUT",
    "METHODS",
    "sniff_content_type",
    "type_allowed",
]

#: Seconds after an intent's ``expires_at`` during which its upload may
#: still be attached (:func:`~depot.uploads.finish_upload` refuses
#: ``expired`` after that), and before which
#: :func:`~depot.uploads.collect_pending` never takes it, whatever its
#: ``older_than``: the attach step and the collection never overlap in time.
ATTACH_GRACE = 3600.0

#: Seconds after ``expires_at`` during which an upload to the middleware that
#: began in time may still end; a body ending later is refused and nothing is
#: stored.  Much less than :data:`ATTACH_GRACE`, so the collection never meets
#: an upload in flight.
STREAM_GRACE = 300.0

#: Seconds after which a claim still held on an object store is taken for
#: one whose holder died.  An S3 claim object
#: (``.depot-pending/.claims/<id>``) is held for the three requests of the
#: claim, half an hour at worst with botocore's timeouts and retries; one a
#: process killed in between leaves refuses every later claim of the id,
#: until :func:`~depot.uploads.collect_pending` releases it once older than
#: this.  Its upload is then judged by its marker, as any other.
CLAIM_TIMEOUT = 3600.0

#: Why an upload is refused, as :attr:`UploadRefused.code` says it.
REFUSAL_CODES = (
    "expired",  # the intent's time ran out before the upload was made
    "bad-signature",  # the upload URL was altered or signed with another secret
    "too-large",  # more bytes than the intent's max_size
    "bad-type",  # the content type (declared or sniffed) is not an allowed one
    "bad-checksum",  # the bytes do not have the checksum the intent expected
    "not-an-intent",  # never an intent, or already attached (its marker is gone)
    "incomplete",  # the upload has not finished (no file yet, missing parts)
    "already-uploaded",  # a second upload to the same intent
    "rejected",  # the field's validators or filters refused the file when it was attached
)

#: The ways a browser may be told to upload (:attr:`UploadIntent.method`).
METHODS = ("POST", "PUT", "MULTIPART", "RESUMABLE")


class UploadRefused(ValueError):
    """A direct upload that cannot be accepted or attached.

    :attr:`code` is one of :data:`REFUSAL_CODES`; :attr:`storage` and
    :attr:`file_id` name the upload and :attr:`reason` says why in words a
    user can be shown.  The message names all three.
    """

    def __init__(self, storage: Optional[str], file_id: Optional[str], code: str, reason: str) -> None:
        if code not in REFUSAL_CODES:
            raise ValueError("Unknown refusal code %r" % (code,))
        super().__init__("Upload %s to storage %s refused (%s): %s" % (file_id, storage, code, reason))
        self.storage = storage
        self.file_id = file_id
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class PendingUpload:
    """The server-side record of an upload permitted but not yet attached (the marker's content).

    ``content_types`` is empty for any type; entries may name a family
    (``'image/*'``).  ``checksum`` is ``"<algorithm>:<hex digest>"`` as
    :attr:`depot.io.interfaces.StoredFile.checksum`.  ``multipart`` holds what
    the backend needs to remember between the intent and the attach (the S3
    ``UploadId`` and part size); before the backend has answered it holds the
    application's wishes, ``{"wanted": bool or None, "part_size": int or
    None, "method": str or None}``.  ``size``, when the application gave it,
    is the exact number of bytes the upload must have.  ``claimed_at`` is
    set when the upload is being attached (see :func:`claimed`), or, with
    ``collecting`` true, when ``depot gc`` claimed it to delete it.  Times
    are seconds since the epoch.
    """

    storage: str
    file_id: str
    created_at: float
    expires_at: float
    max_size: int
    content_types: Tuple[str, ...] = ()
    filename: Optional[str] = None
    checksum: Optional[str] = None
    multipart: Optional[Dict[str, Any]] = None
    size: Optional[int] = None
    claimed_at: Optional[float] = None
    collecting: bool = False

    def to_json(self) -> bytes:
        """The marker's bytes: UTF-8 JSON with every field."""
        data = asdict(self)
        data["content_types"] = list(self.content_types)
        return json.dumps(data, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, raw: Any) -> "PendingUpload":
        """Read a marker back; :class:`ValueError` if it is not one."""
        try:
            data = json.loads(raw)
            return cls(
                storage=str(data["storage"]),
                file_id=str(data["file_id"]),
                created_at=float(data["created_at"]),
                expires_at=float(data["expires_at"]),
                max_size=int(data["max_size"]),
                content_types=tuple(str(t) for t in data.get("content_types") or ()),
                filename=data.get("filename"),
                checksum=data.get("checksum"),
                multipart=data.get("multipart"),
                size=None if data.get("size") is None else int(data["size"]),
                claimed_at=None if data.get("claimed_at") is None else float(data["claimed_at"]),
                collecting=bool(data.get("collecting", False)),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            raise ValueError("Not a pending upload record: %r" % (raw[:200] if raw else raw,)) from None


def claimed(raw: Optional[bytes]) -> bool:
    """Whether the marker ``raw`` is a *claimed* one: its upload is being (or was) attached.

    Attaching does not delete the marker but replaces it by the record with
    ``claimed_at`` set (``FileStorage._pending_claim``): while a marker of
    either kind exists, ``depot fsck`` never takes the file for an orphan,
    whatever its age, so an upload made long ago is safe between the claim
    and the commit of the row.  ``depot gc --pending-older-than`` removes a
    claimed marker once it is older than the given age, and only the
    marker: the file is then judged by ``fsck`` from the rows, like any
    other file.  An unreadable marker is not a claimed one.
    """
    if raw is None:
        return False
    try:
        return PendingUpload.from_json(raw).claimed_at is not None
    except ValueError:
        return False


class UploadTarget(NamedTuple):
    """How the browser uploads one file, as a storage's ``_upload_target`` answers.

    ``method`` is ``"POST"`` (a form: ``fields`` then the file), ``"PUT"``
    (the raw body, with ``headers``) or ``"MULTIPART"`` (``parts``:
    ``{"part_size": int, "urls": [url, ...]}``, each a signed PUT of one
    part, in order).  ``multipart``, when not ``None``, replaces the
    record's :attr:`PendingUpload.multipart` (the S3 ``UploadId``): the
    marker is rewritten with it before the intent is handed out.
    """

    method: str
    url: str
    fields: Dict[str, str] = {}
    headers: Dict[str, str] = {}
    parts: Optional[Dict[str, Any]] = None
    multipart: Optional[Dict[str, Any]] = None


@dataclass(frozen=True)
class UploadIntent:
    """What the application hands to the browser: a signed, expiring permission to upload one file.

    :meth:`as_dict` is what the JavaScript module ``depot-upload.js`` takes.
    """

    storage: str
    file_id: str
    expires_at: float
    max_size: int
    content_types: Tuple[str, ...]
    method: str
    url: str
    fields: Dict[str, str] = field(default_factory=dict)
    headers: Dict[str, str] = field(default_factory=dict)
    parts: Optional[Dict[str, Any]] = None

    @property
    def id(self) -> str:
        return self.file_id

    def as_dict(self) -> Dict[str, Any]:
        """A plain JSON-able dict for the browser.

        Keys: ``id, storage, method, url, fields, headers, parts, max_size,
        content_types, expires_at``.
        """
        return {
            "id": self.file_id,
            "storage": self.storage,
            "method": self.method,
            "url": self.url,
            "fields": dict(self.fields),
            "headers": dict(self.headers),
            "parts": None if self.parts is None else dict(self.parts),
            "max_size": self.max_size,
            "content_types": list(self.content_types),
            "expires_at": self.expires_at,
        }


# -- content types ------------------------------------------------------------

#: Signatures of the formats whose first bytes tell them apart reliably:
#: (offset, magic bytes, content type).  Checked in order.
_SIGNATURES: List[Tuple[int, bytes, str]] = [
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"BM", "image/bmp"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (0, b"\x00\x00\x01\x00", "image/x-icon"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"\x1a\x45\xdf\xa3", "video/webm"),
    (0, b"OggS", "audio/ogg"),
    (0, b"fLaC", "audio/flac"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
]
_RIFF = {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}
_FTYP = {b"avif": "image/avif", b"heic": "image/heic", b"qt  ": "video/quicktime", b"M4A ": "audio/mp4"}
_ZIP = "application/zip"
#: Families whose content types are only believed when the bytes say so.
_CHECKED_FAMILIES = ("image/", "video/", "audio/")
_CHECKED_TYPES = {sig[2] for sig in _SIGNATURES} | set(_RIFF.values()) | {_ZIP, "video/mp4"}

#: How many first bytes :func:`sniff_content_type` needs.
SNIFF_BYTES = 64

_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/(\*|[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*)$")


def _signature_type(head: bytes) -> Optional[str]:
    for offset, magic, content_type in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return content_type
    if head[:4] == b"RIFF" and head[8:12] in _RIFF:
        return _RIFF[head[8:12]]
    if head[4:8] == b"ftyp":
        return _FTYP.get(head[8:12], "video/mp4")
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _ZIP
    return None


def sniff_content_type(head: bytes, declared: Optional[str] = None) -> str:
    """The content type an upload is taken to have, from its first bytes (:data:`SNIFF_BYTES`).

    A recognised signature wins over what the uploader declared.  Without
    one, the declared type is believed unless it claims a format whose
    signature would have been recognised (an image, audio or video type,
    a PDF, a ZIP): a ``'image/png'`` that does not start like a PNG is
    ``'application/octet-stream'``, so it passes only where anything does.
    Formats without a signature (text, CSV, JSON) keep their declared type.
    """
    found = _signature_type(head)
    if found is not None:
        return found
    if declared:
        base = declared.split(";", 1)[0].strip().lower()
        if base not in _CHECKED_TYPES and not base.startswith(_CHECKED_FAMILIES) and _TYPE_RE.match(base):
            return base
    return "application/octet-stream"


def check_content_types(content_types: Any) -> Tuple[str, ...]:
    """The ``content_types`` argument of an intent, normalised; :class:`ValueError` if malformed."""
    if content_types is None:
        return ()
    if isinstance(content_types, str):
        content_types = (content_types,)
    try:
        items = tuple(content_types)
    except TypeError:
        raise ValueError("content_types must be a sequence of strings, got %r" % (content_types,)) from None
    normalised = []
    for item in items:
        if not isinstance(item, str) or not _TYPE_RE.match(item.strip()):
            raise ValueError("Malformed content type %r: expected 'type/subtype' or 'type/*'" % (item,))
        normalised.append(item.strip().lower())
    return tuple(normalised)


def type_allowed(content_type: str, allowed: Tuple[str, ...]) -> bool:
    """Whether ``content_type`` is one of ``allowed`` (empty: any; ``'image/*'`` a family)."""
    if not allowed:
        return True
    from depot.validators import ContentTypeValidator

    return ContentTypeValidator(allowed).matches(content_type)
