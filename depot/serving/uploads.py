"""The rules of a direct upload to the middleware, as pure functions.

A browser holding an :class:`~depot.uploads.UploadIntent` for a local,
memory or GridFS storage sends the file's bytes as the body of
``PUT <mountpoint>/<storage>/<id>?expires=<t>&signature=<token>``, the token
made for the :data:`~depot.serving.signing.UPLOAD` purpose (a download link
never authorises an upload, nor the reverse).  Whether such a request may
store its body is decided in three stages, each from what is known by then,
so that a refusal costs as little as possible:

1. :func:`check_url`: the method, the path and the signature; no storage is
   asked (``405``, ``404``, ``403``).
2. :func:`admit`: the intent's pending record (``None`` when there is no
   marker), whether the file already exists and the request headers, before
   any byte of the body is read (``404``, ``403``, ``409``, ``413``,
   ``415``, ``411``; a ``Content-Length`` other than the intent's exact
   ``size``, when it gave one: ``413`` larger, ``400`` shorter).
3. :class:`BodyCheck`: the body as it streams, chunk by chunk: its size
   (``413`` as soon as it passes ``max_size`` or the exact ``size``), the type sniffed from its
   first bytes (``415``), its length against ``Content-Length`` and its
   checksum against the intent's (``400``) at the end.

Each stage answers ``None`` (go on) or a :class:`Refusal`, whose
:attr:`~Refusal.code` is one of :data:`depot.uploads.intents.REFUSAL_CODES`
where one fits.  Nothing here reads a storage or a socket:
:meth:`depot.serving.core.ServingCore.receive_upload` applies them.
"""
from __future__ import annotations

import time
from http import HTTPStatus
from typing import Any, Mapping, NamedTuple, Optional, Tuple, Union

from depot.io import checksums
from depot.io.interfaces import FileStorage
from depot.uploads.intents import STREAM_GRACE, SNIFF_BYTES, PendingUpload, sniff_content_type, type_allowed

from .paths import split_file_path
from .signing import UPLOAD, LinkSigner

__all__ = ["METHOD", "ALREADY_UPLOADED", "Refusal", "Admitted", "BodyCheck", "is_upload_url", "check_url", "admit"]

#: The method of a direct upload to the middleware.
METHOD = "PUT"


class Refusal(NamedTuple):
    """Why an upload is refused: the HTTP status, a short ``code`` and words a user can be shown."""

    status: HTTPStatus
    code: str
    reason: str


class Admitted(NamedTuple):
    """An upload that may start: the declared ``length`` (``None``: chunked) and the ``content_type`` to store."""

    length: Optional[int]
    content_type: str


_METHOD_NOT_ALLOWED = Refusal(HTTPStatus.METHOD_NOT_ALLOWED, "method", "an upload URL takes PUT only")
#: A file is already stored under the id (a second upload, or one that raced the first).
ALREADY_UPLOADED = Refusal(HTTPStatus.CONFLICT, "already-uploaded", "a file was already uploaded under this id")
_NOT_AN_INTENT = Refusal(HTTPStatus.NOT_FOUND, "not-an-intent",
                         "no upload is pending under this id (never permitted, or already attached)")


def _signed_target(
    path: str, query: str, prefix: str, signer: LinkSigner, now: Optional[float]
) -> Union[Refusal, Tuple[str, str]]:
    target = split_file_path(path, prefix)
    if target is None:
        return _NOT_AN_INTENT
    raw = ("%s/%s" % target).encode("utf-8")
    if signer.remaining(raw, query, now, purpose=UPLOAD) is not None:
        return target
    # A second HMAC, on refusals only, to tell the two apart for the client.
    if signer.remaining(raw, query, 0, purpose=UPLOAD) is not None:
        return Refusal(HTTPStatus.FORBIDDEN, "expired", "the upload URL has expired")
    return Refusal(HTTPStatus.FORBIDDEN, "bad-signature", "the upload URL is not validly signed")


def is_upload_url(
    path: str, query: str, prefix: str, signer: Optional[LinkSigner], now: Optional[float] = None
) -> bool:
    """Whether ``path`` and ``query`` make a valid, unexpired upload URL (with a signer at all)."""
    return signer is not None and not isinstance(_signed_target(path, query, prefix, signer, now), Refusal)


def check_url(
    method: Optional[str], path: str, query: str, prefix: str, signer: LinkSigner, now: Optional[float] = None
) -> Union[Refusal, Tuple[str, str]]:
    """``(storage name, file id)`` of an upload request, or its refusal; no storage is asked.

    ``405`` for another method than ``PUT`` (the caller only asks about
    requests it takes as uploads), ``404`` for a path that names no file,
    ``403`` for a signature that is missing, altered, made for downloads or
    expired.  ``path`` is in WSGI form (latin-1 code points of the raw bytes).
    """
    if method != METHOD:
        return _METHOD_NOT_ALLOWED
    return _signed_target(path, query, prefix, signer, now)


def _declared_length(headers: Mapping[str, str]) -> Union[Refusal, int, None]:
    text = headers.get("CONTENT_LENGTH")
    if text is None or text == "":
        return None
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        return Refusal(HTTPStatus.BAD_REQUEST, "incomplete", "malformed Content-Length %r" % (text,))
    return int(text)


def admit(
    record: Optional[PendingUpload],
    present: bool,
    headers: Mapping[str, str],
    now: float,
    length_known: bool = True,
) -> Union[Refusal, Admitted]:
    """Whether the upload may start reading its body: :class:`Admitted`, or the refusal.

    ``record`` is the intent's marker as read from the storage (``None``:
    never an intent, or already attached), ``present`` whether a file is
    already stored under the id, ``headers`` the request's WSGI keys
    (``CONTENT_LENGTH``, ``CONTENT_TYPE``).  ``length_known`` is false when
    the server cannot tell where a body without ``Content-Length`` ends (a
    WSGI server without ``wsgi.input_terminated``): such a request is
    refused with ``411``; chunked bodies are otherwise counted as they come.
    """
    if record is None or record.claimed_at is not None:
        return _NOT_AN_INTENT
    if record.expires_at <= now:
        return Refusal(HTTPStatus.FORBIDDEN, "expired", "the upload intent has expired")
    if present:
        return ALREADY_UPLOADED
    length = _declared_length(headers)
    if isinstance(length, Refusal):
        return length
    if length is None and not length_known:
        return Refusal(HTTPStatus.LENGTH_REQUIRED, "incomplete", "send a Content-Length")
    if length is not None and length > _limit(record):
        return _too_large(record, "%d bytes" % length)
    if length is not None and record.size is not None and length < record.size:
        return _short(record, length)
    declared = headers.get("CONTENT_TYPE") or None
    if declared is not None:
        declared = declared.split(";", 1)[0].strip().lower() or None
    # The type stored is the one create() would give: declared, else guessed
    # from the intent's filename; it is what is served, so it is checked.
    content_type = FileStorage.fileinfo(b"", record.filename, declared)[2]
    if not type_allowed(declared or content_type, record.content_types):
        return _bad_type(declared or content_type, record)
    return Admitted(length, content_type)


def _limit(record: PendingUpload) -> int:
    """The most bytes the upload may have: the intent's exact ``size`` when it gave one."""
    return record.max_size if record.size is None else record.size


def _too_large(record: PendingUpload, what: str) -> Refusal:
    return Refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too-large", "%s, %s %d allowed" % (
        what, "at most" if record.size is None else "exactly", _limit(record)))


def _short(record: PendingUpload, size: int) -> Refusal:
    return Refusal(HTTPStatus.BAD_REQUEST, "incomplete", "%d bytes, the intent announced %s" % (size, record.size))


def _bad_type(content_type: str, record: PendingUpload) -> Refusal:
    return Refusal(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "bad-type",
                   "content of type %s, allowed: %s" % (content_type, ", ".join(record.content_types)))


class BodyCheck:
    """The checks of an upload's body, fed its chunks in order.

    :meth:`feed` answers a refusal as soon as the bytes pass ``max_size``,
    or once the first :data:`~depot.uploads.intents.SNIFF_BYTES` bytes are
    in, when the type sniffed from them is not allowed (the same rule as
    :func:`~depot.uploads.finish_upload`, so an upload accepted here is not
    refused at attach time for its type).  :meth:`end` checks the length
    against ``Content-Length``, the checksum against the intent's, and the
    time: a body ending more than :data:`~depot.uploads.intents.STREAM_GRACE`
    seconds after the intent expired is refused (the collection of pending
    uploads may have claimed its marker meanwhile: stored, it would be a
    file no marker names).  The caller holds back the bytes until :attr:`sniffed` is true, so nothing of
    a refused type ever reaches the storage.
    """

    def __init__(self, record: PendingUpload, admitted: Admitted) -> None:
        self.record = record
        self.admitted = admitted
        self.size = 0
        self.sniffed = False
        self._head = b""
        expected = checksums.parse(record.checksum)
        self._hasher = None if expected is None else checksums.Hasher(expected[0])

    def feed(self, chunk: Any) -> Optional[Refusal]:
        """Account for the next chunk of the body."""
        self.size += len(chunk)
        if self.size > _limit(self.record):
            return _too_large(self.record, "more bytes")
        if self._hasher is not None:
            self._hasher.update(chunk)
        if not self.sniffed:
            self._head += bytes(chunk[: SNIFF_BYTES - len(self._head)])
            if len(self._head) >= SNIFF_BYTES:
                return self._sniff()
        return None

    def _sniff(self) -> Optional[Refusal]:
        self.sniffed = True
        found = sniff_content_type(self._head, self.admitted.content_type)
        if not type_allowed(found, self.record.content_types):
            return _bad_type(found, self.record)
        return None

    def end(self, now: Optional[float] = None) -> Optional[Refusal]:
        """Account for the end of the body (at ``now``, default the current time)."""
        if (time.time() if now is None else now) > self.record.expires_at + STREAM_GRACE:
            return Refusal(HTTPStatus.FORBIDDEN, "expired", "the upload intent expired while the body was sent")
        if self.admitted.length is not None and self.size != self.admitted.length:
            return Refusal(HTTPStatus.BAD_REQUEST, "incomplete",
                           "%d bytes received, %d announced" % (self.size, self.admitted.length))
        if self.record.size is not None and self.size != self.record.size:
            return _short(self.record, self.size)
        if not self.sniffed:
            refusal = self._sniff()
            if refusal is not None:
                return refusal
        if self._hasher is not None:
            actual = self._hasher.result()
            if actual != (self.record.checksum or "").lower():
                return Refusal(HTTPStatus.BAD_REQUEST, "bad-checksum",
                               "checksum %s, expected %s" % (actual, self.record.checksum))
        return None
