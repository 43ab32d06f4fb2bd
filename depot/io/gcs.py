"""Google Cloud Storage through google-cloud-storage.

Compatible with filedepot 0.12's ``depot.io.gcs``: same constructor and
credentials rules, blob layout (``<prefix><file id>``), metadata
(``x-depot-filename``, ``x-depot-modified``, ``x-depot-content-type``) and the
public ``GCSStorage.bucket`` / ``GCSStoredFile.blob`` attributes.  Fixed or
added on top of it:

- ``storage_class`` is used (for the bucket it creates and for every blob);
- ``list()`` returns the ids under the prefix only, prefix removed;
- ``replace()`` returns the id, like every other storage;
- files written outside depot report the blob's own content type;
- public-read makes each object public (a predefined ACL sent with the
  upload), never the whole bucket; private files get signed, expiring URLs
  when the credentials can sign, and no URL otherwise;
- uploads above ``multipart_threshold`` are streamed as resumable uploads in
  ``chunk_size`` pieces, whether or not the source can seek;
- reads and ranges fetch byte ranges of one object generation, so a
  replace during a read is an error instead of mixed content;
- with ``STORAGE_EMULATOR_HOST`` set (fake-gcs-server and other emulators),
  no credentials are needed: the client is anonymous.
"""
from __future__ import annotations

import base64
import datetime
import logging
import os
from typing import Any, Iterator, List, Optional, Sequence, Tuple

from depot._optional import require
from depot.io import _gcs_uploads, _pending_objects, checksums
from depot.io._multipart import plan_upload
from depot.io._objects import (
    CHECKSUM_META,
    CANNED_ACL_PRIVATE,
    CANNED_ACL_PUBLIC_READ,
    DEFAULT_URL_EXPIRES,
    ObjectStorage,
    ObjectStoredFile,
    check_policy,
    option_int,
)
from depot.io import utils  # noqa: F401 - a name filedepot 0.12 had here
from depot.io.interfaces import StoredFacts
from depot.io.interfaces import FileStorage, StoredFile  # noqa: F401 - a name filedepot 0.12 had here
from depot.io.utils import DEFAULT_CHUNK_SIZE, check_uuid, limit_chunks
from depot.utils import make_content_disposition  # noqa: F401 - a name filedepot 0.12 had here

storage = require("google.cloud.storage", "gcs", "depot.io.gcs.GCSStorage")
from google.api_core.exceptions import NotFound, PreconditionFailed, RequestRangeNotSatisfiable  # noqa: E402
from google.auth.credentials import AnonymousCredentials, Signing  # noqa: E402
from google.oauth2 import service_account  # noqa: E402

__all__ = ["CANNED_ACL_PUBLIC_READ", "CANNED_ACL_PRIVATE", "GCSStoredFile", "PrivateGCSStoredFile", "GCSStorage"]

log = logging.getLogger(__name__)

_check_file_id = check_uuid  # filedepot 0.12's name; the storage checks through FileStorage._checked_id

MB = 1024 * 1024
#: Custom metadata key filedepot reads the content type from.
CONTENT_TYPE_META = "x-depot-content-type"
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
CREDENTIALS_ENV = "GOOGLE_APPLICATION_CREDENTIALS"
#: Bytes fetched per ranged request when reading.
READ_BLOCK = 4 * MB
#: Resumable upload chunks must be multiples of this (a GCS rule).
CHUNK_MULTIPLE = 256 * 1024
#: The IAM role :meth:`GCSStorage.set_bucket_public_iam` grants.
PUBLIC_READER_ROLE = "roles/storage.objectViewer"


#: Checksums GCS computes for every (non-composite) object: streamed uploads report them.
_NATIVE = ("crc32c", "md5")


def _native_checksum(blob: Any) -> Optional[str]:
    """The checksum a streamed upload asked for (see :meth:`GCSStorage._save`), from the blob's own."""
    algorithm = (blob.metadata or {}).get(CHECKSUM_META)
    value = {"crc32c": blob.crc32c, "md5": blob.md5_hash}.get(algorithm) if algorithm in _NATIVE else None
    if not value:
        return None
    return "%s:%s" % (algorithm, base64.b64decode(value).hex())


def _check_received(blob: Any, file_id: str, data: bytes) -> None:
    """Raise :class:`ChecksumMismatch` (and remove the object) if GCS stored other bytes than ``data``.

    GCS itself refuses a body that does not match the CRC32C sent with it;
    emulators and proxies may not, and the answer carries the CRC32C of what
    was stored, so checking it costs no request.
    """
    sent = checksums.Hasher("crc32c")
    sent.update(data)
    stored = blob.crc32c
    if stored is None or stored == checksums.base64_digest(sent.digest()):
        return
    try:
        blob.delete(if_generation_match=blob.generation)
    except Exception:  # noqa: BLE001 - the mismatch is the error to report
        pass
    raise checksums.ChecksumMismatch(
        "GCS stored other bytes than those sent for file %s (CRC32C %s, sent %s); the object was removed"
        % (file_id, stored, checksums.base64_digest(sent.digest())),
        expected=sent.result(),
    )


def _add_metadata(blob: Any, checksum: str) -> None:
    # Assigned, not updated in place: the client only sends properties it saw set.
    blob.metadata = dict(blob.metadata, **{CHECKSUM_META: checksum})


class GCSStoredFile(ObjectStoredFile):
    """A file of :class:`GCSStorage`; ``blob`` is the loaded :class:`~google.cloud.storage.Blob`.

    Content is fetched in byte ranges on demand.  The first request reads
    the newest generation (a handle taken before a replace reads the new
    content, as on every storage); later requests of the same read stay on
    that generation.
    """

    def __init__(self, file_id: str, blob: Any) -> None:
        content_type = (blob.metadata or {}).get(CONTENT_TYPE_META) or blob.content_type
        super().__init__(file_id, blob.metadata, content_type, blob.size)
        if self.checksum is None:
            self.checksum = _native_checksum(blob)
        self.blob = blob
        self._position = 0
        self._buffer = b""
        self._generation: Optional[int] = None

    @property
    def version(self) -> str:
        """The blob's generation: GCS gives every write a new one."""
        return str(self.blob.generation)

    def _download(self, start: int, end: Optional[int], generation: Optional[int]) -> bytes:
        """Bytes ``[start, end]`` (inclusive; ``end=None``: to the end) of ``generation``.

        Pinning no generation reads the newest one and pins it for the next
        calls of :meth:`read`.
        """
        blob = self.blob.bucket.blob(self.blob.name, generation=generation)
        try:
            # A range cannot be checked against the whole object's checksum.
            data = blob.download_as_bytes(start=start, end=end, checksum=None if start or end else "auto")
        except RequestRangeNotSatisfiable:
            return b""
        except NotFound:
            if generation is None:
                raise utils.missing_file(self.file_id) from None
            raise IOError("File %s changed or was removed while being read" % self.file_id) from None
        if generation is None and self._generation is None and blob.generation is not None:
            self._generation = int(blob.generation)
        return data

    def read(self, n: int = -1) -> bytes:
        self._check_open()
        if n == 0:
            return b""
        start = self._position + len(self._buffer)
        if n is None or n < 0:
            data = self._buffer + self._download(start, None, self._generation)
            self._buffer = b""
        else:
            if len(self._buffer) < n:
                more = self._download(start, start + max(n - len(self._buffer), READ_BLOCK) - 1, self._generation)
                self._buffer += more
            data, self._buffer = self._buffer[:n], self._buffer[n:]
        self._position += len(data)
        return data

    def close(self, *args: Any, **kwargs: Any) -> None:
        super().close()
        self._buffer = b""

    def iter_range(
        self, start: int = 0, stop: Optional[int] = None, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> Iterator[bytes]:
        """Yield ``[start, stop)`` of the generation this handle describes, in ranged requests.

        :class:`IOError` if that generation was replaced or removed meanwhile.
        """
        self._check_open()
        size = self.content_length
        assert size is not None  # a GCS object always has a size (blob.size)
        stop = size if stop is None else min(stop, size)
        block = max(chunk_size, READ_BLOCK)
        yield from limit_chunks(self._blocks(start, stop, block), None, chunk_size)

    def _blocks(self, position: int, stop: int, block: int) -> Iterator[bytes]:
        """Bytes ``[position, stop)`` of this handle's generation, ``block`` bytes a request."""
        while position < stop:
            data = self._download(position, min(position + block, stop) - 1, self.blob.generation)
            if not data:
                return
            yield data
            position += len(data)

    @property
    def public_url(self) -> Optional[str]:
        """The object's public URL (on the emulator when ``STORAGE_EMULATOR_HOST`` is set)."""
        return self.blob.public_url


class PrivateGCSStoredFile(GCSStoredFile):
    """A file of a ``policy='private'`` :class:`GCSStorage`: a signed URL, or none.

    ``signer`` holds credentials able to sign (a service account); without
    them :attr:`public_url` is ``None`` and the file is served through the
    application.
    """

    public_url_signed = True

    def __init__(self, file_id: str, blob: Any, signer: Any = None, url_expires: int = DEFAULT_URL_EXPIRES) -> None:
        super().__init__(file_id, blob)
        self._signer = signer
        self.url_expires = url_expires

    @property
    def public_url(self) -> Optional[str]:
        if self._signer is None:
            return None
        return self.blob.generate_signed_url(
            version="v4",
            expiration=datetime.timedelta(seconds=self.url_expires),
            method="GET",
            credentials=self._signer,
            api_access_endpoint=os.environ.get(EMULATOR_ENV) or None,
        )


def _load_credentials(credentials: Any) -> Any:
    """Credentials as filedepot accepts them; ``None`` for an emulator without any."""
    if not credentials:
        path = os.environ.get(CREDENTIALS_ENV)
        if path:
            return service_account.Credentials.from_service_account_file(path)
        if os.environ.get(EMULATOR_ENV):
            return None
        raise ValueError("%s environment variable not set" % CREDENTIALS_ENV)
    if isinstance(credentials, dict):
        return service_account.Credentials.from_service_account_info(credentials)
    if isinstance(credentials, str):
        return service_account.Credentials.from_service_account_file(credentials)
    return credentials


class GCSStorage(ObjectStorage):
    """Files stored as blobs ``<prefix><file id>`` of a Google Cloud Storage bucket.

    :param project_id: the project; by default the credentials' project.
    :param credentials: a service-account info ``dict``, the path of a key
        file, or a credentials object; by default the key file named by
        ``GOOGLE_APPLICATION_CREDENTIALS``.  With ``STORAGE_EMULATOR_HOST``
        set, none are needed and requests are anonymous (credentials given
        are then used only to sign URLs).
    :param bucket: the bucket name (required), created if missing.
    :param policy: ``'public-read'`` (default: each object readable by
        anyone) or ``'private'``.
    :param storage_class: e.g. ``'NEARLINE'``, for the bucket created and for
        every blob; ``None`` keeps the bucket's default.
    :param prefix: prepended to every blob name.
    :param multipart_threshold: uploads larger than this (8 MiB) are resumable.
    :param chunk_size: the size of each resumable upload request (8 MiB, a
        multiple of 256 KiB): what bounds upload memory.
    :param url_expires: lifetime in seconds of private files' signed URLs (3600).
    :param upload_origin: the origin (``'https://app.example.com'``) of the
        pages that upload directly in resumable sessions: GCS answers a
        session's requests with CORS headers for the origin given when it
        was created.
    """

    public_file_class = GCSStoredFile
    private_file_class = PrivateGCSStoredFile

    def __init__(
        self,
        project_id: Optional[str] = None,
        credentials: Any = None,
        bucket: Optional[str] = None,
        policy: Optional[str] = None,
        storage_class: Optional[str] = None,
        prefix: str = "",
        multipart_threshold: Any = 8 * MB,
        chunk_size: Any = 8 * MB,
        url_expires: Any = DEFAULT_URL_EXPIRES,
        checksum: Any = checksums.DEFAULT_ALGORITHM,
        upload_origin: Optional[str] = None,
    ) -> None:
        self._set_checksum(checksum)
        self._policy = check_policy(policy)
        if not bucket:
            raise ValueError("GCSStorage needs a bucket name")
        self._storage_class = storage_class or None
        self._prefix = prefix or ""
        self._threshold = option_int(multipart_threshold, "multipart_threshold")
        self._chunk_size = option_int(chunk_size, "chunk_size", CHUNK_MULTIPLE)
        if self._chunk_size % CHUNK_MULTIPLE:
            raise ValueError("chunk_size must be a multiple of %d, got %r" % (CHUNK_MULTIPLE, chunk_size))
        self._url_expires = option_int(url_expires, "url_expires")
        self._upload_origin = upload_origin or None

        credentials = _load_credentials(credentials)
        self._signer = credentials if isinstance(credentials, Signing) else None
        project_id = project_id or getattr(credentials, "project_id", None)
        if os.environ.get(EMULATOR_ENV) or credentials is None:
            # Emulators take no tokens, and fetching one would need Google's servers.
            credentials = AnonymousCredentials()
        self.client = storage.Client(project=project_id, credentials=credentials)
        self.bucket = self._get_or_create_bucket(bucket)

    def __repr__(self) -> str:
        return "<GCSStorage %s/%s>" % (self.bucket.name, self._prefix)

    def _get_or_create_bucket(self, name: str) -> Any:
        try:
            return self.client.get_bucket(name)
        except NotFound:
            pass
        bucket = self.client.bucket(name)
        if self._storage_class:
            bucket.storage_class = self._storage_class
        return self.client.create_bucket(bucket)

    def set_bucket_public_iam(self, bucket: Any, members: Sequence[str] = ("allUsers",)) -> None:
        """Let ``members`` read every object of ``bucket``: filedepot 0.12's public-read, kept for callers.

        Appends a ``roles/storage.objectViewer`` binding to the bucket's IAM
        policy, which makes the **whole bucket** readable, objects written by
        other tools included.  The constructor no longer calls it (public-read
        storages make each object they write public); code that called or
        patched it keeps working, and a bucket that must be public as a whole
        can still be made so explicitly.
        """
        policy = bucket.get_iam_policy(requested_policy_version=3)
        policy.bindings.append({"role": PUBLIC_READER_ROLE, "members": set(members)})
        bucket.set_iam_policy(policy)

    # -- writing --------------------------------------------------------------

    def _new_blob(self, file_id: str, filename: Optional[str], content_type: Optional[str]) -> Any:
        headers = self._object_headers(filename, content_type)
        blob = self.bucket.blob(self._object_key(file_id), chunk_size=self._chunk_size)
        blob.content_type = headers.content_type
        blob.content_disposition = headers.content_disposition
        blob.metadata = dict(headers.metadata, **{CONTENT_TYPE_META: headers.content_type})
        if self._storage_class:
            blob.storage_class = self._storage_class
        return blob

    def _save(self, file_id: str, content: Any, filename: Optional[str], content_type: Optional[str]) -> StoredFacts:
        """Write ``content`` to the blob of ``file_id``: one request when small, resumable when large.

        A resumable upload only creates the new generation once complete, so
        a failing source leaves the previous content in place.  The upload's
        answer is the new object's resource, so its facts need no other request.
        """
        blob = self._new_blob(file_id, filename, content_type)
        content_type = blob.content_type
        acl = {"predefined_acl": "publicRead"} if self._policy == CANNED_ACL_PUBLIC_READ else {}
        data, stream = plan_upload(content, self._threshold)
        algorithm = self.checksum_algorithm
        # google-cloud-storage sends a CRC32C the service checks (one request)
        # or compares it with the service's once a resumable upload completes
        # (and deletes a corrupted object): a broken transfer raises.
        verify = {"checksum": "crc32c"} if algorithm is not None else {}
        if data is not None:
            if algorithm is not None:
                _add_metadata(blob, checksums.compute(algorithm, data))
            blob.upload_from_string(data, content_type=content_type, **acl, **verify)
            if algorithm is not None:
                _check_received(blob, file_id, data)
        else:
            hasher = None
            if algorithm in _NATIVE:
                # The value is the one GCS computes itself from the bytes it
                # received (the object's crc32c / md5Hash): the metadata only
                # says it is to be reported.
                _add_metadata(blob, algorithm)
            elif algorithm is not None:
                # GCS computes no SHA-256: taken as the upload reads the bytes.
                hasher = checksums.Hasher(algorithm)
                stream = checksums.HashingReader(stream, hasher)
            blob.upload_from_file(stream, content_type=content_type, **acl, **verify)
            if hasher is not None:
                self._record_checksum(blob, file_id, hasher.result())
        return StoredFacts.of(self._stored_file(file_id, blob))

    def _record_checksum(self, blob: Any, file_id: str, checksum: str) -> None:
        """Add ``checksum`` to the metadata of the generation just uploaded (one metadata request).

        The metadata of a resumable upload is sent before its bytes, so a
        checksum known only at the end is patched in.  The transfer itself
        was already verified (CRC32C, see :meth:`_save`); until the patch
        lands, or if it fails, the file reports no checksum rather than a
        wrong one.  The generation is pinned: a replace that came in
        between keeps its own metadata.
        """
        _add_metadata(blob, checksum)
        try:
            blob.patch(if_generation_match=blob.generation)
        except Exception:  # noqa: BLE001 - the content is stored and verified; only the record is missing
            log.warning("GCS file %s in %r: its %s checksum could not be recorded", file_id, self,
                        checksum.partition(":")[0], exc_info=True)

    # -- ObjectStorage hooks ---------------------------------------------------

    def _find(self, file_id: str) -> Any:
        return self.bucket.get_blob(self._object_key(file_id))

    def _remove(self, file_id: str) -> None:
        try:
            self.bucket.blob(self._object_key(file_id)).delete()
        except NotFound:
            pass

    def list(self) -> List[str]:
        cut = len(self._prefix)
        return _pending_objects.visible(
            [blob.name[cut:] for blob in self.client.list_blobs(self.bucket, prefix=self._prefix or None)]
        )

    # -- raw objects (markers of direct uploads) -------------------------------

    def _raw_put(self, name: str, data: bytes) -> None:
        # No predefined ACL: the bucket's default, never public-read as files may be.
        self.bucket.blob(self._prefix + name).upload_from_string(data, content_type="application/json")

    def _raw_get(self, name: str) -> Optional[bytes]:
        try:
            return self.bucket.blob(self._prefix + name).download_as_bytes()
        except NotFound:
            return None

    def _raw_delete(self, name: str) -> None:
        try:
            self.bucket.blob(self._prefix + name).delete()
        except NotFound:
            pass

    def _pending_claim(self, file_id: str, claimed: bytes) -> bool:
        """Rewrite the marker of ``file_id`` as ``claimed`` if it is still the generation read: atomic.

        Of two requests rewriting one generation only one succeeds (the
        other gets ``412``); the marker is replaced, never absent between.
        """
        from depot.uploads.intents import claimed as is_claimed

        self._check_file_id(file_id)
        blob = self.bucket.get_blob(self._prefix + _pending_objects.marker_name(file_id))
        if blob is None:
            return False
        try:
            if is_claimed(blob.download_as_bytes(if_generation_match=blob.generation)):
                return False
            blob.upload_from_string(claimed, content_type="application/json",
                                    if_generation_match=blob.generation)
        except (NotFound, PreconditionFailed):
            return False
        return True

    def _raw_list(self, under: str) -> Iterator[Tuple[str, float]]:
        cut = len(self._prefix)
        for blob in self.client.list_blobs(self.bucket, prefix=self._prefix + under):
            modified = blob.updated or blob.time_created
            yield blob.name[cut:], modified.timestamp() if modified is not None else 0.0

    # -- direct uploads (depot.uploads; the rules live in depot.io._gcs_uploads) --

    def _upload_target(self, record: Any) -> Any:
        """A signed PUT or a resumable session for the browser (see :mod:`depot.io._gcs_uploads`)."""
        return _gcs_uploads.upload_target(self, record)

    def _complete_upload(self, record: Any) -> None:
        _gcs_uploads.complete_upload(self, record)

    def _abandon_upload(self, record: Any) -> None:
        _gcs_uploads.abandon_upload(self, record)
