"""The application side of direct uploads: intents, the check before attaching, collection."""
from __future__ import annotations

import itertools
import re
import time
from dataclasses import replace
from typing import Any, Callable, Generator, Iterator, List, Optional, Set, Tuple, Union

from depot.io import checksums
from depot.io._upload_targets import replaced
from depot.io.interfaces import FileStorage, StoredFile
from depot.io.utils import batches, clean_filename
from depot.manager import DepotManager

from .intents import (
    ATTACH_GRACE,
    CLAIM_TIMEOUT,
    METHODS,
    SNIFF_BYTES,
    PendingUpload,
    UploadIntent,
    UploadRefused,
    check_content_types,
    claimed,
    sniff_content_type,
    type_allowed,
)

__all__ = ["create_upload_intent", "finish_upload", "collect_pending", "pending_uploads", "resolve_storage"]

#: Uploads :func:`collect_pending` takes from the listing at a time: what it
#: holds in memory, whatever the number of markers.
COLLECT_BATCH = 1000

#: Bounds of ``expires_in``: S3 signs URLs for at most seven days.
MIN_EXPIRES_IN = 1
MAX_EXPIRES_IN = 7 * 24 * 3600

_DIGEST_LENGTHS = {"crc32c": 8, "sha256": 64, "md5": 32}
_HEX = re.compile(r"\A[0-9a-f]+\Z")


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError("%s must be a positive integer, got %r" % (name, value))
    return value


def check_checksum(checksum: Any) -> Optional[str]:
    """The ``checksum`` argument of an intent: ``None`` or ``"<algorithm>:<hex digest>"`` of the right length."""
    if checksum is None:
        return None
    parsed = checksums.parse(checksum.strip().lower()) if isinstance(checksum, str) else None
    if parsed is None:
        raise ValueError(
            "checksum must be '<algorithm>:<hex digest>' with one of %s, got %r"
            % (", ".join(checksums.ALGORITHMS), checksum)
        )
    algorithm, digest = parsed
    if len(digest) != _DIGEST_LENGTHS[algorithm] or not _HEX.match(digest):
        raise ValueError(
            "checksum %r: a %s digest is %d hexadecimal digits" % (checksum, algorithm, _DIGEST_LENGTHS[algorithm])
        )
    return "%s:%s" % (algorithm, digest)


def resolve_storage(storage: Union[None, str, FileStorage]) -> Tuple[str, FileStorage]:
    """``(name, storage)`` for a storage name (``None``: the default) or a configured storage."""
    if isinstance(storage, FileStorage):
        for known, configured in list(DepotManager._depots.items()):
            if configured is storage:
                return known, storage
        raise ValueError("%r is not a storage configured in DepotManager" % (storage,))
    if storage is not None and not isinstance(storage, str):
        raise TypeError("storage must be a storage name, got %r" % (storage,))
    name = DepotManager.resolve_alias(storage) if storage is not None else DepotManager.get_default()
    found = DepotManager.get(name) if name is not None else None
    if found is None or name is None:
        raise ValueError("No storage named %r is configured" % (storage,))
    return name, found


def create_upload_intent(
    storage: Optional[str] = None,
    *,
    max_size: int,
    content_types: Any = (),
    filename: Optional[str] = None,
    checksum: Optional[str] = None,
    expires_in: int = 3600,
    multipart: Optional[bool] = None,
    part_size: Optional[int] = None,
    method: Optional[str] = None,
    size: Optional[int] = None,
) -> UploadIntent:
    """Permit the browser to upload one file of at most ``max_size`` bytes to ``storage``.

    ``content_types`` limits the types (``'image/*'`` a family; empty: any),
    checked against the first bytes of the upload, not only what the
    browser declares.  ``checksum`` (``"sha256:<hex>"``, ``"crc32c:..."``,
    ``"md5:..."``) is the checksum the bytes must have.  The intent is valid
    for ``expires_in`` seconds (1 s to 7 days).  ``multipart`` asks for (or
    refuses, with ``False``) an upload in parts of ``part_size`` bytes where
    the storage supports it (S3); ``None`` lets the storage choose by size.
    ``method`` asks for one way of uploading (``"POST"``, ``"PUT"``,
    ``"MULTIPART"``, ``"RESUMABLE"``); a storage that does not offer it
    raises :class:`ValueError` naming itself.  ``size``, the exact size of
    the file when the browser knows it, makes any other size a refusal
    (by the service where it can bound it, by the middleware, and when
    the upload is attached); parts of an upload in parts are then exactly
    those the file needs, and it is incomplete while one is missing.

    The marker is written before the storage is asked for a URL: any upload
    that can happen is recognisable as pending, and collected if never
    attached.  Every argument is checked first (:class:`ValueError`).
    """
    max_size = _positive_int(max_size, "max_size")
    types = check_content_types(content_types)
    checksum = check_checksum(checksum)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or not (
        MIN_EXPIRES_IN <= expires_in <= MAX_EXPIRES_IN
    ):
        raise ValueError(
            "expires_in must be an integer number of seconds from %d to %d, got %r"
            % (MIN_EXPIRES_IN, MAX_EXPIRES_IN, expires_in)
        )
    if multipart is not None and not isinstance(multipart, bool):
        raise ValueError("multipart must be True, False or None, got %r" % (multipart,))
    if part_size is not None:
        part_size = _positive_int(part_size, "part_size")
    method = _check_method(method, multipart)
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= max_size:
            raise ValueError("size must be an integer from 0 to max_size (%d), got %r" % (max_size, size))
    if filename is not None:
        if not isinstance(filename, str) or not filename:
            raise ValueError("filename must be a non-empty string or None, got %r" % (filename,))
        filename = clean_filename(filename)
    name, backend = resolve_storage(storage)
    now = time.time()
    record = PendingUpload(
        storage=name,
        file_id=backend._new_upload_id(),
        created_at=now,
        expires_at=now + expires_in,
        max_size=max_size,
        content_types=types,
        filename=filename,
        checksum=checksum,
        multipart=None if multipart is None and part_size is None and method is None else {
            "wanted": multipart, "part_size": part_size, "method": method},
        size=size,
    )
    backend._pending_put(record.file_id, record.to_json())
    try:
        target = backend._upload_target(record)
    except BaseException:
        # No URL was handed out, so nothing can be uploaded: the marker goes
        # (with whatever the backend began, such as an S3 multipart upload).
        discard_upload(backend, record)
        raise
    if target.multipart is not None:
        record = replace(record, multipart=target.multipart)
        backend._pending_put(record.file_id, record.to_json())
    return UploadIntent(
        storage=name,
        file_id=record.file_id,
        expires_at=record.expires_at,
        max_size=max_size,
        content_types=types,
        method=target.method,
        url=target.url,
        fields=dict(target.fields),
        headers=dict(target.headers),
        parts=target.parts,
    )


def _check_method(method: Any, multipart: Optional[bool]) -> Optional[str]:
    """The ``method`` argument of an intent, upper-cased.

    :class:`ValueError` if unknown or contradicting ``multipart``.
    """
    if method is None:
        return None
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise ValueError("method must be one of %s or None, got %r" % (", ".join(METHODS), method))
    method = method.upper()
    in_parts = method in ("MULTIPART", "RESUMABLE")
    if multipart is not None and multipart != in_parts:
        raise ValueError("method %s contradicts multipart=%r" % (method, multipart))
    return method


def _record(backend: FileStorage, name: str, file_id: str) -> PendingUpload:
    raw = backend._pending_get(file_id)
    if raw is None:
        raise UploadRefused(name, file_id, "not-an-intent", "no upload is pending under this id "
                            "(it was never permitted, or it is already attached)")
    record = PendingUpload.from_json(raw)
    if record.claimed_at is not None:
        raise UploadRefused(name, file_id, "not-an-intent", "the upload is being collected" if record.collecting
                            else "the upload is already attached")
    return record


#: How much the checks of an upload read at a time.
_CHECK_CHUNK = 256 * 1024


def _chunks(stored: StoredFile) -> Generator[bytes, None, None]:
    """The bytes of ``stored`` as the checks read them; closing it ends the transfer early."""
    yield from stored.iter_range(0, None, _CHECK_CHUNK)


def _close(chunks: Generator[bytes, None, None], stored: StoredFile) -> None:
    chunks.close()  # checks that stop early (a refusal, the head only) end the transfer here
    stored.close()


def _head_and_rest(chunks: Iterator[bytes]) -> Tuple[bytes, Iterator[bytes]]:
    """The first :data:`SNIFF_BYTES` of ``chunks``, and the rest of them."""
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= SNIFF_BYTES:
            break
    rest = head[SNIFF_BYTES:]
    return head[:SNIFF_BYTES], itertools.chain((rest,) if rest else (), chunks)


def _count(chunks: Iterator[bytes], hasher: Optional[checksums.Hasher]) -> int:
    """How many bytes ``chunks`` hold, fed to ``hasher`` (if any) on the way (bounded memory)."""
    count = 0
    for chunk in chunks:
        count += len(chunk)
        if hasher is not None:
            hasher.update(chunk)
    return count


def _replaced(backend: FileStorage, file_id: str, version: Optional[str]) -> bool:
    """Whether the file ``file_id`` is no longer at ``version`` (``False`` when the backend cannot tell)."""
    if version is None:
        return False
    try:
        current = backend.get(file_id)
    except IOError:
        return False
    with current:
        return current.version != version


def finish_upload(
    storage: Union[None, str, FileStorage], file_id: str, *, grace: float = ATTACH_GRACE
) -> Tuple[PendingUpload, StoredFile]:
    """Check the upload ``file_id`` against its intent; ``(record, stored file)`` when it passes.

    The checks: a marker exists (else ``not-an-intent``: never permitted or
    already attached), the storage completes the upload (S3 multipart) and
    the file exists (else ``incomplete``; the marker stays, so the browser
    may still finish), the size is within ``max_size`` (``too-large``) and
    is the intent's ``size`` when it gave one (larger: ``too-large``;
    shorter: ``incomplete``, the truncated file deleted, the marker kept so
    the browser may upload again), the type sniffed from the first bytes
    and the stored type are both allowed (``bad-type``) and the
    checksum is the expected one (``bad-checksum``).  On those last three
    the upload and its marker are deleted before :class:`UploadRefused` is
    raised: a refused upload never lingers.  More than ``grace`` seconds
    (:data:`~depot.uploads.intents.ATTACH_GRACE`) after the intent expired,
    the upload is refused (``expired``) and deleted, claimed first as the
    collection does (an attach that passed this check in time and claims
    late keeps its file): from then on :func:`collect_pending` may collect
    it, and an attach must not race it.

    The checks judge one version of the file: its bytes are read with
    ``iter_range``, which S3 and GCS pin to the version whose metadata is
    judged.  Replaced meanwhile (an S3 POST policy is still valid), the
    upload is refused ``incomplete`` and kept, marker included: attaching
    again checks the new version.  The returned file is of the version
    checked (the S3 seal copies only that one).

    The marker is kept: the attach step then claims the upload
    (:func:`claim_upload`).  The caller closes the returned file.
    """
    name, backend = resolve_storage(storage)
    if not isinstance(file_id, str):
        file_id = FileStorage.fileid(file_id)
    try:
        backend._check_file_id(file_id)
    except ValueError:
        raise UploadRefused(name, file_id, "not-an-intent", "not a valid file id") from None
    record = _record(backend, name, file_id)
    if time.time() > record.expires_at + grace:
        # Claimed first, as the collection does: an attach that passed this
        # check in time may claim late (a long checksum), and its row then
        # references the file.  Only the winner deletes.
        if claim_upload(backend, record, collecting=True):
            discard_upload(backend, record)
        raise UploadRefused(name, file_id, "expired", "the intent expired more than %d s ago" % grace)
    try:
        backend._complete_upload(record)
    except IOError as exc:
        raise UploadRefused(name, file_id, "incomplete", "the upload is not complete: %s" % exc) from exc
    try:
        stored = backend.get(file_id)
    except IOError:
        raise UploadRefused(name, file_id, "incomplete", "nothing was uploaded yet") from None
    # Read through iter_range: where the store can (S3, GCS), every byte
    # checked is of the version this handle describes, the version the
    # attach step goes on with (a POST policy could replace it meanwhile).
    version = stored.version
    chunks = _chunks(stored)
    try:
        head, rest = _head_and_rest(chunks)
        size = stored.content_length
        if size is not None:
            _check_size(backend, record, size)
        sniffed = sniff_content_type(head, stored.content_type)
        # The stored type is the one served: it must be allowed too (an HTML
        # type on PNG bytes would be served as HTML).
        declared = (stored.content_type or "").split(";", 1)[0].strip().lower()
        for found in (sniffed, declared):
            if not type_allowed(found, record.content_types):
                raise UploadRefused(name, file_id, "bad-type", "content of type %s, allowed: %s"
                                    % (found, ", ".join(record.content_types)))
        actual = stored.checksum
        hasher = None
        if record.checksum is not None:
            algorithm = record.checksum.split(":", 1)[0]
            if actual is None or not actual.startswith(algorithm + ":"):
                hasher = checksums.Hasher(algorithm)
                hasher.update(head)
        if hasher is not None or size is None:
            # The checksum, or the length a store did not know: read to the end.
            counted = len(head) + _count(rest, hasher)
            if hasher is not None:
                actual = hasher.result()
        if record.checksum is not None and actual != record.checksum:
            raise UploadRefused(name, file_id, "bad-checksum", "checksum %s, expected %s" % (actual, record.checksum))
        if size is None:
            _check_size(backend, record, counted)
    except UploadRefused as exc:
        _close(chunks, stored)
        if exc.code == "incomplete":
            # Truncated: the file goes, the marker stays for another try.
            backend._abandon_upload(record)
        else:
            discard_upload(backend, record)
        raise
    except IOError as exc:
        _close(chunks, stored)
        if _replaced(backend, file_id, version):
            # Its bytes were not all of one version: none of them is judged.
            raise replaced(name, file_id) from exc
        raise
    except BaseException:
        _close(chunks, stored)
        raise
    _close(chunks, stored)
    # A fresh handle (the checks consumed the first one), of the version checked.
    fresh = backend.get(file_id)
    if fresh.version != version:
        fresh.close()
        raise replaced(name, file_id)
    return record, fresh


def _check_size(backend: FileStorage, record: PendingUpload, size: int) -> None:
    """Refuse a stored upload over ``max_size`` or, when the intent gave one, of another ``size``.

    A shorter file than announced is a truncated upload: the file is
    deleted but the marker kept (``incomplete``), so the browser may
    upload it again while the intent is valid.  Deleting it is safe: no
    row can reference an upload not attached yet.
    """
    limit = record.max_size if record.size is None else record.size
    if size > limit:
        raise UploadRefused(record.storage, record.file_id, "too-large", "%d bytes, %s %d allowed" % (
            size, "at most" if record.size is None else "exactly", limit))
    if record.size is not None and size < record.size:
        raise UploadRefused(record.storage, record.file_id, "incomplete",
                            "%d bytes stored, %d announced: upload the file again" % (size, record.size))


def claim_upload(backend: FileStorage, record: PendingUpload, now: Optional[float] = None,
                 collecting: bool = False) -> bool:
    """Mark the upload of ``record`` as being attached; whether this call is the one that did.

    The marker is replaced by the record with ``claimed_at`` set, not
    deleted (see :func:`depot.uploads.intents.claimed`): the file keeps a
    marker from the intent onwards, so ``depot fsck --delete-orphans``
    never sees it unmarked and unreferenced while the row that attaches it
    is not committed yet, however old the upload.  A crash anywhere leaves
    a marker, so the file is kept until ``depot gc --pending-older-than``
    drops the claimed marker (never the file) and ``fsck`` can judge the
    file from committed rows.  Of two requests attaching one id, only one
    gets ``True`` (atomically where the backend can tell).  The collection
    claims with ``collecting`` true, after which no attach can claim.
    """
    stamped = replace(record, claimed_at=time.time() if now is None else now, collecting=collecting)
    return backend._pending_claim(record.file_id, stamped.to_json())


def discard_upload(backend: FileStorage, record: PendingUpload) -> None:
    """Remove a pending upload: its file and parts first, then its marker.

    In this order a crash in between leaves a marker, which the next
    collection finds and finishes; the other order could leave an upload
    nothing points to any more.
    """
    backend._abandon_upload(record)
    backend._pending_delete(record.file_id)


def pending_uploads(storage: Union[None, str, FileStorage] = None) -> Iterator[Tuple[str, float]]:
    """``(file_id, created)`` of every upload of ``storage`` permitted and not attached yet."""
    return resolve_storage(storage)[1]._pending_list()


def unattached_in(backend: FileStorage, file_ids: Optional[List[str]] = None) -> Set[str]:
    """The ids (among ``file_ids``, else all) of ``backend``'s uploads pending and not claimed by an attach.

    No committed row can reference those: a row is committed only after
    its attach claimed the marker.  An upload being attached (a claimed
    marker) is not among them, since its row may be committed already.
    A storage without direct uploads has none.  ``depot cp`` and ``depot
    migrate`` leave these out: copied without their markers, they would be
    orphans in the target that no collection of pending uploads ever finds.
    """
    try:
        ids = [file_id for file_id, _ in backend._pending_list()] if file_ids is None else file_ids
    except NotImplementedError:
        return set()
    return {file_id for file_id in ids if _unattached(backend, file_id)}


def _unattached(backend: FileStorage, file_id: str) -> bool:
    try:
        raw = backend._pending_get(file_id)
    except Exception:
        # Unsure (no markers here, a malformed id, the storage unreachable):
        # the file is taken as attached, so it is copied, never left out.
        return False
    return raw is not None and not claimed(raw)


def collect_pending(
    storage: Union[None, str, FileStorage] = None,
    *,
    older_than: float,
    now: Optional[float] = None,
    grace: float = ATTACH_GRACE,
    claim_timeout: float = CLAIM_TIMEOUT,
) -> List[str]:
    """Remove the uploads never attached whose intent was created more than ``older_than`` seconds ago.

    Returns their ids.  Only intents expired more than ``grace`` seconds
    ago are taken, whatever ``older_than`` says
    (:data:`~depot.uploads.intents.ATTACH_GRACE`, the time
    :func:`finish_upload` still accepts them): an upload that may still be
    attached, or still be streaming to the middleware, is never collected.
    Each one is claimed (:func:`claim_upload`, ``collecting``) before its
    file is deleted, so of an attach and the collection racing for one id
    exactly one goes on.  Attached files are never touched: attaching
    replaces the marker by a *claimed* one, of which only the marker is
    removed once claimed more than ``older_than`` seconds ago (``depot
    fsck`` then judges the file from the rows).  Pick ``older_than`` well
    beyond the time the application takes to attach and commit.

    A claim held longer than ``claim_timeout`` seconds
    (:data:`~depot.uploads.intents.CLAIM_TIMEOUT`; S3 only, where a claim
    spans a few requests) was left by a process that died holding it: it
    is released first, and its upload judged by its marker like any other
    (a pending one is collected once expired, a claimed one keeps its file).
    """
    if isinstance(older_than, bool) or not isinstance(older_than, (int, float)) or older_than < 0:
        raise ValueError("older_than must be a number of seconds >= 0, got %r" % (older_than,))
    name, backend = resolve_storage(storage)
    return collect_pending_in(backend, name, older_than, now, grace=grace, claim_timeout=claim_timeout)


def collect_pending_in(
    backend: FileStorage,
    name: str,
    older_than: float,
    now: Optional[float] = None,
    on_candidates: Optional[Callable[[int], None]] = None,
    on_removed: Optional[Callable[[str], None]] = None,
    grace: float = ATTACH_GRACE,
    claim_timeout: float = CLAIM_TIMEOUT,
) -> List[str]:
    """:func:`collect_pending` on a storage object (the CLI builds its own).

    The markers are listed as they are collected, :data:`COLLECT_BATCH` at
    a time, so memory does not grow with their number (only the returned
    ids do, one per upload removed).  ``on_candidates`` is told how many
    uploads old enough were found so far, each time more are found and
    before they are removed (a total that grows while the listing goes
    on), and ``on_removed`` each id once removed (progress lines).

    Crash safety: the marker is swapped for a claimed one with
    ``collecting`` set (atomically where the backend can tell) before the
    file is deleted, and removed after it.  A crash after the claim leaves
    that marker: no attach can claim the upload any more, and the next
    collection deletes the file, then the marker.  A crash before leaves
    the pending marker as it was.  Claims held longer than
    ``claim_timeout`` (a holder that died) are released before the markers
    are read, so what becomes of their uploads follows from the markers.
    """
    now = time.time() if now is None else now
    cutoff = now - older_than
    removed = []
    backend._pending_release_claims(now - claim_timeout)
    found = 0
    # Every backend's listing may go on while markers are removed: S3 and
    # GCS pages, a folder scan, a GridFS cursor in _id order.
    old_enough = ((file_id, created) for file_id, created in backend._pending_list() if created < cutoff)
    for batch in batches(old_enough, COLLECT_BATCH):
        found += len(batch)
        if on_candidates is not None:
            on_candidates(found)
        removed += _collect_batch(backend, name, batch, cutoff, now, grace, on_removed)
    return removed


def _collect_batch(
    backend: FileStorage,
    name: str,
    candidates: List[Tuple[str, float]],
    cutoff: float,
    now: float,
    grace: float,
    on_removed: Optional[Callable[[str], None]],
) -> List[str]:
    """Collect these ``(file_id, created)``, all older than ``cutoff``; the ids removed."""
    removed = []
    for file_id, created in candidates:
        raw = backend._pending_get(file_id)
        if raw is None:
            continue  # attached meanwhile
        try:
            record = PendingUpload.from_json(raw)
        except ValueError:
            # An unreadable marker still names an upload never attached.
            record = PendingUpload(name, file_id, created, created, 0)
        if record.claimed_at is not None and not record.collecting:
            # Attached, or being attached: the file may be referenced by a
            # row; only the marker goes, once old enough, never the file.
            if record.claimed_at < cutoff:
                backend._pending_delete(file_id)
            continue
        if not record.collecting:
            if record.expires_at + grace >= now:
                continue  # may still be attached (or still streaming)
            if not claim_upload(backend, record, now, collecting=True):
                continue  # attached (or collected) meanwhile
        # Claimed for collection (now, or by a collection a crash stopped):
        # no attach can claim it any more.
        discard_upload(backend, record)
        removed.append(file_id)
        if on_removed is not None:
            on_removed(file_id)
    return removed
