"""The ``depot`` command in a real terminal (a pty): the progress line as a user sees it."""
from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from depot.io.local import LocalFileStorage
from depot.io.utils import FileIntent

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = 90
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class _Slow:
    """Reads in small pieces with a pause: a large file takes a few seconds to store."""

    def __init__(self, raw):
        self._read = raw.read

    def read(self, n=-1):
        time.sleep(0.02)
        return self._read(256 * 1024 if n is None or n < 0 else min(n, 256 * 1024))


class ThrottledStorage(LocalFileStorage):
    def create(self, content, filename=None, content_type=None):
        if isinstance(content, FileIntent):
            raw, filename, content_type = content.fileinfo
            return super().create(FileIntent(_Slow(raw), filename, content_type))
        return super().create(_Slow(content), filename, content_type)

    def replace(self, file_or_id, content, filename=None, content_type=None):
        # The backup form replace(f, f) needs the StoredFile itself: slow down its reads in place.
        content.read = _Slow(content).read
        return super().replace(file_or_id, content, filename, content_type)


def run_in_pty(argv, stdin=None, timeout=120):
    """Run ``depot argv`` with stdout and stderr on a pty; returns (exit status, [(time, text), ...])."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, COLUMNS, 0, 0))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DEPOT_CONFIG": "", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "depot", *map(str, argv)], stdin=stdin or subprocess.DEVNULL,
                            stdout=slave, stderr=slave, env=env, cwd=ROOT, close_fds=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append((time.monotonic(), data.decode("utf-8", "replace")))
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=30), chunks
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


def screen_lines(text):
    """The lines a terminal shows at the end: ``\r`` returns to column 0, ``ESC[K`` erases to the end."""
    lines, line, col = [], [], 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\r\n|.", text, re.S):
        if token in ("\n", "\r\n"):
            lines.append("".join(line).rstrip())
            line, col = [], 0
        elif token == "\r":
            col = 0
        elif token == "\x1b[K":
            del line[col:]
        elif token.startswith("\x1b"):
            continue
        else:
            line[col:col + 1] = [token]
            col += 1
    lines.append("".join(line).rstrip())
    return [line for line in lines if line]


def frames(chunks):
    """Every progress line drawn, in order: the text between two carriage returns."""
    text = ANSI.sub("", "".join(data for _, data in chunks))
    return [part.strip() for part in re.split(r"[\r\n]", text) if part.strip()]


# The bytes done: "| 2.50M/48.0M [" with a known total, ": 12.0MB [" without one.
BYTES = re.compile(r"(?:\| |: )(\d+(?:\.\d+)?)([kMG]?)(?:/[\d.]+[kMG]?|B) \[")


def byte_counts(drawn):
    counts = []
    for line in drawn:
        match = BYTES.search(line)
        if match:
            value, unit = float(match.group(1)), match.group(2)
            counts.append(value * {"": 1, "k": 1024, "M": 1024 ** 2, "G": 1024 ** 3}[unit])
    return counts


def test_put_of_one_large_file_moves_the_bar_with_the_bytes(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(24 * 1024 * 1024))  # ~2 s through the throttled storage
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8" + os.urandom(5000))
    code, chunks = run_in_pty(["--backend", "files=tests.test_cli_terminal.ThrottledStorage",
                               "-o", "files.storage_path=%s" % (tmp_path / "files"), "put", big, photo])
    assert code == 0, chunks
    drawn = frames(chunks)
    bars = [line for line in drawn if line.startswith("put 0/2 files")]
    # The bar moved several times while the first (large) file was still being stored...
    counts = byte_counts(bars)
    assert len(set(counts)) >= 4, drawn
    assert counts == sorted(counts) and 0 < counts[1] < 24 * 1024 ** 2
    assert any(re.search(r"\d+%\|[#\d ]*[^|]*\|", line) for line in bars), bars  # a real bar with a percentage
    # ...at a fixed width, whatever the numbers.
    assert len({len(line) for line in bars if "|" in line}) == 1, bars
    # The ids land on lines of their own, never glued to the bar.
    ids = LocalFileStorage(str(tmp_path / "files")).list()
    lines = screen_lines("".join(data for _, data in chunks))
    assert sorted(lines) == sorted(ids), lines


def test_put_from_a_pipe_shows_bytes_and_rate(tmp_path):
    data = os.urandom(12 * 1024 * 1024)
    feeder = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        import threading

        writer = threading.Thread(target=lambda: (feeder.stdin.write(data), feeder.stdin.close()))
        writer.start()
        code, chunks = run_in_pty(["--backend", "files=tests.test_cli_terminal.ThrottledStorage",
                                   "-o", "files.storage_path=%s" % (tmp_path / "files"),
                                   "put", "--name", "x", "-"], stdin=feeder.stdout)
        writer.join()
    finally:
        feeder.stdout.close()
        feeder.wait()
    assert code == 0, chunks
    drawn = [line for line in frames(chunks) if line.startswith("put 0/1 file")]
    counts = byte_counts(drawn)
    assert len(set(counts)) >= 3 and counts == sorted(counts), drawn
    assert all(re.search(r"\d(?:\.\d+)?[kM]?B/s\]$", line) for line in drawn[1:]), drawn  # a rate, not 0 B/s
    (file_id,) = LocalFileStorage(str(tmp_path / "files")).list()
    assert screen_lines("".join(d for _, d in chunks)) == [file_id]


def test_migrate_of_one_large_file_moves_during_the_copy(tmp_path):
    source = LocalFileStorage(str(tmp_path / "a"))
    source.create(os.urandom(20 * 1024 * 1024), "big.bin")
    source.create(b"small", "small.txt")
    code, chunks = run_in_pty(["--local", "a=%s" % (tmp_path / "a"),
                               "--backend", "b=tests.test_cli_terminal.ThrottledStorage",
                               "-o", "b.storage_path=%s" % (tmp_path / "b"), "migrate", "a", "b"])
    assert code == 0, chunks
    # (The small file may come first or second: ids are random, copied in order.)
    drawn = [line for line in frames(chunks) if re.match(r"migrate a -> b [01]/2 files", line)]
    counts = byte_counts(drawn)
    assert counts == sorted(counts), drawn
    assert len({c for c in counts if 0 < c < 20 * 1024 ** 2}) >= 4, drawn  # moving during the large file
    lines = screen_lines("".join(d for _, d in chunks))
    assert len(lines) == 1 and lines[0].startswith("migrate a -> b: 2 files: 2 copied (20.0 MiB)"), lines


@pytest.mark.parametrize("verb", ["ls", "info"])
def test_undecodable_stored_names_print_under_a_strict_utf8_stdout(tmp_path, verb):
    storage = LocalFileStorage(str(tmp_path / "files"))
    file_id = storage.create(b"x", "plain.txt")
    # A name stored before names were normalised: a lone surrogate in metadata.json.
    meta = tmp_path / "files" / file_id / "metadata.json"
    meta.write_text(meta.read_text().replace("plain.txt", "caf\\udce9.txt"))
    argv = [sys.executable, "-m", "depot", "--local", "files=%s" % (tmp_path / "files")]
    argv += ["ls", "-l"] if verb == "ls" else ["info", file_id]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DEPOT_CONFIG": "", "PYTHONIOENCODING": "utf-8:strict"}
    result = subprocess.run(argv, capture_output=True, env=env, timeout=60)
    assert (result.returncode, result.stderr) == (0, b"")
    # The local storage reads such a name back with U+FFFD; the CLI would escape it otherwise
    # (test_lines_the_stream_cannot_encode_are_escaped).
    assert "caf\ufffd.txt".encode() in result.stdout


def test_lines_the_stream_cannot_encode_are_escaped():
    import io

    from depot.cli.context import _write_line

    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", errors="strict")
    _write_line(stream, "caf\udce9.txt")
    stream.flush()
    assert raw.getvalue() == b"caf\\udce9.txt\n"


def test_get_into_a_folder_with_an_unencodable_stored_name(tmp_path):
    storage = LocalFileStorage(str(tmp_path / "files"))
    file_id = storage.create(b"x", "plain.txt")
    meta = tmp_path / "files" / file_id / "metadata.json"
    meta.write_text(meta.read_text().replace("plain.txt", "bad\\ud800.txt"))
    (tmp_path / "out").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DEPOT_CONFIG": "", "PYTHONIOENCODING": "utf-8:strict"}
    result = subprocess.run([sys.executable, "-m", "depot", "--local", "files=%s" % (tmp_path / "files"), "get",
                             file_id, "-o", str(tmp_path / "out")], capture_output=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["bad\ufffd.txt"]
