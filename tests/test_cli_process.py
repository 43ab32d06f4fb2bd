"""The ``depot`` command as users run it: separate processes, pipes, signals and a live server."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from depot.io.local import LocalFileStorage

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).with_name("depot")


def env():
    # The test storages below are imported by dotted path from the child.
    return {**os.environ, "PYTHONPATH": str(ROOT), "DEPOT_CONFIG": ""}


def depot(*argv, input=None, timeout=60, cwd=None):
    return subprocess.run([sys.executable, "-m", "depot", *map(str, argv)], input=input, capture_output=True,
                          timeout=timeout, env=env(), cwd=cwd or ROOT)


class SlowLocalStorage(LocalFileStorage):
    """Local storage that takes a while to open each file: a migration to interrupt."""

    def get(self, file_or_id):
        time.sleep(0.05)
        return super().get(file_or_id)


def test_console_script_pipes_bytes_through(tmp_path):
    assert SCRIPT.exists(), "the depot console script is installed with the package"
    data = os.urandom(300_000) + b"\x00\r\n\xff"
    store = "files=%s" % (tmp_path / "files")
    put = subprocess.run([str(SCRIPT), "--local", store, "put", "-", "--name", "blob.bin"], input=data,
                         capture_output=True, env=env(), timeout=60)
    assert put.returncode == 0, put.stderr
    file_id = put.stdout.decode().strip()
    got = subprocess.run([str(SCRIPT), "--local", store, "get", file_id], capture_output=True, env=env(), timeout=60)
    assert (got.returncode, got.stdout) == (0, data)
    assert got.stderr == b""  # nothing but the bytes, and no progress line on a pipe


def test_python_dash_m_and_version():
    result = depot("--version")
    assert result.returncode == 0
    assert re.match(rb"depot \d", result.stdout)
    result = depot()
    assert result.returncode == 2 and b"COMMAND" in result.stderr


def test_get_into_a_closed_pipe_is_quiet(tmp_path):
    storage = LocalFileStorage(str(tmp_path / "files"))
    file_id = storage.create(os.urandom(4 * 1024 * 1024), "big.bin")
    cmd = "%s -m depot --local files=%s get %s | head -c 10 >/dev/null" % (sys.executable, tmp_path / "files", file_id)
    result = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, env=env(), timeout=60)
    assert b"Traceback" not in result.stderr
    assert result.returncode == 0


def test_forced_progress_line_goes_to_stderr(tmp_path):
    storage = LocalFileStorage(str(tmp_path / "a"))
    for i in range(3):
        storage.create(b"x" * 1000, "f%d" % i)
    result = depot("--progress", "--local", "a=%s" % (tmp_path / "a"), "--local", "b=%s" % (tmp_path / "b"),
                   "migrate", "a", "b")
    assert result.returncode == 0
    assert b"3/3 files" in result.stderr and b"migrate a -> b" in result.stderr
    assert result.stdout.startswith(b"migrate a -> b: 3 files: 3 copied")


def _start_slow_migration(tmp_path, count=30):
    source = LocalFileStorage(str(tmp_path / "src"))
    ids = sorted(source.create(os.urandom(2000 + i), "f%d.bin" % i) for i in range(count))
    argv = [sys.executable, "-m", "depot",
            "--backend", "src=tests.test_cli_process.SlowLocalStorage", "-o", "src.storage_path=%s" % (tmp_path / "src"),
            "--local", "dst=%s" % (tmp_path / "dst"), "migrate", "src", "dst"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(), cwd=ROOT)
    # The same storage without the delay, to resume quickly.
    argv = argv[:3] + ["--local", "src=%s" % (tmp_path / "src")] + argv[7:]
    target = LocalFileStorage(str(tmp_path / "dst"))
    deadline = time.monotonic() + 60
    while len(target.list()) < 5:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the migration made no progress"
        time.sleep(0.02)
    return proc, argv, ids, target


def test_migration_killed_midway_resumes(tmp_path):
    proc, argv, ids, target = _start_slow_migration(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    done = len(target.list())
    assert 5 <= done < len(ids)

    resumed = subprocess.run(argv + ["--verify"], capture_output=True, env=env(), cwd=ROOT, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    summary = resumed.stdout.decode()
    copied = int(re.search(r"(\d+) copied", summary).group(1))
    skipped = int(re.search(r"(\d+) already there", summary).group(1))
    # A file caught mid-write by the kill may be copied again, never lost or duplicated.
    assert copied + skipped == len(ids) and skipped >= done - 1
    assert "0 failed; content verified" in summary
    source = LocalFileStorage(str(tmp_path / "src"))
    assert sorted(target.list()) == ids
    for file_id in ids:
        assert target.get(file_id).read() == source.get(file_id).read()
        assert target.get(file_id).filename == source.get(file_id).filename


def test_migration_stopped_by_sigterm_reports_and_exits_130(tmp_path):
    proc, argv, ids, target = _start_slow_migration(tmp_path)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert re.match(r"migrate src -> dst: %d files: \d+ copied" % len(ids), out.decode())
    assert "interrupted after" in err.decode() and "run the same command again to resume" in err.decode()
    resumed = subprocess.run(argv, capture_output=True, env=env(), cwd=ROOT, timeout=120)
    assert resumed.returncode == 0
    assert sorted(target.list()) == ids


def test_serve(tmp_path):
    storage = LocalFileStorage(str(tmp_path / "files"))
    payload = os.urandom(100_000)
    file_id = storage.create(payload, "photo.jpg")
    proc = subprocess.Popen(
        [sys.executable, "-m", "depot", "--local", "files=%s" % (tmp_path / "files"), "serve", "--port", "0",
         "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(), cwd=ROOT)
    try:
        line = proc.stdout.readline().decode()
        base = re.search(r"index: (http://127\.0\.0\.1:\d+)/", line).group(1)
        assert line.startswith("Serving files at %s/depot/<storage>/<id>" % base)
        with urllib.request.urlopen("%s/depot/files/%s" % (base, file_id), timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "image/jpeg"
            assert response.read() == payload
        request = urllib.request.Request("%s/depot/files/%s" % (base, file_id), headers={"Range": "bytes=10-19"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert (response.status, response.read()) == (206, payload[10:20])
        with urllib.request.urlopen(base + "/", timeout=10) as response:
            index = response.read().decode()
        assert "/depot/files/%s" % file_id in index and "photo.jpg" in index
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen("%s/depot/files/%s" % (base, "0" * 8 + "-0000-4000-8000-" + "0" * 12), timeout=10)
        assert missing.value.code == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_serve_with_signed_links(tmp_path):
    storage = LocalFileStorage(str(tmp_path / "files"))
    file_id = storage.create(b"secret bytes", "s.txt")
    proc = subprocess.Popen(
        [sys.executable, "-m", "depot", "--local", "files=%s" % (tmp_path / "files"), "serve", "--port", "0",
         "--quiet", "--secret", "s3kr1t", "--mountpoint", "/media"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(), cwd=ROOT)
    try:
        base = re.search(r"index: (http://127\.0\.0\.1:\d+)/", proc.stdout.readline().decode()).group(1)
        with pytest.raises(urllib.error.HTTPError) as unsigned:
            urllib.request.urlopen("%s/media/files/%s" % (base, file_id), timeout=10)
        assert unsigned.value.code == 403
        with urllib.request.urlopen(base + "/", timeout=10) as response:
            link = re.search(r"href='(/media/files/%s\?expires=\d+&amp;signature=[\w-]+)'" % file_id,
                             response.read().decode()).group(1).replace("&amp;", "&")
        with urllib.request.urlopen(base + link, timeout=10) as response:
            assert response.read() == b"secret bytes"
            assert response.headers["Cache-Control"].endswith("private")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def _request(url, method="GET"):
    """(status, headers, body) of ``url``, error statuses included."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def _raw_head(base, path):
    """(status line, bytes after the headers) of a HEAD request, read off the socket as sent
    (http.client would drop a body a HEAD response should not have)."""
    import socket

    host, port = base.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"HEAD %s HTTP/1.0\r\nHost: %s\r\n\r\n" % (path.encode(), host.encode()))
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0].decode(), rest


def test_serve_starts_without_a_storage_that_cannot_be_built(tmp_path):
    # The docs' depot.toml on a machine without depot[s3]: boto3 cannot be imported.
    (tmp_path / "nos3").mkdir()
    (tmp_path / "nos3" / "boto3.py").write_text("raise ImportError(\"No module named 'boto3'\")\n")
    settings = tmp_path / "depot.toml"
    settings.write_text(
        '[depot]\ndefault = "files"\n[depot.aliases]\navatars = "files"\n'
        '[depot.storages.files]\nbackend = "local"\nstorage_path = "%s"\n'
        '[depot.storages.s3]\nbackend = "s3"\nbucket = "myapp-files"\naccess_key_id = "AKIA..."\n'
        'secret_access_key = "..."\nregion_name = "eu-west-1"\npolicy = "private"\n'
        '[depot.storages.nopath]\nbackend = "local"\n' % (tmp_path / "files"))
    file_id = LocalFileStorage(str(tmp_path / "files")).create(b"served", "a.txt")
    proc = subprocess.Popen(
        [sys.executable, "-m", "depot", "-c", str(settings), "serve", "--port", "0", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**env(), "PYTHONPATH": "%s:%s" % (tmp_path / "nos3", ROOT)}, cwd=ROOT)
    try:
        line = proc.stdout.readline().decode()
        assert line.startswith("Serving files at "), (line, proc.stderr.read1().decode() if proc.poll() else "")
        base = re.search(r"index: (http://127\.0\.0\.1:\d+)/", line).group(1)
        status, _, body = _request("%s/depot/files/%s" % (base, file_id))
        assert (status, body) == (200, b"served")
        status, headers, body = _request("%s/depot/s3/%s" % (base, file_id))
        assert status == 503
        assert b"storage s3 is unavailable" in body and b"pip install" in body
        assert _raw_head(base, "/depot/s3/" + file_id) == ("HTTP/1.0 503 Service Unavailable", b"")
        status, _, body = _request("%s/depot/nopath/%s" % (base, file_id))
        assert status == 503 and b"needs a storage_path (the depot.storage_path setting)" in body
        status, _, index = _request(base + "/")
        assert status == 200 and b"unavailable" in index and file_id.encode() in index
        # Error pages answer HEAD without a body (#12.14).
        for path in ("/nowhere", "/depot/files/" + "0" * 8 + "-0000-4000-8000-" + "0" * 12, "/depot/nope/x"):
            assert _raw_head(base, path) == ("HTTP/1.0 404 Not Found", b""), path
        assert _raw_head(base, "/depot/files/" + file_id) == ("HTTP/1.0 200 OK", b"")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    err = err.decode()
    assert "depot: warning: not serving storage s3 (its URLs answer 503): storage 's3' is misconfigured" in err
    assert ("depot: warning: not serving storage nopath (its URLs answer 503): storage 'nopath' is misconfigured: "
            "LocalFileStorage needs a storage_path (the depot.storage_path setting)") in err


def test_serve_on_a_port_in_use_says_so(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = depot("--local", "files=%s" % tmp_path, "serve", "--port", port)
    assert result.returncode == 2 and b"Traceback" not in result.stderr
    assert b"port %d is in use on 127.0.0.1: choose another with --port, or --port 0 for a free one" % port \
        in result.stderr
