"""A large upload to local storage: a direct upload to the middleware against a multipart form POST.

One gunicorn sync worker on 127.0.0.1 runs one WSGI application behind
``DepotMiddleware(secret=...)``, with local storage, that takes the same file
(1 GiB by default) two ways:

- **direct**: the application makes an upload intent; the client ``PUT``\\ s
  the file to the signed URL, which the middleware streams into the storage
  (size, type and checksum checked on the way); the application then checks
  the upload as attaching it does (:func:`depot.uploads.finish_upload`);
- **form**: what applications do today: a ``multipart/form-data`` POST that
  WebOb parses (``request.POST``, the file part spooled to a temporary file)
  and the application stores with ``storage.create(field)``.

A third mode, the **floor**, is an application that only reads the body
and drops it: gunicorn's own cost of receiving the bytes (its ``wsgi.input``
reads the socket 8 KiB and hands it on 1 KiB at a time, which dominates),
the least any application can spend.

Measured per mode, with a fresh server each round (so that the peak is the
upload's): the worker's CPU seconds per GiB (user + system, from
``/proc/<pid>/stat``), its peak RSS (``VmHWM``) beside its RSS before the
upload, and the wall time.  The client sends the file with ``sendfile``, so
it costs next to nothing.  filedepot 0.12 has no direct uploads: the form
POST is the reference, and it is the same under both.

Usage: ``python benchmarks/bench_direct_upload.py [--size-mib 1024] [--rounds 3]``
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _harness import ours_python, table  # noqa: E402
from bench_middleware import LOOPBACK, Server, cpu_seconds, start_gunicorn  # noqa: E402

GIB = 1024 ** 3
BOUNDARY = "depot-bench-boundary-7d3f9a"

APP_MODULE = textwrap.dedent(
    '''
    import json, os
    from webob import Request
    from depot.manager import DepotManager
    from depot.uploads import create_upload_intent, finish_upload

    DepotManager.configure("default", {"depot.storage_path": os.environ["BENCH_ROOT"]})


    def app(environ, start_response):
        request = Request(environ)
        if request.path_info == "/intent":
            answer = create_upload_intent(max_size=int(request.params["max_size"])).as_dict()
        elif request.path_info == "/attach":
            record, stored = finish_upload("default", request.params["id"])
            stored.close()
            answer = {"id": record.file_id}
        elif request.path_info == "/floor":
            # The least any application can do: read the body and drop it (gunicorn's own cost).
            read, size = environ["wsgi.input"].read, 0
            for chunk in iter(lambda: read(262144), b""):
                size += len(chunk)
            answer = {"size": size}
        elif request.path_info == "/form":
            # What applications do today: WebOb parses the form, the storage copies the part.
            answer = {"id": DepotManager.get().create(request.POST["file"])}
        else:
            answer = {}
        body = json.dumps(answer).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


    application = DepotManager.make_middleware(app, secret="bench-secret")
    '''
)


def _status_kib(pid: int, field: str) -> int:
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError("no %s for %d" % (field, pid))


def _send(port: int, method: str, path: str, headers: Dict[str, str], parts: List[object]) -> dict:
    """Send a request whose body is ``parts`` (bytes, or an open file sent with sendfile); the JSON answer."""
    with socket.create_connection((LOOPBACK, port)) as sock:
        head = "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n" % (method, path, LOOPBACK)
        head += "".join("%s: %s\r\n" % item for item in headers.items()) + "\r\n"
        sock.sendall(head.encode("latin-1"))
        for part in parts:
            if isinstance(part, bytes):
                sock.sendall(part)
            else:
                sock.sendfile(part)  # type: ignore[arg-type]
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        if response.status >= 300:
            raise RuntimeError("%s %s answered %d: %r" % (method, path, response.status, body[:300]))
        return json.loads(body)


def _get(port: int, path: str) -> dict:
    return _send(port, "POST", path, {"Content-Length": "0"}, [])


def run_once(mode: str, source: Path, size: int, workdir: Path, root: Path) -> Dict[str, float]:
    # gunicorn's default 30 s worker timeout kills a 1 GiB form POST on a slow machine.
    env = {"BENCH_ROOT": str(root), "GUNICORN_CMD_ARGS": "--timeout 1800"}
    process, base = start_gunicorn(mode, Path(sys.executable), workdir, env, str(HERE.parent), APP_MODULE)
    server = Server(mode, process, "", "")
    try:
        port = int(base.rstrip("/").rsplit(":", 1)[1])
        pid = server.worker_pid()
        if mode == "direct":
            intent = _get(port, "/intent?max_size=%d" % (size * 2))
            _get(port, "/ping")  # the worker has imported everything a request needs
            rss_before = _status_kib(pid, "VmRSS")
            cpu, wall = cpu_seconds(pid), time.monotonic()
            with open(source, "rb") as f:
                answer = _send(port, "PUT", intent["url"], {"Content-Length": str(size),
                                                            "Content-Type": "application/octet-stream"}, [f])
            _get(port, "/attach?id=%s" % answer["id"])
        elif mode == "floor":
            _get(port, "/ping")
            rss_before = _status_kib(pid, "VmRSS")
            cpu, wall = cpu_seconds(pid), time.monotonic()
            with open(source, "rb") as f:
                answer = _send(port, "PUT", "/floor", {"Content-Length": str(size)}, [f])
        else:
            _get(port, "/ping")
            rss_before = _status_kib(pid, "VmRSS")
            cpu, wall = cpu_seconds(pid), time.monotonic()
            preamble = ("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n"
                        "Content-Type: application/octet-stream\r\n\r\n" % BOUNDARY).encode()
            epilogue = ("\r\n--%s--\r\n" % BOUNDARY).encode()
            with open(source, "rb") as f:
                answer = _send(port, "POST", "/form", {
                    "Content-Type": "multipart/form-data; boundary=%s" % BOUNDARY,
                    "Content-Length": str(len(preamble) + size + len(epilogue)),
                }, [preamble, f, epilogue])
        wall = time.monotonic() - wall
        cpu = cpu_seconds(pid) - cpu
        peak = _status_kib(pid, "VmHWM")
    finally:
        server.stop()
    if mode == "floor":
        if answer["size"] != size:
            raise RuntimeError("the floor read %d bytes, not %d" % (answer["size"], size))
    else:
        stored = root / answer["id"] / "file"
        if stored.stat().st_size != size:
            raise RuntimeError("%s stored %d bytes, not %d" % (mode, stored.stat().st_size, size))
        shutil.rmtree(root / answer["id"])
    return {"cpu_per_gib": cpu * GIB / size, "peak_mib": peak / 1024, "before_mib": rss_before / 1024,
            "mb_s": size / 1e6 / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ours_python()
    size = args.size_mib * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="bench-direct-upload-") as tmp:
        workdir, root, source = Path(tmp), Path(tmp) / "files", Path(tmp) / "source.bin"
        root.mkdir()
        with open(source, "wb") as f:
            block = os.urandom(1024 * 1024)
            for _ in range(args.size_mib):
                f.write(block)
        results: Dict[str, List[Dict[str, float]]] = {"direct": [], "form": [], "floor": []}
        for _ in range(args.rounds):
            for mode in results:  # interleaved: a busy moment hurts all
                results[mode].append(run_once(mode, source, size, workdir, root))
    medians = {mode: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
               for mode, runs in results.items()}
    direct, form, floor = medians["direct"], medians["form"], medians["floor"]
    rows = [
        ("server CPU per GiB", "s", direct["cpu_per_gib"], form["cpu_per_gib"]),
        ("server peak RSS", "MiB", direct["peak_mib"], form["peak_mib"]),
        ("server RSS before the upload", "MiB", direct["before_mib"], form["before_mib"]),
        ("throughput", "MB/s", direct["mb_s"], form["mb_s"]),
    ]
    print("gunicorn, 1 sync worker, 127.0.0.1, local storage; %d MiB upload, median of %d rounds"
          % (args.size_mib, args.rounds))
    print(table("direct upload (PUT to the middleware) vs multipart form POST (WebOb request.POST + create)",
                rows, {"server CPU per GiB": False, "server peak RSS": False,
                       "server RSS before the upload": False, "throughput": True},
                columns=("direct PUT", "form POST")))
    print()
    print(table("direct upload vs the gunicorn floor (an application that reads the body and drops it)", [
        ("server CPU per GiB", "s", direct["cpu_per_gib"], floor["cpu_per_gib"]),
        ("server peak RSS", "MiB", direct["peak_mib"], floor["peak_mib"]),
    ], {"server CPU per GiB": False, "server peak RSS": False}, columns=("direct PUT", "floor")))


if __name__ == "__main__":
    main()
