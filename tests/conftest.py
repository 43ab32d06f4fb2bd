"""Test configuration: the real-server fixtures live in tests/servers.py."""
import pytest

from depot.manager import DepotManager

pytest_plugins = ["tests.servers"]


@pytest.fixture
def memory_depots():
    """A clean DepotManager whose default storage is an empty MemoryFileStorage."""
    DepotManager._clear()
    DepotManager.configure("default", {"depot.backend": "memory"})
    yield
    DepotManager._clear()


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
