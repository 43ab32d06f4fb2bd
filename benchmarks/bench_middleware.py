"""Serving files over HTTP: depot's DepotMiddleware beside filedepot 0.12 and raw sendfile.

Each implementation runs under gunicorn (one sync worker) on 127.0.0.1 and is
loaded by ``wrk`` (Debian package ``wrk``; a Python client in separate
processes when it is missing).  Measured:

- requests per second for a 1 KiB file;
- MB/s for a 64 MiB file;
- the server worker's CPU seconds per GB served (user + system time from
  ``/proc/<pid>/stat``).

Three references: a raw sendfile server (a loop of accept, read the request,
``os.sendfile``) is the physical one; the "gunicorn floor", a WSGI
application that only opens the file and hands it to gunicorn with the same
headers, is gunicorn's own cost per request plus opening a file; the "memory
floor" answers the 1 KiB file with the same bytes and headers from memory,
gunicorn's cost alone (issue #13's target: depot at 0.85x its req/s).  No
middleware can serve faster than them, so their ratio to filedepot is the
highest any implementation can reach here.  ``--compare NAME=TREE`` adds
another depot source tree (an older commit) to the same run.  filedepot 0.12.0 is installed into
``benchmarks/.venv-filedepot`` (created on first run) and never imported here.

Usage: ``python benchmarks/bench_middleware.py [--duration 3] [--rounds 9] [--connections 4] [--pin]
[--client wrk|python] [--compare NAME=TREE]``
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FILEDEPOT_VENV = HERE / ".venv-filedepot"
LOOPBACK = "127.0.0.1"
FLOOR_NAME = "gunicorn floor"
MEMORY_FLOOR_NAME = "memory floor"
#: "wrk" or "python"; set from --client.
CLIENT = "wrk"
SMALL = 1024
LARGE = 64 * 1024 * 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _pinning() -> tuple:
    """``(server prefix, client prefix)``: each side on its own CPU, with ``--pin``.

    On a quiet machine pinning stops the scheduler from stacking the
    single-threaded server and the load generator on one CPU; on a busy one
    it can trap the server beside another tenant, so it is off by default.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if "--pin" not in sys.argv or shutil.which("taskset") is None or len(cpus) < 2:
        return [], []
    return ["taskset", "-c", str(cpus[-1])], ["taskset", "-c", str(cpus[0])]


SERVER_PIN, CLIENT_PIN = _pinning()

APP_MODULE = textwrap.dedent(
    '''
    import os
    from depot.manager import DepotManager

    DepotManager.configure("default", {"depot.storage_path": os.environ["BENCH_ROOT"]})


    def not_found(environ, start_response):
        start_response("404 Not Found", [("Content-Length", "0")])
        return []


    application = DepotManager.make_middleware(not_found)
    '''
)

# The least any WSGI application can do under gunicorn: open the file and
# hand it to the server, with as many headers as depot sends.  Its figures
# are gunicorn's own cost, the ceiling no middleware can pass.
FLOOR_APP = textwrap.dedent(
    '''
    import os

    FILES = {"/small": os.environ["BENCH_SMALL"], "/large": os.environ["BENCH_LARGE"]}
    EXTRA = [("ETag", '"0123456789abcdef-1"'), ("Cache-Control", "max-age=604800, public"),
             ("Expires", "Thu, 01 Jan 2037 00:00:00 GMT"), ("Content-Type", "application/octet-stream"),
             ("Last-Modified", "Thu, 01 Jan 2026 00:00:00 GMT"), ("Content-Disposition", 'inline;filename="f.bin"'),
             ("Accept-Ranges", "bytes"), ("X-Content-Type-Options", "nosniff")]


    def application(environ, start_response):
        f = open(FILES[environ["PATH_INFO"]], "rb")
        size = os.fstat(f.fileno()).st_size
        start_response("200 OK", EXTRA + [("Content-Length", str(size))])
        if size <= 65536:
            with f:
                return [f.read()]
        return environ["wsgi.file_wrapper"](f, 262144)
    '''
)

# The floor of issue #13's target: the same bytes and headers, from memory
# (the 1 KiB file is read once, at start-up), so nothing per request but
# gunicorn's own work.  The 64 MiB file still goes through the file wrapper.
MEMORY_FLOOR_APP = FLOOR_APP + textwrap.dedent(
    '''

    with open(FILES["/small"], "rb") as small_file:
        SMALL_BODY = small_file.read()
    SMALL_HEADERS = EXTRA + [("Content-Length", str(len(SMALL_BODY)))]
    from_files = application


    def application(environ, start_response):
        if environ["PATH_INFO"] == "/small":
            start_response("200 OK", SMALL_HEADERS)
            return [SMALL_BODY]
        return from_files(environ, start_response)
    '''
)

# Run by each implementation's interpreter: stores the two files with that
# implementation's own API, prints their ids.
SETUP_SCRIPT = textwrap.dedent(
    '''
    import json, os, sys
    from depot.manager import DepotManager

    DepotManager.configure("default", {"depot.storage_path": sys.argv[1]})
    storage = DepotManager.get()
    small = storage.create(os.urandom(%d), "small.bin", "application/octet-stream")
    with open(sys.argv[2], "rb") as large_file:
        large = storage.create(large_file, "large.bin", "application/octet-stream")
    print(json.dumps({"small": small, "large": large}))
    '''
    % SMALL
)

RAW_SERVER = textwrap.dedent(
    '''
    """One process, one connection at a time: accept, read the request, sendfile, close."""
    import os, socket, sys

    files = {"/small": sys.argv[2], "/large": sys.argv[3]}
    sizes = {path: os.path.getsize(name) for path, name in files.items()}
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", int(sys.argv[1])))
    server.listen(128)
    while True:
        conn, _ = server.accept()
        try:
            request = b""
            while b"\\r\\n\\r\\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                request += chunk
            path = request.split(b" ", 2)[1].decode() if request.count(b" ") >= 2 else "/"
            if path not in files:
                conn.sendall(b"HTTP/1.1 404 Not Found\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n")
                continue
            conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/octet-stream\\r\\n"
                         b"Content-Length: %d\\r\\nConnection: close\\r\\n\\r\\n" % sizes[path])
            with open(files[path], "rb") as f:
                offset, left = 0, sizes[path]
                while left:
                    sent = os.sendfile(conn.fileno(), f.fileno(), offset, left)
                    if not sent:
                        break
                    offset += sent
                    left -= sent
        except OSError:
            pass
        finally:
            conn.close()
    '''
)

WRK_REPORT = textwrap.dedent(
    """
    done = function(summary, latency, requests)
      local e = summary.errors
      io.write(string.format(
        'RESULT {"requests": %d, "bytes": %d, "duration_us": %d, "errors": %d, "non2xx": %d}\\n',
        summary.requests, summary.bytes, summary.duration,
        e.connect + e.read + e.write + e.timeout, e.status))
    end
    """
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited with code %s" % process.returncode)
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server on port %d did not start" % port)


def gunicorn_version() -> str:
    from importlib.metadata import version

    return version("gunicorn")


def ensure_filedepot_venv() -> Path:
    """The interpreter of a venv holding filedepot 0.12.0 and the same gunicorn as ours."""
    python = FILEDEPOT_VENV / "bin" / "python"
    if not python.exists():
        print("creating %s (filedepot==0.12.0, gunicorn==%s)" % (FILEDEPOT_VENV, gunicorn_version()), flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(FILEDEPOT_VENV)], check=True)
    probe = subprocess.run(
        [str(python), "-c", "import depot.middleware, gunicorn; print(gunicorn.__version__)"],
        capture_output=True, text=True, cwd=tempfile.gettempdir(),
    )
    if probe.returncode != 0 or probe.stdout.strip() != gunicorn_version():
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "filedepot==0.12.0", "gunicorn==%s" % gunicorn_version()],
            check=True,
        )
    return python


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    small_url: str
    large_url: str

    def worker_pid(self) -> int:
        """gunicorn's worker (the master's only child), or the raw server itself."""
        children_file = Path("/proc/%d/task/%d/children" % (self.process.pid, self.process.pid))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            children = children_file.read_text().split()
            if self.name == "raw sendfile":
                return self.process.pid
            if children:
                return int(children[0])
            time.sleep(0.05)
        raise RuntimeError("no gunicorn worker for %s" % self.name)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def cpu_seconds(pid: int) -> float:
    fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of the whole line, 12 and 13 after "(comm)".
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def start_gunicorn(
    name: str, python: Path, workdir: Path, env: Dict[str, str], pythonpath: Optional[str], app: str = APP_MODULE
) -> Tuple[subprocess.Popen, str]:
    """``(process, base URL)`` of gunicorn serving ``app`` with one sync worker."""
    (workdir / "bench_app.py").write_text(app)
    port = free_port()
    env = dict(os.environ, **env)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    process = subprocess.Popen(
        SERVER_PIN + [str(python), "-m", "gunicorn", "--workers", "1", "--worker-class", "sync", "--bind",
         "%s:%d" % (LOOPBACK, port), "--chdir", str(workdir), "--log-level", "warning", "bench_app:application"],
        env=env, cwd=str(workdir), stdout=subprocess.DEVNULL, stderr=open(workdir / "server.log", "wb"),
    )
    wait_for_port(port, process)
    return process, "http://%s:%d/" % (LOOPBACK, port)


def start_depot(name: str, python: Path, workdir: Path, root: Path, ids: Dict[str, str], pythonpath: Optional[str]) -> Server:
    process, base = start_gunicorn(name, python, workdir, {"BENCH_ROOT": str(root)}, pythonpath)
    base += "depot/default/"
    return Server(name, process, base + ids["small"], base + ids["large"])


def start_floor(workdir: Path, small_path: Path, large_path: Path, name: str = FLOOR_NAME, app: str = FLOOR_APP) -> Server:
    env = {"BENCH_SMALL": str(small_path), "BENCH_LARGE": str(large_path)}
    process, base = start_gunicorn(name, Path(sys.executable), workdir, env, None, app)
    return Server(name, process, base + "small", base + "large")


def start_raw(workdir: Path, small_path: Path, large_path: Path) -> Server:
    (workdir / "raw_server.py").write_text(RAW_SERVER)
    port = free_port()
    process = subprocess.Popen(
        SERVER_PIN + [sys.executable, str(workdir / "raw_server.py"), str(port), str(small_path), str(large_path)],
        cwd=str(workdir), stdout=subprocess.DEVNULL, stderr=open(workdir / "raw.log", "wb"),
    )
    wait_for_port(port, process)
    base = "http://%s:%d/" % (LOOPBACK, port)
    return Server("raw sendfile", process, base + "small", base + "large")


@dataclass
class Load:
    requests: int
    bytes: int
    seconds: float
    errors: int
    cpu: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def mbps(self) -> float:
        return self.bytes / self.seconds / 1e6

    @property
    def cpu_per_request(self) -> float:
        """Server CPU microseconds per request."""
        return 1e6 * self.cpu / max(1, self.requests)

    @property
    def cpu_per_gb(self) -> float:
        return self.cpu / (self.bytes / 1e9) if self.bytes else float("nan")


def run_wrk(url: str, connections: int, duration: float, script: Path) -> dict:
    out = subprocess.run(
        CLIENT_PIN + ["wrk", "-t1", "-c%d" % connections, "-d%ds" % max(1, round(duration)), "--timeout", "20s", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    return {"requests": result["requests"], "bytes": result["bytes"], "seconds": result["duration_us"] / 1e6,
            "errors": result["errors"] + result["non2xx"]}


def python_client(url: str, duration: float, out_path: str) -> None:
    """One connection's worth of load (a process of its own): GET in a loop, count bytes."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    requests = errors = received = 0
    start = time.monotonic()
    end = start + duration
    while time.monotonic() < end:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
        try:
            conn.request("GET", parts.path)
            resp = conn.getresponse()
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                received += len(chunk)
            requests += 1
            errors += resp.status != 200
        except OSError:
            errors += 1
        finally:
            conn.close()
    with open(out_path, "w") as f:
        json.dump({"requests": requests, "bytes": received, "seconds": time.monotonic() - start, "errors": errors}, f)


def run_python_clients(url: str, connections: int, duration: float, workdir: Path) -> dict:
    procs, outs = [], []
    for i in range(connections):
        out = workdir / ("client-%d.json" % i)
        outs.append(out)
        procs.append(subprocess.Popen(CLIENT_PIN + [sys.executable, __file__, "--client", url, str(duration), str(out)]))
    for p in procs:
        p.wait()
    results = [json.loads(o.read_text()) for o in outs]
    return {"requests": sum(r["requests"] for r in results), "bytes": sum(r["bytes"] for r in results),
            "seconds": max(r["seconds"] for r in results), "errors": sum(r["errors"] for r in results)}


def load_generator(url: str, connections: int, workdir: Path) -> Callable[[float], dict]:
    if CLIENT != "wrk":
        return lambda seconds: run_python_clients(url, connections, seconds, workdir)
    script = workdir / "report.lua"
    script.write_text(WRK_REPORT)
    return lambda seconds: run_wrk(url, connections, seconds, script)


def measure(server: Server, url: str, connections: int, duration: float, workdir: Path) -> Load:
    pid = server.worker_pid()
    generate = load_generator(url, connections, workdir)
    before = cpu_seconds(pid)
    result = generate(duration)
    cpu = cpu_seconds(pid) - before
    return Load(result["requests"], result["bytes"], result["seconds"], result["errors"], cpu)


def warm_up(server: Server, connections: int, workdir: Path) -> None:
    """Imports, first-request caches and the page cache, before anything counts."""
    for url in (server.small_url, server.large_url):
        load_generator(url, connections, workdir)(2.0)


def prepare(python: Path, root: Path, large_source: Path, pythonpath: Optional[str]) -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run(
        [str(python), "-c", SETUP_SCRIPT, str(root), str(large_source)],
        capture_output=True, text=True, check=True, env=env, cwd=tempfile.gettempdir(),
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement (default 3)")
    parser.add_argument("--connections", type=int, default=4, help="concurrent connections for the small file")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds; medians are reported (default 9)")
    parser.add_argument("--pin", action="store_true", help="pin the server and the load generator to separate CPUs")
    parser.add_argument("--compare", action="append", default=[], metavar="NAME=TREE",
                        help="also serve with the depot source tree TREE (another checkout, e.g. `git archive` of an "
                             "older commit), shown as NAME: before/after figures in one run")
    parser.add_argument("--client", choices=("wrk", "python"), default="wrk" if shutil.which("wrk") else "python",
                        help="load generator: wrk (default when installed) or Python clients, one process per connection")
    args = parser.parse_args()
    global CLIENT
    CLIENT = args.client

    filedepot_python = ensure_filedepot_venv()
    workdir = Path(tempfile.mkdtemp(prefix="depot-bench-"))
    servers: List[Server] = []
    try:
        large_source = workdir / "large.bin"
        with open(large_source, "wb") as f:
            for _ in range(LARGE // (1 << 20)):
                f.write(os.urandom(1 << 20))
        small_source = workdir / "small.bin"
        small_source.write_bytes(os.urandom(SMALL))

        plans = [
            ("filedepot 0.12", filedepot_python, None),
            ("depot", Path(sys.executable), str(REPO)),
        ]
        for spec in args.compare:
            name, _, tree = spec.partition("=")
            if not tree or not (Path(tree) / "depot" / "__init__.py").exists():
                parser.error("--compare takes NAME=TREE, TREE a depot source tree: %r" % spec)
            plans.append((name, Path(sys.executable), str(Path(tree).resolve())))
        for name, python, pythonpath in plans:
            root = workdir / name.replace(" ", "_")
            ids = prepare(python, root / "files", large_source, pythonpath)
            server_dir = root / "server"
            server_dir.mkdir(parents=True)
            servers.append(start_depot(name, python, server_dir, root / "files", ids, pythonpath))
        floor_dir = workdir / "floor"
        floor_dir.mkdir()
        servers.append(start_floor(floor_dir, small_source, large_source))
        memory_floor_dir = workdir / "memory_floor"
        memory_floor_dir.mkdir()
        servers.append(start_floor(memory_floor_dir, small_source, large_source, MEMORY_FLOOR_NAME, MEMORY_FLOOR_APP))
        raw_dir = workdir / "raw"
        raw_dir.mkdir()
        servers.append(start_raw(raw_dir, small_source, large_source))

        for server in servers:
            warm_up(server, args.connections, workdir)
        # Other load on the machine drifts over seconds: rounds interleave the
        # servers (in alternating order), ratios are taken within each round,
        # and medians are reported.
        runs: Dict[str, Dict[str, List[Load]]] = {s.name: {"small": [], "large": []} for s in servers}
        for round_number in range(args.rounds):
            order = servers if round_number % 2 == 0 else servers[::-1]
            print("round %d/%d" % (round_number + 1, args.rounds), flush=True)
            for server in order:
                runs[server.name]["small"].append(measure(server, server.small_url, args.connections, args.duration, workdir))
            for server in order:
                runs[server.name]["large"].append(measure(server, server.large_url, 1, args.duration, workdir))
        results = runs
        report(results, args)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def median(values: List[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def report(runs: Dict[str, Dict[str, List[Load]]], args: argparse.Namespace) -> None:
    base = runs["filedepot 0.12"]

    def figure(name: str, kind: str, attr: str) -> Tuple[float, float]:
        """(median value, median of the per-round ratios to filedepot)."""
        values = [getattr(load, attr) for load in runs[name][kind]]
        ratios = [getattr(load, attr) / getattr(ref, attr) for load, ref in zip(runs[name][kind], base[kind], strict=True)]
        return median(values), median(ratios)

    print()
    print("gunicorn %s, 1 sync worker, 127.0.0.1; load: %s; %d interleaved rounds of %gs (medians; ratios to "
          "filedepot taken within each round); %d connections for 1 KiB, 1 for 64 MiB" % (
              gunicorn_version(), "wrk" if CLIENT == "wrk" else "python clients", args.rounds, args.duration,
              args.connections))
    header = "%-16s %11s %7s %11s %7s | %11s %7s %11s %7s %7s" % (
        "server", "1KiB req/s", "ratio", "CPU us/req", "ratio", "64MiB MB/s", "ratio", "CPU s/GB", "ratio", "errors")
    print(header)
    print("-" * len(header))
    for name in runs:
        cells = [figure(name, "small", "rps"), figure(name, "small", "cpu_per_request"),
                 figure(name, "large", "mbps"), figure(name, "large", "cpu_per_gb")]
        errors = sum(load.errors for kind in runs[name].values() for load in kind)
        print("%-16s %11.0f %6.2fx %11.0f %6.2fx | %11.0f %6.2fx %11.3f %6.2fx %7d" % (
            name, *cells[0], *cells[1], *cells[2], *cells[3], errors))
    small_ratio = figure("depot", "small", "rps")[1]
    cpu_ratio = figure("depot", "large", "cpu_per_gb")[1]
    print()
    floors = runs[FLOOR_NAME]["small"], runs[MEMORY_FLOOR_NAME]["small"]
    for name in runs:
        if name in ("raw sendfile", FLOOR_NAME, MEMORY_FLOOR_NAME):
            continue
        loads = runs[name]["small"]
        print("%-16s 1 KiB req/s %.2fx the memory floor's (%.2fx the file floor's); CPU per request above the "
              "memory floor's %.0f us (above the file floor's %.0f us)" % (
                  name,
                  median([d.rps / f.rps for d, f in zip(loads, floors[1], strict=True)]),
                  median([d.rps / f.rps for d, f in zip(loads, floors[0], strict=True)]),
                  median([d.cpu_per_request - f.cpu_per_request for d, f in zip(loads, floors[1], strict=True)]),
                  median([d.cpu_per_request - f.cpu_per_request for d, f in zip(loads, floors[0], strict=True)])))
    memory_ratio = median([d.rps / f.rps for d, f in zip(runs["depot"]["small"], floors[1], strict=True)])
    print("targets: 1 KiB req/s >= 1.5x filedepot: %.2fx %s;  64 MiB CPU/GB <= 0.35x filedepot: %.2fx %s;  "
          "1 KiB req/s >= 0.85x the memory floor (issue #13): %.2fx %s" % (
              small_ratio, "met" if small_ratio >= 1.5 else "NOT met", cpu_ratio, "met" if cpu_ratio <= 0.35 else "NOT met",
              memory_ratio, "met" if memory_ratio >= 0.85 else "NOT met"))

if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--client":
        python_client(sys.argv[2], float(sys.argv[3]), sys.argv[4])
    else:
        main()
