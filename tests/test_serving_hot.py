"""The kept answers of plain GETs of small local files (depot.serving.core.HotFiles), on both adapters.

What is kept must never outlive the version it describes: a replace, a
delete, a rewritten metadata file, a reconfigured storage or another
request shape all take the full path.
"""
from __future__ import annotations

import json
import os
import time
from unittest import mock

import pytest

from depot.io import local
from depot.manager import DepotManager
from depot.middleware import FileServeApp
from depot.serving import core
from depot.utils import http_date

from ._local_workers import coarse_key, early_in_a_second
from .test_middleware_support import CONTENT, make_app, on_every_adapter

pytest_plugins = ["tests.test_middleware_support"]


@pytest.fixture(autouse=True)
def settled_at_once(monkeypatch):
    """Files written by a test are kept at once (test_only_settled_versions_are_kept tests the wait)."""
    monkeypatch.setattr(core, "SETTLED_AFTER_NS", 0)


def _middleware():
    return DepotManager.get_middleware()


def _kept(path):
    return _middleware().hot._entries.get(path)


@pytest.fixture
def served(local_storage):
    """A client, the id of a small stored file and its URL path, requested once (so kept)."""
    app = make_app()
    fid = local_storage.create(CONTENT, "file.txt", "text/plain")
    path = "/depot/default/%s" % fid
    first = app.get(path)
    assert first.body == CONTENT
    assert _kept(path) is not None
    return app, fid, path, first


def _same_headers(a, b):
    skip = {"expires", "date", "server"}
    return [(k.lower(), v) for k, v in a.headerlist if k.lower() not in skip] == [
        (k.lower(), v) for k, v in b.headerlist if k.lower() not in skip
    ]


@on_every_adapter
def test_kept_answer_is_the_full_answer(served):
    app, fid, path, first = served
    with mock.patch("depot.io.local.LocalStoredFile._checked", side_effect=AssertionError("not asked")):
        again = app.get(path)
    assert again.body == CONTENT and again.status_int == 200
    assert _same_headers(first, again)
    assert again.headers["Expires"]


@on_every_adapter
def test_replace_is_served_at_once(served, local_storage):
    app, fid, path, first = served
    local_storage.replace(fid, b"new bytes", "other.bin", "application/octet-stream")
    resp = app.get(path)
    assert resp.body == b"new bytes"
    assert resp.headers["ETag"] != first.headers["ETag"]
    assert "other.bin" in resp.headers["Content-Disposition"]


@on_every_adapter
def test_replace_with_the_same_size_and_name(served, local_storage):
    app, fid, path, first = served
    other = bytes(reversed(CONTENT))
    local_storage.replace(fid, other, "file.txt", "text/plain")
    resp = app.get(path)
    assert resp.body == other and resp.headers["ETag"] != first.headers["ETag"]


@on_every_adapter
def test_delete_answers_404(served, local_storage):
    app, fid, path, first = served
    local_storage.delete(fid)
    assert app.get(path, status=404).status_int == 404
    assert _kept(path) is None


@on_every_adapter
def test_metadata_rewritten_in_place(served, local_storage):
    """A metadata file edited by hand (same data file) is not hidden by what was kept."""
    app, fid, path, first = served
    meta_path = os.path.join(local_storage._dir(fid), "metadata.json")
    with open(meta_path) as f:
        meta = json.load(f)
    meta["filename"] = "renamed.txt"
    with open(meta_path + ".tmp", "w") as f:
        json.dump(meta, f)
    os.replace(meta_path + ".tmp", meta_path)
    resp = app.get(path)
    assert "renamed.txt" in resp.headers["Content-Disposition"]


@on_every_adapter
def test_other_request_shapes_take_the_full_path(served):
    app, fid, path, first = served
    assert app.get(path, headers={"Range": "bytes=0-1"}, status=206).body == CONTENT[:2]
    assert app.get(path, headers={"If-None-Match": first.headers["ETag"]}, status=304).body == b""
    assert app.head(path).body == b""


@on_every_adapter
def test_a_replaced_get_is_honoured(served, local_storage):
    """A patched or instance-level get (a check, a test double) is always asked."""
    app, fid, path, first = served
    with mock.patch.object(local_storage, "get", side_effect=IOError("hidden")):
        assert app.get(path, status=404).status_int == 404
    with mock.patch("depot.io.local.LocalFileStorage.get", side_effect=IOError("hidden")):
        assert app.get(path, status=404).status_int == 404
    assert app.get(path).body == CONTENT


@on_every_adapter
def test_reconfigured_storage(served, tmp_path):
    app, fid, path, first = served
    DepotManager._depots["default"] = DepotManager.from_config(
        {"depot.storage_path": str(tmp_path / "elsewhere")}
    )
    assert app.get(path, status=404).status_int == 404


@on_every_adapter
def test_hooks_are_never_bypassed(local_storage):
    class Tagged(FileServeApp):
        def generate_etag(self):
            return '"tagged"'

    app = make_app()
    _middleware().file_app_class = Tagged
    fid = local_storage.create(CONTENT, "file.txt", "text/plain")
    path = "/depot/default/%s" % fid
    for _ in range(2):
        assert app.get(path).headers["ETag"] == '"tagged"'
    assert _kept(path) is None


@on_every_adapter
def test_signed_links_are_never_kept(local_storage):
    app = make_app(secret="s3cret")
    fid = local_storage.create(CONTENT, "file.txt", "text/plain")
    url = DepotManager.url_for("default/%s" % fid)
    for _ in range(2):
        assert app.get(url).body == CONTENT
    assert app.get("/depot/default/%s" % fid, status=403)
    assert len(_middleware().hot._entries) == 0


@on_every_adapter
def test_large_and_memory_files_are_never_kept(storage):
    app = make_app()
    large = storage.create(os.urandom(core.SMALL_BODY + 1), "big.bin")
    small = storage.create(CONTENT, "file.txt", "text/plain")
    for fid in (large, small):
        app.get("/depot/default/%s" % fid)
    expected = 0 if type(storage).__name__ == "MemoryFileStorage" else 1
    assert len(_middleware().hot._entries) == expected


def test_identity_needs_an_unchanged_version(local_storage):
    """A file replaced between get() and opening its data is answered, but not kept."""
    fid = local_storage.create(CONTENT, "file.txt", "text/plain")
    mw = DepotManager.make_middleware(None)
    located = mw.locate("/depot/default/%s" % fid, "")
    local_storage.replace(fid, b"changed", "file.txt", "text/plain")
    kept = []
    app = mw.file_app(located, remember="/depot/default/%s" % fid)
    app._remember = kept.append
    response = app.respond({"REQUEST_METHOD": "GET"})
    assert response.body == b"changed" and response.identity is None and kept == []


@on_every_adapter
def test_identity_needs_the_same_facts(local_storage, monkeypatch):
    """Replaced between get() and opening its data by a version showing the same stat: answered, not kept.

    (An inode freed and reused within one tick of the file system's clock:
    the versions' names are the same, their facts are not.)
    """
    monkeypatch.setattr(local, "_key", coarse_key)
    early_in_a_second()
    fid = local_storage.create(CONTENT, "file.txt", "text/plain")
    mw = DepotManager.make_middleware(None)
    located = mw.locate("/depot/default/%s" % fid, "")
    version = located.file.version
    other = bytes(reversed(CONTENT))
    local_storage.replace(fid, other, "fila.txt", "text/plain")
    assert local_storage.get(fid).version == version  # the model holds
    kept = []
    app = mw.file_app(located, remember="/depot/default/%s" % fid)
    app._remember = kept.append
    response = app.respond({"REQUEST_METHOD": "GET"})
    assert response.body == other and response.identity is None and kept == []


_IMPORT_RACE = r'''
import importlib.abc, importlib.util, sys, threading, time

class Slow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "depot.middleware":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        real = spec.loader.exec_module
        def exec_module(module):
            started.set()
            time.sleep(0.5)  # another thread looks meanwhile
            real(module)
        spec.loader.exec_module = exec_module
        return spec

started = threading.Event()
from depot.serving import core
sys.meta_path.insert(0, Slow())
importer = threading.Thread(target=lambda: __import__("depot.middleware"))
importer.start()
started.wait()
print(core._wsgi_module().FileServeApp.__name__)
importer.join()
'''


def test_first_requests_in_threads_wait_for_the_wsgi_module():
    """A thread must not take depot.middleware half-imported (the first requests of a threaded server)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _IMPORT_RACE], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "FileServeApp"


# A settling time long enough for this machine's file system time granule (a
# clock tick), short enough to wait for in a test.
_SETTLE_NS = 50_000_000


def _settle(monkeypatch):
    monkeypatch.setattr(core, "SETTLED_AFTER_NS", _SETTLE_NS)
    time.sleep(2 * _SETTLE_NS / 1e9)


@pytest.fixture
def settled(local_storage, monkeypatch):
    """:func:`served`, with the real settling rule: the file is kept once it has settled."""
    app = make_app()
    fid = local_storage.create(CONTENT, "file.txt", "text/plain")
    path = "/depot/default/%s" % fid
    _settle(monkeypatch)
    first = app.get(path)
    assert first.body == CONTENT and _kept(path) is not None
    return app, fid, path, first


@on_every_adapter
def test_only_settled_versions_are_kept(local_storage, monkeypatch):
    """A version written within the settling time is answered, but not kept: its stat could be the next one's."""
    monkeypatch.setattr(core, "SETTLED_AFTER_NS", 3600 * 10**9)
    app = make_app()
    fid = local_storage.create(CONTENT, "file.txt", "text/plain")
    path = "/depot/default/%s" % fid
    for _ in range(2):
        assert app.get(path).body == CONTENT
    assert _kept(path) is None
    _settle(monkeypatch)
    assert app.get(path).body == CONTENT
    assert _kept(path) is not None


@on_every_adapter
def test_kept_bytes_are_served_without_opening_the_file(settled):
    app, fid, path, first = settled
    with mock.patch("os.open", side_effect=AssertionError("opened")), \
            mock.patch("builtins.open", side_effect=AssertionError("opened")):
        again = app.get(path)
    assert again.body == CONTENT and _same_headers(first, again)


@on_every_adapter
def test_same_size_delete_and_create_again_is_served_at_once(settled, local_storage):
    """Deleted, then stored again under the same id with bytes and facts of the same sizes (inodes may be reused)."""
    app, fid, path, first = settled
    other = bytes(reversed(CONTENT))
    local_storage.delete(fid)
    local_storage._store_at(fid, other, "file.txt", "text/plain")  # as a direct upload stores it
    resp = app.get(path)
    assert resp.body == other and resp.headers["ETag"] != first.headers["ETag"]


@on_every_adapter
def test_files_rewritten_in_place_are_served_at_once(settled, local_storage):
    """As filedepot 0.12 replaced a file: both files rewritten in place, same inodes, same sizes."""
    app, fid, path, first = settled
    folder = local_storage._dir(fid)
    other = bytes(reversed(CONTENT))
    with open(os.path.join(folder, "file"), "r+b") as f:
        f.write(other)
    meta_path = os.path.join(folder, "metadata.json")
    with open(meta_path) as f:
        meta = f.read()
    with open(meta_path, "r+") as f:
        f.write(meta.replace("file.txt", "fila.txt"))
    resp = app.get(path)
    assert resp.body == other
    assert "fila.txt" in resp.headers["Content-Disposition"]


@on_every_adapter
def test_kept_bodies_count_in_the_byte_budget(local_storage):
    app = make_app()
    hot = _middleware().hot = core.HotFiles("/depot", max_bytes=4 * 1024)
    for _ in range(10):
        fid = local_storage.create(os.urandom(1024), "file.bin")
        assert len(app.get("/depot/default/%s" % fid).body) == 1024
        assert hot._entries.nbytes <= 4 * 1024
    assert 1 <= len(hot._entries) <= 3


@on_every_adapter
def test_expires_follows_the_clock(served, monkeypatch):
    """Only Expires changes between two kept answers, and it tracks the current second."""
    app, fid, path, first = served
    later = time.time() + 100
    monkeypatch.setattr(core.time, "time", lambda: later)
    again = app.get(path)
    assert again.headers["Expires"] == http_date(int(later) + 604800)
    assert _same_headers(first, again)
