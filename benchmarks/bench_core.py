"""Core storages: this project against filedepot 0.12.0, side by side in one run.

Workloads: create and get+read of 2,000 x 1 KiB files on memory and local
storage (ops/s); one 512 MiB file streamed from disk into local storage and
read back (MB/s, with the ratio to ``shutil.copyfile`` of the same file), and
the peak RSS growth while doing it.  Each figure is the median of several
interleaved rounds, each round in fresh processes.

    python benchmarks/bench_core.py [--rounds 3] [--large-mib 512] [--count 2000]
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import ensure_filedepot_venv, ours_python, run_worker, table  # noqa: E402


def median_of(results, key):
    return statistics.median(r[key] for r in results)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--large-mib", type=int, default=512)
    parser.add_argument("--workdir", default=None, help="folder on the disk to measure (default: a temp dir)")
    opts = parser.parse_args()

    pythons = {"depot": ours_python(), "filedepot": ensure_filedepot_venv()}
    work = tempfile.mkdtemp(prefix="depot-bench-", dir=opts.workdir)
    try:
        small = {(name, backend): [] for name in pythons for backend in ("memory", "local")}
        for r in range(opts.rounds):
            for backend in ("memory", "local"):
                for name, python in pythons.items():
                    path = os.path.join(work, "small-%s-%s-%d" % (name, backend, r))
                    small[name, backend].append(
                        run_worker(python, "core_worker.py", ["small", backend, str(opts.count), "1024", path]))
                    shutil.rmtree(path, ignore_errors=True)

        source = os.path.join(work, "source.bin")
        with open(source, "wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(opts.large_mib):
                f.write(block)
        large = {name: [] for name in pythons}
        copies = []
        # A discarded warm-up round fills the page cache and settles the disk.
        run_worker(pythons["depot"], "core_worker.py", ["copyfile", source, os.path.join(work, "warmup")])
        shutil.rmtree(os.path.join(work, "warmup"), ignore_errors=True)
        for r in range(opts.rounds):
            for name, python in pythons.items():
                path = os.path.join(work, "large-%s-%d" % (name, r))
                large[name].append(run_worker(python, "core_worker.py", ["large", source, path]))
                shutil.rmtree(path, ignore_errors=True)
            path = os.path.join(work, "copy-%d" % r)
            copies.append(run_worker(pythons["depot"], "core_worker.py", ["copyfile", source, path]))
            shutil.rmtree(path, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = []
    for backend in ("memory", "local"):
        for key, label in (("create_ops", "create"), ("get_read_ops", "get+read"),
                           ("create_ops_cpu", "create"), ("get_read_ops_cpu", "get+read")):
            unit = "ops per CPU-s" if key.endswith("_cpu") else "ops/s"
            rows.append(("%s %s %d x 1 KiB" % (backend, label, opts.count), unit,
                         median_of(small["depot", backend], key), median_of(small["filedepot", backend], key)))
    copy_mbs = median_of(copies, "write_mbs")
    for key, label in (("write_mbs", "write"), ("read_mbs", "read back")):
        rows.append(("local %s %d MiB" % (label, opts.large_mib), "MB/s",
                     median_of(large["depot"], key), median_of(large["filedepot"], key)))
    rows.append(("local write / shutil.copyfile", "ratio",
                 median_of(large["depot"], "write_mbs") / copy_mbs,
                 median_of(large["filedepot"], "write_mbs") / copy_mbs))
    rows.append(("peak RSS growth, %d MiB file" % opts.large_mib, "MiB",
                 median_of(large["depot"], "rss_growth_mib"), median_of(large["filedepot"], "rss_growth_mib")))
    print(table("Core storages (median of %d rounds; shutil.copyfile %.0f MB/s)" % (opts.rounds, copy_mbs),
                rows, {"peak RSS growth, %d MiB file" % opts.large_mib: False}))


if __name__ == "__main__":
    main()
