"""``durable=True``: every step is on the disk before the next depends on it.

A power loss cannot be simulated here, so the tests record the order of the
system calls instead: each ``fsync`` (with the path its descriptor is open
on, read from ``/proc/self/fd``) and each call that publishes, renames or
removes a name.  The rule checked: what a rename publishes was synced
before it (the data and metadata files and the folder holding their names),
and the folder that received or lost the name was synced after it.
"""
from __future__ import annotations

import io
import os
import uuid

import pytest

from depot.io import local
from depot.io.local import LocalFileStorage
from depot.io.memory import MemoryFileStorage
from depot.manager import DepotManager
from depot.testing import StorageConformance
from depot.uploads.intents import PendingUpload


class TestDurableLocalStorage(StorageConformance):
    """The whole conformance suite with every write synced."""

    has_real_files = True

    @pytest.fixture
    def storage(self, tmp_path):
        return LocalFileStorage(str(tmp_path / "files"), durable=True)


class CallLog:
    """Records fsync and the name-changing calls, in order, as ``(call, paths...)``."""

    def __init__(self, monkeypatch):
        self.events = []
        real_fsync = os.fsync

        def fsync(fd):
            self.events.append(("fsync", os.readlink("/proc/self/fd/%d" % fd)))
            return real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        for name in ("rename", "replace", "link", "mkdir", "unlink"):
            monkeypatch.setattr(os, name, self._logged(name, getattr(os, name)))
        monkeypatch.setattr(local, "_exchange", self._logged("exchange", local._exchange))

    def _logged(self, call, real):
        def logged(*args, **kwargs):
            result = real(*args, **kwargs)
            if result is not False:  # an exchange the file system refused changed nothing
                self.events.append((call, *(os.fspath(a) for a in args if isinstance(a, (str, os.PathLike)))))
            return result
        return logged

    def synced(self, path):
        return [i for i, (call, *paths) in enumerate(self.events) if call == "fsync" and paths[0] == path]

    def calls(self, *names):
        return [(i, event) for i, event in enumerate(self.events) if event[0] in names]


def _is_staged(path):
    """Whether ``path`` is (or lies in) a folder or marker written aside to be published."""
    names = os.path.basename(path), os.path.basename(os.path.dirname(path))
    return any(name.startswith((local._STAGING, local._MARKER_TMP)) for name in names)


def assert_durable_order(log):
    """Every publishing call had its content synced before, and its folder after."""
    for i, (call, src, dst) in log.calls("rename", "replace", "link", "exchange"):
        if _is_staged(src):
            # The content: the file itself, or the folder's names and both files in it.
            needed = [src]
            if os.path.basename(src).startswith(local._STAGING):
                needed += [os.path.join(src, "file"), os.path.join(src, "metadata.json")]
            for path in needed:
                assert any(j < i for j in log.synced(path)), "%s not synced before %s" % (path, (call, src, dst))
        folder = os.path.dirname(dst)
        assert any(j > i for j in log.synced(folder)), "%s not synced after %s" % (folder, (call, src, dst))
    for i, (_, path) in log.calls("mkdir"):
        if _is_staged(path):
            continue  # renamed away (checked above) or removed: one back after a power loss is gc's
        parent = os.path.dirname(path)
        assert any(j > i for j in log.synced(parent)), "%s not synced after creating %s" % (parent, path)
    for i, (_, path) in log.calls("unlink"):
        if os.path.basename(os.path.dirname(path)) == local._PENDING and not _is_staged(path):
            folder = os.path.dirname(path)
            assert any(j > i for j in log.synced(folder)), "removal of %s not synced" % path


def exercise(storage, log, check):
    """Create (bytes and stream), replace, delete, and a direct upload's markers: ``check(log)`` after each.

    The log is emptied between calls, so what a call must sync "after" is
    synced before that call returns.
    """
    def step(func, *args):
        result = func(*args)
        check(log)
        log.events.clear()
        return result

    kept = step(storage.create, b"small", "a.txt")
    streamed = step(storage.create, io.BytesIO(os.urandom(300000)), "b.bin")
    step(storage.replace, kept, b"new content", "a2.txt")
    step(storage.replace, streamed, io.BytesIO(b"streamed again"), "b2.bin")
    step(storage.delete, streamed)
    # The backup form of replace, for an id not stored here: a rename, not an exchange.
    elsewhere = MemoryFileStorage()
    copied = elsewhere.get(elsewhere.create(b"copied over"))
    step(storage.replace, copied, copied)
    record = PendingUpload("files", str(uuid.uuid4()), 1.0, 2.0, 10)
    step(storage._pending_put, record.file_id, record.to_json())
    assert step(storage._pending_claim, record.file_id, record.to_json())
    step(storage._pending_delete, record.file_id)
    assert sorted(storage.list()) == sorted([kept, copied.file_id])


@pytest.fixture
def log(monkeypatch):
    return CallLog(monkeypatch)


def test_every_publication_is_synced_before_and_after(tmp_path, log):
    storage = LocalFileStorage(str(tmp_path / "new" / "files"), durable=True)
    checked = []

    def check(log):
        assert_durable_order(log)
        checked.append(list(log.events))

    exercise(storage, log, check)
    # The storage folder and its parent were created by the first call, so their names were synced.
    first = checked[0]
    assert ("fsync", str(tmp_path)) in first and ("fsync", str(tmp_path / "new")) in first
    # The delete's rename is followed by a sync of the storage folder.
    delete = checked[4]
    assert delete[0][0] == "rename" and os.path.basename(delete[0][2]).startswith(local._GRAVEYARD)
    assert delete[1] == ("fsync", storage._root)


def test_without_exchange_moved_files_are_synced(tmp_path, log, monkeypatch):
    """Where folders cannot be exchanged, the files are moved into the file's folder: that one is synced."""
    storage = LocalFileStorage(str(tmp_path / "files"), durable=True)
    file_id = storage.create(b"one")
    monkeypatch.setattr(local, "_exchange", lambda a, b: False)
    storage.replace(file_id, b"two")
    folder = storage._dir(file_id)
    moved = [i for i, event in log.calls("replace") if os.path.dirname(event[2]) == folder]
    assert len(moved) == 2
    assert_durable_order(log)
    # Data first, and on the disk before the metadata moves: never new metadata on old data.
    assert any(moved[0] < i < moved[1] for i in log.synced(folder))
    assert storage.get(file_id).read() == b"two"


def test_the_order_check_catches_a_missing_sync(tmp_path, log, monkeypatch):
    """The rule above fails when the data file is not synced before its rename."""
    real = local._write_new
    monkeypatch.setattr(local, "_write_new",
                        lambda path, data, size=False, sync=False: real(path, data, size, sync and not path.endswith("/file")))
    LocalFileStorage(str(tmp_path / "files"), durable=True).create(b"data")
    with pytest.raises(AssertionError, match="/file not synced before"):
        assert_durable_order(log)


def test_not_durable_never_syncs(tmp_path, log):
    """The default is filedepot 0.12's: no fsync at all."""
    storage = LocalFileStorage(str(tmp_path / "new" / "files"))
    assert storage.durable is False
    events = []
    exercise(storage, log, lambda log: events.extend(log.events))
    assert [e for e in events if e[0] in ("rename", "exchange")]
    assert [e for e in events if e[0] == "fsync"] == []


@pytest.mark.parametrize("value, expected", [("true", True), ("false", False), ("0", False), (True, True)])
def test_durable_setting(tmp_path, value, expected):
    storage = DepotManager.from_config({"depot.storage_path": str(tmp_path), "depot.durable": value})
    assert storage.durable is expected


def test_bad_durable_setting_fails_at_configuration(tmp_path):
    with pytest.raises(ValueError, match="maybe"):
        DepotManager.from_config({"depot.storage_path": str(tmp_path), "depot.durable": "maybe"})


def test_durable_is_keyword_only(tmp_path):
    with pytest.raises(TypeError):
        LocalFileStorage(str(tmp_path), None, True)  # type: ignore[misc]
