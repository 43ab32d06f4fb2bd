"""Ming attachments, on Ming's in-memory ``mim://`` datastore and on a real server (secantusd)."""
import io
import itertools

import pytest

pytest.importorskip("ming", reason="Ming tests need ming: pip install -e '.[testing]'")
PIL = pytest.importorskip("PIL", reason="image tests need Pillow: pip install -e '.[testing]'")

from ming import create_datastore  # noqa: E402
from ming import schema as s  # noqa: E402
from ming.odm import FieldProperty, Mapper, ThreadLocalODMSession  # noqa: E402
from ming.odm.declarative import MappedClass  # noqa: E402
from PIL import Image  # noqa: E402

from depot.fields.filters.thumbnails import WithThumbnailFilter  # noqa: E402
from depot.fields.interfaces import FileFilter  # noqa: E402
from depot.fields.ming import (  # noqa: E402
    DepotExtension,
    UploadedFileProperty,
    _DepotHistory,
    _UploadedFileSchema,
)
from depot.fields.specialized.image import UploadedImageWithThumb  # noqa: E402
from depot.fields.upload import UploadedFile  # noqa: E402
from depot.imaging import ImageRejected  # noqa: E402
from depot.io.utils import FileIntent  # noqa: E402
from depot.manager import DepotManager  # noqa: E402

from ._dedup import DedupUploadedFile  # noqa: E402
from ._hostile_images import REJECTED_CASES, REJECTED_IDS  # noqa: E402

CONTENT = b"HELLO WORLD"
_collections = itertools.count()


def _png(size=(300, 200), color=(255, 0, 0)):
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


class Models:
    """Mapped classes bound to one session (each datastore gets its own set)."""

    def __init__(self, session):
        suffix = next(_collections)
        self.session = session

        class Document(MappedClass):
            class __mongometa__:
                name = "depot_document_%d" % suffix

            __mongometa__.session = session
            _id = FieldProperty(s.ObjectId)
            name = FieldProperty(str)
            content = UploadedFileProperty()

        class Photo(MappedClass):
            class __mongometa__:
                name = "depot_photo_%d" % suffix

            __mongometa__.session = session
            _id = FieldProperty(s.ObjectId)
            name = FieldProperty(str)
            photo = UploadedFileProperty(upload_type=UploadedImageWithThumb)
            second_photo = UploadedFileProperty(
                filters=(WithThumbnailFilter((20, 10), "PNG"), WithThumbnailFilter((8, 8), "PNG"))
            )

        Mapper.compile_all()
        self.Document = Document
        self.Photo = Photo


@pytest.fixture(params=["mim", "server"])
def models(request):
    """Mapped classes on an empty datastore, with a fresh default depot.

    ``mim://`` keeps files in a memory depot; the real server keeps them in
    GridFS on the same server, the way an application on MongoDB would.
    """
    DepotManager._clear()
    if request.param == "mim":
        datastore = create_datastore("mim:///depot_ming_%d" % next(_collections))
        DepotManager.configure("default", {"depot.backend": "depot.io.memory.MemoryFileStorage"})
    else:
        uri = request.getfixturevalue("mongo_database_uri")
        datastore = create_datastore(uri)
        DepotManager.configure("default", {"depot.backend": "gridfs", "depot.mongouri": uri})
    session = ThreadLocalODMSession(bind=datastore, extensions=(DepotExtension,))
    yield Models(session)
    session.clear()
    if request.param == "server":
        DepotManager.get()._cli.close()
        datastore.conn.close()
    DepotManager._clear()


def exists(path):
    depot_name, file_id = path.split("/")
    return DepotManager.get(depot_name).exists(file_id)


# -- storing and reading back ------------------------------------------------


def test_create_from_bytes_and_reload(models):
    doc = models.Document(name="a", content=CONTENT)
    models.session.flush()
    models.session.clear()
    doc = models.Document.query.get(name="a")
    assert isinstance(doc.content, UploadedFile)
    assert doc.content.file.read() == CONTENT
    assert (doc.content.filename, doc.content.content_type) == ("unnamed", "application/octet-stream")
    assert doc.content.files == [doc.content.path]
    assert doc.content.path == "default/%s" % doc.content.file_id


def test_stored_as_plain_subdocument(models):
    doc = models.Document(name="a", content=FileIntent(CONTENT, "hello.txt", "text/plain"))
    models.session.flush()
    raw = models.session.db[models.Document.query.mapper.collection.m.collection_name].find_one({"_id": doc._id})
    stored = raw["content"]
    assert type(stored) is dict
    assert stored["filename"] == "hello.txt"
    assert set(stored) >= {"depot_name", "files", "file_id", "path", "content_type", "uploaded_at", "_public_url"}


def test_class_access_gives_the_property(models):
    prop = models.Document.content
    assert isinstance(prop, UploadedFileProperty)
    assert isinstance(prop.field.schema, _UploadedFileSchema)


def test_missing_and_none_values_read_as_none(models):
    doc = models.Document(name="empty")
    assert doc.content is None
    models.session.flush()
    models.session.clear()
    doc = models.Document.query.get(name="empty")
    assert doc.content is None
    doc.content = None
    models.session.flush()
    assert doc.content is None


def test_each_access_gives_a_new_frozen_value(models):
    doc = models.Document(name="a", content=CONTENT)
    first, second = doc.content, doc.content
    assert first == second and first is not second
    with pytest.raises(TypeError):
        first["filename"] = "x"


def test_uploaded_file_assigned_as_is(models):
    value = UploadedFile(b"prepared")
    doc = models.Document(name="a", content=value)
    models.session.flush()
    assert doc.content.file_id == value.file_id
    assert doc.content.file.read() == b"prepared"


def test_upload_storage_and_type(models):
    DepotManager.configure("other", {"depot.backend": "depot.io.memory.MemoryFileStorage"})

    class Fancy(UploadedFile):
        pass

    prop = UploadedFileProperty(upload_type=Fancy, upload_storage="other")
    prop.name = "content"
    doc = models.Document(name="a")
    prop.__set__(doc, CONTENT)
    value = prop.__get__(doc)
    assert isinstance(value, Fancy)
    assert value.depot_name == "other"


# -- file lifecycle ------------------------------------------------------------


def test_replace_then_flush_deletes_the_old_file(models):
    doc = models.Document(name="a", content=CONTENT)
    models.session.flush()
    old = doc.content.path
    doc.content = b"NEW"
    assert exists(old)  # nothing is deleted before the document is written
    models.session.flush()
    assert not exists(old)
    assert doc.content.file.read() == b"NEW"


def test_replace_then_clear_keeps_the_old_file(models):
    doc = models.Document(name="a", content=CONTENT)
    models.session.flush()
    old = doc.content.path
    doc.content = b"NEW"
    models.session.clear()
    assert exists(old)
    assert models.Document.query.get(name="a").content.file.read() == CONTENT


def test_set_none_then_flush_deletes_the_file(models):
    doc = models.Document(name="a", content=CONTENT)
    models.session.flush()
    old = doc.content.path
    doc.content = None
    models.session.flush()
    assert not exists(old)
    models.session.clear()
    assert models.Document.query.get(name="a").content is None


def test_del_attribute_then_flush_deletes_the_file(models):
    doc = models.Document(name="a", content=CONTENT)
    models.session.flush()
    old = doc.content.path
    del doc.content
    models.session.flush()
    assert not exists(old)
    models.session.clear()
    assert models.Document.query.get(name="a").content is None


def test_delete_document_then_flush_deletes_the_files(models):
    doc = models.Document(name="a", content=CONTENT)
    models.session.flush()
    path = doc.content.path
    doc.delete()
    assert exists(path)
    models.session.flush()
    assert not exists(path)
    assert models.Document.query.find().count() == 0


def test_delete_then_clear_keeps_the_file(models):
    doc = models.Document(name="a", content=CONTENT)
    models.session.flush()
    path = doc.content.path
    doc.delete()
    models.session.clear()
    assert exists(path)


def test_flush_single_object(models):
    kept = models.Document(name="kept", content=CONTENT)
    gone = models.Document(name="gone", content=CONTENT)
    models.session.flush()
    kept_path, gone_path = kept.content.path, gone.content.path
    kept.content = b"changed"
    gone.delete()
    models.session.flush(gone)
    assert not exists(gone_path)
    assert exists(kept_path)  # its change is not written yet
    models.session.flush()
    assert not exists(kept_path)


def test_failed_delete_keeps_the_files(models):
    """A flush that fails before writing a deletion deletes none of its files (0.12 deleted them first)."""
    victim = models.Document(name="victim", content=CONTENT)
    models.session.flush()
    path = victim.content.path
    models.session.clear()
    # The duplicate is written first and fails, so the deletion never reaches the database.
    duplicate = models.Document(name="duplicate")
    duplicate._id = models.Document.query.get(name="victim")._id
    models.Document.query.get(name="victim").delete()
    with pytest.raises(Exception, match="(?i)duplicate"):
        models.session.flush()
    assert exists(path)
    models.session.clear()
    assert models.Document.query.get(name="victim").content.file.read() == CONTENT


def test_assigning_twice_before_flush_deletes_the_first_upload(models):
    doc = models.Document(name="a", content=b"first")
    first = doc.content.path
    doc.content = b"second"
    models.session.flush()
    assert not exists(first)
    assert doc.content.file.read() == b"second"


def test_reassigning_the_same_value_deletes_nothing(models):
    doc = models.Document(name="a", content=CONTENT)
    models.session.flush()
    doc.content = doc.content
    doc.name = "renamed"
    models.session.flush()
    assert exists(doc.content.path)


def test_moving_a_value_between_documents_keeps_the_file(models):
    source = models.Document(name="source", content=CONTENT)
    target = models.Document(name="target")
    models.session.flush()
    value = source.content
    target.content = value
    source.content = None
    models.session.flush()
    assert exists(value.path)  # source dropped it, but target references it now
    target.delete()
    models.session.flush()
    assert not exists(value.path)


# -- history bookkeeping -------------------------------------------------------


def test_history_uses_the_file_lists():
    history = _DepotHistory()
    a = {"files": ["d/1", "d/1-thumb"], "file_id": "1"}
    b = {"files": ["d/2"], "file_id": "2"}
    history.add(a)
    assert history.new == {"d/1", "d/1-thumb"}
    history.swap(a, b)
    assert (history.new, history.deleted) == ({"d/2"}, {"d/1", "d/1-thumb"})
    history.swap(b, a)
    assert (history.new, history.deleted) == ({"d/1", "d/1-thumb"}, {"d/2"})
    history.swap(None, None)
    history.clear()
    assert (history.new, history.deleted) == (set(), set())


def test_history_lives_on_the_object_state(models):
    doc = models.Document(name="a", content=CONTENT)
    history = DepotExtension.get_depot_history(doc)
    assert history is DepotExtension.get_depot_history(doc)
    assert history.new == set(doc.content.files)
    models.session.flush()
    assert (history.new, history.deleted) == (set(), set())


# -- thumbnails and image types ----------------------------------------------


def test_thumbnail_filters(models):
    DepotManager.set_middleware(type("MW", (), {"url_for": staticmethod(lambda path: "/depot/" + path)})())
    photo = models.Photo(name="p", second_photo=_png())
    models.session.flush()
    models.session.clear()
    value = models.Photo.query.get(name="p").second_photo
    assert len(value.files) == 3
    thumb = DepotManager.get_file(value.thumb_20x10_path)
    assert thumb.filename == "thumb_20x10.png" and thumb.content_type == "image/png"
    assert Image.open(thumb).size == (15, 10)
    assert value.thumb_20x10_url == "/depot/" + value.thumb_20x10_path
    assert Image.open(DepotManager.get_file(value.thumb_8x8_path)).size == (8, 5)
    del photo


def test_thumbnails_deleted_with_the_document(models):
    photo = models.Photo(name="p", second_photo=_png(), photo=_png((64, 64)))
    models.session.flush()
    paths = photo.second_photo.files + photo.photo.files
    assert len(paths) == 5 and all(exists(p) for p in paths)
    photo.delete()
    models.session.flush()
    assert not any(exists(p) for p in paths)


def test_filters_do_not_run_on_values_read_back(models):
    photo = models.Photo(name="p", second_photo=_png())
    models.session.flush()
    files = photo.second_photo.files
    other = models.Photo(name="copy", second_photo=photo.second_photo)
    models.session.flush()
    assert other.second_photo.files == files


def test_image_with_thumb(models):
    models.Photo(name="p", photo=FileIntent(io.BytesIO(_png((1280, 1280))), "big.png", "image/png"))
    models.session.flush()
    models.session.clear()
    value = models.Photo.query.get(name="p").photo
    assert isinstance(value, UploadedImageWithThumb)
    assert (value.filename, value.content_type) == ("big.png", "image/png")
    assert Image.open(value.file).size == (1024, 1024)
    assert Image.open(value.thumb_file).size == (128, 128)
    assert value.thumb_path in value.files


def test_image_replaced_deletes_image_and_thumbnail(models):
    photo = models.Photo(name="p", photo=_png((40, 30)))
    models.session.flush()
    old = list(photo.photo.files)
    photo.photo = _png((30, 40), (0, 0, 255))
    models.session.flush()
    assert not any(exists(p) for p in old)
    assert Image.open(photo.photo.thumb_file).size == (30, 40)


# -- rejected uploads leave nothing behind ---------------------------------------------


def _stored_ids():
    return DepotManager.get().list()


@pytest.mark.parametrize("column", ["photo", "second_photo"])
@pytest.mark.parametrize("end", ["flush", "clear"])
@pytest.mark.parametrize("content, expected", REJECTED_CASES, ids=REJECTED_IDS)
def test_rejected_image_leaves_nothing(models, column, end, content, expected):
    assert issubclass(expected, ImageRejected) and issubclass(expected, ValueError)
    with pytest.raises(expected):
        models.Photo(name="p", **{column: content})
    photo = models.Photo(name="q")
    with pytest.raises(expected):
        setattr(photo, column, content)
    assert _stored_ids() == []
    getattr(models.session, end)()
    assert _stored_ids() == []
    if end == "flush":
        assert getattr(models.Photo.query.get(name="q"), column) is None


def test_failing_filter_on_a_given_value_keeps_its_main_file(models):
    """A prepared UploadedFile is the caller's: only what the filters stored goes."""
    value = UploadedFile(b"not an image")
    before = dict(value)
    with pytest.raises(ImageRejected):
        models.Photo(name="p", second_photo=value)
    assert dict(value) == before
    assert _stored_ids() == [value.file_id]
    assert value.file.read() == b"not an image"


def test_failing_second_filter_deletes_the_first_thumbnail(models):
    class Refuse(FileFilter):
        def on_save(self, uploaded_file):
            raise ValueError("refused by the application")

    prop = UploadedFileProperty(filters=(WithThumbnailFilter((16, 16)), Refuse()))
    prop.name = "content"
    doc = models.Document(name="a")
    with pytest.raises(ValueError, match="refused"):
        prop.__set__(doc, _png())
    assert _stored_ids() == []


@pytest.mark.parametrize("given", ["content", "value"])
def test_failing_filter_keeps_files_a_deduplicating_override_shares(models, given):
    """A failed assignment deletes only what it created: not the existing files an override reused.

    ``value`` assigns a prepared upload (the caller's: only what the filters
    stored may go), ``content`` lets the property build it (all it stored may go).
    """

    class Refuse(FileFilter):
        def on_save(self, uploaded_file):
            raise ValueError("refused by the application")

    DedupUploadedFile.known.clear()
    shared_prop = UploadedFileProperty(upload_type=DedupUploadedFile, filters=(WithThumbnailFilter((16, 16)),))
    shared_prop.name = "content"
    refused_prop = UploadedFileProperty(
        upload_type=DedupUploadedFile,
        filters=(WithThumbnailFilter((16, 16)), WithThumbnailFilter((8, 8)), Refuse()),
    )
    refused_prop.name = "content"
    png = _png()
    first = models.Document(name="first")
    shared_prop.__set__(first, png)
    models.session.flush()
    shared = list(models.Document.query.get(name="first").content.files)
    assert len(shared) == 2  # the image and its 16x16 thumbnail
    second = models.Document(name="second")
    # Reuses the image and the 16x16 thumbnail, creates the 8x8 one, then is refused.
    with pytest.raises(ValueError, match="refused"):
        refused_prop.__set__(second, png if given == "content" else DedupUploadedFile(png))
    models.session.flush()
    assert all(exists(path) for path in shared)
    assert sorted(_stored_ids()) == sorted(path.split("/")[1] for path in shared)
    assert models.Document.query.get(name="first").content.file.read() == png
