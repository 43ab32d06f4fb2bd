"""Direct uploads to the deprecated legacy-``boto`` S3 storage (:mod:`depot.io._awss3_boto`).

boto 2 presigns only single requests with SigV4 (its POST forms are SigV2,
which current AWS regions refuse), so every upload is a presigned ``PUT``
with depot's headers signed: the service refuses another type, other
metadata, a tampered or expired URL.  ``If-None-Match: *`` is signed too,
as on :mod:`depot.io._s3_uploads`: the URL creates the object once, and
can never replace the file once attached.  It cannot bound the size (the
attach step checks it), and there is no upload in parts: use
:class:`depot.io.boto3.S3Storage` for those.
"""
from __future__ import annotations

from typing import Any, Dict

from depot.io._objects import depot_metadata, inline_disposition
from depot.io._upload_targets import fixed_content_type, seconds_left, wants_parts, wishes

__all__ = ["upload_target"]

#: SigV4 signatures live at most seven days; one request carries at most 5 GiB.
MAX_EXPIRES = 604800
MAX_SINGLE = 5 * 1024 * 1024 * 1024


def upload_target(storage: Any, record: Any) -> Any:
    """A presigned PUT of ``record``'s object, with the headers the browser must send."""
    from depot.uploads.intents import UploadTarget

    method = wishes(record)[2]
    if method not in (None, "PUT") or wants_parts(record, threshold=MAX_SINGLE):
        raise ValueError(
            "The legacy awss3 storage %s (%r) offers direct uploads as one presigned PUT of at most 5 GiB, "
            "not %s; uploads in parts need depot.io.boto3.S3Storage" % (record.storage, storage, method or "in parts")
        )
    headers: Dict[str, str] = {"x-amz-meta-" + key: value for key, value in depot_metadata(record.filename).items()}
    headers["x-amz-acl"] = storage._policy
    fixed = fixed_content_type(record)
    if fixed is not None:
        headers["Content-Type"] = fixed
    disposition = inline_disposition(record.filename)
    if disposition is not None:
        headers["Content-Disposition"] = disposition
    if storage._encrypt_key:
        headers["x-amz-server-side-encryption"] = "AES256"
    # Signed, so the browser must send it: the URL cannot replace an existing object.
    headers["If-None-Match"] = "*"
    driver = storage._bucket_driver
    url = storage._conn.generate_url(
        seconds_left(record, longest=MAX_EXPIRES), "PUT", bucket=driver.bucket.name,
        key=driver.prefix + record.file_id, headers=dict(headers),
    )
    return UploadTarget("PUT", url, {}, headers, None)
