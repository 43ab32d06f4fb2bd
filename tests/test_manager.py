import threading

import pytest

from depot import manager
from depot.io.local import LocalFileStorage
from depot.io.memory import MemoryFileStorage
from depot.manager import BackendNotFoundError, DepotManager, DepotNotFoundError

from ._blocked import run_without


def test_module_aliases():
    assert manager.get_depot == DepotManager.get
    assert manager.get_file == DepotManager.get_file
    assert manager.configure == DepotManager.configure
    assert manager.set_default == DepotManager.set_default


def test_first_configured_is_default(tmp_path):
    first = DepotManager.configure("first", {"depot.storage_path": str(tmp_path)})
    DepotManager.configure("second", {"depot.backend": "depot.io.memory.MemoryFileStorage"})
    assert isinstance(first, LocalFileStorage)
    assert DepotManager.get_default() == "first"
    assert DepotManager.get() is first
    assert isinstance(DepotManager.get("second"), MemoryFileStorage)


def test_short_backend_names():
    assert isinstance(DepotManager.configure("m", {"depot.backend": "memory"}), MemoryFileStorage)


def test_configure_twice():
    DepotManager.configure("x", {"depot.backend": "memory"})
    with pytest.raises(RuntimeError, match="Depot x has already been configured"):
        DepotManager.configure("x", {"depot.backend": "memory"})


def test_failed_configure_leaves_nothing():
    with pytest.raises(TypeError):
        DepotManager.configure("broken", {})  # local storage needs storage_path
    with pytest.raises(RuntimeError, match="No depots have been configured!"):
        DepotManager.get_default()
    assert DepotManager.get("broken") is None


def test_custom_prefix(tmp_path):
    storage = DepotManager.configure(
        "p", {"app.files.backend": "depot.io.local.LocalFileStorage", "app.files.storage_path": str(tmp_path),
              "depot.other": "ignored"}, prefix="app.files."
    )
    assert storage.storage_path == str(tmp_path)


def test_from_config_does_not_register():
    storage = DepotManager.from_config({"depot.backend": "memory"})
    assert isinstance(storage, MemoryFileStorage)
    assert DepotManager._depots == {}
    assert DepotManager.from_config({"depot.backend": "memory"}) is not storage


def test_unknown_backend_messages():
    with pytest.raises(ValueError, match="Unknown storage backend"):
        DepotManager.configure("u", {"depot.backend": "nosuch"})
    with pytest.raises(ImportError):
        DepotManager.configure("u", {"depot.backend": "nosuch.module.Storage"})
    with pytest.raises(AttributeError, match="has no storage class"):  # what filedepot's getattr raised
        DepotManager.configure("u", {"depot.backend": "depot.io.memory.Nope"})
    with pytest.raises(BackendNotFoundError, match="Module depot.io.memory has no storage class Nope"):
        DepotManager.from_config({"depot.backend": "depot.io.memory.Nope"})
    assert DepotManager._depots == {} and DepotManager._default_depot is None


def test_from_config_accepts_what_filedepot_accepted(tmp_path):
    """Entry points take every argument form filedepot 0.12 took (SPEC section 4)."""
    # A None config is an empty one: local storage, which then needs storage_path.
    with pytest.raises(TypeError):
        DepotManager.from_config(None)
    # Any dotted class path (not only depot's backends), options passed unchanged.
    storage = DepotManager.from_config(
        {"depot.backend": "depot.io.memory.MemoryFileStorage", "depot.anything": "kept", "other.x": 1}
    )
    assert isinstance(storage, MemoryFileStorage)
    assert isinstance(DepotManager._new("depot.io.memory.MemoryFileStorage", ignored=True), MemoryFileStorage)
    # Mappings other than dict, positional prefix.
    local = DepotManager.configure("m", _ReadOnly({"x.storage_path": str(tmp_path)}), "x.")
    assert isinstance(local, LocalFileStorage) and DepotManager.get_default() == "m"
    # make_middleware with app None (the tests of filedepot do this), options by keyword.
    mw = DepotManager.make_middleware(None, mountpoint="/files", cache_max_age=10, replace_wsgi_filewrapper=True)
    assert DepotManager.get_middleware() is mw and DepotManager.url_for("m/x") == "/files/m/x"
    # An alias may be re-pointed; a name may be configured after being used as an alias.
    DepotManager.configure("n", {"depot.backend": "memory"})
    DepotManager.alias("cur", "m")
    DepotManager.alias("cur", "n")
    assert DepotManager.resolve_alias("cur") == "n"
    assert DepotManager.resolve_alias(None) is None


class _ReadOnly:
    """A mapping that is not a dict (e.g. a settings object)."""

    def __init__(self, data):
        self._data = data

    def get(self, key, default=None):
        return self._data.get(key, default)

    def items(self):
        return self._data.items()

    def __bool__(self):
        return bool(self._data)


def test_get_unknown_is_none():
    DepotManager.configure("x", {"depot.backend": "memory"})
    assert DepotManager.get("unknown") is None


def test_get_without_depots_is_none():
    """filedepot's get() gave None, not an error, when nothing is configured."""
    assert DepotManager.get() is None
    assert manager.get_depot() is None
    assert DepotManager.get(None) is None
    with pytest.raises(RuntimeError, match="No depots have been configured!"):
        DepotManager.get_default()


def test_get_without_name_is_the_default():
    storage = DepotManager.configure("a", {"depot.backend": "memory"})
    assert DepotManager.get() is storage and manager.get_depot() is storage


def test_set_default():
    DepotManager.configure("a", {"depot.backend": "memory"})
    DepotManager.configure("b", {"depot.backend": "memory"})
    DepotManager.set_default("b")
    assert DepotManager.get_default() == "b"
    with pytest.raises(RuntimeError, match="nope depot has not been configured"):
        DepotManager.set_default("nope")


def test_set_default_accepts_alias():
    DepotManager.configure("a", {"depot.backend": "memory"})
    DepotManager.configure("b", {"depot.backend": "memory"})
    DepotManager.alias("current", "b")
    DepotManager.set_default("current")
    assert DepotManager.get_default() == "b"


def test_aliases():
    a = DepotManager.configure("a", {"depot.backend": "memory"})
    b = DepotManager.configure("b", {"depot.backend": "memory"})
    DepotManager.alias("live", "a")
    assert DepotManager.get("live") is a
    assert DepotManager.resolve_alias("live") == "a"
    DepotManager.alias("live", "b")
    assert DepotManager.get("live") is b
    with pytest.raises(ValueError, match="You can only alias an existing storage, live not found"):
        DepotManager.alias("other", "live")
    with pytest.raises(ValueError, match="Cannot use an existing storage name as an alias"):
        DepotManager.alias("a", "b")
    assert DepotManager.resolve_alias("unknown") is None


def test_get_file():
    storage = DepotManager.configure("files", {"depot.backend": "memory"})
    file_id = storage.create(b"content")
    assert DepotManager.get_file("files/%s" % file_id).read() == b"content"
    with pytest.raises(IOError):
        DepotManager.get_file("files/%s" % "00000000-0000-0000-0000-000000000000")


def test_get_file_unknown_depot():
    with pytest.raises(DepotNotFoundError, match="nodepot"):
        DepotManager.get_file("nodepot/123")
    with pytest.raises(AttributeError):  # what filedepot raised: existing handlers keep working
        DepotManager.get_file("nodepot/123")


def test_middleware_registry():
    with pytest.raises(RuntimeError, match="No WSGI middleware currently registered"):
        DepotManager.get_middleware()

    class Mw:
        def url_for(self, path):
            return "/m/" + path

    mw = Mw()
    DepotManager.set_middleware(mw)
    assert DepotManager.get_middleware() is mw
    assert DepotManager.url_for("a/b") == "/m/a/b"
    with pytest.raises(RuntimeError, match="There is already a WSGI middleware registered"):
        DepotManager.set_middleware(Mw())


def test_clear():
    DepotManager.configure("a", {"depot.backend": "memory"})
    DepotManager.alias("b", "a")
    DepotManager._clear()
    assert (DepotManager._default_depot, DepotManager._depots, DepotManager._aliases,
            DepotManager._middleware) == (None, {}, {}, None)


def test_concurrent_configure_is_safe():
    errors = []

    def worker(i):
        try:
            DepotManager.configure("d%d" % (i % 5), {"depot.backend": "memory"})
        except RuntimeError:
            errors.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(DepotManager._depots) == 5
    assert len(errors) == 45


def test_core_imports_without_optional_libraries():
    """`import depot` and the core modules need none of the optional libraries."""
    code = (
        "import depot, depot.utils, depot.manager, depot.io.utils, depot.io.local, depot.io.memory\n"
        "from depot.manager import DepotManager\n"
        "try:\n"
        "    DepotManager.configure('s3', {'depot.backend': 'depot.io.boto3.S3Storage'})\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    optional = ["boto3", "botocore", "boto", "pymongo", "gridfs", "bson", "google", "sqlalchemy", "ming", "PIL", "webob"]
    out = run_without(optional, code, check=True).stdout
    assert "pip install 'depot[s3]'" in out


def test_callers_report_missing_storages_clearly():
    """get() returning None must not turn into a bare 'NoneType has no attribute' anywhere in depot."""
    from webtest import TestApp

    from depot.fields.upload import UploadedFile

    with pytest.raises(RuntimeError, match="No depots have been configured!"):
        UploadedFile(b"content")  # no default storage to upload to
    app = TestApp(DepotManager.make_middleware(lambda environ, start_response: []))
    app.get("/depot/default/00000000-0000-0000-0000-000000000000", status=404)
    DepotManager.configure("gone", {"depot.backend": "memory"})
    value = UploadedFile(b"content")
    DepotManager._clear()  # e.g. a process that reads rows before configuring its storages
    assert value.depot is None  # as in filedepot
    with pytest.raises(DepotNotFoundError, match="No depot named 'gone' is configured"):
        value.file
    with pytest.raises(AttributeError):  # filedepot's None.get(): existing handlers keep working
        value.file


# -- tests/conftest.py's autouse fixture resets the manager around every test -----------
# (These two run in file order: the second fails if the first one's settings leak into it.)

def test_a_test_may_leave_storages_and_a_middleware_behind():
    DepotManager.configure("left-behind", {"depot.backend": "memory"})
    DepotManager.alias("also-left", "left-behind")
    DepotManager.make_middleware(None)


def test_the_next_test_starts_with_an_empty_manager():
    assert (DepotManager._default_depot, DepotManager._depots, DepotManager._aliases,
            DepotManager._middleware) == (None, {}, {}, None)
