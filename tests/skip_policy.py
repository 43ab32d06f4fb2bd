"""Pytest plugin: with ``DEPOT_TEST_REQUIRE_SERVERS=1`` no test may be skipped.

CI sets the variable so that a missing server, library or a broken import
cannot pass as a skip and an exit status of 0.  Every skip -- a test's,
a fixture's, a ``skipif`` mark's, and a whole module skipped at collection
(``pytest.importorskip`` at module level) -- is turned into a failure right
where it happens (so ``-x`` stops there), and the end of the run lists them
with their reasons.  Without the variable skips stay skips.

Under pytest-xdist the turning happens in the worker that ran the test; the
report carries the reason (attribute ``depot_turned_skip``) to the controller,
which lists them at the end.

Loaded by tests/conftest.py; tests/test_skip_policy.py loads it with ``-p``
into pytest runs of generated test files.
"""

from __future__ import annotations

import os

import pytest

from depot.utils import asbool

REQUIRE_SERVERS_ENV = "DEPOT_TEST_REQUIRE_SERVERS"

TURNED_ATTRIBUTE = "depot_turned_skip"


def skips_are_failures() -> bool:
    return asbool(os.environ.get(REQUIRE_SERVERS_ENV) or "0")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
        return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason
    return str(longrepr)


def _turn_into_failure(report) -> None:
    reason = _skip_reason(report)
    report.outcome = "failed"
    report.longrepr = f"skipped, but {REQUIRE_SERVERS_ENV} is set so skips fail the run: {reason}"
    # A plain attribute: xdist sends it along with the report to the controller.
    setattr(report, TURNED_ATTRIBUTE, reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # A hook wrapper registered after pytest's skipping plugin runs outside
    # it, so the report seen here is final (xfail already decided).
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and skips_are_failures():
        _turn_into_failure(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and skips_are_failures():
        _turn_into_failure(report)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    turned = [(report.nodeid or "<session>", getattr(report, TURNED_ATTRIBUTE))
              for kind in ("failed", "error") for report in terminalreporter.stats.get(kind, ())
              if getattr(report, TURNED_ATTRIBUTE, None) is not None]
    if not turned:
        return
    terminalreporter.section(f"skips turned into failures ({REQUIRE_SERVERS_ENV} is set)", red=True)
    for nodeid, reason in turned:
        terminalreporter.line(f"{nodeid}: {reason}")
