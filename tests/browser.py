"""Pytest plugin: a headless Chromium driven by Playwright, for the browser tests.

Debian's ``chromium`` package, not a browser downloaded by ``playwright
install``: Playwright (``pip install playwright``, in the testing extra) is
pointed at the system executable.  ``.ci/run`` installs the package when it
is missing.

Module fixture ``chromium_browser`` -> ``playwright.sync_api.Browser``;
function fixture ``browser_page`` -> a fresh ``Page`` in its own context
(no cookies or cache shared between tests), closed after the test.

A missing browser or Playwright skips the test saying what to install; with
``DEPOT_TEST_REQUIRE_SERVERS=1`` (CI) that is a failure, as for the servers.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from typing import Any, Iterator

import pytest

from tests.servers import unavailable

#: Where Debian's package puts the browser; ``DEPOT_TEST_CHROMIUM`` overrides it.
CHROMIUM_ENV = "DEPOT_TEST_CHROMIUM"
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")

# Headless, no sandbox (CI runs as root in a container), no GPU, and nothing
# that reaches out to the network on its own (updates, sync, QUIC probes).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_executable() -> str | None:
    """The system Chromium to drive, or ``None`` when none is installed."""
    explicit = os.environ.get(CHROMIUM_ENV)
    if explicit:
        return explicit
    for path in CHROMIUM_PATHS:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Any]:
    """A headless system Chromium for the tests of one module, closed after them.

    Not for the session: Playwright's synchronous API keeps its asyncio loop
    marked as running in this thread while it is open, and every async test
    of a later module (asyncio.run, anyio, pytest's async fixtures) would
    then fail with "another loop is running".
    """
    executable = chromium_executable()
    if executable is None:
        unavailable("Chromium not installed: apt-get install chromium (Debian's package; "
                    "or set %s to a Chromium executable)" % CHROMIUM_ENV)
    if importlib.util.find_spec("playwright") is None:
        unavailable("playwright not installed: pip install -e '.[testing]' (package playwright)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(chromium_browser: Any) -> Iterator[Any]:
    """A page in a fresh browser context; JavaScript errors fail the test."""
    context = chromium_browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(60_000)
    try:
        yield page
    finally:
        context.close()
    assert not errors, errors
