"""Core storages: this project against filedepot 0.12.0, side by side in one run.

Workloads: create and get+read of 2,000 x 1 KiB files on memory and local
storage (ops/s); one 512 MiB file streamed from disk into local storage and
read back (MB/s, with the ratio to ``shutil.copyfile`` of the same file), and
the peak RSS growth while doing it; deleting 2,000 x 1 KiB local files
(ops/s, against two unlinks and an rmdir of the same layout); one 512 MiB
file streamed from disk into the memory storage (MB/s, against one
``read()`` of the whole file); local creates of 1 KiB and of 64 MiB with
``durable`` off (filedepot 0.12's behaviour) and on (every step synced to
the disk), this project only.  Each figure is the median of several
interleaved rounds, each round in fresh processes; the delete and stream
ratios are taken within each round, then their median is shown.

    python benchmarks/bench_core.py [--rounds 3] [--large-mib 512] [--count 2000]
                                    [--only small,large,delete,memstream,durable]
                                    [--durable-large-count 4]
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


def paired(pythons, rounds, kind, args_for, keys):
    """Run ``kind`` for depot, filedepot and the floor in each round; rows with in-round ratio medians.

    The order rotates from round to round so that neither side always runs
    first on a machine that warms up or slows down.
    """
    runs = [("depot", pythons["depot"], kind), ("filedepot", pythons["filedepot"], kind),
            ("floor", pythons["depot"], kind + "-floor")]
    results = {name: [] for name, _, _ in runs}
    for r in range(rounds):
        for name, python, worker_kind in runs[r % 3:] + runs[: r % 3]:
            with args_for(name, r) as args:
                results[name].append(run_worker(python, "core_worker.py", [worker_kind, *args]))
    rows = []
    for key, label in keys:
        ours = [res[key] for res in results["depot"]]
        theirs = [res[key] for res in results["filedepot"]]
        floor = [res[key] for res in results["floor"]]
        rows.append((label, statistics.median(ours), statistics.median(theirs), statistics.median(floor),
                     statistics.median(a / b for a, b in zip(ours, theirs, strict=True)),
                     statistics.median(a / b for a, b in zip(ours, floor, strict=True))))
    return rows


def paired_table(title, rows):
    lines = [title, "%-44s %11s %11s %11s %10s %9s" % ("metric", "depot", "filedepot", "floor", "ratio", "/floor")]
    for label, ours, theirs, floor, ratio, to_floor in rows:
        lower_is_better = "RSS" in label
        note = "  (worse)" if ratio != 1 and (ratio < 1) != lower_is_better else ""
        lines.append("%-44s %11.1f %11.1f %11.1f %9.2fx %8.2fx%s" % (label, ours, theirs, floor, ratio, to_floor, note))
    return "\n".join(lines)


class _folder:
    """A fresh folder under ``work`` for one run, removed afterwards."""

    def __init__(self, work, name, *args):
        self.path = os.path.join(work, name)
        self.args = [*args, self.path]

    def __enter__(self):
        return self.args

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--large-mib", type=int, default=512)
    parser.add_argument("--workdir", default=None, help="folder on the disk to measure (default: a temp dir)")
    parser.add_argument("--durable-large-count", type=int, default=4,
                        help="64 MiB files created per round of the durable workload")
    parser.add_argument("--only", default="small,large,delete,memstream,durable",
                        help="comma-separated workloads to run (default: all)")
    opts = parser.parse_args()
    only = set(opts.only.split(","))

    pythons = {"depot": ours_python()}
    if only - {"durable"}:  # the durable workload measures this project alone
        pythons["filedepot"] = ensure_filedepot_venv()
    work = tempfile.mkdtemp(prefix="depot-bench-", dir=opts.workdir)
    rows, paired_rows, durable_rows, notes = [], [], [], []
    try:
        if "small" in only:
            rows += small_rows(pythons, opts, work)
        source = None
        if only & {"large", "memstream"}:
            source = os.path.join(work, "source.bin")
            with open(source, "wb") as f:
                block = os.urandom(1 << 20)
                for _ in range(opts.large_mib):
                    f.write(block)
            # A discarded warm-up round fills the page cache and settles the disk.
            run_worker(pythons["depot"], "core_worker.py", ["copyfile", source, os.path.join(work, "warmup")])
            shutil.rmtree(os.path.join(work, "warmup"), ignore_errors=True)
        if "large" in only:
            large_rows, copy_mbs = local_large_rows(pythons, opts, work, source)
            rows += large_rows
            notes.append("shutil.copyfile %.0f MB/s" % copy_mbs)
        if "delete" in only:
            paired_rows += paired(
                pythons, opts.rounds, "delete",
                lambda name, r: _folder(work, "delete-%s-%d" % (name, r), str(opts.count), "1024"),
                [("delete_ops", "local delete %d x 1 KiB [ops/s]" % opts.count),
                 ("delete_ops_cpu", "local delete %d x 1 KiB [ops per CPU-s]" % opts.count)])
        if "memstream" in only:
            paired_rows += paired(
                pythons, opts.rounds, "memstream", lambda name, r: _folder(work, "unused", source),
                [("write_mbs", "memory stream %d MiB [MB/s]" % opts.large_mib),
                 ("write_mbs_cpu", "memory stream %d MiB [MB per CPU-s]" % opts.large_mib),
                 ("rss_growth_mib", "memory stream peak RSS growth [MiB]")])
        if "durable" in only:
            durable_rows = durable_create_rows(pythons["depot"], opts, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    if rows:
        print(table("Core storages (median of %d rounds%s)" % (opts.rounds, "".join("; " + n for n in notes)),
                    rows, {"peak RSS growth, %d MiB file" % opts.large_mib: False}))
    if paired_rows:
        print(paired_table("Delete and memory stream (median of %d rounds; ratios taken within each round; "
                           "floor: os.unlink x2 + os.rmdir / one read())" % opts.rounds, paired_rows))
    if durable_rows:
        print(table("Local create, durable=True against the default durable=False (depot only; median of %d "
                    "rounds)" % opts.rounds, durable_rows, {}, columns=("durable=True", "durable=False")))


def small_rows(pythons, opts, work):
    small = {(name, backend): [] for name in pythons for backend in ("memory", "local")}
    for r in range(opts.rounds):
        for backend in ("memory", "local"):
            for name, python in pythons.items():
                path = os.path.join(work, "small-%s-%s-%d" % (name, backend, r))
                small[name, backend].append(
                    run_worker(python, "core_worker.py", ["small", backend, str(opts.count), "1024", path]))
                shutil.rmtree(path, ignore_errors=True)
    rows = []
    for backend in ("memory", "local"):
        for key, label in (("create_ops", "create"), ("get_read_ops", "get+read"),
                           ("create_ops_cpu", "create"), ("get_read_ops_cpu", "get+read")):
            unit = "ops per CPU-s" if key.endswith("_cpu") else "ops/s"
            rows.append(("%s %s %d x 1 KiB" % (backend, label, opts.count), unit,
                         median_of(small["depot", backend], key), median_of(small["filedepot", backend], key)))
    return rows


def durable_create_rows(python, opts, work):
    """Local creates with ``durable`` on and off, alternating which goes first from round to round."""
    sizes = [("1 KiB", 1024, opts.count), ("64 MiB", 64 << 20, opts.durable_large_count)]
    results = {(label, on): [] for label, _, _ in sizes for on in ("yes", "no")}
    for r in range(opts.rounds):
        for label, size, count in sizes:
            for on in (("yes", "no") if r % 2 == 0 else ("no", "yes")):
                path = os.path.join(work, "durable-%s-%d" % (on, r))
                results[label, on].append(
                    run_worker(python, "core_worker.py", ["durable", on, str(count), str(size), path]))
                shutil.rmtree(path, ignore_errors=True)
    rows = []
    for label, size, count in sizes:
        for key, unit in (("create_ops", "ops/s"), ("create_mbs", "MB/s"), ("create_ops_cpu", "ops per CPU-s")):
            if key == ("create_mbs" if size < 1 << 20 else "create_ops"):
                continue  # small files in ops/s, large ones in MB/s
            rows.append(("local create %d x %s" % (count, label), unit,
                         median_of(results[label, "yes"], key), median_of(results[label, "no"], key)))
    return rows


def local_large_rows(pythons, opts, work, source):
    large = {name: [] for name in pythons}
    copies = []
    for r in range(opts.rounds):
        for name, python in pythons.items():
            path = os.path.join(work, "large-%s-%d" % (name, r))
            large[name].append(run_worker(python, "core_worker.py", ["large", source, path]))
            shutil.rmtree(path, ignore_errors=True)
        path = os.path.join(work, "copy-%d" % r)
        copies.append(run_worker(pythons["depot"], "core_worker.py", ["copyfile", source, path]))
        shutil.rmtree(path, ignore_errors=True)
    rows = []
    copy_mbs = median_of(copies, "write_mbs")
    for key, label in (("write_mbs", "write"), ("read_mbs", "read back")):
        rows.append(("local %s %d MiB" % (label, opts.large_mib), "MB/s",
                     median_of(large["depot"], key), median_of(large["filedepot"], key)))
    rows.append(("local write / shutil.copyfile", "ratio",
                 median_of(large["depot"], "write_mbs") / copy_mbs,
                 median_of(large["filedepot"], "write_mbs") / copy_mbs))
    rows.append(("peak RSS growth, %d MiB file" % opts.large_mib, "MiB",
                 median_of(large["depot"], "rss_growth_mib"), median_of(large["filedepot"], "rss_growth_mib")))
    return rows, copy_mbs

if __name__ == "__main__":
    main()
