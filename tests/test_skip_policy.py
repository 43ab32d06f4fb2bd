"""The skip policy (tests/skip_policy.py): with DEPOT_TEST_REQUIRE_SERVERS=1 nothing passes as a skip.

Each case runs pytest in a subprocess, the way .ci/run does, on generated
test files or on a real test module with a deliberately broken dependency.
"""
from __future__ import annotations

import itertools
import os
import pathlib
import re
import subprocess
import sys

import pytest

from tests.skip_policy import REQUIRE_SERVERS_ENV

ROOT = pathlib.Path(__file__).resolve().parent.parent

SKIPPING_TESTS = """
import pytest

def test_runs():
    pass

def test_skips_itself():
    pytest.skip("no frobnicator here")

@pytest.mark.skipif(True, reason="marked away")
def test_skipped_by_mark():
    pass

@pytest.mark.xfail(reason="known bug", strict=True)
def test_expected_failure():
    assert False
"""

SKIPPED_MODULE = """
import pytest

pytest.importorskip("depot_no_such_module_anywhere")

def test_never_collected():
    pass
"""

# What a broken optional dependency looks like to Python: importing it raises ImportError.
BREAK_GRIDFS = """
import sys

sys.modules["gridfs"] = None
"""

PLAIN_GRIDFS_IMPORT = """
from depot.io.gridfs import GridFSStorage

def test_uses_gridfs():
    assert GridFSStorage
"""


def run_pytest(cwd: pathlib.Path, *args: str, required: str, pythonpath: tuple = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, REQUIRE_SERVERS_ENV: required,
           # The caller's path stays last: plugins (xdist) may be installed there.
           "PYTHONPATH": os.pathsep.join([str(ROOT), *map(str, pythonpath), *os.environ.get("PYTHONPATH", "").split(
               os.pathsep)]).rstrip(os.pathsep)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=300,
    )


def run_generated(tmp_path: pathlib.Path, files: dict, required: str) -> subprocess.CompletedProcess:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return run_pytest(tmp_path, "-p", "tests.skip_policy", "--rootdir", str(tmp_path), str(tmp_path),
                      required=required, pythonpath=(tmp_path,))


def missing(text: str, *expected: str) -> list:
    """The expected pieces absent from ``text`` (a list: pytest's diff of long strings is slow)."""
    return [piece for piece in expected if piece not in text]


def turned_into_failures(run: subprocess.CompletedProcess) -> str:
    """The lines of the plugin's end-of-run section (up to the next section)."""
    title = "skips turned into failures (%s is set)" % REQUIRE_SERVERS_ENV
    if title not in run.stdout:
        return ""
    section = run.stdout[run.stdout.index(title):].splitlines()[1:]
    return "\n".join(itertools.takewhile(lambda line: not line.startswith("="), section))


def test_skips_stay_skips_when_servers_are_not_required(tmp_path):
    run = run_generated(tmp_path, {"test_gen.py": SKIPPING_TESTS, "test_gone.py": SKIPPED_MODULE}, "")
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"1 passed, 3 skipped, 1 xfailed", run.stdout), run.stdout
    assert not turned_into_failures(run)


def test_every_skip_in_a_test_fails_the_run_when_servers_are_required(tmp_path):
    run = run_generated(tmp_path, {"test_gen.py": SKIPPING_TESTS}, "1")
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout
    # A test skipping itself and a skipif mark: each named with its reason.
    assert not missing(turned_into_failures(run), "test_gen.py::test_skips_itself: no frobnicator here",
                       "test_gen.py::test_skipped_by_mark: marked away"), run.stdout
    # An expected failure ran: it is not a skip.
    assert "test_expected_failure" not in turned_into_failures(run), run.stdout
    assert re.search(r"1 failed, 1 passed, 1 xfailed, 1 error in", run.stdout), run.stdout


def test_skips_fail_the_run_under_xdist_too(tmp_path):
    # The suite runs on xdist's workers (pyproject's addopts): a skip there must fail the run,
    # and the controller still lists it with its reason.
    files = {"test_gen.py": SKIPPING_TESTS, "test_gone.py": SKIPPED_MODULE}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    run = run_pytest(tmp_path, "-p", "tests.skip_policy", "-n", "2", "--rootdir", str(tmp_path),
                     str(tmp_path), required="1", pythonpath=(tmp_path,))
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout
    assert "2 workers" in run.stdout or "created: 2/2 workers" in run.stdout, run.stdout
    assert not missing(turned_into_failures(run), "test_gen.py::test_skips_itself: no frobnicator here",
                       "test_gen.py::test_skipped_by_mark: marked away",
                       "test_gone.py: could not import 'depot_no_such_module_anywhere'"), run.stdout
    assert "skipped" not in run.stdout.splitlines()[-1], run.stdout


def test_a_module_skipped_at_collection_fails_the_run_when_servers_are_required(tmp_path):
    run = run_generated(tmp_path, {"test_gen.py": "def test_runs():\n    pass\n", "test_gone.py": SKIPPED_MODULE}, "1")
    assert run.returncode != 0, run.stdout
    assert not missing(turned_into_failures(run), "test_gone.py: could not import 'depot_no_such_module_anywhere'")
    assert "skipped" not in run.stdout.splitlines()[-1], run.stdout


def test_a_broken_optional_import_fails_instead_of_skipping(tmp_path):
    # A test module importing depot.io.gridfs plainly, with gridfs broken by the conftest.
    files = {"conftest.py": BREAK_GRIDFS, "test_gridfs_user.py": PLAIN_GRIDFS_IMPORT}
    for required in ("", "1"):
        run = run_generated(tmp_path, files, required)
        assert run.returncode != 0 and "skipped" not in run.stdout, run.stdout
        assert not missing(run.stdout, "ERROR test_gridfs_user.py",
                           "depot.io.gridfs.GridFSStorage needs the 'gridfs' package"), run.stdout


def test_the_suite_fails_when_gridfs_does_not_import(tmp_path):
    # The real test module, collected as .ci/run does: a broken gridfs may not turn the local
    # tests of test_cli_backends.py into one module skip with exit status 0.
    (tmp_path / "break_gridfs.py").write_text(BREAK_GRIDFS)
    run = run_pytest(ROOT, "-p", "break_gridfs", "--collect-only", "-q", "tests/test_cli_backends.py",
                     required="1", pythonpath=(tmp_path,))
    assert run.returncode != 0, run.stdout
    assert not missing(run.stdout, "ERROR tests/test_cli_backends.py", "'gridfs' package"), run.stdout


def test_depot_modules_are_never_imported_through_importorskip():
    # importorskip turns a broken depot module into a skip; depot's own modules must fail loudly.
    offenders = [
        "%s:%d" % (path.name, number)
        for path in sorted((ROOT / "tests").glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"importorskip\(\s*['\"]depot\b", line)
    ]
    assert offenders == []

