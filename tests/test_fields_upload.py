"""DepotFileInfo's freeze, UploadedFile's serialised form and properties, and upload facts."""
from __future__ import annotations

import copy
import io
import json
import pickle
from unittest import mock

import pytest

from depot.fields.interfaces import DepotFileInfo, FileFilter
from depot.fields.upload import UploadedFile
from depot.io.interfaces import FileStorage, StoredFile
from depot.io.memory import MemoryFileStorage, MemoryStoredFile
from depot.io.utils import FileIntent
from depot.manager import DepotManager


class CountingStorage(MemoryFileStorage):
    gets = 0

    def get(self, file_or_id):
        type(self).gets += 1
        return super().get(file_or_id)


class PublicStoredFile(MemoryStoredFile):
    @property
    def public_url(self):
        return "https://cdn.example/%s" % self.file_id


class AuditedStorage(MemoryFileStorage):
    created = []

    def create(self, content, filename=None, content_type=None):
        file_id = super().create(content, filename, content_type)
        type(self).created.append(file_id)
        return file_id


class SignedStoredFile(MemoryStoredFile):
    public_url_signed = True

    @property
    def public_url(self):
        return "https://bucket.example/%s?X-Signature=abc&Expires=60" % self.file_id


class SignedUrlStorage(MemoryFileStorage):
    def get(self, file_or_id):
        plain = super().get(file_or_id)
        return SignedStoredFile(self.files, plain.file_id, self.files[plain.file_id])


class GenericStorage(FileStorage):
    """A third-party backend written against filedepot's six methods only."""

    gets = 0

    def __init__(self):
        self.inner = MemoryFileStorage()

    def get(self, file_or_id):
        type(self).gets += 1
        stored = self.inner.get(file_or_id)
        stored.last_modified = stored.last_modified.replace(year=2001, month=1, day=1, hour=0, minute=0, second=0)
        return stored

    def create(self, content, filename=None, content_type=None):
        return self.inner.create(content, filename, content_type)

    def replace(self, file_or_id, content, filename=None, content_type=None):
        return self.inner.replace(file_or_id, content, filename, content_type)

    def delete(self, file_or_id):
        self.inner.delete(file_or_id)

    def exists(self, file_or_id):
        return self.inner.exists(file_or_id)

    def list(self):
        return self.inner.list()


class PublicStorage(MemoryFileStorage):
    def get(self, file_or_id):
        plain = super().get(file_or_id)
        return PublicStoredFile(self.files, plain.file_id, self.files[plain.file_id])


class OwnClockStorage(MemoryFileStorage):
    """Stamps files with a clock of its own, so its facts cannot be predicted."""

    def get(self, file_or_id):
        stored = super().get(file_or_id)
        stored.last_modified = stored.last_modified.replace(year=2001)
        return stored


pytestmark = pytest.mark.usefixtures("memory_depots")


# -- DepotFileInfo ------------------------------------------------------------------


def test_serialised_keys_and_attributes():
    value = UploadedFile(b"data", "default")
    assert set(value) == {
        "depot_name", "files", "file_id", "path", "filename", "content_type", "uploaded_at", "_public_url",
    }
    assert value.path == "default/%s" % value.file_id
    assert value.files == [value.path]
    assert (value.filename, value.content_type) == ("unnamed", "application/octet-stream")
    assert value._public_url is None
    assert value.original_content == b"data"
    assert "original_content" not in value and "_frozen" not in value
    with pytest.raises(AttributeError):
        value.missing


def test_encode_decode_round_trip():
    value = UploadedFile(FileIntent(b"data", "a.txt", "text/plain"))
    text = value.encode()
    assert json.loads(text) == dict(value)
    back = UploadedFile.decode(text)
    assert back == value and back.original_content is None
    assert back.file.read() == b"data"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda v: v.__setitem__("filename", "x"),
        lambda v: setattr(v, "filename", "x"),
        lambda v: v.__delitem__("filename"),
        lambda v: delattr(v, "filename"),
        lambda v: v.update(filename="x"),
        lambda v: v.pop("filename"),
        lambda v: v.pop("nothing", None),
        lambda v: v.popitem(),
        lambda v: v.setdefault("new", 1),
        lambda v: v.clear(),
        lambda v: v.__ior__({"filename": "x"}),
    ],
)
def test_frozen_value_refuses_every_mutation(mutate):
    value = UploadedFile(b"data")
    before = dict(value)
    with pytest.raises(TypeError, match="Already saved files are immutable"):
        mutate(value)
    assert dict(value) == before


def test_thaw_allows_mutation_and_missing_delattr():
    value = UploadedFile(b"data")
    value._thaw()
    value.extra = 1
    value.update(other=2)
    assert value["extra"] == 1 and value.pop("other") == 2
    with pytest.raises(AttributeError):
        del value.nothing
    value._freeze()
    with pytest.raises(TypeError):
        value.extra = 2


def test_copy_and_pickle_give_frozen_restored_values():
    value = UploadedFile(b"data")
    for clone in (copy.copy(value), copy.deepcopy(value), pickle.loads(pickle.dumps(value))):
        assert clone == value and type(clone) is UploadedFile
        assert clone.original_content is None
        with pytest.raises(TypeError):
            clone["x"] = 1
    assert DepotManager.get().files.__len__() == 1  # nothing was stored again


def test_unknown_storage_and_aliases():
    with pytest.raises(ValueError, match="Storage has not been found in DEPOT"):
        UploadedFile(b"x", "nowhere")
    DepotManager.alias("current", "default")
    assert UploadedFile(b"x", "current").depot_name == "default"


def test_filters_run_only_on_fresh_uploads():
    calls = []

    class Recorder(FileFilter):
        def on_save(self, uploaded_file):
            calls.append(uploaded_file.file_id)
            uploaded_file["seen"] = True

    value = UploadedFile(b"x")
    value._apply_filters([Recorder()])
    assert value.seen and calls == [value.file_id]
    UploadedFile(dict(value))._apply_filters([Recorder()])
    assert len(calls) == 1
    with pytest.raises(TypeError):
        value["again"] = 1


def test_depot_file_info_declares_process_content_abstract():
    assert DepotFileInfo.__abstractmethods__ == frozenset({"process_content"})
    assert isinstance(UploadedFile(b"x"), dict)


# -- UploadedFile properties -------------------------------------------------------------


def test_url_needs_middleware_unless_public():
    value = UploadedFile(b"x")
    with pytest.raises(RuntimeError, match="No WSGI middleware"):
        value.url
    DepotManager.make_middleware(None, mountpoint="/files")
    assert value.url == "/files/" + value.path
    public = UploadedFile(dict(value, _public_url="https://cdn/x"))
    assert public.url == "https://cdn/x"


def test_file_and_depot_properties():
    value = UploadedFile(io.BytesIO(b"content"))
    assert value.depot is DepotManager.get("default")
    first, second = value.file, value.file
    assert first is not second and isinstance(first, StoredFile)
    assert first.read() == b"content"


def test_store_content_records_extra_files():
    value = UploadedFile(b"main")
    value._thaw()
    path, file_id = value.store_content(b"extra", "extra.txt")
    value._freeze()
    assert path == "default/" + file_id and value.files == [value.path, path]
    assert DepotManager.get().get(file_id).content_type == "text/plain"


def test_lazy_url_keys_resolve_through_middleware():
    value = UploadedFile(b"x")
    value._thaw()
    value["thumb_1x1_path"] = "default/abc"
    value["thumb_1x1_url"] = None
    value._freeze()
    DepotManager.make_middleware(None)
    assert value.thumb_1x1_url == "/depot/default/abc"
    assert value["thumb_1x1_url"] == "/depot/default/abc"
    assert json.loads(value.encode())["thumb_1x1_url"] is None
    assert value._public_url is None


# -- upload facts without reading the file back -------------------------------------------


def _configure(name, backend, **options):
    config = {"depot.backend": backend}
    config.update(("depot." + k, v) for k, v in options.items())
    return DepotManager.configure(name, config)


@pytest.mark.parametrize("backend", ["memory", "local"])
def test_facts_match_the_stored_file_without_read_back(backend, tmp_path, monkeypatch):
    _configure("plain", "depot.io.%s.%sFileStorage" % (backend, backend.capitalize()), storage_path=str(tmp_path))
    storage_class = type(DepotManager.get("plain"))
    gets = []
    original_get = storage_class.get
    monkeypatch.setattr(storage_class, "get", lambda self, f: gets.append(f) or original_get(self, f))
    values = [UploadedFile(FileIntent(b"x%d" % i, "f%d.txt" % i, None), "plain") for i in range(5)]
    assert gets == []  # no upload reads its file back
    for value in values:
        stored = DepotManager.get("plain").get(value.file_id)
        # FileIntent(..., None): no guessing, the default type (as filedepot)
        assert value.filename == stored.filename
        assert value.content_type == stored.content_type == "application/octet-stream"
        assert value.uploaded_at == stored.last_modified.strftime("%Y-%m-%d %H:%M:%S")
        assert value._public_url is None


def test_facts_follow_patched_timestamp(tmp_path):
    _configure("local", "depot.io.local.LocalFileStorage", storage_path=str(tmp_path))
    with mock.patch("depot.io.utils.timestamp", return_value="2001-02-03 04:05:06"):
        values = [UploadedFile(b"x", "local") for _ in range(3)]
    for value in values:
        assert value.uploaded_at == "2001-02-03 04:05:06"
        assert DepotManager.get("local").get(value.file_id).last_modified.year == 2001


def test_subclass_redefining_get_is_read_back():
    """Facts of _save() describe the get() beside it, not one a subclass put over it."""
    _configure("count", "tests.test_fields_upload.CountingStorage")
    CountingStorage.gets = 0
    value = UploadedFile(b"x", "count")
    assert CountingStorage.gets == 1
    assert value.file.read() == b"x"


def test_subclass_redefining_create_sees_every_upload():
    _configure("audited", "tests.test_fields_upload.AuditedStorage")
    AuditedStorage.created = []
    value = UploadedFile(FileIntent(b"x", "a.txt", None), "audited")
    assert AuditedStorage.created == [value.file_id]
    assert (value.filename, value.content_type) == ("a.txt", "application/octet-stream")


def test_storage_without_facts_is_read_back():
    _configure("generic", "tests.test_fields_upload.GenericStorage")
    value = UploadedFile(FileIntent(b"data", "a.csv", None), "generic")
    assert GenericStorage.gets == 1
    assert (value.filename, value.content_type, value.uploaded_at) == (
        "a.csv", "application/octet-stream", "2001-01-01 00:00:00")


def test_signed_public_urls_are_not_recorded():
    _configure("signed", "tests.test_fields_upload.SignedUrlStorage")
    value = UploadedFile(b"x", "signed")
    assert value._public_url is None
    DepotManager.make_middleware(None)
    assert value.url == "/depot/signed/%s" % value.file_id


def test_storage_with_public_urls_is_always_read_back():
    _configure("public", "tests.test_fields_upload.PublicStorage")
    for _ in range(3):
        value = UploadedFile(b"x", "public")
        assert value._public_url == "https://cdn.example/%s" % value.file_id
        assert value.url == value._public_url


def test_storage_with_own_clock_is_always_read_back():
    _configure("clock", "tests.test_fields_upload.OwnClockStorage")
    for _ in range(3):
        assert UploadedFile(b"x", "clock").uploaded_at.startswith("2001-")


def test_fieldstorage_like_and_file_inputs(tmp_path):
    class Upload:
        filename = "photo.png"
        type = "image/png"

        def __init__(self):
            self.file = io.BytesIO(b"png bytes")

    value = UploadedFile(Upload())
    assert (value.filename, value.content_type) == ("photo.png", "image/png")
    path = tmp_path / "report.csv"
    path.write_bytes(b"a,b")
    with open(path, "rb") as f:
        value = UploadedFile(f)
    assert (value.filename, value.content_type) == ("report.csv", "text/csv")
    assert value.file.read() == b"a,b"
    with pytest.raises(TypeError):
        UploadedFile("text is not bytes")




# -- store_content is the hook every file goes through -------------------------------------


class Renaming(UploadedFile):
    def store_content(self, content, filename=None, content_type=None):
        content, filename, content_type = FileStorage.fileinfo(content, filename, content_type)
        return super().store_content(content, "renamed-" + filename, content_type)


class PerSizeStorage(UploadedFile):
    """Picks the storage by size, the way filedepot users did: by naming it before storing."""

    def store_content(self, content, filename=None, content_type=None):
        if len(content) > 4:
            self["depot_name"] = "big"
        return super().store_content(content, filename, content_type)


class StoresByItself(UploadedFile):
    """Stores with the storage API directly, recording the path as filedepot documented."""

    def store_content(self, content, filename=None, content_type=None):
        file_id = DepotManager.get("big").create(content, "own.bin", "application/x-own")
        path = "big/" + file_id
        self["files"].append(path)
        return path, file_id


def test_store_content_override_renames_the_main_file():
    value = Renaming(FileIntent(b"data", "a.txt", "text/plain"))
    stored = value.file
    assert stored.filename == value.filename == "renamed-a.txt"
    assert stored.read() == b"data"


def test_store_content_override_picks_the_storage():
    _configure("big", "memory")
    small, big = PerSizeStorage(b"tiny"), PerSizeStorage(b"larger content")
    assert small.path.startswith("default/") and big.path.startswith("big/")
    assert big.depot_name == "big" and big.files == [big.path]
    assert big.file.read() == b"larger content"
    assert DepotManager.get("default").list() == [small.file_id]


def test_store_content_override_storing_by_itself_is_read_back():
    _configure("big", "memory")
    value = StoresByItself(b"data")
    assert value.path == "big/" + value.file_id and value.files == [value.path]
    assert (value.filename, value.content_type) == ("own.bin", "application/x-own")
    assert value.uploaded_at == DepotManager.get("big").get(value.file_id).last_modified.strftime("%Y-%m-%d %H:%M:%S")
    assert DepotManager.get("default").list() == []


def test_store_content_override_returning_an_unknown_storage_fails_and_keeps_nothing():
    class Broken(UploadedFile):
        def store_content(self, content, filename=None, content_type=None):
            path, file_id = super().store_content(content, filename, content_type)
            return "nowhere/" + file_id, file_id

    with pytest.raises(ValueError, match="no storage named 'nowhere'"):
        Broken(b"data")
    assert DepotManager.get().list() == []
