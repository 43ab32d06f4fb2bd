"""Direct uploads to S3 (:class:`depot.io.boto3.S3Storage`): presigned POST, PUT and multipart parts.

The browser sends the bytes to the bucket; what it may send is fixed by
the signature, so the service refuses the rest at its door:

- ``POST`` (the default up to :data:`~depot.io._upload_targets.LARGE_UPLOAD`):
  a presigned POST policy with ``content-length-range [0, max_size]``, the
  content type (exact, or ``starts-with`` for ``image/*``), depot's
  metadata (filename, modification time, checksum), the ACL and storage
  class of the storage, and the intent's checksum in the form S3 verifies
  (``x-amz-checksum-sha256`` / ``-crc32c``, ``Content-MD5``).
- ``PUT`` (when the intent asks for it): a presigned PUT with the same
  headers signed.  S3 cannot bound the size of a presigned PUT: it is
  checked when the upload is attached.
- ``MULTIPART`` (larger intents, or when asked): CreateMultipartUpload at
  intent time (its ``UploadId`` is kept in the marker) and one presigned
  UploadPart URL per possible part.  :func:`complete_upload` lists the
  parts and completes the upload; the browser never reads ETags.
"""
from __future__ import annotations

import base64
import dataclasses
import time
from typing import Any, Dict, List, Optional, Tuple

from botocore.config import Config
from botocore.exceptions import ClientError

from depot.io._objects import CHECKSUM_META
from depot.io._upload_targets import (
    MB,
    fixed_content_type,
    initial_content_type,
    refuse,
    seconds_left,
    size_range,
    type_family,
    wants_parts,
    wishes,
)
from depot.io.checksums import Hasher, parse

__all__ = ["upload_target", "complete_upload", "abandon_upload", "MIN_PART_SIZE", "MAX_PART_SIZE"]

#: S3 refuses parts smaller than this, except the last one.
MIN_PART_SIZE = 5 * MB
#: S3 accepts no larger part (and no larger single PUT or POST).
MAX_PART_SIZE = 5 * 1024 * MB
#: S3 accepts at most this many parts.
MAX_PARTS = 10000
#: Without an explicit part size, parts grow so that an intent lists at most this many URLs.
URLS_PER_INTENT = 1000
#: SigV4 signatures live at most seven days.
MAX_EXPIRES = 604800

#: S3 argument -> header (and POST form field) of the object it describes.
_HEADERS = {
    "ContentType": "Content-Type",
    "ContentDisposition": "Content-Disposition",
    "StorageClass": "x-amz-storage-class",
    "ServerSideEncryption": "x-amz-server-side-encryption",
    "ChecksumSHA256": "x-amz-checksum-sha256",
    "ChecksumCRC32C": "x-amz-checksum-crc32c",
    "ContentMD5": "Content-MD5",
}
#: How S3 verifies a checksum of each algorithm depot knows: the argument carrying it.
_SERVICE_CHECKSUM = {"sha256": "ChecksumSHA256", "crc32c": "ChecksumCRC32C", "md5": "ContentMD5"}


def _signer(storage: Any) -> Any:
    """A SigV4 client of the storage's credentials and endpoint (POST policies need SigV4)."""
    signer = getattr(storage, "_upload_signer", None)
    if signer is None:
        signer = storage._session.client("s3", config=Config(signature_version="s3v4"), **storage._client_kwargs)
        storage._upload_signer = signer  # built once; two threads racing here build two equal clients
    return signer


def _location(storage: Any, record: Any) -> Tuple[str, str]:
    return storage._bucket_driver.bucket.name, storage._bucket_driver.prefix + record.file_id


def _object_args(storage: Any, record: Any, content_type: Optional[str]) -> Dict[str, Any]:
    """The PutObject arguments of the upload: the ones :meth:`S3Storage.create` sends, plus the checksum.

    ``content_type`` ``None`` leaves the type to the browser (checked when attached).
    """
    args = storage._extra_args(record.filename, content_type)
    if content_type is None:
        del args["ContentType"]
    parsed = parse(record.checksum)
    if parsed is not None:
        algorithm, digest = parsed
        # Sent where S3 verifies it: a body with another checksum is refused and
        # nothing is stored, so the metadata below can be believed.
        args[_SERVICE_CHECKSUM[algorithm]] = base64.b64encode(bytes.fromhex(digest)).decode("ascii")
        args["Metadata"][CHECKSUM_META] = record.checksum
    return args


def _headers(args: Dict[str, Any]) -> Dict[str, str]:
    """The object headers (and POST form fields, but for ``acl``) that ``args`` stand for."""
    headers = {_HEADERS[name]: str(value) for name, value in args.items() if name in _HEADERS}
    headers.update({"x-amz-meta-" + key: value for key, value in args.get("Metadata", {}).items()})
    if "ACL" in args:
        headers["x-amz-acl"] = args["ACL"]
    unknown = set(args) - set(_HEADERS) - {"Metadata", "ACL"}
    if unknown:
        # A storage subclass adding arguments this module cannot sign for a browser.
        raise NotImplementedError("Direct uploads cannot carry the S3 arguments %s" % ", ".join(sorted(unknown)))
    return headers


def _post_target(storage: Any, record: Any, expires: int) -> Any:
    from depot.uploads.intents import UploadTarget

    bucket, key = _location(storage, record)
    fixed = fixed_content_type(record)
    fields = _headers(_object_args(storage, record, fixed))
    if "x-amz-acl" in fields:
        fields["acl"] = fields.pop("x-amz-acl")
    conditions: List[Any] = [{name: value} for name, value in fields.items()]
    # The intent's exact size, when given, is the whole range: S3 refuses any other.
    conditions.append(["content-length-range", *size_range(record)])
    if fixed is None:
        # The browser adds the file's own type; a family limits it here, the
        # attach step checks it against the bytes in every case.
        conditions.append(["starts-with", "$Content-Type", type_family(record) or ""])
    post = _signer(storage).generate_presigned_post(bucket, key, Fields=fields, Conditions=conditions,
                                                    ExpiresIn=expires)
    return UploadTarget("POST", post["url"], dict(post["fields"]), {}, None)


def _put_target(storage: Any, record: Any, expires: int) -> Any:
    from depot.uploads.intents import UploadTarget

    bucket, key = _location(storage, record)
    args = _object_args(storage, record, fixed_content_type(record))
    # If-None-Match: * (signed): the URL can create the object, never replace
    # it, so the file once attached cannot be overwritten until the URL expires.
    url = _signer(storage).generate_presigned_url(
        "put_object", Params=dict(args, Bucket=bucket, Key=key, IfNoneMatch="*"), ExpiresIn=expires
    )
    # Every one of them is signed: the browser sends them as they are.
    return UploadTarget("PUT", url, {}, dict(_headers(args), **{"If-None-Match": "*"}), None)


def part_size_for(max_size: int, requested: Optional[int], default: int) -> int:
    """The part size of a multipart intent for at most ``max_size`` bytes.

    ``requested`` (the application's) must be within S3's limits
    (:class:`ValueError` otherwise); by default the storage's
    ``multipart_chunksize`` grows so the intent lists at most
    :data:`URLS_PER_INTENT` URLs.
    """
    if requested is not None:
        if not MIN_PART_SIZE <= requested <= MAX_PART_SIZE:
            raise ValueError("part_size must be from %d (5 MiB) to %d (5 GiB) bytes for S3, got %d"
                             % (MIN_PART_SIZE, MAX_PART_SIZE, requested))
        if -(-max_size // requested) > MAX_PARTS:
            raise ValueError("part_size %d would need more than %d parts for max_size %d"
                             % (requested, MAX_PARTS, max_size))
        return requested
    size = max(default, MIN_PART_SIZE, -(-max_size // URLS_PER_INTENT))
    size = -(-size // MB) * MB  # whole MiB: easier on the eye in the intent and the logs
    if size > MAX_PART_SIZE:
        raise ValueError("max_size %d is more than S3 accepts in one upload" % max_size)
    return size


def _multipart_target(storage: Any, record: Any, expires: int) -> Any:
    from depot.uploads.intents import UploadTarget

    bucket, key = _location(storage, record)
    part_size = part_size_for(record.max_size, wishes(record)[1], storage._part_size)
    # With the exact size known, exactly the parts the file needs: the
    # upload is incomplete until every one of them arrived.
    count = max(1, -(-(record.max_size if record.size is None else record.size) // part_size))
    args = _object_args(storage, record, initial_content_type(record))
    for name in ("ChecksumSHA256", "ChecksumCRC32C", "ContentMD5"):
        # A whole-object checksum is not an argument of CreateMultipartUpload:
        # the attach step checks it (the metadata only says what it must be).
        args.pop(name, None)
    args["Metadata"].pop(CHECKSUM_META, None)
    upload_id = storage._client.create_multipart_upload(Bucket=bucket, Key=key, **args)["UploadId"]
    signer = _signer(storage)
    urls = [
        signer.generate_presigned_url(
            "upload_part", Params={"Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": number},
            ExpiresIn=expires,
        )
        for number in range(1, count + 1)
    ]
    kept = {"upload_id": upload_id, "part_size": part_size, "parts": count}
    return UploadTarget("MULTIPART", urls[0], {}, {}, {"part_size": part_size, "urls": urls}, kept)


def upload_target(storage: Any, record: Any) -> Any:
    """The :class:`~depot.uploads.UploadTarget` of ``record`` on ``storage`` (see the module's text)."""
    expires = seconds_left(record, longest=MAX_EXPIRES)
    method = wishes(record)[2]
    if method not in (None, "POST", "PUT", "MULTIPART"):
        raise ValueError("Direct uploads to storage %s (%r) are POST, PUT or MULTIPART, not %s"
                         % (record.storage, storage, method))
    if method == "MULTIPART" or (method is None and wants_parts(record)):
        return _multipart_target(storage, record, expires)
    if record.max_size > MAX_PART_SIZE:
        raise ValueError("S3 takes at most 5 GiB in one request: upload %s of up to %d bytes needs parts"
                         % (record.file_id, record.max_size))
    if method == "PUT":
        return _put_target(storage, record, expires)
    return _post_target(storage, record, expires)


def _listed_parts(client: Any, bucket: str, key: str, upload_id: str) -> List[Dict[str, Any]]:
    """Every part S3 holds for the upload, one per number (the last sent wins), in order."""
    parts: Dict[int, Dict[str, Any]] = {}
    args: Dict[str, Any] = {"Bucket": bucket, "Key": key, "UploadId": upload_id}
    while True:
        page = client.list_parts(**args)
        for part in page.get("Parts", ()):
            # Some services (SeaweedFS) list a part sent twice twice, in no
            # set order: the newest wins (the last listed among equals).
            seen = parts.get(part["PartNumber"])
            if seen is None or not part.get("LastModified") or not seen.get("LastModified") \
                    or part["LastModified"] >= seen["LastModified"]:
                parts[part["PartNumber"]] = part
        if not page.get("IsTruncated"):
            return [parts[number] for number in sorted(parts)]
        args["PartNumberMarker"] = page["NextPartNumberMarker"]


def _multipart_of(record: Any) -> Optional[str]:
    return (record.multipart or {}).get("upload_id")


def complete_upload(storage: Any, record: Any) -> None:
    """Complete the multipart upload of ``record`` from the parts S3 holds.

    :class:`IOError` (the attach step's "incomplete") when no part arrived
    or a part is missing before the last one (with the intent's exact
    ``size``: any part the file needs is missing, or the parts are
    shorter); the upload stays, so the browser may still send it.  More bytes than the intent allows: the
    parts and the marker are dropped and
    :class:`~depot.uploads.UploadRefused` raised, nothing is stored.
    Completing again after a crash finds the object already there and does
    nothing.  A POST or PUT needs no completion; its checksum, if the
    intent gave one, is made believable (:func:`_vouch_for_checksum`).
    """
    upload_id = _multipart_of(record)
    if upload_id is None:
        if record.checksum is not None:
            _vouch_for_checksum(storage, record)
        return
    from depot.io.boto3 import error_code

    bucket, key = _location(storage, record)
    client = storage._client
    try:
        parts = _listed_parts(client, bucket, key, upload_id)
    except ClientError as exc:
        if error_code(exc) == "NoSuchUpload" and storage.exists(record.file_id):
            return  # completed by an earlier attempt
        raise IOError("Multipart upload of file %s to %r is gone (%s)" % (record.file_id, storage, exc)) from exc
    if not parts:
        raise IOError("No part of file %s was uploaded to %r yet" % (record.file_id, storage))
    numbers = [part["PartNumber"] for part in parts]
    # Every part up to the last one sent; with the exact size known, every part the file needs.
    needed = numbers[-1] if record.size is None else (record.multipart or {}).get("parts", numbers[-1])
    missing = sorted(set(range(1, needed + 1)) - set(numbers))
    if missing:
        raise IOError("File %s in %r misses part(s) %s" % (record.file_id, storage, missing[:10]))
    size = sum(part["Size"] for part in parts)
    limit = record.max_size if record.size is None else record.size
    if size > limit:
        # Refused like the attach step's other refusals: parts, then marker.
        refuse(storage, record, "too-large", "%d bytes uploaded in parts, %s %d allowed" % (
            size, "at most" if record.size is None else "exactly", limit))
    if record.size is not None and size < record.size:
        # A part sent short can be sent again: the upload stays, incomplete.
        raise IOError("File %s in %r has %d bytes in parts, %d announced"
                      % (record.file_id, storage, size, record.size))
    try:
        client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": part["PartNumber"], "ETag": part["ETag"]} for part in parts]},
        )
    except ClientError as exc:
        # EntityTooSmall (a part under 5 MiB before the last) and the like:
        # the parts as sent cannot make an object.
        raise IOError("S3 did not complete file %s in %r: %s" % (record.file_id, storage, exc)) from exc


#: HeadObject's member holding the checksum S3 verified on upload, per algorithm.
_VERIFIED = {"sha256": "ChecksumSHA256", "crc32c": "ChecksumCRC32C"}


def _vouch_for_checksum(storage: Any, record: Any) -> None:
    """Make sure the ``x-depot-checksum`` a POST or PUT wrote is the checksum of the stored bytes.

    The metadata says what the intent expected; S3 refused other bytes
    (``x-amz-checksum-*``, ``Content-MD5``) and reports the checksum it
    verified.  A service that reports none (moto) may not have verified
    either: the object is then read once, in bounded memory, and refused
    (``bad-checksum``) if it does not match, so the attach step can believe
    the stored checksum.
    """
    from depot.io.boto3 import error_code, is_missing

    bucket, key = _location(storage, record)
    algorithm, digest = parse(record.checksum) or ("", "")
    try:
        head = storage._client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as exc:
        if is_missing(exc) or error_code(exc) == "404":
            return  # nothing uploaded yet: the attach step says so
        raise
    if algorithm == "md5":
        etag = head.get("ETag", "").strip('"')
        reported = etag if "-" not in etag and len(etag) == 32 else None
    else:
        value = head.get(_VERIFIED[algorithm])
        reported = base64.b64decode(value).hex() if value else None
    if reported is None:
        body = storage._client.get_object(Bucket=bucket, Key=key, IfMatch=head["ETag"])["Body"]
        hasher = Hasher(algorithm)
        try:
            for chunk in body.iter_chunks(MB):
                hasher.update(chunk)
        finally:
            body.close()
        reported = hasher.hexdigest()
    if reported != digest:
        refuse(storage, record, "bad-checksum", "checksum %s:%s, expected %s" % (algorithm, reported, record.checksum))


def seal_upload(storage: Any, record: Any) -> Optional[str]:
    """Move a claimed POST upload to a fresh id (server-side copy); the new id, ``None`` for the others.

    A POST policy has no conditional write: until it expires it could
    replace the attached object with bytes no one checked.  The copy under
    a new id is out of its reach (a later POST makes an orphan at the old
    key, which ``depot fsck`` reports).  A presigned PUT is signed with
    ``If-None-Match: *`` and multipart URLs die with their completed
    upload, so those stay where they are.

    Crash safety: a claimed marker for the new id is written before the
    copy (so ``depot fsck`` never takes the copy for an orphan before the
    row is committed), the copy is made before the original is deleted,
    and the original's claimed marker goes last.  A crash leaves
    unreferenced objects (orphans) and claimed markers (dropped by
    ``depot gc --pending-older-than``), never a lost object.
    """
    if _multipart_of(record) is not None or wishes(record)[2] == "PUT":
        return None
    bucket, key = _location(storage, record)
    new_id = storage._new_upload_id()
    claimed_at = record.claimed_at if record.claimed_at is not None else time.time()
    storage._pending_put(new_id, dataclasses.replace(record, file_id=new_id, claimed_at=claimed_at).to_json())
    extra: Dict[str, Any] = {}
    # CopyObject carries neither the ACL nor the storage class over.
    if storage._policy:
        extra["ACL"] = storage._policy
    if storage._storage_class:
        extra["StorageClass"] = storage._storage_class
    storage._client.copy_object(Bucket=bucket, Key=storage._bucket_driver.prefix + new_id,
                                CopySource={"Bucket": bucket, "Key": key}, MetadataDirective="COPY", **extra)
    storage._remove(record.file_id)
    storage._pending_delete(record.file_id)
    return new_id


def abandon_upload(storage: Any, record: Any) -> None:
    """Drop the parts of every unfinished multipart upload of the key, then the object if it exists.

    Not only the ``UploadId`` the marker names: a crash between
    ``CreateMultipartUpload`` and the rewrite of the marker leaves one the
    marker never learnt, whose parts would be billed forever.  Listing the
    multipart uploads of the exact key finds it (the key is the intent's
    own id, so no other upload is there).
    """
    from depot.io.boto3 import error_code

    bucket, key = _location(storage, record)
    upload_ids = set()
    named = _multipart_of(record)
    if named is not None:
        upload_ids.add(named)
    pages = storage._client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=key)
    for page in pages:
        upload_ids.update(up["UploadId"] for up in page.get("Uploads", ()) if up.get("Key") == key)
    for upload_id in sorted(upload_ids):
        try:
            storage._client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if error_code(exc) not in ("NoSuchUpload", "404"):
                raise
    storage._remove(record.file_id)
