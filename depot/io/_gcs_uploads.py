"""Direct uploads to Google Cloud Storage (:class:`depot.io.gcs.GCSStorage`).

- ``PUT`` (the default up to :data:`~depot.io._upload_targets.LARGE_UPLOAD`):
  a V4 signed URL whose signed headers fix the size range
  (``x-goog-content-length-range: 0,<max_size>``, or ``<size>,<size>`` when
  the intent gave the exact size), the content type when the
  intent allows only one, depot's metadata, the ACL, and
  ``x-goog-if-generation-match: 0`` (an upload never replaces an object).
  The intent's CRC32C or MD5 goes in ``x-goog-hash``, which GCS verifies.
- ``RESUMABLE`` (larger intents, or when asked): a resumable upload session
  created now, with the object's name, type and metadata; the browser sends
  chunks with ``Content-Range`` (the protocol is written in
  ``docs/uploads.rst``).  A session cannot bound the final size: the attach
  step checks it.  Its URL is kept in the marker so an abandoned session
  can be cancelled.

A signed PUT needs credentials that can sign (a service-account key);
without them every upload is a resumable session, which needs none.
"""
from __future__ import annotations

import base64
import datetime
import os
from typing import Any, Dict, Optional

from depot.io._objects import CANNED_ACL_PUBLIC_READ, CHECKSUM_META, depot_metadata, inline_disposition
from depot.io._upload_targets import (
    fixed_content_type,
    initial_content_type,
    refuse,
    seconds_left,
    size_range,
    wants_parts,
    wishes,
)
from depot.io.checksums import parse

__all__ = ["upload_target", "complete_upload", "abandon_upload", "CHUNK_MULTIPLE"]

#: Chunks of a resumable upload but the last are multiples of this (a GCS rule).
CHUNK_MULTIPLE = 256 * 1024
#: V4 signatures live at most seven days.
MAX_EXPIRES = 604800
#: Checksums GCS computes and verifies itself (``x-goog-hash`` names).
_NATIVE = ("crc32c", "md5")
#: What the browser module is told about sessions of an emulator, which
#: cannot answer "how much did you get?" (fake-gcs-server finalises the
#: object on that question): it re-sends a failed chunk instead.
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"


def _emulator() -> Optional[str]:
    return os.environ.get(EMULATOR_ENV) or None


def _checksum_metadata(storage: Any, record: Any) -> Dict[str, str]:
    """The ``x-depot-checksum`` of the object: the name of an algorithm GCS computes itself.

    :class:`~depot.io.gcs.GCSStoredFile` then reports the checksum GCS
    computed from the bytes it received, which no uploader can fake.
    """
    parsed = parse(record.checksum)
    algorithm = parsed[0] if parsed is not None else storage.checksum_algorithm
    return {CHECKSUM_META: algorithm} if algorithm in _NATIVE else {}


def _put_target(storage: Any, record: Any) -> Any:
    from depot.io.gcs import CONTENT_TYPE_META
    from depot.uploads.intents import UploadTarget

    fixed = fixed_content_type(record)
    metadata = dict(depot_metadata(record.filename), **_checksum_metadata(storage, record))
    if fixed is not None:
        metadata[CONTENT_TYPE_META] = fixed
    headers = {"x-goog-meta-" + key: value for key, value in metadata.items()}
    headers["x-goog-content-length-range"] = "%d,%d" % size_range(record)
    headers["x-goog-if-generation-match"] = "0"
    if fixed is not None:
        headers["Content-Type"] = fixed
    disposition = inline_disposition(record.filename)
    if disposition is not None:
        headers["Content-Disposition"] = disposition
    if storage._policy == CANNED_ACL_PUBLIC_READ:
        headers["x-goog-acl"] = "public-read"
    if storage._storage_class:
        headers["x-goog-storage-class"] = storage._storage_class
    parsed = parse(record.checksum)
    if parsed is not None and parsed[0] in _NATIVE:
        headers["x-goog-hash"] = "%s=%s" % (parsed[0], base64.b64encode(bytes.fromhex(parsed[1])).decode("ascii"))
    blob = storage.bucket.blob(storage._prefix + record.file_id)
    url = blob.generate_signed_url(
        version="v4",
        expiration=datetime.timedelta(seconds=seconds_left(record, longest=MAX_EXPIRES)),
        method="PUT",
        headers=dict(headers),  # a copy: the library adds the Host it signs, which browsers set themselves
        credentials=storage._signer,
        api_access_endpoint=_emulator(),
    )
    return UploadTarget("PUT", url, {}, headers, None)


def chunk_size_for(requested: Optional[int], default: int) -> int:
    """The chunk size of a resumable intent: ``requested`` rounded up to a multiple of 256 KiB."""
    size = requested or default
    return max(CHUNK_MULTIPLE, -(-size // CHUNK_MULTIPLE) * CHUNK_MULTIPLE)


def _resumable_target(storage: Any, record: Any) -> Any:
    from depot.uploads.intents import UploadTarget

    content_type = initial_content_type(record)
    blob = storage._new_blob(record.file_id, record.filename, content_type)
    blob.metadata = dict(blob.metadata, **_checksum_metadata(storage, record))
    acl = "publicRead" if storage._policy == CANNED_ACL_PUBLIC_READ else None
    session = blob.create_resumable_upload_session(
        content_type=content_type,
        origin=getattr(storage, "_upload_origin", None),
        checksum=None,  # the browser sends the bytes, not this client
        predefined_acl=acl,
        if_generation_match=0,  # never replaces an object
    )
    part_size = chunk_size_for(wishes(record)[1], storage._chunk_size)
    parts = {"part_size": part_size, "protocol": "gcs-resumable", "query_status": _emulator() is None}
    return UploadTarget("RESUMABLE", session, {}, {}, parts, {"session": session, "part_size": part_size})


def upload_target(storage: Any, record: Any) -> Any:
    """The :class:`~depot.uploads.UploadTarget` of ``record`` on ``storage`` (see the module's text)."""
    method = wishes(record)[2]
    if method not in (None, "PUT", "RESUMABLE", "MULTIPART"):
        raise ValueError("Direct uploads to storage %s (%r) are PUT or RESUMABLE, not %s"
                         % (record.storage, storage, method))
    if method in ("RESUMABLE", "MULTIPART") or (method is None and wants_parts(record)):
        return _resumable_target(storage, record)
    if storage._signer is None:
        if method == "PUT":
            raise ValueError(
                "A signed PUT to %r needs credentials that can sign URLs (a service-account key) "
                "given as the storage's credentials" % (storage,)
            )
        # Creating a session needs no signature, only the storage's own access.
        return _resumable_target(storage, record)
    return _put_target(storage, record)


#: Seconds a session upload may end after its intent expired (clocks differ, the last chunk takes time).
LATE_GRACE = 300


def complete_upload(storage: Any, record: Any) -> None:
    """Refuse an object a resumable session finished long after its intent expired.

    A session stays open for a week whatever the intent said, so the
    service cannot refuse a late upload: this does, from the object's
    creation time.  Signed PUTs need no such check (GCS refuses an expired
    URL), nor does an upload not finished yet (the attach step finds no file).
    """
    if not (record.multipart or {}).get("session"):
        return
    blob = storage._find(record.file_id)
    created = getattr(blob, "time_created", None)
    if created is None or created.timestamp() <= record.expires_at + LATE_GRACE:
        return
    refuse(storage, record, "expired",
           "the upload ended %d s after its intent expired" % (created.timestamp() - record.expires_at))


def abandon_upload(storage: Any, record: Any) -> None:
    """Cancel the resumable session, if any (best effort: it expires by itself), then drop the object."""
    session = (record.multipart or {}).get("session")
    if session:
        try:
            storage.client._http.delete(session, timeout=30)
        except Exception:  # noqa: BLE001 - an unreachable session holds no object
            pass
    storage._remove(record.file_id)
