"""Shared plumbing for the benchmarks: a filedepot 0.12 venv, workers, result tables.

Every benchmark runs the *same* workload code twice, once in an interpreter
where ``import depot`` is this project and once in a separate venv where it is
filedepot 0.12.0, then prints both figures side by side with their ratio.
Absolute numbers vary from machine to machine; the ratios are the claim.
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import venv
from typing import Dict, Iterable, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FILEDEPOT_VENV = os.path.join(HERE, ".venv-filedepot")
FILEDEPOT_REQUIREMENT = "filedepot==0.12.0"


def _venv_python(path: str) -> str:
    return os.path.join(path, "bin", "python")


def ensure_filedepot_venv(packages: Iterable[str] = ()) -> str:
    """Create (once) the filedepot 0.12 venv with ``packages`` too; returns its python.

    A lock file makes concurrent benchmark scripts share one venv safely.
    """
    os.makedirs(HERE, exist_ok=True)
    wanted = sorted({FILEDEPOT_REQUIREMENT, *packages})
    with open(os.path.join(HERE, ".venv-filedepot.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        python = _venv_python(FILEDEPOT_VENV)
        if not os.path.exists(python):
            print("creating %s (filedepot 0.12.0) ..." % FILEDEPOT_VENV, file=sys.stderr)
            venv.EnvBuilder(with_pip=True).create(FILEDEPOT_VENV)
        marker = os.path.join(FILEDEPOT_VENV, "installed.json")
        installed = set(json.load(open(marker))) if os.path.exists(marker) else set()
        missing = [p for p in wanted if p not in installed]
        if missing:
            subprocess.run([python, "-m", "pip", "install", "-q", *missing], check=True)
            with open(marker, "w") as f:
                json.dump(sorted(installed | set(missing)), f)
    return python


def run_worker(python: str, script: str, args: Sequence[str] = (), env: Optional[Dict[str, str]] = None) -> dict:
    """Run ``script`` (a file in benchmarks/) with ``python``; it prints one JSON object last."""
    full_env = _worker_env(python)
    full_env.update(env or {})
    # cwd outside the repository so the filedepot venv cannot import this checkout's depot.
    proc = subprocess.run(
        [python, os.path.join(HERE, script), *args],
        cwd="/", env=full_env, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError("%s failed under %s:\n%s" % (script, python, proc.stderr[-4000:]))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _worker_env(python: str) -> Dict[str, str]:
    """The environment of a worker: this checkout first for ours, nothing added for the filedepot venv.

    Ours gets this checkout on ``PYTHONPATH`` so that a run from a second
    worktree (``PYTHONPATH=<tree>``) measures that tree, not the one
    installed in the interpreter; the filedepot venv must never see it.
    """
    full_env = dict(os.environ)
    full_env.pop("PYTHONPATH", None)
    if os.path.abspath(python) == os.path.abspath(sys.executable):  # not realpath: venvs link one binary
        full_env["PYTHONPATH"] = ROOT
    return full_env


def which_depot(python: str) -> str:
    code = "import depot, os; print(os.path.dirname(depot.__file__))"
    return subprocess.run([python, "-c", code], cwd="/", env=_worker_env(python), capture_output=True, text=True,
                          check=True).stdout.strip()


def ours_python() -> str:
    """The interpreter running this script, checked to import this checkout's depot."""
    where = which_depot(sys.executable)
    if os.path.realpath(where) != os.path.realpath(os.path.join(ROOT, "depot")):
        raise SystemExit("run the benchmark with an interpreter where this checkout is installed "
                         "(pip install -e .); %s imports depot from %s" % (sys.executable, where))
    return sys.executable


def table(
    title: str, rows: List[tuple], higher_is_better: Dict[str, bool], columns: Sequence[str] = ("depot", "filedepot")
) -> str:
    """Format ``(metric, unit, ours, filedepot)`` rows with the ratio ours/filedepot.

    ``columns`` names the two compared columns when they are not depot and filedepot.
    """
    lines = [title, "%-44s %14s %14s %9s" % ("metric", columns[0], columns[1], "ratio")]
    for metric, unit, ours, theirs in rows:
        better = higher_is_better.get(metric, True)
        if theirs:
            ratio = ours / theirs
            note = "" if ratio == 1 or (ratio > 1) == better else "  (worse)"
            shown = "%8.2fx%s" % (ratio, note)
        else:
            shown = "%9s" % "n/a"
        lines.append("%-44s %14s %14s %s" % ("%s [%s]" % (metric, unit), _fmt(ours), _fmt(theirs), shown))
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return "%.1f" % value if value >= 10 else "%.3f" % value
