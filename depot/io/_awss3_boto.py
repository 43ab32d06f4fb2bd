"""The legacy-``boto`` implementation behind :mod:`depot.io.awss3` (where ``boto`` imports).

Keeps filedepot 0.12's behaviour and internals (``_conn`` is a boto
``S3Connection``, ``_bucket_driver`` wraps a boto ``Bucket``), with its
defects fixed: ``read(0)`` reads nothing, non-seekable uploads are spooled
instead of held in memory, Content-Disposition is encoded once, private files
get signed URLs, and hosts other than AWS work (scheme and port in ``host``,
path-style requests, an explicit signing region).
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import logging
import tempfile
from typing import Any, Dict, Iterator, List, Optional, Tuple

import boto
import boto.s3.connection
from boto.exception import S3ResponseError
from boto.s3.connection import OrdinaryCallingFormat, S3Connection

from depot.io import _pending_objects, utils
from depot.io._multipart import remaining_size
from depot.io._objects import (
    CANNED_ACL_PRIVATE,
    DEFAULT_URL_EXPIRES,
    ObjectStorage,
    ObjectStoredFile,
    check_policy,
    option_int,
)
from depot.io._s3 import S3_DEFAULT_HOST, default_bucket_name, log_once, parse_s3_host, range_header
from depot.io.utils import DEFAULT_CHUNK_SIZE
from depot.utils import asbool

__all__ = ["S3StoredFile", "PrivateS3StoredFile", "BucketDriver", "S3Storage", "BucketAccessError", "_enable_sigv4"]

log = logging.getLogger("depot.io.awss3")

_UNSIGNED_URL_EXPIRES = 31536000
_PUBLIC_ACCESS_BLOCK = (
    b'<PublicAccessBlockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<BlockPublicAcls>false</BlockPublicAcls><IgnorePublicAcls>false</IgnorePublicAcls>"
    b"<BlockPublicPolicy>true</BlockPublicPolicy><RestrictPublicBuckets>true</RestrictPublicBuckets>"
    b"</PublicAccessBlockConfiguration>"
)

_sigv4_enabled = False


def _enable_sigv4() -> None:
    """Make boto sign with SigV4 (required by every recent AWS region); done once per process."""
    global _sigv4_enabled
    if _sigv4_enabled:
        return
    if not boto.config.has_section("s3"):
        boto.config.add_section("s3")
    boto.config.set("s3", "use-sigv4", "True")
    _sigv4_enabled = True


def is_aws_host(hostname: str) -> bool:
    return hostname.endswith(".amazonaws.com") or hostname.endswith(".amazonaws.com.cn")


def _fix_sigv4_host_header(conn: Any) -> None:
    """Stop boto's SigV4 signer from appending the port to a host that already carries it.

    With an explicit port boto sends (and signs) ``Host: host:port:port``;
    some services accept it, others (moto) mistake it for another host.
    """
    handler = conn._auth_handler
    original = handler.host_header

    def host_header(host: str, http_request: Any) -> str:
        if ":" in http_request.host:
            return http_request.host
        return original(host, http_request)

    handler.host_header = host_header


class BucketAccessError(S3ResponseError):
    """An :class:`S3ResponseError` while reaching the bucket, naming the bucket and host."""

    def __init__(self, original: S3ResponseError, bucket: str, host: str) -> None:
        super().__init__(original.status, original.reason, original.body)
        self.bucket = bucket
        self.host = host

    def __str__(self) -> str:
        hint = ": check the access key and secret key, and that they may use this bucket" if self.status == 403 else ""
        return "Cannot use S3 bucket %r at %s (HTTP %s %s)%s" % (self.bucket, self.host, self.status, self.reason, hint)


class S3StoredFile(ObjectStoredFile):
    """A file of the legacy :class:`S3Storage`, read lazily from its boto ``Key``."""

    closed_message = "cannot read from a closed file"

    def __init__(self, file_id: str, key: Any, signed_url_expires: Optional[int] = None) -> None:
        # boto hands metadata back already percent-decoded.
        super().__init__(file_id, key.metadata, key.content_type, key.size, quoted=False)
        self._key = key
        self._signed_url_expires = signed_url_expires
        self.public_url_signed = signed_url_expires is not None
        self._eof = False

    @property
    def version(self) -> str:
        if self._key.version_id and self._key.version_id != "null":
            return self._key.version_id
        return "%s-%s" % ((self._key.etag or "").strip('"'), self._key.last_modified or "")

    def read(self, n: int = -1) -> bytes:
        self._check_open()
        if n == 0:
            return b""
        if self._eof:
            return b""
        # The response is read directly: Key.read() reopens it after the end
        # (reading the file again) and Key.close() downloads what is left;
        # boto's response repeats its whole body on every read() after the end.
        if self._key.resp is None:
            self._key.open_read()
        if n is None or n < 0:
            self._eof = True
            return self._key.resp.read()
        data = self._key.resp.read(n)
        self._eof = not data
        return data

    def close(self, *args: Any, **kwargs: Any) -> None:
        self._key.close(fast=True)
        super().close()

    def iter_range(
        self, start: int = 0, stop: Optional[int] = None, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> Iterator[bytes]:
        """Yield ``[start, stop)`` with one ranged GET pinned to this handle's ETag."""
        self._check_open()
        wanted = range_header(start, stop, self.content_length)
        if wanted is None:
            return
        reader = self._key.bucket.new_key(self._key.name)
        headers = {"Range": wanted}
        if self._key.etag:
            headers["If-Match"] = self._key.etag
        try:
            reader.open_read(headers=headers)
        except S3ResponseError as exc:
            if exc.status == 416:
                return
            if exc.status in (404, 412):
                raise IOError("File %s changed or was removed while being read" % self.file_id) from exc
            raise
        try:
            while True:
                chunk = reader.resp.read(chunk_size)
                if not chunk:
                    return
                yield chunk
        finally:
            reader.close()

    @property
    def public_url(self) -> str:
        conn = self._key.bucket.connection
        bucket, name = self._key.bucket.name, self._key.name
        if self._signed_url_expires is not None:
            return conn.generate_url(self._signed_url_expires, "GET", bucket=bucket, key=name)
        return conn.generate_url(_UNSIGNED_URL_EXPIRES, "GET", bucket=bucket, key=name, query_auth=False)


class PrivateS3StoredFile(S3StoredFile):
    """A file of a ``policy='private'`` :class:`S3Storage`: its URL is signed by the connection and expires."""

    def __init__(self, file_id: str, key: Any, url_expires: int = DEFAULT_URL_EXPIRES, signer: Any = None) -> None:
        super().__init__(file_id, key, url_expires)


class BucketDriver:
    """A boto ``Bucket`` and the key prefix (filedepot API)."""

    def __init__(self, bucket: Any, prefix: str) -> None:
        self.bucket = bucket
        self.prefix = prefix

    def get_key(self, key_name: str) -> Any:
        """The boto ``Key`` for ``key_name`` (prefix added), or ``None`` if absent."""
        return self.bucket.get_key(self.prefix + key_name)

    def new_key(self, key_name: str) -> Any:
        return self.bucket.new_key(self.prefix + key_name)

    def list_key_names(self) -> List[str]:
        cut = len(self.prefix)
        return [key.name[cut:] for key in self.bucket.list(prefix=self.prefix)]


class S3Storage(_pending_objects.ClaimObjects, ObjectStorage):
    """Files stored as objects ``<prefix><file id>`` of an S3 bucket, through legacy ``boto``.

    Deprecated: use :class:`depot.io.boto3.S3Storage`.  ``host`` may carry a
    scheme and port (``'http://127.0.0.1:9000'``); ``region_name`` is the
    signing region for hosts boto cannot infer it from (default
    ``us-east-1``) and the location of a bucket it creates.  ``encrypt_key``
    asks for server-side encryption; INI strings such as ``'false'`` are
    understood.
    """

    #: This deprecated backend computes no checksums (use the boto3 one).
    checksum_algorithm = None

    public_file_class = S3StoredFile
    private_file_class = PrivateS3StoredFile

    def __init__(
        self,
        access_key_id: str,
        secret_access_key: str,
        bucket: Optional[str] = None,
        host: Optional[str] = None,
        policy: Optional[str] = None,
        encrypt_key: Any = False,
        prefix: str = "",
        region_name: Optional[str] = None,
        url_expires: Any = DEFAULT_URL_EXPIRES,
    ) -> None:
        self._policy = check_policy(policy)
        self._encrypt_key = asbool(encrypt_key)
        self._url_expires = option_int(url_expires, "url_expires")
        _enable_sigv4()
        hostname, port, secure = parse_s3_host(host)
        self._host = host or S3_DEFAULT_HOST
        options: dict = {"host": hostname, "is_secure": secure}
        if port is not None:
            options["port"] = port
        if not is_aws_host(hostname):
            options["calling_format"] = OrdinaryCallingFormat()  # no bucket subdomains on custom hosts
        self._conn = S3Connection(access_key_id, secret_access_key, **options)
        if region_name or not is_aws_host(hostname):
            self._conn.auth_region_name = region_name or "us-east-1"
        if port is not None:
            _fix_sigv4_host_header(self._conn)
        bucket_name = bucket or default_bucket_name(access_key_id)
        self._prefix = prefix or ""
        self._bucket_driver = BucketDriver(self._find_or_create_bucket(bucket_name, region_name), self._prefix)

    def __repr__(self) -> str:
        return "<awss3.S3Storage %s/%s%s>" % (self._host, self._bucket_driver.bucket.name, self._bucket_driver.prefix)

    def _find_or_create_bucket(self, name: str, region: Optional[str]) -> Any:
        """The bucket as filedepot 0.12 finds it: ``lookup``, else ``create_bucket``.

        The bucket driver holds exactly what either call returned.  ``lookup``
        answers ``None`` for any failure, so refused credentials surface from
        ``create_bucket`` (as :class:`BucketAccessError`).
        """
        bucket = self._conn.lookup(name)
        if bucket is not None:
            return bucket
        location = region if region and region != "us-east-1" else ""
        try:
            bucket = self._conn.create_bucket(
                name, headers={"x-amz-object-ownership": "BucketOwnerPreferred"}, location=location
            )
        except S3ResponseError as exc:
            raise BucketAccessError(exc, name, self._host) from exc
        self._put_public_access_block(name)
        return bucket

    def _put_public_access_block(self, name: str) -> None:
        md5 = base64.b64encode(hashlib.md5(_PUBLIC_ACCESS_BLOCK).digest()).decode("ascii")
        response = self._conn.make_request(
            "PUT", name, query_args="publicAccessBlock", data=_PUBLIC_ACCESS_BLOCK, headers={"Content-MD5": md5}
        )
        body = response.read()
        if response.status == 501:
            log_once(log, ("awss3-unsupported", self._host, "publicAccessBlock"),
                     "S3 service at %s does not implement the public access block; bucket created without it",
                     self._host)
        elif response.status >= 300:
            raise S3ResponseError(response.status, response.reason, body)

    def _save(self, file_id: str, content: Any, filename: Optional[str], content_type: Optional[str]) -> None:
        key = self._bucket_driver.new_key(file_id)
        headers = self._object_headers(filename, content_type)
        key.set_metadata("content-type", headers.content_type)
        for name, value in headers.metadata.items():
            key.set_metadata(name, value)
        if headers.content_disposition is not None:
            key.set_metadata("Content-Disposition", headers.content_disposition)
        # An explicit header, or boto guesses the type from the file's name.
        options = {
            "policy": self._policy,
            "encrypt_key": self._encrypt_key,
            "headers": {"Content-Type": headers.content_type},
        }
        if isinstance(content, (bytes, bytearray, memoryview)):
            key.set_contents_from_string(bytes(content), **options)
        elif remaining_size(content) is not None:
            key.set_contents_from_file(content, **options)
        else:
            # boto needs to seek (for its MD5): spool, memory bounded, to a temporary file.
            with tempfile.SpooledTemporaryFile(utils.INMEMORY_FILESIZE) as spool:
                utils.copy_stream(content, spool)
                spool.seek(0)
                key.set_contents_from_file(spool, **options)

    def _find(self, file_id: str) -> Any:
        return self._bucket_driver.get_key(file_id)

    def _remove(self, file_id: str) -> None:
        self._bucket_driver.bucket.delete_key(self._object_key(file_id))

    def list(self) -> List[str]:
        return _pending_objects.visible(self._bucket_driver.list_key_names())

    # -- raw objects (markers of direct uploads) -------------------------------

    def _raw_put(self, name: str, data: bytes, condition: Optional[Dict[str, str]] = None) -> None:
        key = self._bucket_driver.new_key(name)
        # Private whatever the storage's policy: markers are the server's records.
        key.set_contents_from_string(data, policy=CANNED_ACL_PRIVATE,
                                     headers=dict(condition or {}, **{"Content-Type": "application/json"}))

    def _raw_get(self, name: str) -> Optional[bytes]:
        key = self._bucket_driver.get_key(name)
        return None if key is None else key.get_contents_as_string()

    def _raw_delete(self, name: str) -> None:
        self._bucket_driver.bucket.delete_key(self._bucket_driver.prefix + name)

    def _raw_create(self, name: str, data: bytes) -> bool:
        return self._raw_write_if(name, data, {"If-None-Match": "*"})

    def _raw_get_tagged(self, name: str) -> Optional[Tuple[bytes, str]]:
        key = self._bucket_driver.new_key(name)
        try:
            data = key.get_contents_as_string()  # one GET: the ETag is that response's
        except S3ResponseError as exc:
            if exc.status == 404:
                return None
            raise
        return data, key.etag

    def _raw_replace(self, name: str, data: bytes, tag: str) -> bool:
        return self._raw_write_if(name, data, {"If-Match": tag})

    def _raw_write_if(self, name: str, data: bytes, condition: Dict[str, str]) -> bool:
        try:
            self._raw_put(name, data, condition)
        except S3ResponseError as exc:
            if exc.status == 412 or exc.error_code in _pending_objects.LOST_WRITE_CODES:
                return False
            raise
        return True

    def _raw_list(self, under: str) -> Iterator[Tuple[str, float]]:
        cut = len(self._bucket_driver.prefix)
        for key in self._bucket_driver.bucket.list(prefix=self._bucket_driver.prefix + under):
            yield key.name[cut:], boto.utils.parse_ts(key.last_modified).replace(
                tzinfo=datetime.timezone.utc).timestamp()

    # -- direct uploads (depot.uploads; the rules live in depot.io._awss3_uploads) --

    def _upload_target(self, record: Any) -> Any:
        """A presigned PUT for the browser (see :mod:`depot.io._awss3_uploads`)."""
        from depot.io import _awss3_uploads

        return _awss3_uploads.upload_target(self, record)
