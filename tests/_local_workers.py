"""Worker processes for the local storage's crash and concurrency tests.

``python -m tests._local_workers writer ROOT ID INDEX SECONDS [PAUSE]``
replaces ID again and again; with PAUSE it stops at that named point of its
first write, prints ``PAUSED`` and waits to be killed.  ``reader ROOT ID
SECONDS`` reads ID again and again and prints a JSON report of every read
whose bytes do not belong to the facts it came with.  ``forker ROOT ID``
forks writers on demand (see :func:`forker`).  :func:`coarse_key` models
a file system on which two versions show one ``stat``.
"""
from __future__ import annotations

import json
import os
import random
import sys
import time
from typing import Any, List

from depot.io import local
from depot.io.local import LocalFileStorage


def name_for(writer: int, round_: int, size: int) -> str:
    return "w%d-%d-%d.bin" % (writer, round_, size)


def payload(name: str) -> bytes:
    """The bytes a file named ``name`` holds: its name and length tell them, so a mix shows."""
    size = int(name.rsplit("-", 1)[1].split(".")[0])
    unit = name.encode() + b"|"
    return (unit * (size // len(unit) + 1))[:size]


def coarse_key(st: os.stat_result) -> Any:
    """``depot.io.local._key`` on a file system that hands a freed inode to the next file and stamps whole seconds.

    There, two versions of one size written within one second show the same
    key (on ext4 it takes a reused inode and one clock tick: rare, but it
    happens under load).  Patch it in, call :func:`early_in_a_second`, and
    the next writes collide every time.
    """
    second = 10**9
    return (0, st.st_dev, st.st_ctime_ns // second * second, st.st_mtime_ns // second * second, st.st_size)


def early_in_a_second() -> None:
    """Wait until the wall clock is early in a second: writes in the next half second are stamped alike."""
    while time.time() % 1 > 0.3:
        time.sleep(0.02)


def pair_problem(storage: LocalFileStorage, file_id: str) -> Any:
    """``None`` if the file reads as a consistent pair, else what is wrong."""
    f = storage.get(file_id)
    data = f.read()
    f.close()
    if data != payload(f.filename) or f.content_length != len(data):
        return {"filename": f.filename, "content_length": f.content_length, "read": len(data), "head": data[:40].decode("latin-1")}
    return None


def _pause(point: str) -> None:
    sys.stdout.write("PAUSED %s\n" % point)
    sys.stdout.flush()
    time.sleep(120)


class _SlowContent:
    """Content that stops at ``writing`` after its first chunk."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        if self.pos:
            _pause("writing")
        chunk = self.data[: 1000]
        self.pos = len(chunk)
        return chunk


def _install_pause(point: str) -> None:
    exchange = local._exchange

    def paused_exchange(a: str, b: str) -> bool:
        if point == "staged":
            _pause(point)
        done = exchange(a, b)
        if point == "exchanged":
            _pause(point)
        return done

    local._exchange = paused_exchange


def _replace_until(storage: LocalFileStorage, file_id: str, index: int, deadline: float, pause: str = "") -> int:
    round_ = 0
    while time.monotonic() < deadline:
        size = random.choice((20, 20, 1000, 50000, 400000))
        name = name_for(index, round_, size)
        content = _SlowContent(payload(name)) if pause == "writing" else payload(name)
        storage.replace(file_id, content, name, "application/x-test")
        round_ += 1
    return round_


def writer(root: str, file_id: str, index: int, seconds: float, pause: str = "") -> None:
    storage = LocalFileStorage(root)
    if pause:
        _install_pause(pause)
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    rounds = _replace_until(storage, file_id, index, time.monotonic() + seconds, pause)
    sys.stdout.write("WROTE %d\n" % rounds)


def forker(root: str, file_id: str) -> None:
    """For each line on stdin, fork a writer, print its pid, and ``REAPED`` once it is killed.

    Forking skips the interpreter start, so a test can kill many writers at
    many moments in little time.
    """
    storage = LocalFileStorage(root)
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    for index, _ in enumerate(sys.stdin, 1):
        pid = os.fork()
        if pid == 0:
            random.seed(os.getpid())
            _replace_until(storage, file_id, index, time.monotonic() + 60)
            os._exit(0)
        sys.stdout.write("%d\n" % pid)
        sys.stdout.flush()
        os.waitpid(pid, 0)
        sys.stdout.write("REAPED\n")
        sys.stdout.flush()


def reader(root: str, file_id: str, seconds: float) -> None:
    storage = LocalFileStorage(root)
    deadline = time.monotonic() + seconds
    reads = 0
    bad: List[Any] = []
    while time.monotonic() < deadline:
        f = storage.get(file_id)
        if reads % 3 == 1:
            time.sleep(0.001)  # a replace may land between get() and the first read
        if reads % 3 == 2:
            with f.real_file() as real:
                data = real.read()
        else:
            data = f.read()
        f.close()
        if data != payload(f.filename) or f.content_length != len(data):
            bad.append([f.filename, f.content_length, len(data)])
        reads += 1
    print(json.dumps({"reads": reads, "bad": bad[:10], "bad_count": len(bad)}))


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "writer":
        writer(args[0], args[1], int(args[2]), float(args[3]), *(args[4:5]))
    elif mode == "forker":
        forker(args[0], args[1])
    else:
        reader(args[0], args[1], float(args[2]))
    os._exit(0)
