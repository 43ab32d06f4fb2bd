"""Direct uploads by the ten thousand: gc and fsck take the markers as they are listed.

Their memory is bounded by a batch (:data:`depot.uploads._api.COLLECT_BATCH`
markers, :data:`depot.fsck._listing.PAGE_SIZE` ids), never by the number of
markers.
"""
from __future__ import annotations

import os
import time
import tracemalloc
import uuid

import pytest

from depot.fsck import check
from depot.io import local
from depot.io.local import LocalFileStorage
from depot.io.memory import MemoryFileStorage
from depot.uploads import PendingUpload
from depot.uploads._api import COLLECT_BATCH, collect_pending_in
from tests._uploads import configure

MANY = 20000
#: gc runs ten days after the markers were written: all of them are old enough.
LATER = time.time() + 10 * 86400


def new_storage(kind, tmp_path):
    return LocalFileStorage(str(tmp_path / "files")) if kind == "local" else MemoryFileStorage()


def put_markers(storage, count, expires_at, claimed_at=None, uploaded=0):
    """``count`` markers; the first ``uploaded`` of them with their file stored."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    for n, file_id in enumerate(ids):
        record = PendingUpload("files", file_id, 1.0, expires_at, 100, claimed_at=claimed_at)
        storage._pending_put(file_id, record.to_json())
        if n < uploaded:
            storage._store_at(file_id, b"uploaded")
    return ids


def peak_of(func):
    """``(result, peak bytes Python allocated while func ran)``."""
    tracemalloc.start()
    try:
        result = func()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kind, count", [("local", MANY), ("memory", MANY), ("gridfs", 2500)])
def test_collect_pending_of_many_markers(kind, count, tmp_path, request):
    """Markers removed while they are listed: none is skipped or taken twice (GridFS: across cursor pages)."""
    storage = configure(request, kind, tmp_path) if kind == "gridfs" else new_storage(kind, tmp_path)
    expired = put_markers(storage, count * 3 // 4, expires_at=2.0, uploaded=200)
    alive = put_markers(storage, count // 5, expires_at=LATER + 3600)
    attached = put_markers(storage, count - len(expired) - len(alive), expires_at=2.0, claimed_at=5.0, uploaded=100)
    found = []
    removed = collect_pending_in(storage, "files", older_than=60, now=LATER, on_candidates=found.append)
    assert len(removed) == len(set(removed)) and set(removed) == set(expired)
    assert sorted(file_id for file_id, _ in storage._pending_list()) == sorted(alive)
    # The files of the uploads never attached went; those attached stay, only their marker went.
    assert sorted(storage.list()) == sorted(attached[:100])
    # The total grows batch by batch as the listing goes on.
    assert found == [min(n, count) for n in range(COLLECT_BATCH, count + COLLECT_BATCH, COLLECT_BATCH)]


def test_collect_pending_memory_is_bounded_by_a_batch(tmp_path):
    """Twenty thousand markers, all old enough but not expired: each is read, none kept in memory."""
    storage = new_storage("local", tmp_path)
    put_markers(storage, MANY, expires_at=LATER + 3600)
    removed, peak = peak_of(lambda: collect_pending_in(storage, "files", older_than=60, now=LATER))
    assert removed == []
    # Listed whole first (as before), the 20,000 markers peaked at 4.5 MB.
    assert peak < 1024 * 1024, peak


class OneTable:
    """A source whose rows reference ``ids`` in the storage ``files``."""

    storages = ["files"]

    def __init__(self, ids):
        self.ids = ids

    def values(self):
        for n, file_id in enumerate(self.ids):
            yield ("docs", n, "content"), {"files": ["files/%s" % file_id]}


class Lookup:
    def __init__(self, storage):
        self.storage = storage

    def resolve(self, name):
        return "files" if name in (None, "files") else None

    def get(self, name):
        return self.storage if name == "files" else None


def test_fsck_skips_twenty_thousand_pending_uploads_in_bounded_memory(tmp_path):
    storage = new_storage("local", tmp_path)
    put_markers(storage, MANY, expires_at=LATER, uploaded=300)
    referenced = [storage.create(b"referenced") for _ in range(50)]
    orphans = {storage.create(b"orphan") for _ in range(20)}
    problems = []
    report, peak = peak_of(lambda: check([OneTable(referenced)], Lookup(storage), on_problem=problems.append,
                                         tempdir=str(tmp_path)))
    assert (report.pending_uploads, report.stored, report.references) == (300, 70, 50)
    assert (report.orphans, report.missing) == (20, 0)
    assert {problem.file_id for problem in problems} == orphans
    # With a set of the pending ids (as before), 4.3 MB.
    assert peak < 1024 * 1024, peak


def test_local_pending_list_names_an_id_with_both_markers_once(tmp_path):
    """A claim cut short by a crash leaves both markers: listed once, with the claimed one's time."""
    storage = new_storage("local", tmp_path)
    ids = put_markers(storage, 50, expires_at=LATER)
    for file_id in ids[:10]:
        claimed = storage._marker_path(file_id, local._CLAIMED)
        storage._write_marker(claimed, b"claimed", os.link)
        os.utime(claimed, (12345.0, 12345.0))
    listed = list(storage._pending_list())
    assert sorted(file_id for file_id, _ in listed) == sorted(ids)
    assert {file_id for file_id, when in listed if when == 12345.0} == set(ids[:10])


def test_local_pending_list_keeps_markers_claimed_while_it_lists(tmp_path):
    storage = new_storage("local", tmp_path)
    ids = put_markers(storage, 500, expires_at=LATER)
    listing = storage._pending_list()
    seen = {next(listing)[0]}
    for file_id in ids:  # every marker claimed (its name changes) while the listing goes on
        assert storage._pending_claim(file_id, b"claimed")
    seen.update(file_id for file_id, _ in listing)
    assert seen == set(ids)
