"""Markers of direct uploads in object stores (S3, GCS): one small object under a reserved name.

A marker of the upload ``<id>`` is the object ``<prefix>.depot-pending/<id>``
beside the files (``<prefix><id>``).  File ids never start with a dot, so
the name can be neither a file nor hidden among them; :meth:`list` and the
fsck walkers drop it with :func:`visible`.  The object stores' methods call
these helpers, which only need the store's own put/get/delete/list of raw
objects (``_raw_put``, ``_raw_get``, ``_raw_delete``, ``_raw_list``).

Stores whose write cannot be conditional on an object's content (S3)
claim an upload with :class:`ClaimObjects`: a claim object
``<prefix>.depot-pending/.claims/<id>`` held for the few requests of the
claim, and a marker rewritten only at the version read.
"""
from __future__ import annotations

import logging
import uuid
from typing import Any, Callable, Iterable, Iterator, List, Optional, Tuple

__all__ = ["PENDING_DIR", "CLAIMS_DIR", "LOST_WRITE_CODES", "marker_name", "is_marker_name", "visible",
           "pending_put", "pending_get", "pending_delete", "pending_list", "ClaimObjects"]

log = logging.getLogger(__name__)

#: The reserved "folder" of markers, below the storage's prefix.
PENDING_DIR = ".depot-pending/"
#: Claims of uploads being attached or collected (:class:`ClaimObjects`);
#: inside the markers' folder, so hidden from ``list()`` and fsck, and not
#: taken for markers (a name with a ``/``).
CLAIMS_DIR = PENDING_DIR + ".claims/"
#: S3 error codes of a conditional write that lost: its condition failed, a
#: concurrent conditional write won, or (``If-Match``) the object is gone.
LOST_WRITE_CODES = frozenset(("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412"))


def marker_name(file_id: str) -> str:
    """The object name (below the storage prefix) of the marker of ``file_id``."""
    return PENDING_DIR + file_id


def is_marker_name(name: str) -> bool:
    """Whether ``name`` (below the storage prefix) is a marker rather than a file."""
    return name.startswith(PENDING_DIR)


def visible(names: Iterable[str]) -> List[str]:
    """The names of files among ``names``: markers left out."""
    return [name for name in names if not name.startswith(PENDING_DIR)]


def pending_put(storage: Any, file_id: str, data: bytes) -> None:
    storage._check_file_id(file_id)
    storage._raw_put(marker_name(file_id), bytes(data))


def pending_get(storage: Any, file_id: str) -> Optional[bytes]:
    storage._check_file_id(file_id)
    return storage._raw_get(marker_name(file_id))


def pending_delete(storage: Any, file_id: str) -> None:
    storage._check_file_id(file_id)
    storage._raw_delete(marker_name(file_id))


def pending_list(storage: Any) -> Iterator[Tuple[str, float]]:
    """``(file_id, written)`` of every marker; ``written`` is the object's modification time."""
    cut = len(PENDING_DIR)
    for name, modified in storage._raw_list(PENDING_DIR):
        file_id = name[cut:]
        if file_id and "/" not in file_id:
            yield file_id, modified


def _landed(store: Any, name: str, data: bytes, write: Callable[[], bool]) -> bool:
    """Whether the conditional ``write`` of ``data`` at ``name`` took effect, even if its answer was lost.

    A request whose answer is lost is resent (botocore, boto retry); the
    resent one fails the condition its first attempt satisfied (``412``),
    or the retries run out (an error).  Either way the object then holds
    ``data``: the write took effect.
    """
    try:
        if write():
            return True
    except Exception:
        if store._raw_get(name) == data:
            return True
        raise
    return bool(store._raw_get(name) == data)


class ClaimObjects:
    """The claim of an upload (``_pending_claim``) on a store without writes conditional on content (S3).

    The store provides, besides the raw operations above, ``_raw_create``
    (write only if absent: ``If-None-Match: *``; whether it did),
    ``_raw_get_tagged`` (content and version tag, ``None`` if absent) and
    ``_raw_replace`` (write only at the tag read: ``If-Match``; whether it
    did).  Mixed in before the store's base class.
    """

    def _pending_claim(self, file_id: str, claimed: bytes) -> bool:
        """Replace the marker of ``file_id`` by ``claimed``: atomic, through conditional writes.

        The claim object ``.depot-pending/.claims/<id>`` is created with
        ``If-None-Match: *``: of two requests, one gets ``412`` and loses at
        once.  The winner reads the marker and, when it is not claimed yet,
        rewrites it at the version read (``If-Match``: never absent between),
        then deletes its claim object, also when a request failed.  A claim
        that won stands even if that deletion fails (the claim object then
        stays, refusing no more than the claimed marker does).  Else a claim
        object outlives its holder only when the process died in those few
        requests: every later claim of the id is then refused until ``depot
        gc`` releases it, older than :data:`~depot.uploads.intents.CLAIM_TIMEOUT`
        (:meth:`_pending_release_claims`).  The conditional rewrite keeps
        that safe even if the holder was only stalled: of it and whoever
        claims after the release, only the first to rewrite the marker wins.

        A conditional write that fails, or errs, is judged by what the
        object then holds (:func:`_landed`; the claim object holds a token
        of this claim's own): a request resent after its answer was lost
        meets its own first attempt, and the claim has won, not lost.
        """
        from depot.uploads.intents import claimed as is_claimed

        store: Any = self
        store._check_file_id(file_id)
        claim, marker = CLAIMS_DIR + file_id, marker_name(file_id)
        # A token of this claim's own, so a lost answer can be told from a loss.
        token = uuid.uuid4().hex.encode("ascii")
        if not _landed(store, claim, token, lambda: store._raw_create(claim, token)):
            return False
        won = False
        try:
            found = store._raw_get_tagged(marker)
            if found is None or is_claimed(found[0]):
                return False
            tag = found[1]
            won = _landed(store, marker, bytes(claimed), lambda: store._raw_replace(marker, bytes(claimed), tag))
            return won
        finally:
            try:
                store._raw_delete(claim)
            except Exception:
                if not won:
                    raise
                # The marker is claimed: raising would refuse an attach that
                # won, leaving an upload no one can attach.  The claim object
                # refuses nothing more than the claimed marker does, and gc
                # releases it by age.
                log.warning("Could not delete the claim object of upload %s in %r; gc releases it after "
                            "CLAIM_TIMEOUT", file_id, store, exc_info=True)

    def _pending_release_claims(self, before: float) -> List[str]:
        """Delete the claim objects created before ``before`` (epoch seconds); the ids whose claim went.

        Such a claim's holder died (see :meth:`_pending_claim`); what
        becomes of its upload is decided by its marker, as for any other.
        """
        store: Any = self
        released = []
        # Released as listed (deleting behind a listing's position is safe):
        # memory holds one page, however many claims there are.
        for name, modified in store._raw_list(CLAIMS_DIR):
            file_id = name[len(CLAIMS_DIR):]
            if modified < before and file_id and "/" not in file_id:
                store._raw_delete(name)
                log.warning("Released the claim of upload %s in %r, held since %.0f by a process that never ended "
                            "it", file_id, store, modified)
                released.append(file_id)
        return released
