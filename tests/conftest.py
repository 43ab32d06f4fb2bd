"""Test configuration: the real-server fixtures live in tests/servers.py."""
import pytest

from depot.manager import DepotManager

# skip_policy: with DEPOT_TEST_REQUIRE_SERVERS=1 every skip fails the run.
pytest_plugins = ["tests.skip_policy", "tests.servers", "tests.browser"]


@pytest.fixture(autouse=True)
def fresh_depot_manager():
    """Every test starts and ends with an empty DepotManager: no storage,
    default or middleware leaks from one test into the next."""
    DepotManager._clear()
    yield
    DepotManager._clear()


@pytest.fixture
def memory_depots():
    """A DepotManager whose default storage is an empty MemoryFileStorage (reset by fresh_depot_manager)."""
    DepotManager.configure("default", {"depot.backend": "memory"})


@pytest.fixture
def no_ambient_settings(monkeypatch, tmp_path):
    """Neither the developer's $DEPOT_CONFIG nor a depot.toml in the cwd may reach the CLI."""
    monkeypatch.delenv("DEPOT_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def run_cli(capsys):
    """Run the ``depot`` command in-process; returns (exit status, stdout, stderr)."""
    from depot.cli import main

    def run(*argv):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run
