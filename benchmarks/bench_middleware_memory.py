"""Memory the middleware keeps while serving files with huge names, beside filedepot 0.12.

Serves ``--count`` local files (400) whose names are ``--name-length``
(200,000) characters long, each once, and prints the Python memory traced
during the serving (``tracemalloc``): the peak, what stays allocated
afterwards (caches), and the largest response header block.  The claim:
both stay under 64 MiB, and headers stay small.  filedepot 0.12 is measured
too when ``benchmarks/.venv-filedepot`` exists (the other benchmarks create
it); this script does not create it.

Usage: ``python benchmarks/bench_middleware_memory.py [--count 400] [--name-length 200000]``
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import FILEDEPOT_VENV, ours_python, run_worker  # noqa: E402

LIMIT = 64 * 1024 * 1024
MIB = 1024 * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--name-length", type=int, default=200_000)
    opts = parser.parse_args()
    pythons = {"depot": ours_python()}
    filedepot = os.path.join(FILEDEPOT_VENV, "bin", "python")
    if os.path.exists(filedepot):
        pythons["filedepot 0.12"] = filedepot
    else:
        print("filedepot 0.12 is not installed (%s is missing): measuring depot only" % FILEDEPOT_VENV)
    print("serving %d files with %d-character names" % (opts.count, opts.name_length))
    print("%-16s %14s %14s %16s" % ("", "peak MiB", "retained MiB", "largest header"))
    failed = False
    for name, python in pythons.items():
        work = tempfile.mkdtemp(prefix="depot-bench-memory-")
        try:
            result = run_worker(python, "middleware_memory_worker.py",
                                [str(opts.count), str(opts.name_length), os.path.join(work, "files")])
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print("%-16s %14.1f %14.1f %16d" % (name, result["peak"] / MIB, result["retained"] / MIB, result["header"]))
        if name == "depot" and max(result["peak"], result["retained"]) >= LIMIT:
            failed = True
    if failed:
        print("FAIL: depot's middleware went over %d MiB" % (LIMIT // MIB))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
