"""The ``depot`` command run in-process: settings, file commands, cp and migrate on local storages."""
from __future__ import annotations

import io
import json
import os
import re
import shutil

import pytest

from depot.cli import main
from depot.cli.config import Settings, Storages, apply_options, find_settings_file, load_settings
from depot.cli.copying import CopyError, CopyOutcome, copy_file
from depot.cli.errors import CLIError, ExitCode
from depot.io.local import LocalFileStorage
from depot.io.memory import MemoryFileStorage
from depot.manager import DepotManager


pytestmark = pytest.mark.usefixtures("no_ambient_settings")


@pytest.fixture
def run(run_cli):
    return run_cli


@pytest.fixture
def files(tmp_path):
    return tmp_path / "files"


def local(files):
    return LocalFileStorage(str(files))


# -- settings ------------------------------------------------------------------

INI = """
[depot]
default = files

[depot.aliases]
avatars = files

[depot.storages.files]
backend = local
storage_path = {path}

[depot.storages.scratch]
depot.backend = memory
depot.some_flag = false
"""

TOML = """
[depot]
default = "files"

[depot.aliases]
avatars = "files"

[depot.storages.files]
backend = "local"
storage_path = "{path}"

[depot.storages.scratch]
depot.backend = "memory"
depot.some_flag = false
"""


@pytest.mark.parametrize("name, text", [("depot.ini", INI), ("depot.toml", TOML)])
def test_settings_file_formats_agree(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text.format(path=tmp_path / "files"))
    settings = load_settings(str(path))
    assert settings.default == "files"
    assert settings.aliases == {"avatars": "files"}
    assert settings.storages["files"] == {"depot.backend": "local", "depot.storage_path": str(tmp_path / "files")}
    # INI values are strings, TOML keeps its types: backends coerce with asbool.
    assert settings.storages["scratch"]["depot.backend"] == "memory"
    assert settings.storages["scratch"]["depot.some_flag"] in ("false", False)


def test_settings_file_is_found_in_cwd_and_env(tmp_path, monkeypatch):
    assert find_settings_file(None, str(tmp_path)) is None
    (tmp_path / "depot.ini").write_text("")
    assert find_settings_file(None, str(tmp_path)) == str(tmp_path / "depot.ini")
    (tmp_path / "depot.toml").write_text("")
    assert find_settings_file(None, str(tmp_path)) == str(tmp_path / "depot.toml")
    monkeypatch.setenv("DEPOT_CONFIG", "/etc/app/depot.ini")
    assert find_settings_file(None, str(tmp_path)) == "/etc/app/depot.ini"
    assert find_settings_file("mine.toml", str(tmp_path)) == "mine.toml"


def test_settings_in_cwd_are_used(run, tmp_path):
    (tmp_path / "depot.toml").write_text(TOML.format(path=tmp_path / "files"))
    (tmp_path / "a.txt").write_bytes(b"from cwd settings")
    code, out, _ = run("put", "a.txt")
    assert code == 0
    assert local(tmp_path / "files").get(out.strip()).read() == b"from cwd settings"


@pytest.mark.parametrize("text, message", [
    ("[depot]\ndefault = x\n", "defines no storage"),
    ("[depot.storages.a]\nbackend = memory\n[depot]\nbogus = 1\n", "unknown key(s) in [depot]: bogus"),
    ("[depot.storages.a\n", "not a valid INI file"),
    ("[depot.storages.a]\nbackend = memory\n[depot.aliases]\nb = nowhere\n", "'b' points to 'nowhere'"),
    ("[depot.storages.a]\nbackend = memory\n[depot]\ndefault = other\n", "default storage 'other'"),
])
def test_bad_settings_are_usage_errors(run, tmp_path, text, message):
    path = tmp_path / "bad.ini"
    path.write_text(text)
    code, out, err = run("-c", path, "ls")
    assert code == ExitCode.USAGE
    assert message in err
    assert out == ""


def test_bad_toml_and_missing_file(run, tmp_path):
    (tmp_path / "bad.toml").write_text("[depot\n")
    code, _, err = run("-c", tmp_path / "bad.toml", "ls")
    assert (code, "is not valid TOML" in err) == (ExitCode.USAGE, True)
    code, _, err = run("-c", tmp_path / "missing.ini", "ls")
    assert (code, "cannot read settings file" in err) == (ExitCode.USAGE, True)


def test_command_line_options_define_and_override(tmp_path):
    settings = Settings(storages={"files": {"depot.backend": "local", "depot.storage_path": "/old"}})
    apply_options(settings, backends=["s3=s3"], options=["s3.bucket=media", "files.depot.storage_path=/new"],
                  locals_=["disk=/srv/disk"])
    assert settings.storages == {
        "files": {"depot.backend": "local", "depot.storage_path": "/new"},
        "s3": {"depot.backend": "s3", "depot.bucket": "media"},
        "disk": {"depot.backend": "local", "depot.storage_path": "/srv/disk"},
    }
    for bad in (dict(backends=["nobackend"]), dict(options=["novalue"]), dict(options=["nokey=1"]),
                dict(locals_=["=/path"])):
        with pytest.raises(CLIError):
            apply_options(Settings(), **bad)


def test_storages_are_built_lazily_and_kept_out_of_the_manager(tmp_path):
    settings = apply_options(Settings(), backends=["broken=depot.io.nowhere.Storage"], locals_=["files=%s" % tmp_path])
    storages = Storages(settings)
    assert isinstance(storages.get("files"), LocalFileStorage)
    assert storages.get("files") is storages.get("files")
    assert DepotManager.get("files") is None
    with pytest.raises(CLIError) as err:
        storages.get("broken")
    assert err.value.code == ExitCode.USAGE and "'broken' is misconfigured" in str(err.value)


def test_choosing_the_storage(run, tmp_path):
    code, _, err = run("ls")
    assert code == ExitCode.USAGE and "no storage configured" in err
    code, _, err = run("--local", "a=%s" % (tmp_path / "a"), "--local", "b=%s" % (tmp_path / "b"), "ls")
    assert code == ExitCode.USAGE and "several storages are configured (a, b)" in err
    code, _, err = run("--local", "a=%s" % (tmp_path / "a"), "ls", "-s", "zzz")
    assert code == ExitCode.NOT_FOUND and "no storage named 'zzz' (configured: a)" in err


def test_missing_backend_class_is_a_usage_error(run):
    code, _, err = run("--backend", "x=depot.io.memory.NoSuchStorage", "ls")
    assert code == ExitCode.USAGE
    assert "has no storage class NoSuchStorage" in err


def test_backend_failing_to_start_is_a_storage_error(run, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    # A storage whose constructor fails for a reason other than its options.
    code, _, err = run("--backend", "x=tests.test_cli.ExplodingStorage", "ls")
    assert code == ExitCode.STORAGE
    assert "storage 'x' could not be opened: connection refused" in err


class ExplodingStorage(MemoryFileStorage):
    def __init__(self, **options):
        raise ConnectionRefusedError("connection refused")


# -- put, ls, info, get, rm -------------------------------------------------------

def test_put_ls_info_get_rm(run, tmp_path, files):
    (tmp_path / "notes.txt").write_bytes(b"some notes\n")
    (tmp_path / "data.bin").write_bytes(bytes(range(256)) * 10)
    opts = ("--local", "files=%s" % files)

    code, out, _ = run(*opts, "put", tmp_path / "notes.txt", tmp_path / "data.bin")
    assert code == 0
    notes_id, data_id = out.split()
    storage = local(files)
    assert storage.get(notes_id).read() == b"some notes\n"
    assert (storage.get(notes_id).filename, storage.get(notes_id).content_type) == ("notes.txt", "text/plain")

    code, out, _ = run(*opts, "ls")
    assert (code, out.split()) == (0, sorted([notes_id, data_id]))
    code, out, _ = run(*opts, "ls", "-l")
    line = next(line for line in out.splitlines() if line.startswith(data_id))
    assert line.split()[1:2] == ["2560"] and line.endswith("data.bin")

    code, out, _ = run(*opts, "info", notes_id)
    assert code == 0
    assert "path:           files/%s" % notes_id in out
    assert "filename:       notes.txt" in out
    assert "content_length: 11" in out
    assert "public_url:     -" in out

    code, out, _ = run(*opts, "info", "--json", notes_id, "files/" + data_id)
    first, second = [json.loads(line) for line in out.splitlines()]
    assert first["id"] == notes_id and first["content_type"] == "text/plain" and first["public_url"] is None
    assert second == {**second, "path": "files/" + data_id, "content_length": 2560, "filename": "data.bin"}
    assert second["last_modified"] == storage.get(data_id).last_modified.strftime("%Y-%m-%d %H:%M:%S")

    code, _, err = run(*opts, "get", data_id, "-o", tmp_path / "copy.bin")
    assert code == 0 and (tmp_path / "copy.bin").read_bytes() == bytes(range(256)) * 10
    assert "wrote files/%s to" % data_id in err
    outdir = tmp_path / "out"
    outdir.mkdir()
    code, _, _ = run(*opts, "get", notes_id, "-o", outdir)
    assert (outdir / "notes.txt").read_bytes() == b"some notes\n"
    assert [p.name for p in outdir.iterdir()] == ["notes.txt"]  # no leftover temporary file

    code, _, _ = run(*opts, "rm", notes_id)
    assert code == 0 and not storage.exists(notes_id)
    code, _, err = run(*opts, "rm", notes_id, data_id)
    assert code == ExitCode.NOT_FOUND
    assert "storage files, file %s: no such file" % notes_id in err
    assert not storage.exists(data_id)  # the other one was still deleted
    assert run(*opts, "rm", "-f", notes_id)[0] == 0


def test_put_with_name_and_type(run, tmp_path, files):
    (tmp_path / "x").write_bytes(b"<svg/>")
    code, out, _ = run("--local", "files=%s" % files, "put", "--name", "logo.svg", "--path", tmp_path / "x")
    assert code == 0
    storage_name, file_id = out.strip().split("/")
    f = local(files).get(file_id)
    assert (storage_name, f.filename, f.content_type) == ("files", "logo.svg", "image/svg+xml")
    code, out, _ = run("--local", "files=%s" % files, "put", "--content-type", "text/x-thing", tmp_path / "x")
    assert local(files).get(out.strip()).content_type == "text/x-thing"
    code, _, err = run("--local", "files=%s" % files, "put", "--name", "n", tmp_path / "x", tmp_path / "x")
    assert code == ExitCode.USAGE and "--name applies to a single file" in err


def test_put_from_stdin(run, files, monkeypatch):
    class Stdin:
        buffer = io.BytesIO(b"piped bytes")

    monkeypatch.setattr("sys.stdin", Stdin)
    code, out, _ = run("--local", "files=%s" % files, "put", "-", "--name", "piped.txt")
    f = local(files).get(out.strip())
    assert (code, f.read(), f.filename, f.content_type) == (0, b"piped bytes", "piped.txt", "text/plain")


def test_put_reports_unreadable_files_and_goes_on(run, tmp_path, files):
    (tmp_path / "ok.txt").write_bytes(b"ok")
    code, out, err = run("--local", "files=%s" % files, "put", tmp_path / "missing.txt", tmp_path / "ok.txt")
    assert code == ExitCode.FAILURES
    assert "missing.txt: cannot read: No such file or directory" in err
    assert local(files).get(out.strip()).read() == b"ok"


def test_get_missing_or_invalid_ids(run, files):
    opts = ("--local", "files=%s" % files)
    code, out, err = run(*opts, "get", "0b8e7a9c-6c2b-4d4e-9d1b-2f3a4b5c6d7e")
    assert (code, out) == (ExitCode.NOT_FOUND, "")
    assert "storage files, file 0b8e7a9c-6c2b-4d4e-9d1b-2f3a4b5c6d7e: no such file" in err
    code, _, err = run(*opts, "info", "not-an-id")
    assert code == ExitCode.NOT_FOUND and "not a valid file id" in err
    code, _, err = run(*opts, "get", "other/0b8e7a9c-6c2b-4d4e-9d1b-2f3a4b5c6d7e")
    assert code == ExitCode.NOT_FOUND and "no storage named 'other'" in err


def test_get_into_a_directory_never_leaves_it(run, tmp_path, files):
    file_id = local(files).create(b"payload", "../../escape.txt")
    outdir = tmp_path / "out"
    outdir.mkdir()
    assert run("--local", "files=%s" % files, "get", file_id, "-o", outdir)[0] == 0
    assert [p.name for p in outdir.iterdir()] == ["escape.txt"]
    hidden = local(files).create(b"x", ".bashrc")
    assert run("--local", "files=%s" % files, "get", hidden, "-o", outdir)[0] == 0
    assert sorted(p.name for p in outdir.iterdir()) == ["bashrc", "escape.txt"]


def test_aliases_and_default_from_settings(run, tmp_path):
    path = tmp_path / "depot.ini"
    path.write_text(INI.format(path=tmp_path / "files"))
    (tmp_path / "a.txt").write_bytes(b"aliased")
    code, out, _ = run("-c", path, "put", "-s", "avatars", "--path", tmp_path / "a.txt")
    assert code == 0 and out.startswith("files/")  # the alias resolves to the real name
    code, out2, _ = run("-c", path, "ls")
    assert out2.split() == [out.strip().split("/")[1]]


# -- cp and migrate ------------------------------------------------------------------

def two_stores(tmp_path):
    return ("--local", "a=%s" % (tmp_path / "a"), "--local", "b=%s" % (tmp_path / "b"))


def test_cp_keeps_ids_and_metadata(run, tmp_path):
    a = local(tmp_path / "a")
    ids = [a.create(b"first", "first.txt"), a.create(b"second" * 1000, "second.csv")]
    code, out, err = run(*two_stores(tmp_path), "cp", "-s", "a", ids[0], "a/" + ids[1], "b", "--verify")
    assert code == 0, err
    assert "2 copied" in out and "0 failed" in out and "content verified" in out
    b = local(tmp_path / "b")
    for file_id in ids:
        src, dst = a.get(file_id), b.get(file_id)
        assert (dst.read(), dst.filename, dst.content_type) == (src.read(), src.filename, src.content_type)
    code, _, err = run(*two_stores(tmp_path), "cp", "a/" + ids[0], "a")
    assert code == ExitCode.USAGE and "already in storage 'a'" in err


def copy(source, target, file_id):
    f = source.get(file_id)
    target.replace(f, f)


def test_migrate_copies_everything_then_skips(run, tmp_path):
    a = local(tmp_path / "a")
    ids = sorted(a.create(os.urandom(1000 + i), "f%d.bin" % i) for i in range(5))
    code, out, err = run(*two_stores(tmp_path), "migrate", "a", "b")
    assert code == 0, err
    assert out.startswith("migrate a -> b: 5 files: 5 copied (")
    assert sorted(local(tmp_path / "b").list()) == ids
    code, out, _ = run(*two_stores(tmp_path), "migrate", "a", "b", "--verify")
    assert code == 0
    assert "5 files: 0 copied (0 B), 5 already there, 0 failed; content verified" in out


def test_migrate_recopies_stale_copies(run, tmp_path):
    a, b = local(tmp_path / "a"), local(tmp_path / "b")
    same_length, other_length, good = (a.create(b"original-%d" % i, "f.txt") for i in range(3))
    for file_id in (same_length, other_length, good):
        copy(a, b, file_id)
    b.replace(same_length, b"ORIGINAL-0")          # same length, other content
    b.replace(other_length, b"truncated")          # different length
    code, out, _ = run(*two_stores(tmp_path), "migrate", "a", "b")
    assert "1 copied" in out and "2 already there" in out  # length alone misses same_length
    assert b.get(other_length).read() == b"original-1"
    code, out, _ = run(*two_stores(tmp_path), "migrate", "a", "b", "--verify")
    assert "1 copied" in out and "2 already there" in out
    assert b.get(same_length).read() == b"original-0"


def corrupt_metadata(storage, file_id):
    with open(storage.get(file_id)._metadata_path, "w") as f:
        f.write("{not json")


def test_migrate_reports_failures_goes_on_and_resumes(run, tmp_path):
    a = local(tmp_path / "a")
    ids = sorted(a.create(b"content %d" % i, "f%d" % i) for i in range(4))
    backup = a.get(ids[1])._metadata_path + ".bak"
    shutil.copy(a.get(ids[1])._metadata_path, backup)
    corrupt_metadata(a, ids[1])

    code, out, err = run(*two_stores(tmp_path), "migrate", "a", "b", "--verify")
    assert code == ExitCode.FAILURES
    assert "4 files: 3 copied" in out and "1 failed" in out
    assert "storage a, file %s: not copied to b: ValueError: Invalid file metadata" % ids[1] in err
    assert "1 file failed, listed above; run the command again to retry it" in err
    b = local(tmp_path / "b")
    assert sorted(b.list()) == [i for i in ids if i != ids[1]]

    os.replace(backup, a.get(ids[0])._metadata_path.replace(ids[0], ids[1]))
    code, out, _ = run(*two_stores(tmp_path), "migrate", "a", "b", "--verify")
    assert code == 0
    assert "4 files: 1 copied" in out and "3 already there, 0 failed" in out
    assert b.get(ids[1]).read() == a.get(ids[1]).read()


def test_migrate_dry_run(run, tmp_path):
    a = local(tmp_path / "a")
    first, second = sorted(a.create(b"x%d" % i) for i in range(2))
    copy(a, local(tmp_path / "b"), first)
    code, out, _ = run(*two_stores(tmp_path), "migrate", "a", "b", "--dry-run")
    assert code == 0
    assert out.splitlines() == [
        "would copy a/%s" % second,
        "migrate a -> b (dry run): 2 files, 1 to copy, 1 already there (lengths not compared)",
    ]
    assert local(tmp_path / "b").list() == [first]


def test_migrate_errors(run, tmp_path):
    code, _, err = run(*two_stores(tmp_path), "migrate", "a", "a")
    assert code == ExitCode.USAGE and "same storage 'a'" in err
    code, _, err = run("--backend", "a=tests.test_cli.UnlistableStorage", "--local", "b=%s" % tmp_path,
                       "migrate", "a", "b")
    assert code == ExitCode.STORAGE and "cannot list storage 'a': ConnectionError: server went away" in err


class UnlistableStorage(MemoryFileStorage):
    def list(self):
        raise ConnectionError("server went away")


def test_migrate_of_an_empty_storage(run, tmp_path):
    (tmp_path / "a").mkdir()
    code, out, _ = run(*two_stores(tmp_path), "migrate", "a", "b")
    assert code == 0 and "0 files: 0 copied (0 B), 0 failed" in out


class CorruptingStorage(MemoryFileStorage):
    """Stores every file with its first byte flipped: what --verify is for."""

    def replace(self, file_or_id, content, filename=None, content_type=None):
        file_id = super().replace(file_or_id, content, filename, content_type)
        data = bytearray(self.files[file_id]["data"])
        data[0] ^= 0xFF
        self.files[file_id]["data"] = bytes(data)
        return file_id


def test_verify_catches_a_bad_copy():
    source = MemoryFileStorage()
    file_id = source.create(b"precious bytes", "p.txt")
    # Without a stored checksum the copy is read back (tests/test_checksums.py: with one).
    target = CorruptingStorage(checksum=None)
    assert copy_file(lambda: source.get(file_id), target, file_id) is CopyOutcome.COPIED
    with pytest.raises(CopyError, match="verification failed: the copy has 14 bytes"):
        copy_file(lambda: source.get(file_id), target, file_id, skip_existing=False, verify=True)
    # Same length: skipped without --verify, copied again (and caught again) with it.
    assert copy_file(lambda: source.get(file_id), target, file_id) is CopyOutcome.SKIPPED
    with pytest.raises(CopyError):
        copy_file(lambda: source.get(file_id), target, file_id, verify=True)


def test_copy_counts_bytes_and_keeps_unnamed_files():
    source = MemoryFileStorage()
    file_id = source.create(b"z" * 5000)
    source.files[file_id]["metadata"]["filename"] = None  # as a file written outside depot
    target = MemoryFileStorage()
    counted = []
    assert copy_file(lambda: source.get(file_id), target, file_id, on_bytes=counted.append) is CopyOutcome.COPIED
    assert sum(counted) == 5000
    assert target.get(file_id).filename == "unnamed"


# -- progress line and formatting ---------------------------------------------------

from depot.cli.formatting import human_duration, human_rate, human_size  # noqa: E402
from depot.cli.progress import Progress, plural, progress_enabled  # noqa: E402


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_formatting():
    assert [human_size(n) for n in (0, 1023, 1536, 5 * 1024 ** 3)] == ["0 B", "1023 B", "1.5 KiB", "5.0 GiB"]
    assert human_rate(10 * 1024 * 1024, 2) == "5.0 MiB/s" and human_rate(5, 0) == "-"
    assert [human_duration(s) for s in (0, 75, 3725)] == ["0:00", "1:15", "1:02:05"]
    assert [plural(n, "file") for n in (0, 1, 2)] == ["0 files", "1 file", "2 files"]


def test_progress_counts_bytes_and_estimates_the_total_from_the_files_seen():
    stream = Terminal()
    progress = Progress("migrate a -> b", 4, enabled=True, stream=stream)
    progress.start_file(1000)
    assert progress._bar.total == 4000  # the average length so far, for the files to come
    progress.advance(600)
    assert progress._bar.n == 600
    progress.advance(400)
    progress.file_done()
    progress.start_file(3000)
    assert progress._bar.total == 4000 + 2000 * 2
    progress.file_done(unmoved=3000)  # skipped: its bytes will never move
    assert progress._bar.total == 1000 + 500 * 2
    progress.close()
    assert "migrate a -> b 2/4 files" in stream.getvalue()


def test_progress_only_on_terminals_unless_forced():
    assert progress_enabled(None, Terminal()) is True
    assert progress_enabled(None, io.StringIO()) is False
    assert progress_enabled(True, io.StringIO()) is True
    assert progress_enabled(False, Terminal()) is False
    stream = io.StringIO()
    progress = Progress("x", 2, enabled=False, stream=stream)
    progress.advance(5)
    progress.file_done()
    progress.close()
    assert stream.getvalue() == ""


def test_the_line_is_cleared_before_output(run, tmp_path, files, monkeypatch):
    stderr = Terminal()
    monkeypatch.setattr("sys.stderr", stderr)
    (tmp_path / "a.txt").write_bytes(b"a" * 100)
    code, out, _ = run("--progress", "--local", "files=%s" % files, "put", tmp_path / "a.txt")
    assert code == 0 and len(out.split()) == 1


# -- parallel copies -------------------------------------------------------------------

def test_parallel_migration_reports_like_a_sequential_one(run, tmp_path):
    a = local(tmp_path / "a")
    ids = sorted(a.create(os.urandom(5000 + i), "f%d" % i) for i in range(12))
    corrupt_metadata(a, ids[4])
    code, out, err = run(*two_stores(tmp_path), "migrate", "-j", "4", "a", "b", "--verify")
    assert code == ExitCode.FAILURES
    assert "12 files: 11 copied" in out and "1 failed" in out
    assert err.count("storage a, file %s: not copied to b" % ids[4]) == 1
    b = local(tmp_path / "b")
    assert sorted(b.list()) == [i for i in ids if i != ids[4]]
    for file_id in b.list():
        assert b.get(file_id).read() == a.get(file_id).read()
    with pytest.raises(SystemExit) as usage:  # argparse's own exit, status 2 as for any bad option
        main([*two_stores(tmp_path), "migrate", "-j", "0", "a", "b"])
    assert usage.value.code == ExitCode.USAGE


class InterruptedTarget(LocalFileStorage):
    """A target whose fourth write is 'Ctrl-C'ed."""

    def __init__(self, storage_path):
        super().__init__(storage_path)
        self.writes = 0

    def replace(self, *args, **kwargs):
        self.writes += 1
        if self.writes == 4:
            raise KeyboardInterrupt
        return super().replace(*args, **kwargs)


@pytest.mark.parametrize("jobs", ["1", "3"])
def test_interrupted_migration_summarises_and_resumes(run, tmp_path, jobs):
    a = local(tmp_path / "a")
    ids = sorted(a.create(b"%d" % i * 100) for i in range(10))
    code, out, err = run("--local", "a=%s" % (tmp_path / "a"), "--backend", "b=tests.test_cli.InterruptedTarget",
                         "-o", "b.storage_path=%s" % (tmp_path / "b"), "migrate", "-j", jobs, "a", "b")
    assert code == ExitCode.INTERRUPTED
    copied = int(re.search(r"(\d+) copied", out).group(1))
    assert copied == len(local(tmp_path / "b").list()) and 3 <= copied < 10
    assert "interrupted after" in err
    code, out, _ = run(*two_stores(tmp_path), "migrate", "-j", jobs, "a", "b", "--verify")
    assert code == 0 and "%d already there" % copied in out
    assert sorted(local(tmp_path / "b").list()) == ids


def test_register_all_puts_storages_and_aliases_in_the_manager(tmp_path):
    settings = apply_options(Settings(aliases={"pics": "b"}), locals_=["a=%s" % (tmp_path / "a"),
                                                                       "b=%s" % (tmp_path / "b")])
    storages = Storages(settings)
    assert storages.register_all() == {}  # several storages, no default named: fine, none broken
    assert DepotManager.get_default() == "a"
    assert DepotManager.get("pics") is DepotManager.get("b") is storages.get("b")
    DepotManager._clear()
    settings.default = "pics"
    Storages(settings).register_all()
    assert DepotManager.get_default() == "b"


def test_get_refuses_to_write_to_a_terminal(tmp_path, monkeypatch, capsys):
    file_id = local(tmp_path / "files").create(b"\x00\x01binary")

    class TerminalOut(io.StringIO):
        buffer = io.BytesIO()

        def isatty(self):
            return True

    out = TerminalOut()
    monkeypatch.setattr("sys.stdout", out)
    assert main(["--local", "files=%s" % (tmp_path / "files"), "get", file_id]) == ExitCode.USAGE
    assert "not writing file content to a terminal" in capsys.readouterr().err
    assert main(["--local", "files=%s" % (tmp_path / "files"), "get", file_id, "-o", "-"]) == 0
    assert out.buffer.getvalue() == b"\x00\x01binary"


class RenamingStorage(MemoryFileStorage):
    """Loses the filename of what it stores: --verify must notice."""

    def replace(self, file_or_id, content, filename=None, content_type=None):
        file_id = super().replace(file_or_id, content, filename, content_type)
        self.files[file_id]["metadata"]["filename"] = "renamed.bin"
        return file_id


def test_verify_catches_lost_metadata():
    source = MemoryFileStorage()
    file_id = source.create(b"data", "report.pdf")
    with pytest.raises(CopyError, match=r"the copy is named 'renamed.bin' \(application/pdf\), the source "
                                        r"'report.pdf' \(application/pdf\)"):
        copy_file(lambda: source.get(file_id), RenamingStorage(), file_id, verify=True)


# -- exit statuses per verb ------------------------------------------------------------

MISSING_ID = "0b8e7a9c-6c2b-4d4e-9d1b-2f3a4b5c6d7e"


@pytest.mark.parametrize("argv", [
    ("get", MISSING_ID), ("get", "a/" + MISSING_ID), ("info", MISSING_ID), ("rm", MISSING_ID),
    ("cp", MISSING_ID, "b"), ("cp", "-s", "a", MISSING_ID, "b"),
    ("get", "not-an-id"), ("info", "not-an-id"), ("rm", "not-an-id"), ("rm", "-f", "not-an-id"),
    ("cp", "not-an-id", "b"),
    ("get", "zzz/" + MISSING_ID), ("ls", "-s", "zzz"), ("migrate", "zzz", "b"), ("cp", MISSING_ID, "zzz"),
])
def test_a_missing_named_id_or_storage_exits_3_without_retry_advice(run, tmp_path, argv):
    (tmp_path / "a").mkdir()
    code, out, err = run("--local", "a=%s" % (tmp_path / "a"), "--local", "b=%s" % (tmp_path / "b"),
                         "-c", _default_a(tmp_path), *argv)
    assert code == ExitCode.NOT_FOUND, err
    assert "retry" not in err and "Traceback" not in err
    assert re.search(r"no such file|not a valid file id|no storage named 'zzz'", err)
    assert "not a valid file id (" not in err  # the id is named once, not repeated in parentheses


def _default_a(tmp_path):
    path = tmp_path / "default.ini"
    path.write_text("[depot]\ndefault = a\n[depot.storages.a]\nbackend = local\nstorage_path = %s\n" % (tmp_path / "a"))
    return path


def test_cp_of_some_missing_ids_copies_the_others_and_exits_3(run, tmp_path):
    a = local(tmp_path / "a")
    file_id = a.create(b"here", "here.txt")
    code, out, err = run(*two_stores(tmp_path), "cp", "-s", "a", MISSING_ID, file_id, "b")
    assert code == ExitCode.NOT_FOUND
    assert "storage a, file %s: no such file" % MISSING_ID in err and "retry" not in err
    assert "cp -> b: 2 files: 1 copied (4 B), 1 failed" in out
    assert local(tmp_path / "b").get(file_id).read() == b"here"


def test_a_failure_that_may_pass_next_time_exits_1_with_retry_advice(run, tmp_path):
    a = local(tmp_path / "a")
    file_id = a.create(b"data", "f")
    corrupt_metadata(a, file_id)
    code, _, err = run(*two_stores(tmp_path), "cp", "-s", "a", file_id, "b")
    assert code == ExitCode.FAILURES and "1 file failed, listed above; run the command again to retry it" in err


def test_singular_and_plural_messages(run, tmp_path):
    a = local(tmp_path / "a")
    a.create(b"one")
    code, out, _ = run(*two_stores(tmp_path), "migrate", "a", "b", "--dry-run")
    assert "(dry run): 1 file, 1 to copy" in out
    code, out, _ = run(*two_stores(tmp_path), "migrate", "a", "b")
    assert "migrate a -> b: 1 file: 1 copied" in out and "1 files" not in out


def test_ls_long_skips_a_file_deleted_during_the_listing(run, tmp_path, monkeypatch):
    a = local(tmp_path / "a")
    kept, gone = a.create(b"kept", "kept.txt"), a.create(b"gone", "gone.txt")
    real_list = LocalFileStorage.list

    def list_then_delete(self):
        ids = real_list(self)
        self.delete(gone)
        return ids

    monkeypatch.setattr(LocalFileStorage, "list", list_then_delete)
    code, out, err = run("--local", "a=%s" % (tmp_path / "a"), "ls", "-l")
    assert (code, err) == (0, "") and kept in out and gone not in out


# -- get -o ---------------------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_get_output_honours_the_umask(run, tmp_path, files, umask):
    file_id = local(files).create(b"content", "doc.txt")
    outdir = tmp_path / "out"
    outdir.mkdir()
    previous = os.umask(umask)
    try:
        assert run("--local", "files=%s" % files, "get", file_id, "-o", outdir)[0] == 0
        assert run("--local", "files=%s" % files, "get", file_id, "-o", tmp_path / "named.txt")[0] == 0
    finally:
        os.umask(previous)
    for path in (outdir / "doc.txt", tmp_path / "named.txt"):
        assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_get_output_into_a_missing_folder_is_a_message(run, tmp_path, files):
    file_id = local(files).create(b"content", "doc.txt")
    (tmp_path / "plain").write_text("a file, not a folder")
    for output, reason in ((tmp_path / "nonexistent" / "dir" / "f", "No such file or directory"),
                           (tmp_path / "plain" / "sub", "Not a directory")):
        code, out, err = run("--local", "files=%s" % files, "get", file_id, "-o", output)
        assert code == ExitCode.FAILURES and out == ""
        assert "%s: cannot write: %s" % (output, reason) in err and "Traceback" not in err
    assert (tmp_path / "plain").read_text() == "a file, not a folder"


def test_get_output_writes_through_a_symlink(run, tmp_path, files):
    file_id = local(files).create(b"new content", "doc.txt")
    target = tmp_path / "real.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    assert run("--local", "files=%s" % files, "get", file_id, "-o", link)[0] == 0
    assert link.is_symlink() and target.read_bytes() == b"new content"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# -- bad settings files ------------------------------------------------------------------

@pytest.mark.parametrize("name, data", [
    ("bad.ini", b"[depot.storages.a]\nbackend = local\nstorage_path = /tmp/caf\xe9\n"),
    ("bad.toml", b"[depot.storages.a]\nbackend = \"local\"\nstorage_path = \"/tmp/caf\xe9\"\n"),
    ("bad.toml", b"[depot]\nstorages = \"x\"\n"),
    ("bad.toml", b"[depot]\nstorages = [\"a\", \"b\"]\n"),
    ("bad.toml", b"[depot.storages.a]\nbackend = \"memory\"\n[depot]\naliases = [\"a\"]\n"),
    ("bad.toml", b"[depot]\ndefault = 3\n[depot.storages.a]\nbackend = \"memory\"\n"),
    ("bad.toml", b"[depot.storages]\na = 1\n"),
])
def test_bad_settings_files_are_a_message_and_exit_2(run, tmp_path, name, data):
    (tmp_path / name).write_bytes(data)
    code, out, err = run("-c", tmp_path / name, "ls")
    assert (code, out) == (ExitCode.USAGE, "")
    assert err.startswith("depot: error: %s" % (tmp_path / name)) and err.count("\n") == 1, err


def test_a_local_storage_without_a_path_names_the_setting_and_the_storage(run, tmp_path):
    code, _, err = run("--backend", "files=local", "ls")
    assert code == ExitCode.USAGE
    assert "storage 'files' is misconfigured" in err and "depot.storage_path" in err
    for expected in (TypeError, ValueError):  # filedepot's TypeError, and a bad setting like the others
        with pytest.raises(expected, match=r"depot\.storage_path.*storage 'files'"):
            DepotManager.configure("files", {"depot.backend": "local"})
    assert DepotManager.get("files") is None


# -- one broken storage blocks nothing else -----------------------------------------------

def test_every_command_works_with_one_storage_that_cannot_be_built(run, tmp_path, monkeypatch):
    # The docs' depot.toml, with depot[s3] not installed.
    import sys

    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 fails as if not installed
    monkeypatch.delitem(sys.modules, "depot.io.boto3", raising=False)
    settings = tmp_path / "depot.toml"
    settings.write_text(
        '[depot]\ndefault = "files"\n[depot.storages.files]\nbackend = "local"\nstorage_path = "%s"\n'
        '[depot.storages.backup]\nbackend = "local"\nstorage_path = "%s"\n'
        '[depot.storages.s3]\nbackend = "s3"\nbucket = "myapp-files"\n' % (tmp_path / "files", tmp_path / "backup"))
    (tmp_path / "a.txt").write_bytes(b"hello")
    code, out, err = run("put", tmp_path / "a.txt")
    assert (code, err) == (0, ""), err
    file_id = out.strip()
    for argv in (["ls", "-l"], ["info", file_id], ["get", file_id, "-o", tmp_path / "copy.txt"],
                 ["cp", file_id, "backup"], ["migrate", "files", "backup", "--verify"], ["rm", "-s", "backup", file_id]):
        code, out, err = run(*argv)
        assert code == 0, (argv, err)
        assert "s3" not in err, (argv, err)
    code, _, err = run("ls", "-s", "s3")
    assert code == ExitCode.USAGE and "storage 's3' is misconfigured" in err and "pip install" in err
