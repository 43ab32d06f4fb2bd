"""Event-loop lag of the FastAPI example while it moves large files.

``examples/fastapi_app.py`` runs under uvicorn (one process, one event loop)
with ``--lag-probe``: a task in the server's loop sleeps 10 ms over and over
and records how late it wakes up, which is how long any request would wait
for the loop.  While it runs, this script drives, all at once:

- 8 concurrent downloads of a 64 MiB file (``GET /depot/files/<id>``), and
- 4 concurrent uploads of 64 MiB, by default the body itself to
  ``PUT /documents/raw/<name>``, the example's endpoint for large files,
  which streams ``request.stream()`` to the storage;  ``--uploads
  multipart`` posts a multipart form to ``POST /documents`` instead (the
  way a browser sends files), which Starlette parses on the event loop
  before depot sees the file.

each client repeating its transfer ``--repeat`` times (2) per round, so a
round holds several hundred samples and its p99 is not just its worst two.

Four servers are measured in the same run, a round of each in turn (so a
burst of load from elsewhere hits them alike):

- ``async``: the example, depot's async API and ASGI middleware;
- ``async-niced``: the same with ``--worker-niceness 5``: depot's worker
  threads run 5 levels nicer than the event loop
  (``depot.io.aio.set_worker_niceness``, off by default), so the loop's
  thread gets a CPU first when both are ready to run;
- ``floor``: ``lag_floor_app.py``, the same transfers with the least work an
  ASGI app can do (Starlette's ``FileResponse``, a raw body written to a
  file by a worker thread): the lateness the machine, uvicorn and the
  transfers cause by themselves, what depot is compared with;
- ``blocking``: ``lag_blocking_app.py``, the example's routes calling depot's
  blocking API on the loop: the reference point (hundreds of ms).

Printed per round and server: the probe's p50/p99/max lateness (target: p99
under 20 ms); "own p99", the p99 of the lateness less the time the loop's
thread waited for a CPU while ready to run (Linux schedstat run delay: what
the application itself caused, the rest is the machine's); that wait in %
of the time; the transfer rates; the server's CPU use (all threads, and the
loop's thread alone) and the clients'.  Then the idle lateness of each
server and a summary: median and worst p99 per server, depot next to the
floor.

The load generator.  Real clients run on other machines; here they share
the CPUs with the server, and every CPU they take can be a CPU the loop
waits for.  So by default the clients are ``curl`` processes (C: a small
fraction of the CPU an in-process Python client burns for the same bytes)
running at nice 19 (the scheduler gives a waking server thread the CPU at
once), and the setup used is printed.  ``--client httpx`` (threads in this
process, the earlier method), ``--client-nice 0`` and ``--pin`` (server on
one CPU, clients on the other, as ``bench_middleware.py --pin``) change
it; ``--priority N`` raises the servers' priority (needs root).  The
server reports its event loop (asyncio or uvloop) and HTTP parser (h11 or
httptools: uvicorn picks uvloop and httptools when installed, as
``uvicorn[standard]`` does).

Usage: ``python benchmarks/bench_async_lag.py [--rounds 3] [--repeat 2]
[--uploads raw|multipart] [--apps async,async-niced,floor,blocking]
[--worker-niceness 5] [--client curl|httpx] [--client-nice 19] [--pin]
[--priority N] [--compare NAME=TREE]``
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import httpx

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "fastapi_app.py"
SIZE = 64 * 1024 * 1024
DOWNLOADS = 8
UPLOADS = 4
TARGET_MS = 20.0

APPS = {
    "async": EXAMPLE,  # the example: the async API
    "async-niced": EXAMPLE,  # the same, depot's worker threads niced (--worker-niceness)
    "floor": HERE / "lag_floor_app.py",  # the least work for the same transfers
    "blocking": HERE / "lag_blocking_app.py",  # the same routes calling the blocking API on the loop
}


class Setup:
    """Where the server and the clients run, and how the clients are made."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.client = args.client
        self.client_nice = args.client_nice
        self.priority = args.priority
        cpus = sorted(os.sched_getaffinity(0))
        self.pinned = args.pin and len(cpus) >= 2
        self.server_cpus = {cpus[-1]} if self.pinned else None
        self.client_cpus = set(cpus[:-1]) if self.pinned else None

    def describe(self) -> str:
        where = ("server pinned to CPU %s, clients to CPU %s" % (
            ",".join(map(str, sorted(self.server_cpus or ()))), ",".join(map(str, sorted(self.client_cpus or ()))))
            if self.pinned else "server and clients on all %d CPUs" % len(os.sched_getaffinity(0)))
        return "clients: %s at nice %d; %s; server priority %+d" % (
            "curl processes" if self.client == "curl" else "httpx threads in the benchmark process",
            self.client_nice, where, self.priority)

    def server_preexec(self) -> Optional[Callable[[], None]]:
        if not self.priority and not self.pinned:
            return None

        def preexec() -> None:
            if self.priority:
                os.nice(-self.priority)
            if self.server_cpus:
                os.sched_setaffinity(0, self.server_cpus)

        return preexec

    def client_prefix(self) -> List[str]:
        prefix = []
        if self.client_cpus:
            prefix += ["taskset", "-c", ",".join(map(str, sorted(self.client_cpus)))]
        if self.client_nice:
            prefix += ["nice", "-n", str(self.client_nice)]
        return prefix

    def enter_client_thread(self) -> None:
        """An httpx client thread of this process takes the clients' place (Linux: per-thread nice/affinity)."""
        if self.client_nice:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.client_nice)
        if self.client_cpus:
            os.sched_setaffinity(0, self.client_cpus)


class Server:
    def __init__(self, name: str, app: Path, data: str, setup: Setup, tree: Optional[str] = None,
                 options: Sequence[str] = ()) -> None:
        self.name, self.data = name, data
        env = dict(os.environ, PYTHONPATH=tree) if tree is not None else None  # another source tree's depot
        # The server's errors go to a file (a pipe nobody reads could fill and block it).
        errors = open(data + ".stderr", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(app), "--port", "0", "--data", data, "--lag-probe", *options],
            stdout=subprocess.PIPE, stderr=errors, cwd=os.path.dirname(data), env=env,
            preexec_fn=setup.server_preexec(),
        )
        line = self.proc.stdout.readline().decode()
        match = re.match(r"depot demo running at (http://[0-9.]+:\d+)/", line)
        if not match:
            self.stop()
            raise SystemExit("%s did not start: %r %s" % (app.name, line, self.errors()))
        self.url = match.group(1)
        self.rounds: List[Dict[str, Any]] = []
        self.idle: Dict[str, Any] = {}

    def errors(self) -> str:
        with open(self.data + ".stderr", "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)

    def call(self, method: str, path: str) -> Any:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            response = client.request(method, path)
            response.raise_for_status()
            return response.json() if response.content else None

    def seed(self, source: str) -> str:
        """Store the file the downloads fetch; returns its path."""
        with httpx.Client(base_url=self.url, timeout=300) as client, open(source, "rb") as f:
            seeded = client.put("/documents/raw/seed.bin", content=f,
                                headers={"content-type": "application/octet-stream"})
            seeded.raise_for_status()
            return seeded.json()["url"]


def _curl(prefix: List[str], args: List[str]) -> str:
    done = subprocess.run(prefix + ["curl", "-sS", "-o", "/dev/null", "--max-time", "300"] + args,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if done.returncode:
        raise RuntimeError("curl failed: %s" % done.stderr.decode(errors="replace"))
    return done.stdout.decode()


def download(setup: Setup, url: str, path: str, repeat: int, counts: List[int]) -> None:
    for _ in range(repeat):
        if setup.client == "curl":
            status, size = _curl(setup.client_prefix(), ["-w", "%{http_code} %{size_download}", url + path]).split()
            if status != "200":
                raise RuntimeError("download answered %s" % status)
            counts.append(int(size))
            continue
        setup.enter_client_thread()
        with httpx.Client(base_url=url, timeout=300) as client, client.stream("GET", path) as response:
            response.raise_for_status()
            counts.append(sum(len(chunk) for chunk in response.iter_raw(1024 * 1024)))


def upload(setup: Setup, url: str, source: str, mode: str, n: int, repeat: int, counts: List[int]) -> None:
    for i in range(repeat):
        name = "big-%d-%d.bin" % (n, i)
        if setup.client == "curl":
            if mode == "raw":
                args = ["-T", source, "-H", "Content-Type: application/octet-stream", url + "/documents/raw/" + name]
            else:
                args = ["-F", "title=%s" % name, "-F", "file=@%s;filename=%s" % (source, name), url + "/documents"]
            # No "Expect: 100-continue" round trip: the body goes at once, as httpx sends it.
            status, size = _curl(setup.client_prefix(), ["-H", "Expect:", "-w", "%{http_code} %{size_upload}"] + args
                                 ).split()
            if status != "201":
                raise RuntimeError("upload answered %s" % status)
            counts.append(SIZE if int(size) >= SIZE else int(size))
            continue
        setup.enter_client_thread()
        with httpx.Client(base_url=url, timeout=300) as client, open(source, "rb") as f:
            if mode == "raw":
                response = client.put("/documents/raw/" + name, content=f,
                                      headers={"content-type": "application/octet-stream"})
            else:
                response = client.post("/documents", data={"title": name}, files={"file": (name, f)})
            response.raise_for_status()
            counts.append(SIZE)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of process ``pid`` so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def client_cpu_seconds() -> float:
    """CPU time of this process (httpx clients) and of its reaped children (curl clients)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def one_round(server: Server, setup: Setup, file_path: str, source: str, mode: str, repeat: int) -> Dict[str, Any]:
    server.call("POST", "/lag/reset")
    downloaded: List[int] = []
    uploaded: List[int] = []
    failures: List[BaseException] = []

    def guarded(target: Callable[..., None], *args: Any) -> Callable[[], None]:
        def run() -> None:
            try:
                target(*args)
            except BaseException as exc:  # reported below with the server's errors
                failures.append(exc)
        return run

    threads = [threading.Thread(target=guarded(download, setup, server.url, file_path, repeat, downloaded))
               for _ in range(DOWNLOADS)]
    threads += [threading.Thread(target=guarded(upload, setup, server.url, source, mode, n, repeat, uploaded))
                for n in range(UPLOADS)]
    started = time.perf_counter()
    cpu_before, client_before = cpu_seconds(server.proc.pid), client_cpu_seconds()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    cpu, client_cpu = cpu_seconds(server.proc.pid) - cpu_before, client_cpu_seconds() - client_before
    lag = server.call("GET", "/lag")
    if failures or downloaded != [SIZE] * (DOWNLOADS * repeat) or uploaded != [SIZE] * (UPLOADS * repeat):
        raise SystemExit("%s: a transfer failed: %r, downloaded %r, uploaded %r\nserver errors:\n%s" % (
            server.name, failures[:1], downloaded, uploaded, server.errors()))
    return dict(lag, seconds=elapsed, server_cpu=100 * cpu / elapsed, client_cpu=100 * client_cpu / elapsed,
                down_mbs=DOWNLOADS * repeat * SIZE / elapsed / 1e6, up_mbs=UPLOADS * repeat * SIZE / elapsed / 1e6)


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else "%.2f" % value


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else "%.0f%%" % value


HEADER = "%-11s %-6s %7s %8s %8s %8s %8s %7s %7s %8s %8s %7s %7s %7s" % (
    "server", "round", "p50 ms", "p99 ms", "max ms", "own p99", "samples", "wait", "seconds", "down MB/s",
    "up MB/s", "srv CPU", "loopCPU", "clients")


def row(name: str, label: str, r: Dict[str, Any]) -> str:
    def rate(key: str) -> str:
        return "%.1f" % r[key] if key in r else "-"

    return "%-11s %-6s %7.2f %8.2f %8.2f %8s %8d %7s %7s %8s %8s %7s %7s %7s" % (
        name, label, r["p50_ms"], r["p99_ms"], r["max_ms"], _ms(r.get("own_p99_ms")), r["samples"],
        _pct(r.get("loop_wait_percent")), "%.2f" % r["seconds"] if "seconds" in r else "3.00", rate("down_mbs"),
        rate("up_mbs"), _pct(r.get("server_cpu")), _pct(r.get("loop_cpu_percent")), _pct(r.get("client_cpu")))


def summary(servers: List[Server]) -> None:
    print("\nsummary (p99 lateness in ms; median / worst of the rounds; own = less the loop's wait for a CPU)")
    print("%-11s %8s %8s %10s %10s %8s  %s" % ("server", "median", "worst", "own med", "own worst", "idle",
                                              "target < %.0f ms" % TARGET_MS))
    for server in servers:
        p99 = [r["p99_ms"] for r in server.rounds]
        own = [r["own_p99_ms"] for r in server.rounds if r.get("own_p99_ms") is not None]
        if server.name == "blocking":
            verdict = "reference"
        elif server.name == "floor":
            verdict = "the floor"
        else:
            verdict = "met" if max(p99) < TARGET_MS else "NOT met (median %s)" % (
                "met" if statistics.median(p99) < TARGET_MS else "not met")
        print("%-11s %8.2f %8.2f %10s %10s %8.2f  %s" % (
            server.name, statistics.median(p99), max(p99), _ms(statistics.median(own) if own else None),
            _ms(max(own) if own else None), server.idle["p99_ms"], verdict))
    floor = next((s for s in servers if s.name == "floor"), None)
    if floor is None:
        return
    for server in servers:
        if server.name in ("floor", "blocking"):
            continue
        excess = [r["p99_ms"] - f["p99_ms"] for r, f in zip(server.rounds, floor.rounds, strict=True)]
        print("%s p99 minus the floor's, round by round: %s ms" % (
            server.name, " / ".join("%+.2f" % e for e in excess)))


def main() -> None:
    global DOWNLOADS, UPLOADS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2, help="transfers per client and round (default 2)")
    parser.add_argument("--uploads", choices=["multipart", "raw"], default="raw")
    parser.add_argument("--apps", default="async,async-niced,floor,blocking",
                        help="comma-separated: async (the example), async-niced (the example with depot's worker "
                             "threads niced), floor (the least work), blocking (the reference point)")
    parser.add_argument("--worker-niceness", type=int, default=5,
                        help="async-niced: depot.io.aio.set_worker_niceness(N) in the example (default 5)")
    parser.add_argument("--client", choices=["curl", "httpx"], default="curl" if shutil.which("curl") else "httpx",
                        help="curl processes (default when curl is installed) or httpx threads in this process")
    parser.add_argument("--client-nice", type=int, default=19,
                        help="the clients' niceness (default 19: a waking server thread gets a CPU at once)")
    parser.add_argument("--pin", action="store_true", help="the servers on one CPU, the clients on the others")
    parser.add_argument("--priority", type=int, default=0,
                        help="raise the servers' scheduling priority by this much (needs root)")
    parser.add_argument("--compare", action="append", default=[], metavar="NAME=TREE",
                        help="also measure the example on the depot package of the source tree TREE (e.g. `git "
                             "archive` of an older commit), shown as NAME: depot before/after in one run")
    parser.add_argument("--downloads-count", type=int, default=DOWNLOADS, help="concurrent downloads (default 8)")
    parser.add_argument("--uploads-count", type=int, default=UPLOADS, help="concurrent uploads (default 4)")
    args = parser.parse_args()
    DOWNLOADS, UPLOADS = args.downloads_count, args.uploads_count
    setup = Setup(args)
    trees: Dict[str, str] = {}
    names = args.apps.split(",")
    for spec in args.compare:
        name, _, tree = spec.partition("=")
        if not tree or not (Path(tree) / "depot" / "__init__.py").exists():
            parser.error("--compare takes NAME=TREE, TREE a depot source tree: %r" % spec)
        trees[name] = str(Path(tree).resolve())
        names.insert(1, name)
    unknown = [n for n in names if n not in APPS and n not in trees]
    if unknown:
        parser.error("unknown --apps: %s" % ", ".join(unknown))
    servers: List[Server] = []
    with tempfile.TemporaryDirectory(prefix="depot-lag-") as tmp:
        source = os.path.join(tmp, "source.bin")
        with open(source, "wb") as f:
            for _ in range(SIZE // (1024 * 1024)):
                f.write(os.urandom(1024 * 1024))
        try:
            for name in names:
                app = APPS["async"] if name in trees else APPS[name]
                options = ["--worker-niceness", str(args.worker_niceness)] if name == "async-niced" else []
                servers.append(Server(name, app, os.path.join(tmp, "data-" + name), setup, trees.get(name), options))
            paths = {server.name: server.seed(source) for server in servers}
            # The idle lateness, all servers at once: what the machine adds by itself.
            for server in servers:
                server.call("POST", "/lag/reset")
            time.sleep(3)
            for server in servers:
                server.idle = server.call("GET", "/lag")
            print("event-loop lateness of a 10 ms sleep in each server (uvicorn, one worker: %s), during %d x 64 MiB "
                  "downloads and %d x 64 MiB %s uploads, each client %d times a round" % (
                      servers[0].idle.get("server", "?"), DOWNLOADS, UPLOADS, args.uploads, args.repeat))
            print("setup: " + setup.describe() + (
                "; async-niced: the example's worker threads at niceness +%d" % args.worker_niceness
                if "async-niced" in names else ""))
            print("wait: the loop's thread ready to run but without a CPU, in % of the time; clients: their CPU use")
            print(HEADER)
            for server in servers:
                print(row(server.name, "idle", server.idle))
            for n in range(1, args.rounds + 1):
                for server in servers:  # a round of each in turn: load from elsewhere hits them alike
                    server.rounds.append(one_round(server, setup, paths[server.name], source, args.uploads,
                                                   args.repeat))
                    print(row(server.name, str(n), server.rounds[-1]), flush=True)
        finally:
            for server in servers:
                server.stop()
    summary(servers)


if __name__ == "__main__":
    main()
