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
