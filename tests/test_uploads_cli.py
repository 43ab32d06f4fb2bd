"""``depot gc --pending-older-than`` and ``depot fsck`` with direct uploads pending."""
from __future__ import annotations

import json
import os
import time
from unittest import mock

import pytest
from sqlalchemy import Column, Integer, create_engine
from sqlalchemy.orm import Session, declarative_base

from depot.fields.sqlalchemy import UploadedFileField
from depot.fsck import SQLAlchemySource, check
from depot.manager import DepotManager
from depot.uploads import create_upload_intent, pending_uploads
from tests._uploads import UploadURLs

pytestmark = pytest.mark.usefixtures("no_ambient_settings")


def _local(tmp_path):
    storage = DepotManager.configure("files", {"depot.backend": "local", "depot.storage_path": str(tmp_path / "f")})
    DepotManager.set_middleware(UploadURLs())
    return storage


def _backdate(storage, file_id, seconds):
    """As if the intent (of one minute) was made ``seconds`` ago."""
    from dataclasses import replace

    from depot.uploads import PendingUpload

    stamp = time.time() - seconds
    record = PendingUpload.from_json(storage._pending_get(file_id))
    storage._pending_put(file_id, replace(record, created_at=stamp, expires_at=stamp + 60).to_json())
    os.utime(storage._marker_path(file_id), (stamp, stamp))


def test_gc_removes_only_unattached_uploads_past_the_age(tmp_path, run_cli):
    storage = _local(tmp_path)
    old = create_upload_intent(max_size=100)
    storage._store_at(old.file_id, b"uploaded 3 hours ago, never attached")
    old_empty = create_upload_intent(max_size=100)
    young = create_upload_intent(max_size=100)
    storage._store_at(young.file_id, b"in flight")
    attached = create_upload_intent(max_size=100)
    storage._store_at(attached.file_id, b"attached")
    storage._pending_delete(attached.file_id)
    stored = storage.create(b"stored the usual way")
    for file_id in (old.file_id, old_empty.file_id):
        _backdate(storage, file_id, 3 * 3600)
    # Younger than 2 h, but expired more than ATTACH_GRACE (1 h) ago: only its age keeps it.
    _backdate(storage, young.file_id, 90 * 60)

    code, out, err = run_cli("--local", "files=%s" % storage.storage_path, "gc", "--pending-older-than", "2h")
    assert code == 0, err
    assert out == "files: 0 removed, 2 pending uploads never attached removed in 0s\n" or \
        out.startswith("files: 0 removed, 2 pending uploads never attached removed in ")
    assert sorted(storage.list()) == sorted([young.file_id, attached.file_id, stored])
    assert [file_id for file_id, _ in pending_uploads("files")] == [young.file_id]

    code, out, err = run_cli("--local", "files=%s" % storage.storage_path, "gc", "--pending-older-than", "20m",
                             "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["storage"] == "files" and result["leftovers_removed"] == 0
    assert result["pending_removed"]["ids"] == [young.file_id]
    assert sorted(storage.list()) == sorted([attached.file_id, stored])


def test_gc_pending_on_a_storage_without_direct_uploads_and_bad_durations(tmp_path, run_cli):
    code, out, err = run_cli("--local", "files=%s" % tmp_path, "gc", "--pending-older-than", "1d")
    assert code == 0 and out.startswith("files: 0 removed, 0 pending uploads"), (out, err)
    for bad in ("soon", "-1h", "2y"):
        code, out, err = run_cli("--local", "files=%s" % tmp_path, "gc", "--pending-older-than=" + bad)
        assert code == 2 and "--pending-older-than" in err, err


def test_gc_without_the_option_keeps_pending_uploads(tmp_path, run_cli):
    storage = _local(tmp_path)
    intent = create_upload_intent(max_size=100)
    storage._store_at(intent.file_id, b"pending")
    _backdate(storage, intent.file_id, 30 * 86400)
    code, out, err = run_cli("--local", "files=%s" % storage.storage_path, "gc", "--older-than", "0")
    assert (code, out) == (0, "files: 0 removed\n"), err
    assert storage.exists(intent.file_id)
    assert storage._pending_get(intent.file_id) is not None


Base = declarative_base()


class Document(Base):
    __tablename__ = "documents"
    id = Column(Integer, primary_key=True)
    content = Column(UploadedFileField(upload_storage="files"))


def test_fsck_neither_reports_nor_deletes_pending_uploads(tmp_path):
    storage = _local(tmp_path)
    engine = create_engine("sqlite:///%s" % (tmp_path / "db.sqlite"))
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Document(content=b"attached the usual way"))
        session.commit()
    intent = create_upload_intent(max_size=100)
    with mock.patch("depot.io.utils.timestamp", lambda: "2020-01-01 00:00:00"):  # both written long ago
        storage._store_at(intent.file_id, b"uploaded, not attached yet")
        orphan = storage.create(b"an orphan")
    found = []
    report = check([SQLAlchemySource(engine, [Document])], delete_orphans=True, on_problem=found.append)
    assert [(p.kind, p.file_id, p.action) for p in found] == [("orphan", orphan, "deleted")]
    assert report.pending_uploads == 1 and report.stored == 2
    assert storage.exists(intent.file_id)


def test_gc_removes_half_written_markers(tmp_path, run_cli):
    storage = _local(tmp_path)
    intent = create_upload_intent(max_size=100)
    folder = os.path.dirname(storage._marker_path(intent.file_id))
    left = os.path.join(folder, ".marker-%s.tmp" % ("0" * 32))
    with open(left, "wb") as f:
        f.write(b'{"half')
    os.utime(left, (0, 0))
    code, out, err = run_cli("--local", "files=%s" % storage.storage_path, "gc")
    assert (code, out) == (0, "files: 1 removed\n"), err
    assert not os.path.exists(left)
    assert [file_id for file_id, _ in pending_uploads("files")] == [intent.file_id]


def _uploads_to_copy(tmp_path):
    """Storage ``a``: a stored file, an upload being attached (claimed) and one not attached yet."""
    from depot.uploads import PendingUpload
    from depot.uploads._api import claim_upload

    a = DepotManager.configure("a", {"depot.backend": "local", "depot.storage_path": str(tmp_path / "a")})
    DepotManager.set_middleware(UploadURLs())
    stored = a.create(b"stored the usual way")
    attaching = create_upload_intent("a", max_size=100)
    a._store_at(attaching.file_id, b"attached, the row maybe committed")
    assert claim_upload(a, PendingUpload.from_json(a._pending_get(attaching.file_id)))
    pending = create_upload_intent("a", max_size=100)
    a._store_at(pending.file_id, b"uploaded, never attached")
    return a, stored, attaching.file_id, pending.file_id


def _stores(tmp_path):
    return ("--local", "a=%s" % (tmp_path / "a"), "--local", "b=%s" % (tmp_path / "b"))


def test_migrate_leaves_out_uploads_not_attached_yet(tmp_path, run_cli):
    """Copied without its marker, an upload never attached would be an orphan gc never collects in the target."""
    a, stored, attaching, pending = _uploads_to_copy(tmp_path)
    code, out, err = run_cli(*_stores(tmp_path), "migrate", "a", "b", "--dry-run")
    assert code == 0, err
    assert "3 files, 2 to copy, 0 already there, 1 direct upload not attached yet left out" in out
    assert "would copy a/%s" % pending not in out
    code, out, err = run_cli(*_stores(tmp_path), "migrate", "a", "b")
    assert code == 0, err
    assert out.startswith("migrate a -> b: 3 files: 2 copied (")
    assert "1 direct upload not attached yet left out, 0 failed" in out
    assert "storage a, file %s: a direct upload not attached yet, not copied" % pending in err
    # The upload being attached is copied: its row may be committed.
    b = DepotManager.configure("b", {"depot.backend": "local", "depot.storage_path": str(tmp_path / "b")})
    assert sorted(b.list()) == sorted([stored, attaching])
    assert sorted(a.list()) == sorted([stored, attaching, pending])  # nothing deleted


def test_cp_leaves_out_uploads_not_attached_yet(tmp_path, run_cli):
    a, stored, attaching, pending = _uploads_to_copy(tmp_path)
    code, out, err = run_cli(*_stores(tmp_path), "cp", "-s", "a", pending, stored, "a/" + attaching, "b")
    assert code == 0, err
    assert out.startswith("cp -> b: 3 files: 2 copied (")
    assert "1 direct upload not attached yet left out, 0 failed" in out
    assert "file %s: a direct upload not attached yet, not copied" % pending in err
    b = DepotManager.configure("b", {"depot.backend": "local", "depot.storage_path": str(tmp_path / "b")})
    assert sorted(b.list()) == sorted([stored, attaching])


@pytest.mark.parametrize("command", ["migrate", "cp"])
def test_an_upload_attached_while_the_files_are_copied_is_copied(tmp_path, run_cli, command):
    """Left out while pending, then attached (its row committed) before the copies end: copied after all.

    Decided once before hours of copies, it would be missing from the target
    the application is then pointed at, the summary saying it was never
    attached.
    """
    from depot.cli import transfer
    from depot.uploads import PendingUpload
    from depot.uploads._api import claim_upload

    a, stored, attaching, pending = _uploads_to_copy(tmp_path)
    real_transfer = transfer._transfer_one
    attached = []

    def copy_then_attach(*args, **kwargs):
        if not attached:  # the application attaches it while the first file is copied
            attached.append(claim_upload(a, PendingUpload.from_json(a._pending_get(pending))))
        return real_transfer(*args, **kwargs)

    argv = ("migrate", "a", "b") if command == "migrate" else ("cp", "-s", "a", stored, attaching, pending, "b")
    with mock.patch.object(transfer, "_transfer_one", copy_then_attach):
        code, out, err = run_cli(*_stores(tmp_path), *argv)
    assert code == 0, err
    assert attached == [True]
    assert "left out" not in out and "not copied" not in err
    assert ": 3 files: 3 copied (" in out
    b = DepotManager.configure("b", {"depot.backend": "local", "depot.storage_path": str(tmp_path / "b")})
    assert sorted(b.list()) == sorted([stored, attaching, pending])
