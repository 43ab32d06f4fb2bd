"""GridFS storage: this project against filedepot 0.12.0, side by side in one run.

Workloads, against a secantusd (MongoDB-protocol) server this script starts:
200 x 64 KiB files and one 128 MiB file, each streamed from a file on disk
into GridFS and read back in 256 KiB reads (MB/s), and the peak RSS growth of
the process while doing the large file.  Each figure is the median of several
interleaved rounds, each round in fresh processes and a fresh database.

    python benchmarks/bench_gridfs.py [--rounds 3] [--count 200] [--small-kib 64] [--large-mib 128]

The same file is the worker: ``bench_gridfs.py worker URI DIR`` stores and
reads back every file of DIR, in whichever interpreter imports ``depot``.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
READ_SIZE = 256 * 1024


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


def worker(uri, folder):
    from depot.io.gridfs import GridFSStorage

    storage = GridFSStorage(uri)
    sources = sorted(os.path.join(folder, name) for name in os.listdir(folder))
    size = sum(os.path.getsize(path) for path in sources)
    storage.list()  # connect before timing
    base = _reset_peak_kib()
    t0 = time.perf_counter()
    ids = []
    for path in sources:
        with open(path, "rb") as src:
            ids.append(storage.create(src, os.path.basename(path)))
    t1 = time.perf_counter()
    total = sum(_read_all(storage, file_id) for file_id in ids)
    t2 = time.perf_counter()
    assert total == size, (total, size)
    return {"write_mbs": size / (t1 - t0) / 1e6, "read_mbs": size / (t2 - t1) / 1e6,
            "rss_growth_mib": (_status_kib("VmHWM") - base) / 1024.0}


# -- driver -----------------------------------------------------------------

def _write_sources(folder, count, size):
    os.makedirs(folder)
    for i in range(count):
        with open(os.path.join(folder, "file-%04d.bin" % i), "wb") as f:
            remaining = size
            while remaining:
                block = os.urandom(min(remaining, 1 << 20))
                f.write(block)
                remaining -= len(block)


def main():
    sys.path.insert(0, HERE)
    sys.path.insert(0, os.path.dirname(HERE))
    from _harness import ensure_filedepot_venv, ours_python, run_worker, table
    from tests._procs import start_server
    from tests.servers import _launch_secantusd
    import pymongo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--small-kib", type=int, default=64)
    parser.add_argument("--large-mib", type=int, default=128)
    opts = parser.parse_args()

    pythons = {"depot": ours_python(), "filedepot": ensure_filedepot_venv(["pymongo"])}
    work = tempfile.mkdtemp(prefix="depot-bench-gridfs-")
    process, server = start_server("secantusd", _launch_secantusd)
    client = pymongo.MongoClient(server.uri)
    results = {(name, kind): [] for name in pythons for kind in ("small", "large")}
    try:
        folders = {"small": os.path.join(work, "small"), "large": os.path.join(work, "large")}
        _write_sources(folders["small"], opts.count, opts.small_kib * 1024)
        _write_sources(folders["large"], 1, opts.large_mib * 1024 * 1024)
        # Round 0 is a discarded warm-up (page cache, server cache, imports).
        for r in range(opts.rounds + 1):
            for kind in ("small", "large"):
                # Alternate who goes first, so server-side after-effects (cache,
                # checkpoints) of one run do not always fall on the same side.
                order = list(pythons.items())
                for name, python in order if r % 2 else order[::-1]:
                    database = "bench_%s_%s_%d" % (name, kind, r)
                    result = run_worker(python, "bench_gridfs.py",
                                        ["worker", "%s/%s" % (server.uri, database), folders[kind]])
                    client.drop_database(database)
                    if r:
                        results[name, kind].append(result)
    finally:
        client.close()
        process.stop()
        shutil.rmtree(work, ignore_errors=True)

    def median(name, kind, key):
        return statistics.median(r[key] for r in results[name, kind])

    rows = []
    labels = {"small": "%d x %d KiB" % (opts.count, opts.small_kib), "large": "%d MiB" % opts.large_mib}
    for kind in ("small", "large"):
        for key, label in (("write_mbs", "write"), ("read_mbs", "read back")):
            rows.append(("gridfs %s %s" % (label, labels[kind]), "MB/s",
                         median("depot", kind, key), median("filedepot", kind, key)))
    rss = "peak RSS growth, %d MiB file" % opts.large_mib
    rows.append((rss, "MiB", median("depot", "large", "rss_growth_mib"), median("filedepot", "large", "rss_growth_mib")))
    print(table("GridFS on secantusd (median of %d rounds)" % opts.rounds, rows, {rss: False}))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "worker":
        print(json.dumps(worker(*sys.argv[2:])))
    else:
        main()
