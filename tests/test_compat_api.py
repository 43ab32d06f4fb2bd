"""filedepot 0.12's public API, checked name by name against the SPEC (sections 1-8).

Every module of SPEC section 1 is imported and its names, classes, bases and
signatures are compared with a table written from the SPEC.  Our signatures
may add trailing optional or keyword-only parameters; every call 0.12 code
could make must still be accepted, so the 0.12 parameters must come first,
with the same names, kinds and defaults.
"""
from __future__ import annotations

import abc
import contextlib
import datetime
import importlib
import inspect
import io
from unittest import mock

import pytest

from depot.io.interfaces import FileStorage, StoredFile
from depot.io.local import LocalFileStorage
from depot.io.memory import MemoryFileStorage
from depot.io.utils import FileIntent
from depot.manager import DepotManager

from ._blocked import run_without

# -- the table ----------------------------------------------------------------

#: SPEC section 1: every module 0.12 shipped.
MODULES = [
    "depot", "depot.utils", "depot.manager", "depot.middleware", "depot.validators",
    "depot.io", "depot.io.interfaces", "depot.io.utils", "depot.io.memory", "depot.io.local",
    "depot.io.gridfs", "depot.io.boto3", "depot.io.awss3", "depot.io.gcs",
    "depot.fields", "depot.fields.interfaces", "depot.fields.upload", "depot.fields.sqlalchemy",
    "depot.fields.ming", "depot.fields.filters", "depot.fields.filters.thumbnails",
    "depot.fields.specialized", "depot.fields.specialized.image",
]

# (module, qualified name, kind, 0.12 parameters without self/cls).  Kinds:
# function, class (the parameters are __init__'s), method, classmethod,
# staticmethod, property, value.  Parameters are written as a lambda's, and
# their defaults are evaluated in _DEFAULTS.
API = [
    ("depot.utils", "utcnow_naive", "function", ""),
    ("depot.utils", "utcfromtimestamp_naive", "function", "ts"),
    ("depot.utils", "make_content_disposition", "function", "disposition, fname"),

    ("depot.manager", "DepotManager", "class", ""),
    ("depot.manager", "DepotManager.configure", "classmethod", "name, config, prefix='depot.'"),
    ("depot.manager", "DepotManager.from_config", "classmethod", "config, prefix='depot.'"),
    ("depot.manager", "DepotManager._new", "classmethod", "backend, **options"),
    ("depot.manager", "DepotManager.get", "classmethod", "name=None"),
    ("depot.manager", "DepotManager.get_default", "classmethod", ""),
    ("depot.manager", "DepotManager.set_default", "classmethod", "name"),
    ("depot.manager", "DepotManager.set_middleware", "classmethod", "mw"),
    ("depot.manager", "DepotManager.get_middleware", "classmethod", ""),
    ("depot.manager", "DepotManager.make_middleware", "classmethod", "app, **options"),
    ("depot.manager", "DepotManager.url_for", "classmethod", "path"),
    ("depot.manager", "DepotManager.get_file", "classmethod", "path"),
    ("depot.manager", "DepotManager.alias", "classmethod", "alias, name"),
    ("depot.manager", "DepotManager.resolve_alias", "classmethod", "name"),
    ("depot.manager", "DepotManager._clear", "classmethod", ""),

    ("depot.middleware", "DepotMiddleware", "class",
     "app, mountpoint='/depot', cache_max_age=3600*24*7, replace_wsgi_filewrapper=False"),
    ("depot.middleware", "DepotMiddleware.url_for", "method", "path"),
    ("depot.middleware", "DepotMiddleware.__call__", "method", "environ, start_response"),
    ("depot.middleware", "FileServeApp", "class", "storedfile, cache_max_age, replace_wsgi_filewrapper=False"),
    ("depot.middleware", "FileServeApp.generate_etag", "method", ""),
    ("depot.middleware", "FileServeApp.parse_date", "method", "value"),
    ("depot.middleware", "FileServeApp.make_date", "classmethod", "d"),
    ("depot.middleware", "FileServeApp.has_been_modified", "method", "environ, etag, last_modified"),
    ("depot.middleware", "FileServeApp.__call__", "method", "environ, start_response"),
    ("depot.middleware", "_FileIter", "class", "file, block_size"),
    ("depot.middleware", "_FileIter.close", "method", ""),

    ("depot.io.interfaces", "StoredFile", "class",
     "file_id, filename=None, content_type=None, last_modified=None, content_length=None"),
    ("depot.io.interfaces", "StoredFile.readable", "method", ""),
    ("depot.io.interfaces", "StoredFile.writable", "method", ""),
    ("depot.io.interfaces", "StoredFile.seekable", "method", ""),
    ("depot.io.interfaces", "StoredFile.read", "method", "n=-1"),
    ("depot.io.interfaces", "StoredFile.close", "method", "*args, **kwargs"),
    ("depot.io.interfaces", "StoredFile.closed", "property", None),
    ("depot.io.interfaces", "StoredFile.name", "property", None),
    ("depot.io.interfaces", "StoredFile.public_url", "property", None),
    ("depot.io.interfaces", "FileStorage", "class", ""),
    ("depot.io.interfaces", "FileStorage.fileid", "staticmethod", "file_or_id"),
    ("depot.io.interfaces", "FileStorage.fileinfo", "staticmethod",
     "fileobj, filename=None, content_type=None, existing=None"),
    ("depot.io.interfaces", "FileStorage.get", "method", "file_or_id"),
    ("depot.io.interfaces", "FileStorage.create", "method", "content, filename=None, content_type=None"),
    ("depot.io.interfaces", "FileStorage.replace", "method", "file_or_id, content, filename=None, content_type=None"),
    ("depot.io.interfaces", "FileStorage.delete", "method", "file_or_id"),
    ("depot.io.interfaces", "FileStorage.exists", "method", "file_or_id"),
    ("depot.io.interfaces", "FileStorage.list", "method", ""),

    ("depot.io.utils", "INMEMORY_FILESIZE", "value", 1024 * 1024),
    ("depot.io.utils", "timestamp", "function", ""),
    ("depot.io.utils", "file_from_content", "function", "content"),
    ("depot.io.utils", "_is_fieldstorage_like", "function", "obj"),
    ("depot.io.utils", "FileIntent", "class", "fileobj, filename, content_type"),
    ("depot.io.utils", "FileIntent.fileinfo", "property", None),
    ("depot.io.utils", "_FileInfo", "class", "fileobj, filename=None, content_type=None"),
    ("depot.io.utils", "_FileInfo.DEFAULT_CONTENT_TYPE", "value", "application/octet-stream"),
    ("depot.io.utils", "_FileInfo.DEFAULT_NAME", "value", "unnamed"),
    ("depot.io.utils", "_FileInfo.get_info", "method", "existing=None"),

    ("depot.io.memory", "MemoryFileStorage", "class", "**kwargs"),
    ("depot.io.memory", "MemoryStoredFile", "class", None),
    ("depot.io.memory", "_check_file_id", "function", None),
    ("depot.io.local", "LocalFileStorage", "class", "storage_path"),
    ("depot.io.local", "LocalStoredFile", "class", None),
    ("depot.io.local", "_ClosedLocalFile", "class", None),
    ("depot.io.local", "_check_file_id", "function", None),
    ("depot.io.local", "_metadata_path", "function", None),
    ("depot.io.local", "_file_path", "function", None),
    ("depot.io.gridfs", "GridFSStorage", "class", "mongouri, collection='filedepot'"),
    ("depot.io.gridfs", "GridFSStoredFile", "class", None),
    ("depot.io.gridfs", "_check_file_id", "function", None),

    ("depot.io.boto3", "CANNED_ACL_PUBLIC_READ", "value", "public-read"),
    ("depot.io.boto3", "CANNED_ACL_PRIVATE", "value", "private"),
    ("depot.io.boto3", "S3Storage", "class",
     "access_key_id, secret_access_key, bucket=None, region_name=None, policy=None, storage_class=None, "
     "endpoint_url=None, prefix=''"),
    ("depot.io.boto3", "S3StoredFile", "class", None),
    ("depot.io.boto3", "BucketDriver", "class", None),
    ("depot.io.boto3", "BucketDriver.get_key", "method", None),
    ("depot.io.boto3", "BucketDriver.new_key", "method", None),
    ("depot.io.boto3", "BucketDriver.list_key_names", "method", ""),
    ("depot.io.boto3", "_check_file_id", "function", None),
    ("depot.io.awss3", "CANNED_ACL_PUBLIC_READ", "value", "public-read"),
    ("depot.io.awss3", "CANNED_ACL_PRIVATE", "value", "private"),
    ("depot.io.awss3", "S3Storage", "class",
     "access_key_id, secret_access_key, bucket=None, host=None, policy=None, encrypt_key=False, prefix=''"),
    ("depot.io.awss3", "S3StoredFile", "class", None),
    ("depot.io.awss3", "BucketDriver", "class", None),
    ("depot.io.awss3", "BucketDriver.get_key", "method", None),
    ("depot.io.awss3", "BucketDriver.new_key", "method", None),
    ("depot.io.awss3", "BucketDriver.list_key_names", "method", ""),
    ("depot.io.awss3", "_check_file_id", "function", None),
    ("depot.io.awss3", "_enable_sigv4", "function", None),
    ("depot.io.gcs", "CANNED_ACL_PUBLIC_READ", "value", "public-read"),
    ("depot.io.gcs", "CANNED_ACL_PRIVATE", "value", "private"),
    ("depot.io.gcs", "GCSStorage", "class",
     "project_id=None, credentials=None, bucket=None, policy=None, storage_class=None, prefix=''"),
    ("depot.io.gcs", "GCSStoredFile", "class", None),
    ("depot.io.gcs", "_check_file_id", "function", None),
    ("depot.io.gcs", "GCSStorage.set_bucket_public_iam", "method", "bucket, members=('allUsers',)"),

    ("depot.fields.interfaces", "FileFilter", "class", ""),
    ("depot.fields.interfaces", "FileFilter.on_save", "method", "uploaded_file"),
    ("depot.fields.interfaces", "DepotFileInfo", "class", "content, depot_name=None"),
    ("depot.fields.interfaces", "DepotFileInfo.process_content", "method", "content, filename=None, content_type=None"),
    ("depot.fields.interfaces", "DepotFileInfo._apply_filters", "method", "filters"),
    ("depot.fields.interfaces", "DepotFileInfo._freeze", "method", ""),
    ("depot.fields.interfaces", "DepotFileInfo._thaw", "method", ""),
    ("depot.fields.upload", "UploadedFile", "class", "content, depot_name=None"),
    ("depot.fields.upload", "UploadedFile.process_content", "method", "content, filename=None, content_type=None"),
    ("depot.fields.upload", "UploadedFile.store_content", "method", "content, filename=None, content_type=None"),
    ("depot.fields.upload", "UploadedFile.encode", "method", ""),
    ("depot.fields.upload", "UploadedFile.decode", "classmethod", "data"),
    ("depot.fields.upload", "UploadedFile.url", "property", None),
    ("depot.fields.upload", "UploadedFile.depot", "property", None),
    ("depot.fields.upload", "UploadedFile.file", "property", None),
    ("depot.fields.sqlalchemy", "UploadedFileField", "class",
     "filters=tuple(), upload_type=UploadedFile, upload_storage=None, *args, **kw"),
    ("depot.fields.sqlalchemy", "UploadedFileField.load_dialect_impl", "method", "dialect"),
    ("depot.fields.sqlalchemy", "UploadedFileField.process_bind_param", "method", "value, dialect"),
    ("depot.fields.sqlalchemy", "UploadedFileField.process_result_value", "method", "value, dialect"),
    ("depot.fields.sqlalchemy", "_SQLAMutationTracker", "class", None),
    ("depot.fields.sqlalchemy", "_SQLAMutationTracker.setup", "classmethod", ""),
    ("depot.fields.ming", "_UploadedFileSchema", "class", None),
    ("depot.fields.ming", "UploadedFileProperty", "class",
     "filters=tuple(), upload_type=UploadedFile, upload_storage=None"),
    ("depot.fields.ming", "DepotExtension", "class", "session"),
    ("depot.fields.ming", "DepotExtension.get_depot_history", "staticmethod", "instance"),
    ("depot.fields.ming", "DepotExtension.before_flush", "method", "obj=None"),
    ("depot.fields.ming", "DepotExtension.after_flush", "method", "obj=None"),
    ("depot.fields.ming", "_DepotHistory", "class", ""),
    ("depot.fields.ming", "_DepotHistory.add", "method", "obj"),
    ("depot.fields.ming", "_DepotHistory.delete", "method", "obj"),
    ("depot.fields.ming", "_DepotHistory.swap", "method", None),
    ("depot.fields.ming", "_DepotHistory.clear", "method", ""),
    ("depot.fields.filters.thumbnails", "WithThumbnailFilter", "class", "size=(128,128), format='PNG'"),
    ("depot.fields.filters.thumbnails", "WithThumbnailFilter.on_save", "method", "uploaded_file"),
    ("depot.fields.specialized.image", "UploadedImageWithThumb", "class", "content, depot_name=None"),
    ("depot.fields.specialized.image", "UploadedImageWithThumb.max_size", "value", 1024),
    ("depot.fields.specialized.image", "UploadedImageWithThumb.thumbnail_format", "value", "PNG"),
    ("depot.fields.specialized.image", "UploadedImageWithThumb.thumbnail_size", "value", (128, 128)),
    ("depot.fields.specialized.image", "UploadedImageWithThumb.process_content", "method",
     "content, filename=None, content_type=None"),
    ("depot.fields.specialized.image", "UploadedImageWithThumb.thumb_file", "property", None),
    ("depot.fields.specialized.image", "UploadedImageWithThumb.thumb_url", "property", None),
]

#: Classes and their 0.12 bases / metaclass (SPEC sections 1, 3, 5).
BASES = [
    ("depot.io.interfaces", "StoredFile", "io.IOBase"),
    ("depot.io.memory", "MemoryStoredFile", "depot.io.interfaces.StoredFile"),
    ("depot.io.memory", "MemoryFileStorage", "depot.io.interfaces.FileStorage"),
    ("depot.io.local", "LocalStoredFile", "depot.io.interfaces.StoredFile"),
    ("depot.io.local", "_ClosedLocalFile", "io.BytesIO"),
    ("depot.io.local", "LocalFileStorage", "depot.io.interfaces.FileStorage"),
    ("depot.io.gridfs", "GridFSStoredFile", "depot.io.interfaces.StoredFile"),
    ("depot.io.gridfs", "GridFSStorage", "depot.io.interfaces.FileStorage"),
    ("depot.io.boto3", "S3StoredFile", "depot.io.interfaces.StoredFile"),
    ("depot.io.boto3", "S3Storage", "depot.io.interfaces.FileStorage"),
    ("depot.io.awss3", "S3StoredFile", "depot.io.interfaces.StoredFile"),
    ("depot.io.awss3", "S3Storage", "depot.io.interfaces.FileStorage"),
    ("depot.io.gcs", "GCSStoredFile", "depot.io.interfaces.StoredFile"),
    ("depot.io.gcs", "GCSStorage", "depot.io.interfaces.FileStorage"),
    ("depot.fields.interfaces", "DepotFileInfo", "builtins.dict"),
    ("depot.fields.upload", "UploadedFile", "depot.fields.interfaces.DepotFileInfo"),
    ("depot.fields.sqlalchemy", "UploadedFileField", "sqlalchemy.types.TypeDecorator"),
    ("depot.fields.ming", "_UploadedFileSchema", "ming.schema.Anything"),
    ("depot.fields.ming", "UploadedFileProperty", "ming.odm.FieldProperty"),
    ("depot.fields.ming", "DepotExtension", "ming.odm.odmsession.SessionExtension"),
    ("depot.fields.filters.thumbnails", "WithThumbnailFilter", "depot.fields.interfaces.FileFilter"),
    ("depot.fields.specialized.image", "UploadedImageWithThumb", "depot.fields.upload.UploadedFile"),
    ("depot.validators", "TW2FileIntentValidator", "tw2.core.Validator"),
]

#: Abstract methods 0.12 declared: a subclass implementing just these must work.
ABSTRACT = [
    ("depot.io.interfaces", "StoredFile", {"read", "close", "closed"}),
    ("depot.io.interfaces", "FileStorage", {"get", "create", "replace", "delete", "exists", "list"}),
    ("depot.fields.interfaces", "FileFilter", {"on_save"}),
    ("depot.fields.interfaces", "DepotFileInfo", {"process_content"}),
]

#: Names 0.12 modules had at top level through their imports, which code in
#: the wild imports from there or patches there: (module, name, the object).
REEXPORTS = [
    ("depot.manager", "get_depot", "depot.manager.DepotManager.get"),
    ("depot.manager", "get_file", "depot.manager.DepotManager.get_file"),
    ("depot.manager", "configure", "depot.manager.DepotManager.configure"),
    ("depot.manager", "set_default", "depot.manager.DepotManager.set_default"),
    ("depot.io.interfaces", "FileIntent", "depot.io.utils.FileIntent"),
    ("depot.io.interfaces", "_FileInfo", "depot.io.utils._FileInfo"),
    ("depot.io.utils", "utcnow_naive", "depot.utils.utcnow_naive"),
    ("depot.middleware", "DepotManager", "depot.manager.DepotManager"),
    ("depot.middleware", "utcfromtimestamp_naive", "depot.utils.utcfromtimestamp_naive"),
    ("depot.middleware", "make_content_disposition", "depot.utils.make_content_disposition"),
    ("depot.validators", "FileIntent", "depot.io.utils.FileIntent"),
    ("depot.validators", "FileStorage", "depot.io.interfaces.FileStorage"),
    ("depot.validators", "_is_fieldstorage_like", "depot.io.utils._is_fieldstorage_like"),
    ("depot.fields.interfaces", "DepotManager", "depot.manager.DepotManager"),
    ("depot.fields.upload", "DepotManager", "depot.manager.DepotManager"),
    ("depot.fields.upload", "DepotFileInfo", "depot.fields.interfaces.DepotFileInfo"),
    ("depot.fields.sqlalchemy", "DepotManager", "depot.manager.DepotManager"),
    ("depot.fields.sqlalchemy", "UploadedFile", "depot.fields.upload.UploadedFile"),
    ("depot.fields.ming", "DepotManager", "depot.manager.DepotManager"),
    ("depot.fields.ming", "UploadedFile", "depot.fields.upload.UploadedFile"),
    ("depot.fields.filters.thumbnails", "DepotManager", "depot.manager.DepotManager"),
    ("depot.fields.filters.thumbnails", "FileFilter", "depot.fields.interfaces.FileFilter"),
    ("depot.fields.filters.thumbnails", "file_from_content", "depot.io.utils.file_from_content"),
    ("depot.fields.specialized.image", "UploadedFile", "depot.fields.upload.UploadedFile"),
    ("depot.fields.specialized.image", "FileStorage", "depot.io.interfaces.FileStorage"),
    ("depot.fields.specialized.image", "file_from_content", "depot.io.utils.file_from_content"),
] + [
    (backend, name, target)
    for backend in ("depot.io.memory", "depot.io.local", "depot.io.gridfs", "depot.io.boto3", "depot.io.awss3",
                    "depot.io.gcs")
    for name, target in (("utils", "depot.io.utils"), ("StoredFile", "depot.io.interfaces.StoredFile"),
                         ("FileStorage", "depot.io.interfaces.FileStorage"))
] + [
    (backend, "make_content_disposition", "depot.utils.make_content_disposition")
    for backend in ("depot.io.boto3", "depot.io.awss3", "depot.io.gcs")
]


# -- helpers --------------------------------------------------------------------

def resolve(dotted):
    """The object at a dotted path: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(dotted)


def lookup(module, qualname):
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def static_kind(module, qualname):
    """How the attribute is defined on its class (looked up along the MRO, as Python does)."""
    owner_name, _, attr = qualname.rpartition(".")
    owner = lookup(module, owner_name)
    raw = inspect.getattr_static(owner, attr)
    if isinstance(raw, classmethod):
        return "classmethod"
    if isinstance(raw, staticmethod):
        return "staticmethod"
    if isinstance(raw, property):
        return "property"
    if inspect.isfunction(raw):
        return "method"
    return "value"


def expected_signature(params):
    from depot.fields.upload import UploadedFile

    return inspect.signature(eval("lambda %s: None" % params, {"UploadedFile": UploadedFile}))


def actual_signature(obj, kind):
    sig = inspect.signature(obj)
    if kind == "method":  # a plain function on the class: drop self
        return sig.replace(parameters=list(sig.parameters.values())[1:])
    return sig


POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def assert_accepts(expected, actual, where):
    """Every call that ``expected`` accepts, ``actual`` accepts with the same meaning."""
    ours = list(actual.parameters.values())
    theirs = list(expected.parameters.values())
    matched = set()
    ours_positional = [p for p in ours if p.kind in POSITIONAL]
    for index, param in enumerate(p for p in theirs if p.kind in POSITIONAL):
        assert index < len(ours_positional), "%s: parameter %s is missing" % (where, param.name)
        mine = ours_positional[index]
        assert mine.name == param.name, "%s: parameter %d is %r, 0.12 had %r" % (where, index, mine.name, param.name)
        assert mine.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD, "%s: %s kind %s" % (where, mine.name, mine.kind)
        if param.default is not inspect.Parameter.empty:  # a required parameter may become optional
            assert mine.default == param.default, "%s: %s default %r, 0.12 had %r" % (
                where, mine.name, mine.default, param.default)
        matched.add(mine.name)
    for param in theirs:
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            mine = [p for p in ours if p.kind == param.kind]
            assert mine, "%s: 0.12 took %s" % (where, param)
            matched.add(mine[0].name)
    for mine in ours:
        if mine.name not in matched:
            assert (mine.default is not inspect.Parameter.empty
                    or mine.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)), (
                "%s: added parameter %s is required" % (where, mine.name))


# -- the tests ----------------------------------------------------------------------

@pytest.mark.parametrize("module", MODULES)
def test_module_imports(module):
    importlib.import_module(module)


@pytest.mark.parametrize("module, qualname, kind, params", API)
def test_public_api(module, qualname, kind, params):
    obj = lookup(module, qualname)
    where = "%s.%s" % (module, qualname)
    if kind == "value":
        assert obj == params, where
        return
    if kind == "class":
        assert inspect.isclass(obj), where
    elif kind == "function":
        assert inspect.isfunction(obj), where
    else:
        assert static_kind(module, qualname) == kind, where
    if kind != "property" and params is not None:
        assert_accepts(expected_signature(params), actual_signature(obj, kind), where)


@pytest.mark.parametrize("module, name, base", BASES)
def test_class_bases(module, name, base):
    cls = lookup(module, name)
    assert issubclass(cls, resolve(base)), "%s.%s must derive from %s" % (module, name, base)


def test_metaclasses():
    from depot.fields.interfaces import DepotFileInfo, FileFilter

    for cls in (StoredFile, FileStorage, FileFilter, DepotFileInfo):
        assert isinstance(cls, abc.ABCMeta), cls


@pytest.mark.parametrize("module, name, methods", ABSTRACT)
def test_abstract_methods(module, name, methods):
    cls = lookup(module, name)
    assert cls.__abstractmethods__ <= methods, "more abstract methods than 0.12: a 0.12 subclass breaks"
    assert cls.__abstractmethods__ == methods  # an implementation that forgets one still fails early


def test_a_012_style_storage_subclass_works():
    """A FileStorage written for 0.12 (the six methods, nothing else) instantiates and is used."""

    class DictStorage(FileStorage):
        def __init__(self):
            self.data = {}

        def get(self, file_or_id):
            return self.data[self.fileid(file_or_id)]

        def create(self, content, filename=None, content_type=None):
            content, filename, content_type = self.fileinfo(content, filename, content_type)
            self.data[filename] = content
            return filename

        def replace(self, file_or_id, content, filename=None, content_type=None):
            raise NotImplementedError

        def delete(self, file_or_id):
            self.data.pop(self.fileid(file_or_id), None)

        def exists(self, file_or_id):
            return self.fileid(file_or_id) in self.data

        def list(self):
            return list(self.data)

    storage = DictStorage()
    assert storage.create(b"x", "a.txt") == "a.txt"
    assert storage.list() == ["a.txt"] and storage.exists("a.txt")


@pytest.mark.parametrize("module, name, target", REEXPORTS)
def test_reexported_names(module, name, target):
    assert getattr(importlib.import_module(module), name) == resolve(target)


def test_package_markers():
    import depot.validators

    assert "TW2FileIntentValidator" in depot.validators.__all__
    validator = depot.validators.TW2FileIntentValidator
    assert validator.extension is None
    # 0.12's msgs = {'required': ('file_required', 'Select a file'), 'badext': ...}, as tw2 merges it:
    assert validator.msg_rewrites == {"required": "file_required"}
    assert validator.msgs["file_required"] == "Select a file"
    assert validator.msgs["badext"] == "File name must have '$extension' extension"
    from depot.middleware import _BLOCK_SIZE

    assert _BLOCK_SIZE == 4096 * 64
    from depot.fields.sqlalchemy import UploadedFileField
    from sqlalchemy import types

    assert UploadedFileField.impl is types.Unicode
    for attr in ("_default_depot", "_depots", "_middleware", "_aliases"):
        assert hasattr(DepotManager, attr)
    from depot.fields.sqlalchemy import _SQLAMutationTracker

    assert isinstance(_SQLAMutationTracker.mapped_entities, dict)


def test_section7_internals(tmp_path):
    """SPEC section 7: private names code in the wild reaches into."""
    from depot.fields.specialized.image import UploadedImageWithThumb
    from depot.fields.upload import UploadedFile
    from depot.middleware import FileServeApp, _FileIter

    storage = LocalFileStorage(str(tmp_path))
    assert storage.storage_path == str(tmp_path)
    f = storage.get(storage.create(b"data", "a.txt"))
    assert open(f._file_path, "rb").read() == b"data"
    assert open(f._metadata_path).read().startswith("{")
    intent = FileIntent(b"x", "n.txt", "text/x")
    assert (intent._fileobj, intent._filename, intent._content_type) == (b"x", "n.txt", "text/x")
    assert intent.fileinfo == (b"x", "n.txt", "text/x")
    assert UploadedImageWithThumb.thumbnail_format == "PNG"
    assert FileServeApp.parse_date(None, "Thu, 01 Jan 1970 00:00:10 GMT") == datetime.datetime(1970, 1, 1, 0, 0, 10)
    assert FileServeApp.make_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert list(_FileIter(io.BytesIO(b"abcde"), 2)) == [b"ab", b"cd", b"e"]
    DepotManager.configure("x", {"depot.backend": "memory"})
    value = UploadedFile(b"x")
    value._thaw()
    value["extra"] = 1
    value._freeze()
    with pytest.raises(TypeError, match="Already saved files are immutable"):
        value["extra"] = 2


def test_memory_storage_layout():
    """SPEC 2.1: ``files[file_id]`` holds the data and the metadata."""
    storage = MemoryFileStorage(any_option="ignored")
    file_id = storage.create(b"data", "a.txt")
    entry = storage.files[file_id]
    assert entry["data"] == b"data"
    assert {k: v for k, v in entry["metadata"].items() if k != "last_modified"} == {
        "filename": "a.txt", "content_type": "text/plain", "content_length": 4}
    assert isinstance(entry["metadata"]["last_modified"], datetime.datetime)
    assert storage.list() == [file_id]


def test_stored_file_basics(storage):
    """SPEC 3.1/3.2: the non-abstract StoredFile methods and FileStorage's static helpers."""
    from depot.fields.upload import UploadedFile

    f = storage.get(storage.create(b"x", "a.txt"))
    assert (f.readable(), f.writable(), f.seekable(), f.name, f.public_url) == (True, False, False, "a.txt", None)
    assert repr(f).endswith(":%s filename=a.txt content_type=text/plain last_modified=%s>" % (
        f.file_id, f.last_modified))
    assert FileStorage.fileid(f) == FileStorage.fileid(f.file_id) == f.file_id
    with default_storage(storage):
        value = UploadedFile(b"x")
        assert FileStorage.fileid(value) == value.file_id  # reached through __getattr__, as in 0.12


def test_module_aliases_behave_like_the_manager():
    from depot import manager

    assert manager.get_depot() is None  # nothing configured: None, as 0.12
    storage = manager.configure("a", {"depot.backend": "depot.io.memory.MemoryFileStorage"})
    manager.configure("b", {"depot.backend": "depot.io.memory.MemoryFileStorage"})
    manager.set_default("b")
    assert manager.get_depot("a") is storage
    file_id = storage.create(b"x")
    assert manager.get_file("a/%s" % file_id).read() == b"x"


# -- FileIntent with no content type (SPEC 3.3) -----------------------------------

@contextlib.contextmanager
def default_storage(storage):
    """``storage`` as the only, default storage of a clean DepotManager."""
    DepotManager._clear()
    try:
        DepotManager._depots["s"] = storage
        DepotManager._default_depot = "s"
        yield storage
    finally:
        DepotManager._clear()


@pytest.fixture(params=["memory", "local"])
def storage(request, tmp_path):
    return MemoryFileStorage() if request.param == "memory" else LocalFileStorage(str(tmp_path))


def test_file_intent_without_type_is_not_guessed(storage):
    f = storage.get(storage.create(FileIntent(b"data", "report.pdf", None)))
    assert (f.filename, f.content_type, f.read()) == ("report.pdf", "application/octet-stream", b"data")
    f = storage.get(storage.create(FileIntent(io.BytesIO(b"data"), None, None)))
    assert (f.filename, f.content_type) == ("unnamed", "application/octet-stream")
    # The explicit create() arguments are ignored for a FileIntent, as in 0.12.
    f = storage.get(storage.create(FileIntent(b"data", "a.txt", None), "b.png", "image/png"))
    assert (f.filename, f.content_type) == ("a.txt", "application/octet-stream")
    # Content that is not a FileIntent is still guessed from its name.
    assert storage.get(storage.create(b"data", "report.pdf")).content_type == "application/pdf"
    assert FileStorage.fileinfo(FileIntent(b"x", "a.png", None)) == (b"x", "a.png", "application/octet-stream")


def test_file_intent_without_type_through_an_upload(storage):
    from depot.fields.upload import UploadedFile

    with default_storage(storage):
        value = UploadedFile(FileIntent(b"data", "photo.jpg", None))
        assert (value.filename, value.content_type) == ("photo.jpg", "application/octet-stream")
        assert value.file.content_type == "application/octet-stream"


# -- patching the clock ----------------------------------------------------------

def _recorded(storage, patch_target, value, times=2):
    """last_modified of files created, then of an upload's file, while ``patch_target`` is patched."""
    from depot.fields.upload import UploadedFile

    with default_storage(storage):
        with mock.patch(patch_target, return_value=value):
            stamps = [storage.get(storage.create(b"x")).last_modified for _ in range(times)]
            upload = UploadedFile(b"x")
        stamps.append(upload.file.last_modified)
        return stamps, upload


def test_patching_timestamp_controls_every_recorded_time(storage):
    stamps, upload = _recorded(storage, "depot.io.utils.timestamp", "2001-02-03 04:05:06")
    assert stamps == [datetime.datetime(2001, 2, 3, 4, 5, 6)] * 3
    assert upload.uploaded_at == "2001-02-03 04:05:06"


def test_patching_utcnow_naive_controls_every_recorded_time(storage):
    moment = datetime.datetime(2002, 3, 4, 5, 6, 7, 890)
    stamps, upload = _recorded(storage, "depot.io.utils.utcnow_naive", moment)
    assert stamps == [moment.replace(microsecond=0)] * 3
    assert upload.uploaded_at == "2002-03-04 05:06:07"
    # Another patched value within the same real second is followed too (no stale cache)...
    later = datetime.datetime(2003, 1, 1)
    stamps, upload = _recorded(storage, "depot.io.utils.utcnow_naive", later, times=1)
    assert stamps == [later] * 2 and upload.uploaded_at == "2003-01-01 00:00:00"
    # ...and once the patch is gone the real clock is back.
    before = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)
    now = storage.get(storage.create(b"x")).last_modified
    assert before <= now <= before + datetime.timedelta(seconds=2)


def test_patching_the_manager_seen_by_the_sqlalchemy_module():
    """0.12 tests patch ``depot.fields.sqlalchemy.DepotManager.<method>``: it is the registry itself."""
    with mock.patch("depot.fields.sqlalchemy.DepotManager.get", return_value="patched"):
        assert DepotManager.get("anything") == "patched"


# -- backends that need their server (names owned by the cloud work) ------------

def test_gridfs_internals(mongo_database_uri):
    """SPEC 2.3 / 7: the attributes tests and code reach into."""
    import gridfs
    import pymongo
    from bson import ObjectId

    from depot.io.gridfs import GridFSStorage

    storage = GridFSStorage(mongo_database_uri)
    assert isinstance(storage._cli, pymongo.MongoClient) and isinstance(storage._gridfs, gridfs.GridFS)
    assert (storage._collection, storage._db.name) == ("filedepot", mongo_database_uri.rsplit("/", 1)[1])
    file_id = storage.create(b"content", "a.txt", "text/plain")
    assert storage._gridfs.get(ObjectId(file_id)).read() == b"content"
    assert storage._db["filedepot.files"].find_one({"_id": ObjectId(file_id)})["filename"] == "a.txt"


def test_gridfs_stored_file_from_a_gridout(mongo_database_uri):
    from bson import ObjectId

    from depot.io.gridfs import GridFSStorage, GridFSStoredFile

    storage = GridFSStorage(mongo_database_uri)
    file_id = storage.create(b"content", "a.txt", "text/plain")
    gridout = storage._gridfs.get(ObjectId(file_id))
    f = GridFSStoredFile(file_id, gridout)
    assert (f.file_id, f.filename, f.content_type, f.content_length) == (file_id, "a.txt", "text/plain", 7)
    assert f.read() == b"content"


def test_gridfs_get_takes_the_12_byte_id(mongo_database_uri):
    from bson import ObjectId

    from depot.io.gridfs import GridFSStorage

    storage = GridFSStorage(mongo_database_uri)
    file_id = storage.create(b"content")
    assert storage.get(ObjectId(file_id).binary).read() == b"content"  # bson.ObjectId accepts 12 bytes


def test_testing_module_imports_without_pytest():
    """depot.testing is importable (autodoc, helper classes) where pytest is not installed."""
    code = (
        "from depot.testing import StorageConformance, FieldStorageLike\n"
        "assert callable(StorageConformance.storage) and FieldStorageLike(b'x', 'a').filename == 'a'\n"
        "import depot.testing\n"
        "try:\n"
        "    depot.testing.pytest.raises\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = run_without(["pytest", "_pytest"], code, check=True).stdout
    assert "needs pytest: pip install pytest" in out
