"""The local storage under crashes and concurrent writers, with real processes.

A replace publishes data and metadata together, so whatever happens a
reader sees the old pair or the new pair; what killed writers leave behind
is collected by ``collect_garbage`` / ``depot gc`` and by nothing else.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from unittest import mock

import pytest

from depot.cli import main
from depot.io import local
from depot.io.local import LocalFileStorage
from depot.testing import StorageConformance

from ._local_workers import coarse_key, early_in_a_second, name_for, pair_problem, payload

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(local._renameat2 is None, reason="needs renameat2 (Linux)")


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests._local_workers", *args],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )


def wait_for(proc: subprocess.Popen, word: str) -> str:
    line = proc.stdout.readline()
    assert line.startswith(word), "worker said %r" % line
    return line


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()


@pytest.fixture
def storage(tmp_path):
    return LocalFileStorage(str(tmp_path / "files"))


def stored(storage, size=1000, writer=9, round_=0):
    name = name_for(writer, round_, size)
    return storage.create(payload(name), name, "application/x-test"), name


def leftovers(storage):
    return sorted(n for n in os.listdir(storage.storage_path) if n.startswith("."))


@pytest.mark.parametrize("point", ["writing", "staged", "exchanged"])
def test_writer_killed_at_each_step_of_replace(storage, point):
    """SIGKILL at every step of replace(): the id reads as the whole old or the whole new pair."""
    file_id, old = stored(storage)
    proc = spawn("writer", storage.storage_path, file_id, "0", "60", point)
    wait_for(proc, "READY")
    wait_for(proc, "PAUSED")
    kill(proc)
    assert pair_problem(storage, file_id) is None
    filename = storage.get(file_id).filename
    if point == "exchanged":
        assert filename.startswith("w0-0-")  # the new pair, whole
    else:
        assert filename == old
    assert storage.list() == [file_id]
    assert len(leftovers(storage)) == 1  # the staging folder (or the replaced version)
    assert storage.collect_garbage(older_than=0) == 1
    assert leftovers(storage) == []
    assert pair_problem(storage, file_id) is None


def test_creator_killed_mid_write_leaves_no_file(storage):
    """create() publishes data and metadata together: a killed creator leaves no id, only gc's work."""
    script = (
        "import os, sys\n"
        "from depot.io.local import LocalFileStorage\n"
        "class Dying:\n"
        "    sent = 0\n"
        "    def read(self, n=-1):\n"
        "        if self.sent:\n"
        "            os.kill(os.getpid(), 9)\n"
        "        self.sent += 1\n"
        "        return b'z' * 65536\n"
        "LocalFileStorage(sys.argv[1]).create(Dying(), 'never.bin')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, storage.storage_path], cwd=ROOT)
    assert proc.returncode == -signal.SIGKILL
    assert storage.list() == []
    assert len(leftovers(storage)) == 1
    assert storage.collect_garbage(older_than=0) == 1
    assert os.listdir(storage.storage_path) == []


@pytest.mark.parametrize("call, nth", [("unlink", 1), ("unlink", 2), ("rmdir", 1)])
def test_deleter_killed_mid_delete_leaves_no_file(storage, call, nth):
    """SIGKILL between the steps of delete(): the id is gone at once, whole; gc removes the rest."""
    file_id, _ = stored(storage)
    script = (
        "import os, sys\n"
        "from depot.io.local import LocalFileStorage\n"
        "real, calls = os.%s, []\n"
        "def dying(*args, **kwargs):\n"
        "    calls.append(args)\n"
        "    if len(calls) == %d:\n"
        "        os.kill(os.getpid(), 9)\n"
        "    return real(*args, **kwargs)\n"
        "os.%s = dying\n"
        "LocalFileStorage(sys.argv[1]).delete(sys.argv[2])\n"
    ) % (call, nth, call)
    proc = subprocess.run([sys.executable, "-c", script, storage.storage_path, file_id], cwd=ROOT)
    assert proc.returncode == -signal.SIGKILL
    assert storage.list() == [] and not storage.exists(file_id)
    with pytest.raises(IOError):
        storage.get(file_id)
    assert len(leftovers(storage)) == 1 and leftovers(storage)[0].startswith(".del-")
    assert storage.collect_garbage(older_than=0) == 1
    assert os.listdir(storage.storage_path) == []


def test_writer_killed_at_random_times(storage):
    """Many writers killed at random moments: never a mixed pair, and gc removes what they left."""
    file_id, _ = stored(storage)
    rng = random.Random(1234)
    forker = subprocess.Popen(
        [sys.executable, "-m", "tests._local_workers", "forker", storage.storage_path, file_id],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        wait_for(forker, "READY")
        for _ in range(60):
            forker.stdin.write("go\n")
            forker.stdin.flush()
            pid = int(forker.stdout.readline())
            time.sleep(rng.uniform(0.0, 0.06))
            os.kill(pid, signal.SIGKILL)
            wait_for(forker, "REAPED")
            assert pair_problem(storage, file_id) is None
            assert storage.list() == [file_id]
    finally:
        forker.stdin.close()
        forker.wait(timeout=30)
        forker.stdout.close()
    storage.collect_garbage(older_than=0)
    assert leftovers(storage) == []
    assert sorted(os.listdir(os.path.join(storage.storage_path, file_id))) == ["file", "metadata.json"]


def test_concurrent_writer_and_reader_processes(storage):
    """Four processes replace one id while two read it: every read is one writer's pair."""
    file_id, _ = stored(storage)
    seconds = "3"
    writers = [spawn("writer", storage.storage_path, file_id, str(w), seconds) for w in range(4)]
    readers = [spawn("reader", storage.storage_path, file_id, seconds) for _ in range(2)]
    try:
        rounds = sum(int(wait_for(w, "READY") and wait_for(w, "WROTE").split()[1]) for w in writers)
        reports = [json.loads(r.stdout.readline()) for r in readers]
    finally:
        for proc in writers + readers:
            proc.wait(timeout=30)
            proc.stdout.close()
    assert rounds > 40
    assert sum(r["reads"] for r in reports) > 100
    assert [r["bad"] for r in reports] == [[], []]
    assert pair_problem(storage, file_id) is None
    assert leftovers(storage) == []


def test_open_file_keeps_reading_its_version(storage):
    file_id, old = stored(storage, size=5000)
    f = storage.get(file_id)
    assert f.read(10) == payload(old)[:10]
    real = f.real_file()
    storage.replace(file_id, payload(name_for(1, 1, 300)), name_for(1, 1, 300))
    assert f.read() == payload(old)[10:]
    with real:
        assert real.read() == payload(old)  # the version the handle reads, not the new one
    assert pair_problem(storage, file_id) is None


def test_handle_taken_before_replace_reads_the_new_pair(storage):
    """As in filedepot a handle reads the new content; its facts follow, so they never mix."""
    file_id, old = stored(storage, size=5000)
    f = storage.get(file_id)
    new = name_for(1, 1, 300)
    storage.replace(file_id, payload(new), new, "text/plain")
    assert f.filename == old
    assert f.read() == payload(new)
    assert (f.filename, f.content_type, f.content_length) == (new, "text/plain", 300)


def test_real_file_of_unread_handle_matches_its_facts(storage):
    file_id, _ = stored(storage, size=5000)
    f = storage.get(file_id)
    new = name_for(1, 1, 300)
    storage.replace(file_id, payload(new), new)
    with f.real_file() as real:
        assert real.read() == payload(f.filename)
    assert f.content_length == 300


def test_versions_showing_one_stat_never_mix(storage, monkeypatch):
    """Two versions with one ``stat`` (an inode reused within a clock tick): facts and bytes of one version.

    Neither a handle taken before the replace nor a later ``get()`` (the
    metadata cache) may take the first version's facts for the second's.
    """
    monkeypatch.setattr(local, "_key", coarse_key)
    early_in_a_second()
    file_id, old = stored(storage, size=20)
    first = storage.get(file_id)
    early = storage.get(file_id)
    new = name_for(1, 1, 20)
    storage.replace(file_id, payload(new), new, "application/x-test")
    assert storage.version_key(file_id) == first._key  # the model holds: the new version shows the old stat
    assert first.filename == old  # facts taken before the replace, until the data is opened
    assert first.read() == payload(first.filename) and first.filename == new
    with early.real_file() as real:
        assert real.read() == payload(early.filename) and early.filename == new
    again = storage.get(file_id)
    assert (again.filename, again.read()) == (new, payload(new))
    assert pair_problem(storage, file_id) is None


@pytest.mark.parametrize("removed", [True, False])
def test_replaced_between_reading_the_facts_and_opening_the_data(storage, monkeypatch, removed):
    """The folder exchanged between the two opens: read whole, the old version (still there) or the new one."""
    file_id, old = stored(storage, size=20)
    f = storage.get(file_id)
    new = name_for(1, 1, 1000)
    real_opener, replaced = local._opener, []

    def replacing_opener(folder):
        if not replaced:
            replaced.append(folder)
            with mock.patch.object(local.shutil, "rmtree", (lambda *a, **k: None) if not removed else shutil.rmtree):
                storage.replace(file_id, payload(new), new, "application/x-test")
        return real_opener(folder)

    monkeypatch.setattr(local, "_opener", replacing_opener)
    assert f.read() == payload(f.filename) and replaced
    assert f.filename == (new if removed else old) and f.content_length == len(payload(f.filename))


def test_only_settled_metadata_is_cached(storage, monkeypatch):
    """A version written moments ago is read again at each get(); once settled, one stat answers."""
    monkeypatch.setattr(local, "_METADATA", local._MetadataCache())
    file_id, name = stored(storage)
    assert storage.get(file_id).filename == name
    assert local._METADATA._entries == {}
    monkeypatch.setattr(local, "SETTLED_AFTER_NS", 0)  # settled once its times are in the past
    assert storage.get(file_id).filename == name
    assert len(local._METADATA._entries) == 1
    real_open, opened = os.open, []

    def counting_open(path, *args, **kwargs):
        opened.append(path)
        return real_open(path, *args, **kwargs)

    with mock.patch("os.open", counting_open):
        f = storage.get(file_id)
    assert opened == [] and f.filename == name and f.read() == payload(name)


# -- collect_garbage and depot gc -----------------------------------------


def test_live_writer_is_never_collected(storage):
    """A writer stalled mid-upload keeps its folder, however old; once killed it is collected."""
    file_id, old = stored(storage)
    proc = spawn("writer", storage.storage_path, file_id, "0", "60", "writing")
    wait_for(proc, "READY")
    wait_for(proc, "PAUSED")
    try:
        [staging] = leftovers(storage)
        path = os.path.join(storage.storage_path, staging)
        past = time.time() - 86400
        for entry in [path] + [os.path.join(path, n) for n in os.listdir(path)]:
            os.utime(entry, (past, past))
        assert storage.collect_garbage(older_than=0) == 0  # locked by the live writer
        assert leftovers(storage) == [staging]
    finally:
        kill(proc)
    assert storage.collect_garbage(older_than=3600) == 1  # its own age, once unlocked
    assert leftovers(storage) == []
    assert storage.get(file_id).filename == old


def test_recent_leftovers_wait_for_the_grace_period(storage):
    file_id, _ = stored(storage)
    proc = spawn("writer", storage.storage_path, file_id, "0", "60", "staged")
    wait_for(proc, "READY")
    wait_for(proc, "PAUSED")
    kill(proc)
    assert storage.collect_garbage() == 0  # default grace: one hour
    assert len(leftovers(storage)) == 1
    assert storage.collect_garbage(older_than=0) == 1


def test_gc_touches_only_its_own_temporary_folders(storage):
    file_id, _ = stored(storage)
    root = storage.storage_path
    foreign = [".git", ".new-notours.tmp", ".del-%s.tmp" % ("z" * 32), "README"]
    for name in foreign:
        os.makedirs(os.path.join(root, name))
    ours = ".del-%s.tmp" % os.urandom(16).hex()
    os.makedirs(os.path.join(root, ours, "nested"))
    assert storage.collect_garbage(older_than=0) == 1
    assert sorted(os.listdir(root)) == sorted(foreign + [file_id])
    assert LocalFileStorage(str(root) + "-never-created").collect_garbage() == 0


def test_depot_gc_command(storage, capsys):
    file_id, _ = stored(storage)
    for _ in range(2):
        os.makedirs(os.path.join(storage.storage_path, ".new-%s.tmp" % os.urandom(16).hex()))
    args = ["--local", "files=%s" % storage.storage_path, "--backend", "mem=memory"]
    assert main(args + ["gc"]) == 0
    lines = sorted(capsys.readouterr().out.splitlines())
    assert lines == ["files: 0 removed", "mem: nothing to collect (MemoryFileStorage)"]
    assert main(args + ["gc", "files", "--older-than", "0"]) == 0
    assert capsys.readouterr().out == "files: 2 removed\n"
    assert leftovers(storage) == [] and storage.list() == [file_id]
    assert main(args + ["gc", "--older-than", "-1"]) == 2


def test_deep_gc_removes_old_in_folder_temporaries(storage, capsys):
    """Earlier versions wrote ``.file-*.tmp`` inside the file's folder; ``deep`` finds them."""
    file_id, name = stored(storage)
    folder = os.path.join(storage.storage_path, file_id)
    old = [".file-%s.tmp" % os.urandom(16).hex(), ".metadata-%s.tmp" % os.urandom(16).hex()]
    young = ".file-%s.tmp" % os.urandom(16).hex()
    past = time.time() - 7200
    for tmp in old + [young]:
        with open(os.path.join(folder, tmp), "wb") as f:
            f.write(b"partial")
        if tmp != young:
            os.utime(os.path.join(folder, tmp), (past, past))
    assert storage.collect_garbage() == 0  # the files' folders are not read by default
    assert storage.collect_garbage(deep=True) == 2
    assert sorted(os.listdir(folder)) == sorted([young, "file", "metadata.json"])
    assert main(["--local", "f=%s" % storage.storage_path, "gc", "--deep", "--older-than", "0"]) == 0
    assert capsys.readouterr().out == "f: 1 removed\n"
    assert sorted(os.listdir(folder)) == ["file", "metadata.json"]
    assert pair_problem(storage, file_id) is None


class TestLocalStorageWithoutExchange(StorageConformance):
    """Where folders cannot be exchanged (some file systems), replace still works."""

    has_real_files = True

    @pytest.fixture
    def storage(self, tmp_path, monkeypatch):
        monkeypatch.setattr(local, "_exchange", lambda a, b: False)
        return LocalFileStorage(str(tmp_path / "files"))
