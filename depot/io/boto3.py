"""Amazon S3 and S3-compatible services (MinIO, SeaweedFS, Ceph, R2...) through boto3.

Compatible with filedepot 0.12's ``depot.io.boto3``: same constructor, default
bucket (``filedepot-<access key>``), key layout (``<prefix><file id>``),
metadata (``x-depot-filename``, ``x-depot-modified``), and the private
attributes callers reach into (``_conn``, ``_bucket_driver``).  Beyond it:

- uploads above ``multipart_threshold`` are streamed as parallel multipart
  uploads, with memory bounded by a few parts whether or not the source can
  seek; smaller ones are a single PUT.  Parts carry a CRC32C, and the upload
  the CRC32C of the whole object (with ``checksum=None``, botocore's CRC32 of
  each part), where botocore sends checksums (its default since 1.36); over
  https they then carry no SHA-256 of their payload, as botocore decides
  (see ``payload_signing``);
- ``endpoint_url`` and ``region_name`` apply to every call, bucket creation
  included (with a LocationConstraint outside us-east-1), and services that do
  not implement the public-access-block or object-ownership calls still work;
- the bucket is found with ListBuckets, as in filedepot; credentials refused
  that call (no ``s3:ListAllMyBuckets``) fall back to HeadBucket;
- private files get a presigned, expiring ``public_url`` instead of a plain
  URL that answers 403;
- HTTP ranges are read with ``Range`` requests.
"""
from __future__ import annotations

import base64
import logging
import threading
import zlib
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from depot._optional import require
from depot.io._multipart import HeadThenRest, plan_upload, remaining_size
from depot.io._objects import (
    CANNED_ACL_PRIVATE,
    CANNED_ACL_PUBLIC_READ,
    CHECKSUM_META,
    DEFAULT_URL_EXPIRES,
    MODIFIED_META,
    ObjectStorage,
    ObjectStoredFile,
    check_policy,
    option_int,
)
from depot.io._s3 import default_bucket_name, log_once, range_header
from depot.io import _pending_objects, _s3_uploads, checksums, utils
from depot.io.interfaces import StoredFacts
from depot.io.interfaces import FileStorage, StoredFile  # noqa: F401 - a name filedepot 0.12 had here
from depot.io.utils import DEFAULT_CHUNK_SIZE, check_uuid
from depot.utils import asbool
from depot.utils import make_content_disposition  # noqa: F401 - a name filedepot 0.12 had here

boto3 = require("boto3", "s3", "depot.io.boto3.S3Storage")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError, EndpointConnectionError  # noqa: E402
import botocore.session  # noqa: E402

__all__ = [
    "CANNED_ACL_PUBLIC_READ",
    "CANNED_ACL_PRIVATE",
    "S3StoredFile",
    "PrivateS3StoredFile",
    "BucketDriver",
    "S3Storage",
    "S3AccessError",
    "S3EndpointError",
]

log = logging.getLogger(__name__)

_loader_lock = threading.Lock()
_shared_loader: Any = None


def _new_session(access_key_id: Optional[str], secret_access_key: Optional[str]) -> Any:
    """A boto3 session of its own (credentials, clients) sharing the process's botocore data loader.

    A fresh session parses botocore's service models (JSON) again for its
    first clients, about 0.15 s of CPU for each storage; the loader only
    reads those files and caches what it parsed, so every storage can share
    one.
    """
    global _shared_loader
    core = botocore.session.Session()
    with _loader_lock:
        if _shared_loader is None:
            _shared_loader = core.get_component("data_loader")
        else:
            core.register_component("data_loader", _shared_loader)
        session = boto3.Session(aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key,
                                botocore_session=core)
        # boto3.Session appends its resource models' folder to the loader's
        # search path each time: keep one entry.
        paths = _shared_loader.search_paths
        paths[:] = list(dict.fromkeys(paths))
    return session

_check_file_id = check_uuid  # filedepot 0.12's name; the storage checks through FileStorage._checked_id

MB = 1024 * 1024
#: The longest lifetime SigV4 allows (7 days).
MAX_URL_EXPIRES = 604800
#: A year, as filedepot asked for when presigning the (then stripped) URL.
_UNSIGNED_URL_EXPIRES = 31536000
#: S3 accepts at most this many parts in one multipart upload.
MAX_PARTS = 10000
#: The checksum sent with each part when botocore sends checksums by default.
PART_CHECKSUM = "CRC32"
#: The largest object CopyObject copies in one request (5 GiB).
MAX_COPY_SIZE = 5 * 1024 * MB
#: CreateMultipartUpload arguments that every UploadPart must repeat.
_PART_ARGS = ("SSECustomerAlgorithm", "SSECustomerKey", "SSECustomerKeyMD5", "RequestPayer", "ExpectedBucketOwner")
_MISSING_CODES = frozenset(("404", "NoSuchKey", "NotFound", "NoSuchBucket"))
_UNSUPPORTED_CODES = frozenset(("NotImplemented", "XNotImplemented", "501"))


def error_code(exc: ClientError) -> str:
    """The error code of a botocore :class:`ClientError` (``'404'`` for a bare HEAD 404)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_missing(exc: ClientError) -> bool:
    return error_code(exc) in _MISSING_CODES


def is_unsupported(exc: ClientError) -> bool:
    """Whether the service says it does not implement the call (SeaweedFS and others)."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error_code(exc) in _UNSUPPORTED_CODES or status == 501


class S3AccessError(ClientError):
    """A :class:`ClientError` from reaching the bucket, saying which bucket and endpoint.

    Still a ``ClientError`` with the original ``response`` (code, status), so
    existing ``except ClientError`` handlers keep working.
    """

    def __init__(self, original: ClientError, bucket: str, endpoint: str) -> None:
        super().__init__(original.response, original.operation_name)
        self.bucket = bucket
        self.endpoint = endpoint

    def __str__(self) -> str:
        status = self.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        hint = ""
        if status == 403 or error_code(self) in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            hint = ": check the access key and secret key, and that they may use this bucket"
        return "Cannot use S3 bucket %r at %s (%s)%s" % (
            self.bucket, self.endpoint, super().__str__(), hint
        )


class S3EndpointError(EndpointConnectionError):
    """The S3 endpoint could not be reached while setting up a bucket."""

    fmt = 'Could not connect to the S3 endpoint "{endpoint_url}" for bucket "{bucket}": {error}'


def crc32_base64(data: Any) -> str:
    """The CRC32 of ``data`` as S3's ``x-amz-checksum-crc32`` carries it (big-endian, base64)."""
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode("ascii")


def presigned_url(client: Any, bucket: str, key: str, expires: int) -> str:
    """A GET URL of an object signed by ``client``, valid ``expires`` seconds (built locally)."""
    return client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires)


def plain_object_url(client: Any, bucket: str, key: str) -> str:
    """The unsigned URL of an object, as ``client`` addresses it (style, endpoint)."""
    # Without its query, a presigned URL is the plain object URL.
    return presigned_url(client, bucket, key, _UNSIGNED_URL_EXPIRES).split("?", 1)[0]


#: What S3 answers when a body does not match the checksum or Content-MD5 sent with it.
_DIGEST_CODES = ("BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch")


def _service_checksum(hasher: checksums.Hasher) -> Dict[str, str]:
    """The PutObject argument that makes S3 verify the body against ``hasher``'s digest."""
    value = checksums.base64_digest(hasher.digest())
    if hasher.algorithm == "md5":
        return {"ContentMD5": value}
    return {"ChecksumCRC32C" if hasher.algorithm == "crc32c" else "ChecksumSHA256": value}


class S3StoredFile(ObjectStoredFile):
    """A file of :class:`S3Storage`, read lazily from its S3 object (``key``).

    ``public_url`` is the plain object URL: the object is public-read.
    """

    closed_message = "cannot read from a closed file"

    def __init__(self, file_id: str, key: Any) -> None:
        super().__init__(file_id, key.metadata, key.content_type, key.content_length)
        self._key = key
        self._body: Any = None

    @property
    def version(self) -> str:
        """The object's VersionId on versioned buckets, else its ETag and modification time."""
        version_id = self._key.version_id
        if version_id and version_id != "null":
            return version_id
        modified = self._key.last_modified
        return "%s-%s" % ((self._key.e_tag or "").strip('"'), int(modified.timestamp()) if modified else "")

    def read(self, n: int = -1) -> bytes:
        self._check_open()
        if n == 0:
            return b""
        if self._body is None:
            # Fetched now, not at get(): a handle taken before a replace reads the new content.
            self._body = self._key.get()["Body"]
        if n is None or n < 0:
            return self._body.read()
        return self._body.read(n)

    def close(self, *args: Any, **kwargs: Any) -> None:
        if self._body is not None:
            self._body.close()
        super().close()

    def iter_range(
        self, start: int = 0, stop: Optional[int] = None, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> Iterator[bytes]:
        """Yield ``[start, stop)`` with one ranged GET of the version this handle describes.

        If the object changed since :meth:`S3Storage.get`, :class:`IOError` is
        raised rather than mixing the new bytes with the old length and ETag.
        """
        self._check_open()
        wanted = range_header(start, stop, self.content_length)
        if wanted is None:
            return
        params = {"Bucket": self._key.bucket_name, "Key": self._key.key, "Range": wanted}
        if self._key.e_tag:
            params["IfMatch"] = self._key.e_tag
        try:
            body = self._key.meta.client.get_object(**params)["Body"]
        except ClientError as exc:
            if error_code(exc) == "InvalidRange":
                return
            if error_code(exc) in ("PreconditionFailed", "412") or is_missing(exc):
                raise IOError("File %s changed or was removed while being read" % self.file_id) from exc
            raise
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    @property
    def public_url(self) -> Optional[str]:
        return plain_object_url(self._key.meta.client, self._key.bucket_name, self._key.key)

    def _presign(self, client: Any, expires: int) -> str:
        return presigned_url(client, self._key.bucket_name, self._key.key, expires)


class PrivateS3StoredFile(S3StoredFile):
    """A file of a ``policy='private'`` :class:`S3Storage`: its URL is presigned and expires.

    ``signer`` is the S3 client that signs (SigV4, which every region
    accepts); by default the key's own client.
    """

    public_url_signed = True

    def __init__(self, file_id: str, key: Any, url_expires: int = DEFAULT_URL_EXPIRES, signer: Any = None) -> None:
        super().__init__(file_id, key)
        self.url_expires = url_expires
        self._signer = signer or key.meta.client

    @property
    def public_url(self) -> str:
        return self._presign(self._signer, self.url_expires)


class BucketDriver:
    """The bucket of an :class:`S3Storage`, its key prefix, and key lookups (filedepot API)."""

    def __init__(self, s3: Any, bucket: Any, prefix: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix

    def get_key(self, key_name: str) -> Any:
        """The loaded ``s3.Object`` for ``key_name`` (prefix added), or ``None`` if absent.

        Other errors (permissions, throttling...) propagate.
        """
        key = self.new_key(key_name)
        try:
            key.reload()
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise
        return key

    def new_key(self, key_name: str) -> Any:
        """An ``s3.Object`` for ``key_name`` (prefix added), not fetched."""
        return self.s3.Object(self.bucket.name, self.prefix + key_name)

    def list_key_names(self) -> List[str]:
        """The names of every key under the prefix, prefix removed."""
        cut = len(self.prefix)
        return [obj.key[cut:] for obj in self.bucket.objects.filter(Prefix=self.prefix)]


class S3Storage(_pending_objects.ClaimObjects, ObjectStorage):
    """Files stored as objects ``<prefix><file id>`` of an S3 bucket.

    :param access_key_id: the access key; it also names the default bucket
        ``filedepot-<access key, lowercase>``.
    :param secret_access_key: the secret key.
    :param bucket: the bucket, created (with ``region_name``'s location) if missing.
    :param region_name: the region; ``None`` leaves it to boto3's configuration.
    :param policy: ``'public-read'`` (default) or ``'private'``, the canned ACL
        of every object; private files get presigned, expiring URLs.
    :param storage_class: the S3 storage class of every object (``'STANDARD'``).
    :param endpoint_url: the URL of an S3-compatible service.
    :param prefix: prepended to every key, e.g. ``'uploads/'``.
    :param multipart_threshold: uploads larger than this many bytes (8 MiB)
        are multipart uploads.
    :param multipart_chunksize: the size of each part (8 MiB; at least 5 MiB;
        larger when a source of known size would need more than 10000 parts).
    :param max_concurrency: parts uploaded in parallel (4); at most this many
        parts plus the one being read are held in memory.
    :param payload_signing: whether the SigV4 signature of each part covers
        its bytes (a SHA-256 of the part).  ``None`` or ``'auto'`` (the
        default) follows botocore's rule: parts sent with a checksum (depot's
        CRC32C, or botocore's CRC32 with ``checksum=None``; sent by default
        since botocore 1.36, and verified by the service) go
        unsigned only over ``https://``, where TLS already protects them;
        over plain ``http://`` every part is signed.  ``True`` signs every
        part.  ``False`` never signs parts, also over plain http: faster, but
        then whoever can alter the traffic (on a LAN to a MinIO or SeaweedFS
        server, say) can change a part together with its checksum without the
        server noticing; use it only on a network you trust.
    :param url_expires: lifetime in seconds of private files' signed URLs
        (3600; at most 604800, the SigV4 limit).
    :param checksum: ``'crc32c'`` (default), ``'sha256'``, ``'md5'`` or
        ``None``: the checksum stored with every file (see
        :ref:`checksums`).
    """

    public_file_class = S3StoredFile
    private_file_class = PrivateS3StoredFile

    def __init__(
        self,
        access_key_id: str,
        secret_access_key: str,
        bucket: Optional[str] = None,
        region_name: Optional[str] = None,
        policy: Optional[str] = None,
        storage_class: Optional[str] = None,
        endpoint_url: Optional[str] = None,
        prefix: str = "",
        multipart_threshold: Any = 8 * MB,
        multipart_chunksize: Any = 8 * MB,
        max_concurrency: Any = 4,
        url_expires: Any = DEFAULT_URL_EXPIRES,
        payload_signing: Any = None,
        checksum: Any = checksums.DEFAULT_ALGORITHM,
    ) -> None:
        self._set_checksum(checksum)
        self._policy = check_policy(policy)
        self._storage_class = storage_class or "STANDARD"
        self._prefix = prefix or ""
        self._url_expires = min(option_int(url_expires, "url_expires"), MAX_URL_EXPIRES)
        self._threshold = option_int(multipart_threshold, "multipart_threshold")
        self._part_size = option_int(multipart_chunksize, "multipart_chunksize", 5 * MB)
        self._concurrency = option_int(max_concurrency, "max_concurrency")
        self._payload_signing = (
            None if payload_signing is None or str(payload_signing).strip().lower() == "auto"
            else asbool(payload_signing)
        )

        self._client_kwargs = {name: value for name, value in (("endpoint_url", endpoint_url),
                                                               ("region_name", region_name)) if value is not None}
        self._session = _new_session(access_key_id, secret_access_key)
        self._conn = self._session.resource("s3", **self._client_kwargs)
        self._client = self._conn.meta.client
        # boto3 may presign with SigV2, which newer regions refuse: sign with SigV4.
        self._signer = (
            self._session.client("s3", config=Config(signature_version="s3v4"), **self._client_kwargs)
            if self._policy == CANNED_ACL_PRIVATE else None
        )
        # The clients forced to sign parts or not (payload_signing, and unsigned
        # parts carrying depot's CRC32C over https), created on first use.
        self._forced_part_clients: Dict[bool, Any] = {}
        self._part_client_lock = threading.Lock()
        bucket_name = bucket or default_bucket_name(access_key_id)
        self._bucket_driver = BucketDriver(self._conn, self._conn.Bucket(bucket_name), self._prefix)
        self._ensure_bucket(bucket_name)

    def __repr__(self) -> str:
        return "<S3Storage %s/%s%s>" % (self._client.meta.endpoint_url, self._bucket_driver.bucket.name, self._prefix)

    # -- bucket bootstrap -----------------------------------------------------

    def _ensure_bucket(self, name: str) -> None:
        """Find the bucket as filedepot 0.12 does (ListBuckets), creating it when absent.

        A ``ClientError`` from ListBuckets propagates (as :class:`S3AccessError`,
        still a ``ClientError``), except ``AccessDenied``: credentials limited
        to one bucket may not list the account's buckets, so HeadBucket asks
        about this one instead.  A bucket that is not listed and cannot be
        created (``BucketAlreadyExists``, ``AccessDenied``) is used when
        HeadBucket answers for it: another account's bucket shared with these
        credentials, where filedepot failed.
        """
        endpoint = self._client.meta.endpoint_url
        try:
            try:
                listed = self._bucket_listed(name)
            except ClientError as exc:
                if error_code(exc) != "AccessDenied":
                    raise S3AccessError(exc, name, endpoint) from exc
                listed = self._bucket_answers_head(name)
        except EndpointConnectionError as exc:
            raise S3EndpointError(endpoint_url=endpoint, bucket=name, error=exc) from exc
        if listed:
            return
        try:
            self._create_bucket(name)
        except ClientError as exc:
            code = error_code(exc)
            if code in ("BucketAlreadyExists", "AccessDenied") and self._head_succeeds(name):
                return  # not listed, not ours to create, but usable: another account's bucket
            if code != "BucketAlreadyOwnedByYou":  # created meanwhile by another process
                raise S3AccessError(exc, name, endpoint) from exc
        self._client.get_waiter("bucket_exists").wait(Bucket=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        if self._policy == CANNED_ACL_PUBLIC_READ:
            self._allow_public_acls(name)

    def _bucket_listed(self, name: str) -> bool:
        """Whether ListBuckets names ``name`` (following continuation tokens where the service pages)."""
        args: Dict[str, Any] = {}
        while True:
            response = self._client.list_buckets(**args)
            if any(bucket.get("Name") == name for bucket in response.get("Buckets", ())):
                return True
            token = response.get("ContinuationToken")
            if not token:
                return False
            args["ContinuationToken"] = token

    def _head_succeeds(self, name: str) -> bool:
        try:
            self._client.head_bucket(Bucket=name)
        except ClientError:
            return False
        return True

    def _bucket_answers_head(self, name: str) -> bool:
        """Whether HeadBucket finds ``name``; errors other than "missing" propagate."""
        try:
            self._client.head_bucket(Bucket=name)
        except ClientError as exc:
            if not is_missing(exc):
                raise S3AccessError(exc, name, self._client.meta.endpoint_url) from exc
            return False
        return True

    def _create_bucket(self, name: str) -> None:
        args: Dict[str, Any] = {"Bucket": name}
        region = self._client.meta.region_name
        if region and region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            # Since 2023 new AWS buckets refuse ACLs unless ownership says otherwise.
            self._client.create_bucket(ObjectOwnership="BucketOwnerPreferred", **args)
        except ClientError as exc:
            if not is_unsupported(exc):
                raise
            self._note_unsupported("object ownership (BucketOwnerPreferred)")
            self._client.create_bucket(**args)

    def _allow_public_acls(self, name: str) -> None:
        try:
            self._client.put_public_access_block(
                Bucket=name,
                PublicAccessBlockConfiguration={
                    "BlockPublicAcls": False,
                    "IgnorePublicAcls": False,
                    "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True,
                },
            )
        except ClientError as exc:
            if not is_unsupported(exc):
                raise
            self._note_unsupported("the public access block")

    def _note_unsupported(self, what: str) -> None:
        endpoint = self._client.meta.endpoint_url
        log_once(log, ("s3-unsupported", endpoint, what),
                 "S3 service at %s does not implement %s; bucket created without it", endpoint, what)

    # -- writing --------------------------------------------------------------

    def _extra_args(self, filename: Optional[str], content_type: Optional[str]) -> Dict[str, Any]:
        headers = self._object_headers(filename, content_type)
        args: Dict[str, Any] = {
            "ACL": self._policy,
            "StorageClass": self._storage_class,
            "Metadata": headers.metadata,
            "ContentType": headers.content_type,
        }
        if headers.content_disposition is not None:
            args["ContentDisposition"] = headers.content_disposition
        return args

    def _save(self, file_id: str, content: Any, filename: Optional[str], content_type: Optional[str]) -> StoredFacts:
        """Write ``content`` to the object of ``file_id``: one PUT when small, multipart when large.

        The object only appears (or changes) once the whole content is
        uploaded, so a failing source leaves the previous state untouched.
        What :meth:`get` will report follows from what was sent, so the
        facts need no HEAD request.
        """
        bucket, key = self._bucket_driver.bucket.name, self._object_key(file_id)
        extra = self._extra_args(filename, content_type)
        data, stream = plan_upload(content, self._threshold)
        if data is not None:
            hasher = self._new_hasher()
            if hasher is not None:
                hasher.update(data)
                extra["Metadata"][CHECKSUM_META] = hasher.result()
                # Sent in the form S3 checks: a body altered on the way is refused.
                extra.update(_service_checksum(hasher))
            try:
                self._client.put_object(Bucket=bucket, Key=key, Body=data, **extra)
            except ClientError as exc:
                if error_code(exc) in _DIGEST_CODES:
                    raise self._refused(file_id, hasher.algorithm if hasher else "", exc,
                                        extra["Metadata"].get(CHECKSUM_META)) from exc
                raise
        else:
            self._upload_multipart(stream, bucket, key, extra, file_id)
        public_url = None
        if self._policy != CANNED_ACL_PRIVATE:
            public_url = plain_object_url(self._bucket_driver.bucket.meta.client, bucket, key)
        modified = utils.parse_timestamp(extra["Metadata"][MODIFIED_META])
        return StoredFacts(file_id, filename, extra["ContentType"], modified, public_url)

    def _refused(self, file_id: str, algorithm: str, exc: ClientError, expected: Optional[str] = None) -> Exception:
        return checksums.ChecksumMismatch(
            "%r refused file %s: the bytes it received do not match their %s checksum (%s in %s); "
            "nothing was stored" % (self, file_id, algorithm, error_code(exc), exc.operation_name),
            expected=expected,
        )

    # -- multipart uploads ----------------------------------------------------
    #
    # Not boto3's transfer manager: it hands each part to botocore as a file
    # object, which is read once for the checksum, once more for the payload
    # hash and then sent 16 KiB at a time, after a 100-continue round trip;
    # a non-seekable source is copied once more into each part.  Here each
    # part is read once into a reused buffer and sent as it is.

    def _upload_multipart(self, stream: Any, bucket: str, key: str, extra: Dict[str, Any], file_id: str) -> None:
        """Upload ``stream`` as a multipart upload, aborted if anything fails.

        With a checksum option, every part carries the CRC32C of its bytes
        and the upload the CRC32C of the whole object (``ChecksumType
        FULL_OBJECT``), both computed here as the parts are cut and checked
        by the service: a part or an object altered on the way is refused,
        the upload aborted and nothing stored.  The option's own checksum
        (CRC32C, SHA-256 or MD5) is taken in the same pass and recorded in
        the object's metadata once the upload is complete
        (:meth:`_record_checksum`).
        """
        client = self._client
        create_args = dict(extra)
        part_args = {name: extra[name] for name in _PART_ARGS if name in extra}
        # botocore < 1.36 has no such setting, and sends no checksum unless asked.
        service_checks = getattr(client.meta.config, "request_checksum_calculation", None) == "when_supported"
        hasher = self._new_hasher()
        # The CRC32C of the whole object, which the service checks at completion.
        whole = None
        if service_checks and hasher is not None:
            whole = hasher if hasher.algorithm == "crc32c" else checksums.Hasher("crc32c")
            create_args["ChecksumAlgorithm"] = part_args["ChecksumAlgorithm"] = "CRC32C"
            create_args["ChecksumType"] = "FULL_OBJECT"
        elif service_checks:
            # Declared at creation as well, as S3 wants (and as boto3's transfer manager does).
            create_args["ChecksumAlgorithm"] = part_args["ChecksumAlgorithm"] = PART_CHECKSUM
        size = remaining_size(stream)
        part_size = self._part_size if size is None else max(self._part_size, -(-size // MAX_PARTS))
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **create_args)["UploadId"]
        try:
            hashers = [h for h in (hasher, whole if whole is not hasher else None) if h is not None]
            parts, length = self._upload_parts(
                self._part_client(crc32c_parts=whole is not None), stream, part_size,
                dict(Bucket=bucket, Key=key, UploadId=upload_id, **part_args), hashers,
            )
            complete_args: Dict[str, Any] = {}
            if whole is not None:
                complete_args = {"ChecksumCRC32C": checksums.base64_digest(whole.digest()),
                                 "ChecksumType": "FULL_OBJECT"}
            completed = client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                                         MultipartUpload={"Parts": parts}, **complete_args)
        except ClientError as exc:
            self._abort_multipart(bucket, key, upload_id)
            if error_code(exc) in _DIGEST_CODES:
                raise self._refused(file_id, "CRC32C" if whole is not None else PART_CHECKSUM, exc) from exc
            raise
        except BaseException:
            self._abort_multipart(bucket, key, upload_id)
            raise
        if hasher is not None:
            self._record_checksum(bucket, key, completed.get("ETag"), extra, hasher.result(), file_id, length)

    def _record_checksum(
        self, bucket: str, key: str, etag: Optional[str], extra: Dict[str, Any], checksum: str, file_id: str,
        length: int,
    ) -> None:
        """Add ``checksum`` to the metadata of the object a multipart upload just completed.

        S3 takes an object's metadata when the upload starts, before its
        bytes are known, and changes it only by copying the object: a
        CopyObject onto itself, done inside the service (no bytes travel),
        pinned to the ETag of the upload so that a replace that came in
        between is never overwritten.  The content was verified already; if
        the copy fails, or the object is beyond CopyObject's 5 GiB, the file
        keeps reporting no checksum rather than a wrong one.
        """
        if length > MAX_COPY_SIZE or not etag:
            log.info("S3 file %s in %r: its checksum is not recorded (%d bytes)", file_id, self, length)
            return
        args = {name: value for name, value in extra.items() if name != "Metadata"}
        try:
            self._client.copy_object(
                Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key}, CopySourceIfMatch=etag,
                MetadataDirective="REPLACE", Metadata=dict(extra["Metadata"], **{CHECKSUM_META: checksum}), **args,
            )
        except ClientError:
            log.warning("S3 file %s in %r: its %s checksum could not be recorded", file_id, self,
                        checksum.partition(":")[0], exc_info=True)

    def _part_client(self, crc32c_parts: bool = False) -> Any:
        """The client that sends parts: ours (``auto``), or one forced to sign or not (see ``payload_signing``).

        Parts carrying depot's CRC32C go unsigned over https under ``auto``,
        as botocore sends its own checksummed parts there.
        """
        signing = self._payload_signing
        if signing is None and crc32c_parts and str(self._client.meta.endpoint_url).startswith("https:"):
            signing = False
        if signing is None:
            return self._client
        with self._part_client_lock:
            if signing not in self._forced_part_clients:
                self._forced_part_clients[signing] = self._session.client(
                    "s3", config=Config(s3={"payload_signing_enabled": signing}), **self._client_kwargs,
                )
            return self._forced_part_clients[signing]

    def _upload_parts(
        self, client: Any, stream: Any, part_size: int, args: Dict[str, Any], hashers: Sequence[Any] = (),
    ) -> Tuple[List[Dict[str, Any]], int]:
        """Send ``stream`` as parts of ``part_size`` bytes, ``max_concurrency`` at a time.

        Returns the parts as CompleteMultipartUpload lists them, and the
        byte count.  ``hashers`` are fed the bytes in order as the parts are
        cut.  On failure the parts being sent are waited for, so that an
        abort that follows leaves none behind.
        """
        # Fills each buffer unless the stream ends, so that no part but the last is short.
        reader = stream if isinstance(stream, HeadThenRest) else HeadThenRest(b"", stream)
        checksum_member = "Checksum" + args["ChecksumAlgorithm"] if "ChecksumAlgorithm" in args else None
        crc32c_parts = args.get("ChecksumAlgorithm") == "CRC32C"

        # Over https botocore sends a computed CRC32 as a trailer, which it never
        # signs the payload with; given in advance it goes as a header, and
        # payload_signing=True can then sign the part.
        crc_in_header = self._payload_signing is True and args.get("ChecksumAlgorithm") == "CRC32"

        def send(number: int, body: bytearray, crc32c: Optional[str]) -> Any:
            # A bytearray goes to the socket as it is (bytes or a file object
            # would be read in 16 KiB pieces), and retries can send it again.
            if crc32c is not None:
                extra = {"ChecksumCRC32C": crc32c}
            else:
                extra = {"ChecksumCRC32": crc32_base64(body)} if crc_in_header else {}
            response = client.upload_part(PartNumber=number, Body=body, **args, **extra)
            part = {"ETag": response["ETag"], "PartNumber": number}
            if checksum_member:
                part[checksum_member] = response.get(checksum_member) or extra.get(checksum_member)
                if part[checksum_member] is None:
                    del part[checksum_member]
            return part, body

        parts: List[Dict[str, Any]] = []
        spare: List[bytearray] = []
        sending: Set[Future] = set()
        length = 0

        def collect(done: Set[Future]) -> None:
            for future in done:
                part, body = future.result()
                parts.append(part)
                if len(body) == part_size:
                    spare.append(body)

        with ThreadPoolExecutor(self._concurrency, thread_name_prefix="depot-s3-part") as pool:
            try:
                number = 0
                while True:
                    buffer = spare.pop() if spare else bytearray(part_size)
                    filled = reader.readinto(buffer)
                    if not filled and number:
                        break
                    crc32c = None
                    if hashers:
                        # Hashed in order here, from an immutable copy (google-crc32c
                        # takes only bytes) dropped once hashed.
                        frozen = bytes(memoryview(buffer)[:filled])
                        for hasher in hashers:
                            hasher.update(frozen)
                        crc32c = checksums.crc32c_base64(frozen) if crc32c_parts else None
                        del frozen
                    if filled < part_size:
                        # A copy, not a resize: the stream may still hold a view of the buffer.
                        buffer = buffer[:filled]
                    length += filled
                    number += 1
                    sending.add(pool.submit(send, number, buffer, crc32c))
                    if len(sending) >= self._concurrency:
                        done, sending = wait(sending, return_when=FIRST_COMPLETED)
                        collect(done)
                    if filled < part_size:
                        break
                done, sending = wait(sending)
                collect(done)
            finally:
                for future in sending:
                    future.cancel()  # leaving the pool waits for those already running
        parts.sort(key=lambda part: part["PartNumber"])
        return parts, length

    def _abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        try:
            self._client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception:
            # The upload's own error is the one to report.
            log.warning("Could not abort multipart upload %s of %s/%s", upload_id, bucket, key, exc_info=True)

    # -- ObjectStorage hooks ---------------------------------------------------

    def _find(self, file_id: str) -> Any:
        return self._bucket_driver.get_key(file_id)

    def _remove(self, file_id: str) -> None:
        try:
            self._client.delete_object(Bucket=self._bucket_driver.bucket.name, Key=self._object_key(file_id))
        except ClientError as exc:
            if not is_missing(exc):  # S3 answers 204 for a missing key; some services 404
                raise

    def list(self) -> List[str]:
        return _pending_objects.visible(self._bucket_driver.list_key_names())

    # -- raw objects (markers of direct uploads) -------------------------------

    def _raw_put(self, name: str, data: bytes) -> None:
        # No ACL: private whatever the storage's policy, markers are the server's records.
        self._client.put_object(Bucket=self._bucket_driver.bucket.name, Key=self._bucket_driver.prefix + name,
                                Body=data, ContentType="application/json")

    def _raw_get(self, name: str) -> Optional[bytes]:
        try:
            response = self._client.get_object(Bucket=self._bucket_driver.bucket.name,
                                               Key=self._bucket_driver.prefix + name)
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise
        return response["Body"].read()

    def _raw_delete(self, name: str) -> None:
        try:
            self._client.delete_object(Bucket=self._bucket_driver.bucket.name, Key=self._bucket_driver.prefix + name)
        except ClientError as exc:
            if not is_missing(exc):
                raise

    def _raw_create(self, name: str, data: bytes) -> bool:
        try:
            self._client.put_object(Bucket=self._bucket_driver.bucket.name, Key=self._bucket_driver.prefix + name,
                                    Body=data, IfNoneMatch="*")
        except ClientError as exc:
            if error_code(exc) in _pending_objects.LOST_WRITE_CODES:
                return False
            raise
        return True

    def _raw_get_tagged(self, name: str) -> Optional[Tuple[bytes, str]]:
        try:
            response = self._client.get_object(Bucket=self._bucket_driver.bucket.name,
                                               Key=self._bucket_driver.prefix + name)
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise
        return response["Body"].read(), response["ETag"]

    def _raw_replace(self, name: str, data: bytes, tag: str) -> bool:
        try:
            self._client.put_object(Bucket=self._bucket_driver.bucket.name, Key=self._bucket_driver.prefix + name,
                                    Body=data, ContentType="application/json", IfMatch=tag)
        except ClientError as exc:
            if error_code(exc) in _pending_objects.LOST_WRITE_CODES:  # rewritten or deleted meanwhile
                return False
            raise
        return True

    def _raw_list(self, under: str) -> Iterator[Tuple[str, float]]:
        cut = len(self._bucket_driver.prefix)
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket_driver.bucket.name, Prefix=self._bucket_driver.prefix + under
        )
        for page in pages:
            for obj in page.get("Contents", ()):
                yield obj["Key"][cut:], obj["LastModified"].timestamp()


    # -- direct uploads (depot.uploads; the rules live in depot.io._s3_uploads) --

    def _upload_target(self, record: Any) -> Any:
        """A presigned POST, PUT or set of part URLs for the browser (see :mod:`depot.io._s3_uploads`)."""
        return _s3_uploads.upload_target(self, record)

    def _complete_upload(self, record: Any) -> None:
        _s3_uploads.complete_upload(self, record)

    def _seal_upload(self, record: Any, checked: StoredFile) -> Optional[str]:
        return _s3_uploads.seal_upload(self, record, checked)

    def _abandon_upload(self, record: Any) -> None:
        _s3_uploads.abandon_upload(self, record)
