"""Serving files to ASGI applications: depot.asgi beside Starlette's FileResponse and the WSGI middleware.

Every server runs one worker process on 127.0.0.1 and serves the same two
files of a local storage, 1 KiB and 64 MiB:

- ``FileResponse, uvicorn``: an ASGI app answering ``FileResponse(path)``
  (Starlette's own), the floor a user compares with;
- ``depot.asgi, uvicorn``: ``DepotManager.make_asgi_middleware(app)``;
- ``depot WSGI via a2wsgi, uvicorn``: the WSGI middleware bridged with
  ``a2wsgi.WSGIMiddleware``, what ASGI users did before;
- ``depot.asgi, granian (pathsend)``: granian offers
  ``http.response.pathsend``, so the server sends whole local files itself;
- ``FileResponse, granian``: for reference (Starlette uses pathsend too).

Measured: requests per second for the 1 KiB file (keep-alive connections
from a separate client process), and the server's CPU seconds (user +
system, of the server process and its children, from ``/proc``) per GiB
served for the 64 MiB file.  The client is raw sockets with keep-alive,
reading bodies into a reused buffer, so it costs the machine little.
Rounds are interleaved and medians reported, ratios against ``FileResponse,
uvicorn`` side by side.

Usage: ``python benchmarks/bench_asgi.py [--duration 2] [--rounds 3] [--connections 4] [--downloads 4]``
"""
from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from bench_middleware import cpu_seconds, free_port, wait_for_port  # noqa: E402

SMALL = 1024
LARGE = 64 * 1024 * 1024
GIB = 1024 ** 3
FLOOR = "FileResponse, uvicorn"

APPS = textwrap.dedent(
    '''
    import os
    from a2wsgi import WSGIMiddleware
    from starlette.responses import FileResponse, PlainTextResponse
    from depot.asgi import DepotMiddleware
    from depot.manager import DepotManager
    from depot.middleware import DepotMiddleware as WSGIDepotMiddleware

    DepotManager.configure("default", {"depot.storage_path": os.environ["BENCH_ROOT"]})
    FILES = {"/small": os.environ["BENCH_SMALL"], "/large": os.environ["BENCH_LARGE"]}


    async def not_found(scope, receive, send):
        await PlainTextResponse("not found", status_code=404)(scope, receive, send)


    def wsgi_not_found(environ, start_response):
        start_response("404 Not Found", [("Content-Length", "0")])
        return []


    async def file_response(scope, receive, send):
        if scope["type"] != "http":
            return
        await FileResponse(FILES[scope["path"]])(scope, receive, send)


    depot_asgi = DepotMiddleware(not_found)
    depot_wsgi_bridged = WSGIMiddleware(WSGIDepotMiddleware(wsgi_not_found))
    '''
)


@dataclass
class Setup:
    name: str
    server: str  # uvicorn or granian
    app: str
    depot_urls: bool
    process: subprocess.Popen = None
    port: int = 0
    small: List[float] = field(default_factory=list)
    cpu_per_gib: List[float] = field(default_factory=list)
    mbps: List[float] = field(default_factory=list)

    def paths(self, ids: Dict[str, str]) -> Dict[str, str]:
        if self.depot_urls:
            return {kind: "/depot/default/%s" % fid for kind, fid in ids.items()}
        return {"small": "/small", "large": "/large"}

    def cpu(self) -> float:
        """CPU seconds of the server and its children (granian's worker)."""
        pids = [self.process.pid]
        children = Path("/proc/%d/task/%d/children" % (self.process.pid, self.process.pid))
        pids += [int(pid) for pid in children.read_text().split()]
        total = 0.0
        for pid in pids:
            try:
                total += cpu_seconds(pid)
            except FileNotFoundError:
                pass
        return total


SETUPS = [
    Setup(FLOOR, "uvicorn", "file_response", False),
    Setup("depot.asgi, uvicorn", "uvicorn", "depot_asgi", True),
    Setup("depot WSGI via a2wsgi, uvicorn", "uvicorn", "depot_wsgi_bridged", True),
    Setup("depot.asgi, granian (pathsend)", "granian", "depot_asgi", True),
    Setup("FileResponse, granian", "granian", "file_response", False),
]


def start(setup: Setup, workdir: Path, env: Dict[str, str]) -> None:
    setup.port = free_port()
    if setup.server == "uvicorn":
        argv = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(setup.port), "--workers", "1",
                "--no-access-log", "--log-level", "warning", "--lifespan", "off", "--app-dir", str(workdir),
                "bench_asgi_apps:%s" % setup.app]
    else:
        argv = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(setup.port),
                "--workers", "1", "--no-access-log", "--no-ws", "--log-level", "warning", "bench_asgi_apps:%s" % setup.app]
    setup.process = subprocess.Popen(argv, cwd=workdir, env=env, stdout=subprocess.DEVNULL, start_new_session=True)
    wait_for_port(setup.port, setup.process)


def stop(setup: Setup) -> None:
    if setup.process is not None and setup.process.poll() is None:
        os.killpg(setup.process.pid, signal.SIGTERM)
        try:
            setup.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(setup.process.pid, signal.SIGKILL)
            setup.process.wait()


# -- the client (run in a process of its own) -------------------------------------------


class _Connection:
    """One keep-alive connection: sends a GET, reads the answer, sends the next."""

    def __init__(self, port: int, request: bytes, scratch: memoryview) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = request
        self.scratch = scratch
        self.head = b""
        self.remaining = -1  # body bytes still to come; -1 while reading the headers

    def send(self) -> None:
        self.sock.sendall(self.request)
        self.head, self.remaining = b"", -1

    def on_readable(self) -> int:
        """Bytes of body received; ``-2`` once a whole response (status 200) is in."""
        if self.remaining < 0:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return 0
            head, body = self.head[:end].lower(), len(self.head) - end - 4
            if not head.startswith(b"http/1.1 200"):
                raise RuntimeError("unexpected answer: %r" % head[:200])
            start = head.index(b"content-length:") + 15
            self.remaining = int(head[start:head.index(b"\r\n", start)]) - body
            got = body
        else:
            got = self.sock.recv_into(self.scratch)
            if not got:
                raise ConnectionError("server closed the connection")
            self.remaining -= got
        return -2 if self.remaining == 0 else got


def client(port: int, path: str, connections: int, duration: float, downloads: int) -> dict:
    """GET ``path`` on ``connections`` keep-alive connections, for ``duration`` s or ``downloads`` answers."""
    scratch = memoryview(bytearray(1 << 20))
    request = ("GET %s HTTP/1.1\r\nHost: bench\r\n\r\n" % path).encode()
    selector = selectors.DefaultSelector()
    conns = [_Connection(port, request, scratch) for _ in range(connections)]
    for conn in conns:
        selector.register(conn.sock, selectors.EVENT_READ, conn)
        conn.send()
    done = received = 0
    began = time.monotonic()
    end = began + duration if duration else float("inf")
    while (not downloads or done < downloads) and time.monotonic() < end:
        for key, _ in selector.select(1.0):
            conn = key.data
            got = conn.on_readable()
            if got == -2:
                done += 1
                conn.send()
            else:
                received += got
    return {"requests": done, "seconds": time.monotonic() - began, "bytes": received}


def run_client(port: int, path: str, connections: int, duration: float = 0, downloads: int = 0) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--client", json.dumps([port, path, connections, duration, downloads])],
        capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out)


# -- measurements ---------------------------------------------------------------------------


def measure(setup: Setup, paths: Dict[str, str], args: argparse.Namespace) -> None:
    result = run_client(setup.port, paths["small"], args.connections, duration=args.duration)
    setup.small.append(result["requests"] / result["seconds"])
    before = setup.cpu()
    result = run_client(setup.port, paths["large"], 1, downloads=args.downloads)
    cpu = setup.cpu() - before
    served = result["requests"] * LARGE
    setup.cpu_per_gib.append(cpu / (served / GIB))
    setup.mbps.append(served / result["seconds"] / 1e6)


def median(values: List[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def report(setups: List[Setup], args: argparse.Namespace) -> None:
    floor = next(s for s in setups if s.name == FLOOR)
    floor_rps, floor_cpu = median(floor.small), median(floor.cpu_per_gib)
    from importlib.metadata import version

    print()
    print("uvicorn %s, granian %s, starlette %s; %d rounds, medians; 1 KiB: %d connections x %gs; "
          "64 MiB: %d downloads" % (version("uvicorn"), version("granian"), version("starlette"), args.rounds,
                                    args.connections, args.duration, args.downloads))
    print("%-32s %12s %8s %14s %8s %9s" % ("", "1 KiB req/s", "vs FR", "CPU s/GiB", "vs FR", "MB/s"))
    for s in setups:
        rps, cpu = median(s.small), median(s.cpu_per_gib)
        print("%-32s %12.0f %7.2fx %14.3f %7.2fx %9.0f" % (
            s.name, rps, rps / floor_rps, cpu, cpu / floor_cpu, median(s.mbps)))
    ours = next(s for s in setups if s.name == "depot.asgi, uvicorn")
    granian = next(s for s in setups if s.name.startswith("depot.asgi, granian"))
    checks = [
        ("1 KiB req/s >= FileResponse (uvicorn)", median(ours.small) >= floor_rps),
        ("64 MiB CPU/GiB <= FileResponse (uvicorn)", median(ours.cpu_per_gib) <= floor_cpu),
        ("granian+pathsend CPU/GiB <= 1/2 FileResponse (uvicorn)", median(granian.cpu_per_gib) <= floor_cpu / 2),
    ]
    print()
    for what, ok in checks:
        print("%-58s %s" % (what, "met" if ok else "NOT met"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per 1 KiB measurement (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported (default 3)")
    parser.add_argument("--connections", type=int, default=4, help="keep-alive connections for 1 KiB (default 4)")
    parser.add_argument("--downloads", type=int, default=4, help="64 MiB downloads per measurement (default 4)")
    args = parser.parse_args()
    from depot.io.local import LocalFileStorage

    with tempfile.TemporaryDirectory(prefix="bench-asgi-") as tmp:
        workdir = Path(tmp)
        (workdir / "bench_asgi_apps.py").write_text(APPS)
        root = workdir / "files"
        storage = LocalFileStorage(str(root))
        large_source = workdir / "large.src"
        with open(large_source, "wb") as f:
            for _ in range(LARGE // (1 << 20)):
                f.write(os.urandom(1 << 20))
        with open(large_source, "rb") as f:
            ids = {"small": storage.create(os.urandom(SMALL), "small.bin", "application/octet-stream"),
                   "large": storage.create(f, "large.bin", "application/octet-stream")}
        large_source.unlink()
        env = dict(os.environ, BENCH_ROOT=str(root), BENCH_SMALL=str(root / ids["small"] / "file"),
                   BENCH_LARGE=str(root / ids["large"] / "file"),
                   PYTHONPATH=os.pathsep.join([str(workdir), str(REPO)]))
        try:
            for setup in SETUPS:
                start(setup, workdir, env)
            for setup in SETUPS:  # warm-up: imports, first-request caches, the page cache
                paths = setup.paths(ids)
                run_client(setup.port, paths["small"], 1, duration=0.3)
                run_client(setup.port, paths["large"], 1, downloads=1)
            for round_number in range(args.rounds):
                for setup in SETUPS:
                    measure(setup, setup.paths(ids), args)
                print("round %d/%d done" % (round_number + 1, args.rounds), flush=True)
        finally:
            for setup in SETUPS:
                stop(setup)
    report(SETUPS, args)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--client":
        print(json.dumps(client(*json.loads(sys.argv[2]))))
    else:
        main()
