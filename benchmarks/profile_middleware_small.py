"""Instructions per request for a 1 KiB file under gunicorn: depot beside its two floors.

The figure behind issue #13's "1 KiB req/s at 0.85x the memory floor", in a
form a shared, noisy machine cannot blur: each server of
``bench_middleware.py`` (the memory floor, the file floor, depot) runs as one
gunicorn sync worker under ``valgrind --tool=callgrind``; after a warm-up,
the worker's instructions are counted over ``--requests`` sequential GETs
of the 1 KiB file and divided by their number.  Every instruction the worker
executes counts (gunicorn's parsing and writing, the application, the
interpreter), syscalls only by their user-space side.

Printed: instructions per request, depot's instructions above each floor,
and ``floor / depot``, the req/s ratio a CPU-bound worker would reach if
every instruction cost the same (the kernel's side of a request, about the
same for all but the extra syscalls, is left out).
With ``--strace``, the syscalls per request of each worker too (``strace -c``).

Usage: ``python benchmarks/profile_middleware_small.py [--requests 300] [--strace]
[--compare NAME=TREE]``
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_middleware as bench  # noqa: E402 - the same applications and headers

WARM_UP = 100


def _get(port: int, path: str) -> bytes:
    """One GET over a new connection (gunicorn's sync worker closes each), the whole answer."""
    with socket.create_connection((bench.LOOPBACK, port), timeout=600) as conn:
        conn.sendall(("GET %s HTTP/1.1\r\nHost: bench\r\nUser-Agent: profile\r\nAccept: */*\r\n\r\n" % path).encode())
        parts = []
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            parts.append(chunk)
    answer = b"".join(parts)
    if not answer.startswith(b"HTTP/1.1 200 "):
        raise RuntimeError("GET %s answered %r" % (path, answer[:200]))
    return answer


def _marker(port: int, path: str) -> None:
    with socket.create_connection((bench.LOOPBACK, port), timeout=600) as conn:
        conn.sendall(("GET %s HTTP/1.1\r\nHost: bench\r\n\r\n" % path).encode())
        while conn.recv(65536):
            pass


def _load(port: int, path: str, count: int) -> None:
    for _ in range(count):
        _get(port, path)


def _worker(master: subprocess.Popen) -> int:
    children = Path("/proc/%d/task/%d/children" % (master.pid, master.pid))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        pids = children.read_text().split()
        if pids:
            return int(pids[0])
        time.sleep(0.2)
    raise RuntimeError("no gunicorn worker")


def _start(workdir: Path, app: str, env: Dict[str, str], pythonpath: Optional[str], wrap: List[str]) -> Tuple[subprocess.Popen, int]:
    (workdir / "bench_app.py").write_text(app)
    port = bench.free_port()
    env = dict(os.environ, **env)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    process = subprocess.Popen(
        wrap + [sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class", "sync", "--timeout", "900",
                "--bind", "%s:%d" % (bench.LOOPBACK, port), "--chdir", str(workdir), "--log-level", "warning",
                "bench_app:application"],
        env=env, cwd=str(workdir), stdout=subprocess.DEVNULL, stderr=open(workdir / "server.log", "wb"),
    )
    bench.wait_for_port(port, process, timeout=600)
    return process, port


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _totals(out_file: str) -> int:
    with open(out_file) as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    raise RuntimeError("no totals in %s" % out_file)


# Appended to each application: two GETs of the file that mark where counting
# starts and ends, through libc calls nothing else in a worker makes
# (callgrind's --zero-before and --dump-before): the part of the first after
# the mark and the part of the second before it make one more request
# counted.  The same one comparison for every server.
MARKERS = textwrap.dedent(
    '''

    import os as _os
    _profiled = application


    def application(environ, start_response):
        mark = environ["PATH_INFO"]
        if mark == "/__profile_zero":
            _os.getpgid(0)
            environ["PATH_INFO"] = _os.environ["PROFILE_PATH"]
        elif mark == "/__profile_dump":
            environ["PATH_INFO"] = _os.environ["PROFILE_PATH"]
            _os.getsid(0)
        return _profiled(environ, start_response)
    '''
)
CALLGRIND = ["valgrind", "--tool=callgrind", "--zero-before=*getpgid*", "--dump-before=*getsid*"]


def instructions(workdir: Path, app: str, env: Dict[str, str], pythonpath: Optional[str], path: str,
                 requests: int) -> float:
    """The worker's instructions per GET of ``path``, after a warm-up (callgrind)."""
    out = str(workdir / "callgrind.%p")
    env = dict(env, PROFILE_PATH=path)
    process, port = _start(workdir, app + MARKERS, env, pythonpath, CALLGRIND + ["--callgrind-out-file=" + out])
    try:
        worker = _worker(process)
        _load(port, path, WARM_UP)
        _marker(port, "/__profile_zero")
        _load(port, path, requests)
        _marker(port, "/__profile_dump")
        dumps = glob.glob(str(workdir / ("callgrind.%d.*" % worker)))
        # Several dumps when the marker's libc function has two names: the
        # counted requests are in the largest.
        return max(_totals(dump) for dump in dumps) / (requests + 1)
    finally:
        _stop(process)


def syscalls(workdir: Path, app: str, env: Dict[str, str], pythonpath: Optional[str], path: str,
             requests: int) -> Tuple[float, str]:
    """``(syscalls per GET, strace's table)`` of the worker."""
    process, port = _start(workdir, app, env, pythonpath, [])
    try:
        worker = _worker(process)
        _load(port, path, WARM_UP)
        table = workdir / "strace.txt"
        tracer = subprocess.Popen(["strace", "-c", "-f", "-o", str(table), "-p", str(worker)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attached
        _load(port, path, requests)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
        text = table.read_text()
        total = next(line for line in text.splitlines() if line.rstrip().endswith("total"))
        return int(total.split()[3]) / requests, text
    finally:
        _stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="counted GETs per server (default 300)")
    parser.add_argument("--strace", action="store_true", help="also count syscalls per request (strace -c)")
    parser.add_argument("--compare", action="append", default=[], metavar="NAME=TREE",
                        help="also count depot from the source tree TREE (e.g. an older commit), shown as NAME")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (Debian package valgrind)")

    workdir = Path(tempfile.mkdtemp(prefix="depot-profile-"))
    try:
        small = workdir / "small.bin"
        small.write_bytes(os.urandom(bench.SMALL))
        floor_env = {"BENCH_SMALL": str(small), "BENCH_LARGE": str(small)}
        plans = [(bench.MEMORY_FLOOR_NAME, bench.MEMORY_FLOOR_APP, floor_env, None, "/small"),
                 (bench.FLOOR_NAME, bench.FLOOR_APP, floor_env, None, "/small")]
        trees = [("depot", str(bench.REPO))]
        for spec in args.compare:
            name, _, tree = spec.partition("=")
            if not tree or not (Path(tree) / "depot" / "__init__.py").exists():
                parser.error("--compare takes NAME=TREE, TREE a depot source tree: %r" % spec)
            trees.append((name, str(Path(tree).resolve())))
        for name, tree in trees:
            root = workdir / name.replace(" ", "_")
            ids = bench.prepare(Path(sys.executable), root / "files", small, tree)
            plans.append((name, bench.APP_MODULE, {"BENCH_ROOT": str(root / "files")}, tree,
                          "/depot/default/" + ids["small"]))

        counted: Dict[str, float] = {}
        calls: Dict[str, float] = {}
        for name, app, env, tree, path in plans:
            server_dir = workdir / ("server-" + name.replace(" ", "_"))
            server_dir.mkdir()
            print("%s: counting instructions..." % name, flush=True)
            counted[name] = instructions(server_dir, app, env, tree, path, args.requests)
            if args.strace:
                calls[name], table = syscalls(server_dir, app, env, tree, path, args.requests)
                print(table)

        memory, files = counted[bench.MEMORY_FLOOR_NAME], counted[bench.FLOOR_NAME]
        print()
        print("1 KiB GET under gunicorn %s (1 sync worker), %d requests counted per server (callgrind)" % (
            bench.gunicorn_version(), args.requests))
        print("ratios: the floor's instructions per request / the server's (the req/s ratio of a CPU-bound worker)")
        print("%-16s %14s %14s %12s %12s %s" % ("server", "instr/request", "above memory", "memory ratio",
                                               "file ratio", "syscalls/request" if args.strace else ""))
        for name, value in counted.items():
            print("%-16s %14.0f %14.0f %11.3fx %11.3fx %s" % (
                name, value, value - memory, memory / value, files / value,
                "%.1f" % calls[name] if args.strace else ""))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
