"""Attaching direct uploads to fields: SQLAlchemy (SQLite, PostgreSQL; AsyncSession) and Ming.

The bytes are written with ``storage._store_at``, as the middleware
endpoint writes them; what is tested is the attach step.
"""
from __future__ import annotations

import io
import itertools
import uuid

import pytest
from ming import create_datastore
from ming import schema as ms
from ming.odm import FieldProperty, Mapper, ThreadLocalODMSession
from ming.odm.declarative import MappedClass
from PIL import Image
from sqlalchemy import Column, Integer, create_engine, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, declarative_base

from depot.fields.aio import attach, deletions_done
from depot.fields.filters.thumbnails import WithThumbnailFilter
from depot.fields.ming import DepotExtension, UploadedFileProperty
from depot.fields.specialized.image import UploadedImageWithThumb
from depot.fields.sqlalchemy import UploadedFileField
from depot.fields.upload import UploadedFile
from depot.io.interfaces import FileStorage
from depot.manager import DepotManager
from depot.uploads import UploadRefused, create_upload_intent, pending_uploads
from depot.uploads.attach import DirectUpload
from depot.uploads.intents import claimed
from tests._uploads import UploadURLs


class PdfOnly(UploadedFile):
    """A value type with a validator, as docs/database.rst shows."""

    def process_content(self, content, filename=None, content_type=None):
        content, filename, content_type = FileStorage.fileinfo(content, filename, content_type)
        if content_type != "application/pdf":
            raise ValueError("only PDF files are accepted")
        super().process_content(content, filename, content_type)


def make_models(suffix):
    Base = declarative_base()

    class Document(Base):
        __tablename__ = "up_documents_%s" % suffix
        id = Column(Integer, primary_key=True)
        content = Column(UploadedFileField(upload_storage="files"))
        photo = Column(UploadedFileField(upload_type=UploadedImageWithThumb, upload_storage="files"))
        thumbed = Column(UploadedFileField(filters=[WithThumbnailFilter((16, 16), "PNG")], upload_storage="files"))
        pdf = Column(UploadedFileField(upload_type=PdfOnly, upload_storage="files"))

    return Base, Document


def png(size=(40, 30)):
    out = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def files(tmp_path):
    """The local storage ``files`` and a middleware signing upload URLs."""
    storage = DepotManager.configure("files", {"depot.backend": "local", "depot.storage_path": str(tmp_path / "f")})
    DepotManager.set_middleware(UploadURLs())
    return storage


def uploaded(storage, data, filename="upload.bin", content_type=None, **options):
    """The id of a permitted upload whose bytes are stored."""
    options.setdefault("max_size", 10**7)
    intent = create_upload_intent("files", **options)
    storage._store_at(intent.file_id, data, filename, content_type)
    return intent.file_id


def pending(storage):
    return [file_id for file_id, _ in pending_uploads(storage)]


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    if request.param == "sqlite":
        engine = create_engine("sqlite:///%s" % (tmp_path / "db.sqlite"))
    else:
        engine = create_engine(request.getfixturevalue("postgresql_url"))
    Base, Document = make_models(uuid.uuid4().hex[:10])
    Base.metadata.create_all(engine)
    yield engine, Document
    Base.metadata.drop_all(engine)
    engine.dispose()


def test_commit_attaches_the_stored_file_without_copying(db, files):
    engine, Document = db
    file_id = uploaded(files, b"%PDF-1.7 the report", "report.pdf", "application/pdf")
    with Session(engine) as session:
        doc = Document(content=UploadedFile.from_upload(file_id))
        # Claimed at attach: a marker until the commit, so fsck never takes it for an orphan.
        assert pending(files) == [file_id] and claimed(files._pending_get(file_id))
        session.add(doc)
        session.commit()
        doc_id = doc.id
    assert pending(files) == []
    with Session(engine) as session:
        value = session.get(Document, doc_id).content
        assert (value.file_id, value.path, value.files) == (file_id, "files/" + file_id, ["files/" + file_id])
        assert (value.filename, value.content_type) == ("report.pdf", "application/pdf")
        assert value.file.read() == b"%PDF-1.7 the report"
    assert files.list() == [file_id]  # the one file: nothing was copied


@pytest.mark.parametrize("flush", [False, True])
def test_rollback_deletes_the_attached_upload(db, files, flush):
    engine, Document = db
    file_id = uploaded(files, b"to be rolled back")
    with Session(engine) as session:
        session.add(Document(content=UploadedFile.from_upload(file_id)))
        if flush:
            session.flush()
        session.rollback()
    assert files.list() == [] and pending(files) == []


def committed(session, Document, file_id):
    """A new row holding the upload ``file_id``, committed."""
    doc = Document(content=UploadedFile.from_upload(file_id))
    session.add(doc)
    session.commit()
    return doc


def test_replacing_deletes_the_old_file_after_commit(db, files):
    engine, Document = db
    first = uploaded(files, b"first")
    with Session(engine) as session:
        doc = committed(session, Document, first)
        second = uploaded(files, b"second")
        doc.content = UploadedFile.from_upload(second)
        session.flush()
        assert files.exists(first)  # until the commit
        session.commit()
        assert not files.exists(first)
        doc.content = b"stored the usual way"
        session.commit()
    assert not files.exists(second)
    assert len(files.list()) == 1


def test_attached_twice_or_never_permitted(db, files):
    engine, Document = db
    file_id = uploaded(files, b"once")
    with Session(engine) as session:
        doc = committed(session, Document, file_id)
        other = Document()
        for refused_id in (file_id, files.create(b"stored the usual way"), str(uuid.uuid4())):
            with pytest.raises(UploadRefused) as refused:
                other.content = UploadedFile.from_upload(refused_id)
            assert refused.value.code == "not-an-intent"
        assert other.content is None
        assert doc.content.file.read() == b"once"
    assert files.exists(file_id)


def test_an_upload_refused_by_its_intent_is_deleted(db, files):
    engine, Document = db
    file_id = uploaded(files, b"not an image at all", "cat.png", "image/png", content_types=["image/*"])
    doc = Document()
    with pytest.raises(UploadRefused) as refused:
        doc.content = UploadedFile.from_upload(file_id)
    assert refused.value.code == "bad-type"
    assert doc.content is None
    assert files.list() == [] and pending(files) == []


def test_filters_make_thumbnails_on_attach(db, files):
    engine, Document = db
    file_id = uploaded(files, png(), "cat.png", "image/png")
    with Session(engine) as session:
        doc = Document(thumbed=UploadedFile.from_upload(file_id))
        session.add(doc)
        session.commit()
        value = doc.thumbed
        assert value.file_id == file_id
        thumb = DepotManager.get_file(value["thumb_16x16_path"])
        assert Image.open(thumb).size == (16, 12)
        assert sorted(files.list()) == sorted([file_id, value["thumb_16x16_id"]])
        session.delete(doc)
        session.commit()
    assert files.list() == []


def test_image_type_keeps_a_small_image_and_replaces_a_large_one(db, files):
    engine, Document = db
    small = uploaded(files, png(), "small.png", "image/png")
    large = uploaded(files, png((2000, 100)), "large.png", "image/png")
    with Session(engine) as session:
        kept = Document(photo=UploadedImageWithThumb.from_upload(small))
        reduced = Document(photo=UploadedImageWithThumb.from_upload(large))
        session.add_all([kept, reduced])
        session.commit()
        assert kept.photo.file_id == small and files.exists(kept.photo.thumb_id)
        # Reduced to the type's maximum size: a new file, the upload is gone.
        assert reduced.photo.file_id != large and not files.exists(large)
        assert Image.open(reduced.photo.file).size == (1024, 51)
    assert pending(files) == []


@pytest.mark.parametrize("column, data, cause", [
    ("pdf", b"plain text", ValueError),  # the value type's validator
    ("thumbed", b"plain text", Exception),  # the filter cannot decode it
    ("photo", b"plain text", Exception),  # the image type cannot decode it
])
def test_an_upload_the_field_rejects_is_deleted(db, files, column, data, cause):
    engine, Document = db
    file_id = uploaded(files, data, "notes.txt", "text/plain")
    doc = Document()
    with pytest.raises(UploadRefused) as refused:
        setattr(doc, column, UploadedFile.from_upload(file_id))
    assert refused.value.code == "rejected" and isinstance(refused.value.__cause__, cause)
    assert getattr(doc, column) is None
    assert files.list() == [] and pending(files) == []


def test_an_upload_to_another_storage_is_refused_and_kept(db, files):
    engine, Document = db
    DepotManager.configure("other", {"depot.backend": "memory"})
    intent = create_upload_intent("other", max_size=100)
    DepotManager.get("other")._store_at(intent.file_id, b"elsewhere")
    with pytest.raises(ValueError, match="is in storage other, the field stores in files"):
        Document(content=UploadedFile.from_upload(intent.file_id, "other"))
    assert DepotManager.get("other").exists(intent.file_id)
    assert pending("other") == [intent.file_id]


def test_direct_upload_value():
    with pytest.raises(ValueError, match="file_id must be the id of an upload intent"):
        DirectUpload("")
    with pytest.raises(ValueError, match="storage must be a storage name"):
        DirectUpload("x", storage=3)
    assert repr(UploadedImageWithThumb.from_upload("abc")) == "<DirectUpload <default>/abc>"
    assert UploadedImageWithThumb.from_upload("abc").value_type is UploadedImageWithThumb


# -- AsyncSession ------------------------------------------------------------------


@pytest.fixture(params=["aiosqlite", "asyncpg"])
def async_url(request, tmp_path):
    if request.param == "aiosqlite":
        return "sqlite+aiosqlite:///%s" % (tmp_path / "aio.db")
    return request.getfixturevalue("postgresql_url").replace("+psycopg2", "+asyncpg")


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_async_session_attach_commit_and_rollback(async_url, files):
    engine = create_async_engine(async_url)
    Base, Document = make_models(uuid.uuid4().hex[:10])
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    try:
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        kept = uploaded(files, png(), "cat.png", "image/png")
        dropped = uploaded(files, b"rolled back")
        async with sessions() as session:
            doc = Document()
            value = await attach(doc, "thumbed", UploadedFile.from_upload(kept))
            assert value.file_id == kept and "thumb_16x16_id" in value
            session.add(doc)
            await session.commit()
            other = Document()
            await attach(other, "content", UploadedFile.from_upload(dropped))
            session.add(other)
            await session.flush()
            await session.rollback()
        await deletions_done()
        async with sessions() as session:
            loaded = (await session.scalars(select(Document))).one()
            assert loaded.thumbed.file.read() == png()
        assert sorted(files.list()) == sorted([kept, value["thumb_16x16_id"]])
        assert pending(files) == []
        with pytest.raises(UploadRefused, match="not-an-intent"):
            await attach(Document(), "content", UploadedFile.from_upload(kept))
    finally:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.drop_all)
        await engine.dispose()


# -- Ming --------------------------------------------------------------------------

_collections = itertools.count()


@pytest.fixture(params=["mim", "server"])
def ming_models(request, tmp_path):
    if request.param == "mim":
        datastore = create_datastore("mim:///depot_up_%d" % next(_collections))
        storage = DepotManager.configure("files", {"depot.backend": "memory"})
    else:
        uri = request.getfixturevalue("mongo_database_uri")
        datastore = create_datastore(uri)
        storage = DepotManager.configure("files", {"depot.backend": "gridfs", "depot.mongouri": uri})
    DepotManager.set_middleware(UploadURLs())
    session = ThreadLocalODMSession(bind=datastore, extensions=(DepotExtension,))
    suffix = next(_collections)

    class Document(MappedClass):
        class __mongometa__:
            name = "up_document_%d" % suffix

        __mongometa__.session = session
        _id = FieldProperty(ms.ObjectId)
        content = UploadedFileProperty(upload_storage="files")
        thumbed = UploadedFileProperty(filters=[WithThumbnailFilter((16, 16), "PNG")], upload_storage="files")

    Mapper.compile_all()
    yield session, Document, storage
    session.clear()
    if request.param == "server":
        storage._cli.close()
        datastore.conn.close()


def test_ming_attach_flush_replace_and_reject(ming_models):
    session, Document, storage = ming_models
    first = uploaded(storage, png(), "cat.png", "image/png")
    doc = Document(thumbed=UploadedFile.from_upload(first))
    assert claimed(storage._pending_get(first))
    session.flush()
    assert pending(storage) == []
    session.clear()
    doc = Document.query.get(_id=doc._id)
    assert doc.thumbed.file_id == first and storage.exists(doc.thumbed["thumb_16x16_id"])
    thumb = doc.thumbed["thumb_16x16_id"]
    second = uploaded(storage, b"second")
    doc.thumbed = None
    doc.content = UploadedFile.from_upload(second)
    session.flush()
    assert not storage.exists(first) and not storage.exists(thumb)
    assert storage.list() == [second]
    rejected = uploaded(storage, b"not an image", "a.txt", "text/plain")
    with pytest.raises(UploadRefused, match="rejected"):
        doc.thumbed = UploadedFile.from_upload(rejected)
    with pytest.raises(UploadRefused, match="not-an-intent"):
        doc.content = UploadedFile.from_upload(second)
    assert storage.list() == [second] and pending(storage) == []


def test_of_two_requests_attaching_one_id_the_second_is_refused(files, monkeypatch):
    file_id = uploaded(files, b"wanted twice")
    first = DirectUpload(file_id, "files").open()
    # The second request passed finish_upload too, but the first claimed the upload meanwhile.
    monkeypatch.setattr(files, "_pending_get", lambda file_id: first.record.to_json())
    with pytest.raises(UploadRefused, match="attached by another request meanwhile"):
        DirectUpload(file_id, "files").open()
    assert files.exists(file_id)  # the first request's, untouched
    first.close()
