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
  before depot sees the file: its own per-byte work on the loop, and a trip
  to a thread per received piece once the form's spooled file is on disk.

and prints the probe's p50/p99/max lateness per round (target: p99 under
20 ms), the p99 of the lateness less the time the loop's thread waited for
a CPU while ready to run ("own": what the application itself caused, the
rest is other processes' load on the machine), with the transfer rates, the server's CPU use (all threads, and the event
loop's thread alone) and the lateness of the idle server (what the machine
adds by itself).  The same is then
measured on ``lag_blocking_app.py``, the same routes calling depot's
blocking API from the handlers, on the loop: the reference point.

Usage: ``python benchmarks/bench_async_lag.py [--rounds 3] [--uploads raw|multipart] [--apps async,blocking]
[--priority N] [--compare NAME=TREE]``
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import httpx

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "fastapi_app.py"
SIZE = 64 * 1024 * 1024
DOWNLOADS = 8
UPLOADS = 4


def start_server(
    app: Path, data: str, priority: int = 0, tree: Optional[str] = None
) -> "tuple[subprocess.Popen, str]":
    env = None
    if tree is not None:  # the depot package of another source tree
        env = dict(os.environ, PYTHONPATH=tree)
    # The server's errors go to a file (a pipe nobody reads could fill and block it).
    errors = open(data + ".stderr", "wb")
    proc = subprocess.Popen(
        [sys.executable, str(app), "--port", "0", "--data", data, "--lag-probe"],
        stdout=subprocess.PIPE, stderr=errors, cwd=os.path.dirname(data), env=env,
        preexec_fn=(lambda: os.nice(-priority)) if priority else None,
    )
    line = proc.stdout.readline().decode()
    match = re.match(r"depot demo running at (http://[0-9.]+:\d+)/", line)
    if not match:
        proc.kill()
        proc.wait()
        with open(data + ".stderr", "rb") as f:
            raise SystemExit("the example did not start: %r %s" % (line, f.read().decode()[-2000:]))
    return proc, match.group(1)


def download(url: str, path: str, counts: List[int]) -> None:
    with httpx.Client(base_url=url, timeout=300) as client, client.stream("GET", path) as response:
        response.raise_for_status()
        counts.append(sum(len(chunk) for chunk in response.iter_raw(1024 * 1024)))


def upload(url: str, source: str, mode: str, n: int, counts: List[int]) -> None:
    with httpx.Client(base_url=url, timeout=300) as client, open(source, "rb") as f:
        if mode == "raw":
            response = client.put("/documents/raw/big-%d.bin" % n, content=f,
                                  headers={"content-type": "application/octet-stream"})
        else:
            response = client.post("/documents", data={"title": "big %d" % n}, files={"file": ("big-%d.bin" % n, f)})
        response.raise_for_status()
        counts.append(SIZE)


def idle_lag(url: str, seconds: float = 3.0) -> Dict[str, float]:
    """The lateness with no transfers: what the machine itself adds (other processes, timer slack)."""
    with httpx.Client(base_url=url, timeout=30) as client:
        client.post("/lag/reset").raise_for_status()
        time.sleep(seconds)
        return client.get("/lag").json()


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of process ``pid`` so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def one_round(url: str, file_path: str, source: str, mode: str, pid: int, data_dir: str) -> Dict[str, float]:
    with httpx.Client(base_url=url, timeout=30) as client:
        client.post("/lag/reset").raise_for_status()
    downloaded: List[int] = []
    uploaded: List[int] = []
    threads = [threading.Thread(target=download, args=(url, file_path, downloaded)) for _ in range(DOWNLOADS)]
    threads += [threading.Thread(target=upload, args=(url, source, mode, n, uploaded)) for n in range(UPLOADS)]
    started = time.perf_counter()
    cpu_before = cpu_seconds(pid)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(pid) - cpu_before
    with httpx.Client(base_url=url, timeout=30) as client:
        lag = client.get("/lag").json()
    if downloaded != [SIZE] * DOWNLOADS or len(uploaded) != UPLOADS:
        with open(data_dir + ".stderr", "rb") as f:
            errors = f.read().decode(errors="replace")[-4000:]
        raise SystemExit("a transfer failed: downloaded %r, uploaded %d\nserver errors:\n%s" % (
            downloaded, len(uploaded), errors))
    return {"p50": lag["p50_ms"], "p99": lag["p99_ms"], "max": lag["max_ms"], "samples": lag["samples"],
            "own_p99": lag.get("own_p99_ms"),
            "loop_cpu": lag["loop_cpu_percent"],
            "seconds": elapsed, "cpu": cpu, "down_mbs": DOWNLOADS * SIZE / elapsed / 1e6, "up_mbs": UPLOADS * SIZE / elapsed / 1e6}


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else "%.2f" % value


APPS = {
    "async": EXAMPLE,  # the example: the async API
    "blocking": HERE / "lag_blocking_app.py",  # the same routes calling the blocking API on the loop
}


def measure(name: str, args: argparse.Namespace, tmp: str, source: str) -> float:
    """Run the rounds against one application; returns its worst p99 (ms)."""
    tree = args.trees.get(name)
    app = APPS["async"] if tree else APPS[name]
    data_dir = os.path.join(tmp, "data-" + name.replace("/", "_"))
    proc, url = start_server(app, data_dir, args.priority, tree)
    try:
        with httpx.Client(base_url=url, timeout=300) as client, open(source, "rb") as f:
            seeded = client.put("/documents/raw/seed.bin", content=f,
                                headers={"content-type": "application/octet-stream"})
            seeded.raise_for_status()
            file_path = seeded.json()["url"]
        print("\n%s API: event-loop lateness of a 10 ms sleep in the server, during %d x 64 MiB downloads "
              "and %d x 64 MiB %s uploads (uvicorn, one worker)" % (name, DOWNLOADS, UPLOADS, args.uploads))
        print("%-6s %9s %9s %9s %12s %8s %8s %10s %10s %11s %9s" % (
            "round", "p50 ms", "p99 ms", "max ms", "own p99 ms", "samples", "seconds", "down MB/s", "up MB/s",
            "server CPU", "loop CPU"))
        idle = idle_lag(url)
        print("%-6s %9.2f %9.2f %9.2f %12s %8d %8s %10s %10s %11s %8.0f%%" % (
            "idle", idle["p50_ms"], idle["p99_ms"], idle["max_ms"], _ms(idle.get("own_p99_ms")), idle["samples"],
            "3.00", "-", "-", "-", idle["loop_cpu_percent"]))
        p99s = []
        for n in range(1, args.rounds + 1):
            r = one_round(url, file_path, source, args.uploads, proc.pid, data_dir)
            p99s.append(r["p99"])
            print("%-6d %9.2f %9.2f %9.2f %12s %8d %8.2f %10.1f %10.1f %10.0f%% %8.0f%%" % (
                n, r["p50"], r["p99"], r["max"], _ms(r["own_p99"]), r["samples"], r["seconds"], r["down_mbs"],
                r["up_mbs"], 100 * r["cpu"] / r["seconds"], r["loop_cpu"]))
        return max(p99s)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    global DOWNLOADS, UPLOADS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--uploads", choices=["multipart", "raw"], default="raw")
    parser.add_argument("--apps", default="async,blocking",
                        help="comma-separated: async (the example), blocking (the reference point)")
    parser.add_argument("--priority", type=int, default=0,
                        help="raise the servers' scheduling priority by this much (needs root): on a shared "
                             "machine, keeps other processes' CPU use out of the measured lateness")
    parser.add_argument("--compare", action="append", default=[], metavar="NAME=TREE",
                        help="also measure the example on the depot package of the source tree TREE (e.g. `git "
                             "archive` of an older commit), shown as NAME: depot before/after in one run")
    parser.add_argument("--downloads-count", type=int, default=DOWNLOADS, help="concurrent downloads (default 8)")
    parser.add_argument("--uploads-count", type=int, default=UPLOADS, help="concurrent uploads (default 4)")
    args = parser.parse_args()
    DOWNLOADS, UPLOADS = args.downloads_count, args.uploads_count
    args.trees = {}
    names = args.apps.split(",")
    for spec in args.compare:
        name, _, tree = spec.partition("=")
        if not tree or not (Path(tree) / "depot" / "__init__.py").exists():
            parser.error("--compare takes NAME=TREE, TREE a depot source tree: %r" % spec)
        args.trees[name] = str(Path(tree).resolve())
        names.insert(1, name)
    with tempfile.TemporaryDirectory(prefix="depot-lag-") as tmp:
        source = os.path.join(tmp, "source.bin")
        with open(source, "wb") as f:
            for _ in range(SIZE // (1024 * 1024)):
                f.write(os.urandom(1024 * 1024))
        worst = {name: measure(name, args, tmp, source) for name in names}
    print()
    for name, p99 in worst.items():
        verdict = ("met" if p99 < 20 else "NOT met") if name != "blocking" else "reference"
        print("%-8s worst p99: %8.2f ms  (target < 20 ms for the async API: %s)" % (name, p99, verdict))


if __name__ == "__main__":
    main()
