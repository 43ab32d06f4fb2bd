"""The SQLAlchemy file column and its transactional lifecycle, on SQLite, PostgreSQL and MariaDB.

Every lifecycle scenario runs with and without an explicit flush before the
commit or rollback (the ``flush`` fixture), as filedepot's own suite did.
"""
from __future__ import annotations

import gc
import io
import json
import logging
import uuid
from types import SimpleNamespace

import pytest
from PIL import Image
from sqlalchemy import Column, ForeignKey, Integer, String, Unicode, create_engine, delete, event, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, declarative_base, relationship

from depot.fields.filters.thumbnails import WithThumbnailFilter
from depot.fields.sqlalchemy import UploadedFileField, _SQLAMutationTracker
from depot.fields.specialized.image import UploadedImageWithThumb
from depot.fields.upload import UploadedFile
from depot.io.memory import MemoryFileStorage
from depot.io.utils import FileIntent
from depot.manager import DepotManager


class FailingDeleteStorage(MemoryFileStorage):
    """A storage whose deletes fail, to show commit() survives them."""

    def delete(self, file_or_id):
        raise IOError("storage unavailable")


def _png(size=(40, 30), mode="RGB"):
    out = io.BytesIO()
    Image.new(mode, size, (200, 10, 10, 128) if mode == "RGBA" else (200, 10, 10)).save(out, "PNG")
    return out.getvalue()


def make_models(suffix: str) -> SimpleNamespace:
    Base = declarative_base()

    class Document(Base):
        __tablename__ = "depot_doc_%s" % suffix
        id = Column(Integer, primary_key=True)
        name = Column(Unicode(100), unique=True)
        content = Column(UploadedFileField)
        second = Column(UploadedFileField(upload_storage="other"))
        thumbed = Column(UploadedFileField(filters=[WithThumbnailFilter((16, 16))]))

    class Photo(Base):
        __tablename__ = "depot_photo_%s" % suffix
        id = Column(Integer, primary_key=True)
        image = Column(UploadedFileField(upload_type=UploadedImageWithThumb))
        # Many thumbnails make a value far larger than VARCHAR(4000): native JSON holds it.
        sheet = Column(
            UploadedFileField(
                native_json=True, filters=[WithThumbnailFilter((n, n)) for n in range(4, 64)]
            )
        )

    class Folder(Base):
        __tablename__ = "depot_folder_%s" % suffix
        id = Column(Integer, primary_key=True)
        children = relationship("Child", cascade="all, delete-orphan", backref="folder")

    class Child(Base):
        __tablename__ = "depot_child_%s" % suffix
        id = Column(Integer, primary_key=True)
        folder_id = Column(Integer, ForeignKey(Folder.id))
        file = Column(UploadedFileField)

    class Animal(Base):
        __tablename__ = "depot_animal_%s" % suffix
        id = Column(Integer, primary_key=True)
        kind = Column(String(20))
        photo = Column(UploadedFileField)
        __mapper_args__ = {"polymorphic_on": kind, "polymorphic_identity": "animal"}

    class Dog(Animal):
        __tablename__ = "depot_dog_%s" % suffix
        id = Column(Integer, ForeignKey(Animal.id), primary_key=True)
        bone = Column(UploadedFileField)
        __mapper_args__ = {"polymorphic_identity": "dog"}

    class Cat(Animal):  # single-table subclass
        __mapper_args__ = {"polymorphic_identity": "cat"}

    return SimpleNamespace(
        Base=Base, Document=Document, Photo=Photo, Folder=Folder, Child=Child, Animal=Animal, Dog=Dog, Cat=Cat
    )


def _sqlite_engine(path):
    # pysqlite does not emit BEGIN itself, which breaks SAVEPOINT: the
    # documented recipe lets SQLAlchemy control the transaction.
    engine = create_engine("sqlite:///%s" % path)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, record):
        dbapi_connection.isolation_level = None
        # WAL: a session reading does not block another one writing.
        dbapi_connection.execute("PRAGMA journal_mode=WAL")

    @event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN")

    return engine


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mariadb"])
def db(request, tmp_path_factory):
    if request.param == "sqlite":
        engine = _sqlite_engine(tmp_path_factory.mktemp("sqlite") / "fields.db")
    else:
        engine = create_engine(request.getfixturevalue("%s_url" % request.param))
    models = make_models(uuid.uuid4().hex[:10])
    models.Base.metadata.create_all(engine)
    models.engine = engine
    yield models
    models.Base.metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture(autouse=True)
def depots():
    DepotManager._clear()
    DepotManager.configure("default", {"depot.backend": "memory"})
    DepotManager.configure("other", {"depot.backend": "memory"})
    DepotManager.make_middleware(None)
    yield
    DepotManager._clear()


@pytest.fixture
def m(db):
    yield db
    with db.engine.begin() as connection:
        for table in reversed(db.Base.metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture
def session(m):
    with Session(m.engine) as session:
        yield session


@pytest.fixture(params=[True, False], ids=["flush", "noflush"])
def flush(request):
    """Call ``flush(session)`` where the scenario may flush: a no-op in the no-flush runs."""
    return (lambda session: session.flush()) if request.param else (lambda session: None)


def flush_by(session, how, cls):
    """Make ``session`` write its changes: ``flush``, ``autoflush`` (a query of ``cls``) or ``begin_nested``."""
    if how == "flush":
        session.flush()
    elif how == "autoflush":
        session.scalars(select(cls)).all()
    else:
        session.begin_nested().commit()


def exists(path: str) -> bool:
    depot_name, file_id = path.split("/", 1)
    return DepotManager.get(depot_name).exists(file_id)


def alive(value) -> bool:
    return bool(value["files"]) and all(exists(p) for p in value["files"])


def gone(value) -> bool:
    return not any(exists(p) for p in value["files"])


def stored_count() -> int:
    return sum(len(DepotManager.get(name).files) for name in ("default", "other"))


def committed_doc(m, session, **values):
    doc = m.Document(name="doc-%s" % uuid.uuid4().hex[:8], **values)
    session.add(doc)
    session.commit()
    return doc


# -- basic behaviour ------------------------------------------------------------


def test_create_and_read_back(m, session):
    doc_id = committed_doc(m, session, content=b"hello", second=FileIntent(b"x", "x.txt", "text/plain")).id
    session.expunge_all()
    doc = session.get(m.Document, doc_id)
    assert isinstance(doc.content, UploadedFile)
    assert doc.content.file.read() == b"hello"
    assert doc.content.depot_name == "default"
    assert doc.second.depot_name == "other"
    assert (doc.second.filename, doc.second.content_type) == ("x.txt", "text/plain")
    assert doc.content.url == "/depot/%s" % doc.content.path
    assert doc.content.original_content is None


def test_column_type_is_varchar_4000_by_default(m, session):
    columns = {c["name"]: c for c in inspect(m.engine).get_columns(m.Document.__tablename__)}
    assert getattr(columns["content"]["type"], "length", None) == 4000


def test_native_json_holds_large_values(m, session, flush):
    photo = m.Photo(sheet=_png((80, 80)))
    session.add(photo)
    flush(session)
    session.commit()
    assert len(json.dumps(photo.sheet)) > 4000
    photo_id = photo.id
    session.expunge_all()
    photo = session.get(m.Photo, photo_id)
    assert photo.sheet["thumb_63x63_path"] in photo.sheet.files
    assert alive(photo.sheet) and len(photo.sheet.files) == 61
    stored = session.execute(select(m.Photo.__table__.c.sheet)).scalar_one()
    assert isinstance(stored, dict)  # a real JSON column, decoded by the driver


def test_wrong_upload_type_fails_at_flush(m, session):
    photo = m.Photo()
    session.add(photo)
    session.flush()
    photo.image = UploadedFile(b"not an image with thumb")
    with pytest.raises(StatementError) as info:
        session.flush()
    assert "AttachmentField requires" in str(info.value)
    session.rollback()


def test_cache_ok_and_cache_key_distinguishes_types():
    assert UploadedFileField.cache_ok is True
    plain, image = UploadedFileField(), UploadedFileField(upload_type=UploadedImageWithThumb)
    assert plain._static_cache_key != image._static_cache_key
    assert UploadedFileField()._static_cache_key == plain._static_cache_key
    hash(UploadedFileField(filters=[WithThumbnailFilter()])._static_cache_key)


def test_several_columns_polymorphic_classes_registered(m):
    keys = lambda cls: sorted(k for k, _ in _SQLAMutationTracker.mapped_entities[cls])  # noqa: E731
    session = Session(m.engine)
    session.query(m.Dog).all()  # configures the mappers
    assert keys(m.Document) == ["content", "second", "thumbed"]
    assert keys(m.Dog) == ["bone", "photo"]
    assert keys(m.Cat) == ["photo"]
    session.close()


# -- commit and rollback ----------------------------------------------------------


def test_rollback_deletes_new_upload(m, session, flush):
    doc = m.Document(name="a", content=b"new", thumbed=_png())
    session.add(doc)
    flush(session)
    content, thumbed = doc.content, doc.thumbed
    assert alive(content) and alive(thumbed) and len(thumbed.files) == 2
    session.rollback()
    assert gone(content) and gone(thumbed)
    assert stored_count() == 0


def test_commit_keeps_new_upload(m, session, flush):
    doc = m.Document(name="a", content=b"new")
    session.add(doc)
    flush(session)
    session.commit()
    assert alive(doc.content)


def test_replace_then_commit_deletes_old(m, session, flush):
    doc = committed_doc(m, session, content=b"old", thumbed=_png())
    old_content, old_thumbed = doc.content, doc.thumbed
    doc.content = b"new"
    doc.thumbed = _png((50, 50))
    flush(session)
    assert alive(old_content) and alive(old_thumbed)  # never before the commit
    session.commit()
    assert gone(old_content) and gone(old_thumbed)
    assert alive(doc.content) and alive(doc.thumbed)
    assert doc.content.file.read() == b"new"


def test_replace_then_rollback_keeps_old(m, session, flush):
    doc = committed_doc(m, session, content=b"old")
    old = doc.content
    doc.content = b"new"
    new = doc.content
    flush(session)
    session.rollback()
    assert gone(new) and alive(old)
    assert doc.content.file_id == old.file_id


def test_set_none_then_commit_deletes(m, session, flush):
    doc = committed_doc(m, session, content=b"old")
    old = doc.content
    doc.content = None
    flush(session)
    session.commit()
    assert gone(old) and doc.content is None


def test_set_none_then_rollback_keeps(m, session, flush):
    doc = committed_doc(m, session, content=b"old")
    old = doc.content
    doc.content = None
    flush(session)
    session.rollback()
    assert alive(old)


def test_replace_expired_value_deletes_old(m, session, flush):
    doc = committed_doc(m, session, content=b"old")
    session.expire(doc)  # the old value is not loaded when the new one is assigned
    old = session.execute(select(m.Document.__table__.c.content)).scalar_one()
    session.expire_all()
    doc.content = b"new"
    flush(session)
    session.commit()
    assert gone(old) and alive(doc.content)


@pytest.mark.parametrize("how", ["session", "query_fetch", "delete_fetch"])
def test_delete_row_then_commit_deletes(m, session, flush, how):
    doc = committed_doc(m, session, content=b"a", second=b"b", thumbed=_png())
    values = [doc.content, doc.second, doc.thumbed]
    _delete(m, session, doc, how)
    flush(session)
    assert all(alive(v) for v in values)
    session.commit()
    assert all(gone(v) for v in values)


@pytest.mark.parametrize("how", ["session", "query_fetch", "delete_fetch"])
def test_delete_row_then_rollback_keeps(m, session, flush, how):
    doc = committed_doc(m, session, content=b"a", second=b"b")
    values = [doc.content, doc.second]
    _delete(m, session, doc, how)
    flush(session)
    session.rollback()
    assert all(alive(v) for v in values)


def _delete(m, session, doc, how):
    if how == "session":
        session.delete(doc)
    elif how == "query_fetch":
        session.query(m.Document).filter_by(id=doc.id).delete(synchronize_session="fetch")
    else:
        session.execute(
            delete(m.Document).where(m.Document.id == doc.id).execution_options(synchronize_session="fetch")
        )


def test_delete_orphan_and_cascade(m, session, flush):
    folder = m.Folder(children=[m.Child(file=b"one"), m.Child(file=b"two")])
    session.add(folder)
    session.commit()
    one, two = (c.file for c in folder.children)
    folder.children.remove(folder.children[0])  # delete-orphan
    flush(session)
    session.commit()
    assert gone(one) and alive(two)
    session.delete(folder)  # cascade
    flush(session)
    assert alive(two)
    session.rollback()
    assert alive(two)
    session.delete(folder)
    flush(session)
    session.commit()
    assert gone(two)


def test_double_assignment_leaves_only_last(m, session, flush):
    doc = m.Document(name="twice", content=b"first")
    session.add(doc)
    first = doc.content
    doc.content = b"second"
    second = doc.content
    doc.content = b"third"
    flush(session)
    session.commit()
    assert gone(first) and gone(second) and alive(doc.content)
    assert stored_count() == 1


def test_double_assignment_after_flush(m, session, flush):
    doc = committed_doc(m, session, content=b"committed")
    committed = doc.content
    doc.content = b"a"
    a = doc.content
    session.flush()
    doc.content = b"b"
    flush(session)
    session.commit()
    assert gone(committed) and gone(a) and alive(doc.content)


def test_double_assignment_then_rollback_removes_all(m, session, flush):
    doc = committed_doc(m, session, content=b"committed")
    committed = doc.content
    doc.content = b"a"
    a = doc.content
    doc.content = b"b"
    b = doc.content
    flush(session)
    session.rollback()
    assert gone(a) and gone(b) and alive(committed)


def test_assigning_uploaded_file_instance_is_tracked(m, session, flush):
    value = UploadedFile(b"made by hand")
    doc = m.Document(name="hand", content=value)
    session.add(doc)
    flush(session)
    session.rollback()
    assert gone(value)


def test_object_built_before_session_is_tracked(m, session, flush):
    doc = m.Document(name="early", content=b"x")  # uploads now, no session yet
    doc.content = b"y"  # and replaces the first upload before any session saw it
    first_gone = doc.content
    session.add(doc)
    flush(session)
    session.rollback()
    assert gone(first_gone) and stored_count() == 0


def test_settled_value_reassigned_then_rollback_survives(m):
    with Session(m.engine, expire_on_commit=False) as session:
        doc = committed_doc(m, session, content=b"kept")
        value = doc.content  # still the fresh upload object, not a reloaded one
        other = m.Document(name="other", content=value)
        session.add(other)
        session.flush()
        session.rollback()
        assert alive(value)


# -- savepoints ---------------------------------------------------------------------


def test_savepoint_rollback_deletes_only_its_files(m, session, flush):
    outer = m.Document(name="outer", content=b"outer")
    session.add(outer)
    flush(session)
    savepoint = session.begin_nested()
    inner = m.Document(name="inner", content=b"inner")
    session.add(inner)
    inner_value = inner.content
    flush(session)
    savepoint.rollback()
    assert gone(inner_value)
    assert alive(outer.content)
    session.commit()
    assert alive(outer.content)
    session.expunge_all()
    assert [d.name for d in session.query(m.Document)] == ["outer"]


def test_outer_rollback_after_savepoint_rollback_removes_all(m, session, flush):
    outer = m.Document(name="outer", content=b"outer")
    session.add(outer)
    outer_value = outer.content
    with session.begin_nested() as savepoint:
        inner = m.Document(name="inner", content=b"inner")
        session.add(inner)
        inner_value = inner.content
        flush(session)
        savepoint.rollback()
    session.rollback()
    assert gone(outer_value) and gone(inner_value)
    assert stored_count() == 0


def test_released_savepoint_deletes_nothing(m, session, flush):
    doc = committed_doc(m, session, content=b"committed")
    victim = committed_doc(m, session, content=b"victim")
    old, victim_value = doc.content, victim.content
    with session.begin_nested():
        doc.content = b"replacement"
        session.delete(victim)
        flush(session)
    assert alive(old) and alive(victim_value)  # released, not committed
    new = doc.content
    session.commit()
    assert gone(old) and gone(victim_value) and alive(new)


def test_outer_rollback_after_released_savepoint_keeps_committed_files(m, session, flush):
    doc = committed_doc(m, session, content=b"committed", thumbed=_png())
    victim = committed_doc(m, session, second=b"victim")
    old, old_thumb, victim_value = doc.content, doc.thumbed, victim.second
    with session.begin_nested():
        doc.content = b"replacement"
        doc.thumbed = None
        session.delete(victim)
        new = doc.content
        flush(session)
    session.rollback()
    assert alive(old) and alive(old_thumb) and alive(victim_value)
    assert gone(new)
    reloaded = session.get(m.Document, doc.id)
    assert reloaded.content.file.read() == b"committed"


def test_nested_savepoints(m, session, flush):
    doc = committed_doc(m, session, content=b"v0")
    v0 = doc.content
    middle = session.begin_nested()
    doc.content = b"v1"
    v1 = doc.content
    flush(session)
    inner = session.begin_nested()
    doc.content = b"v2"
    v2 = doc.content
    flush(session)
    inner.rollback()
    assert gone(v2) and alive(v1) and alive(v0)
    assert doc.content.file_id == v1.file_id
    middle.commit()
    assert alive(v1) and alive(v0)
    session.commit()
    assert gone(v0) and alive(v1)


def test_double_assignment_inside_rolled_back_savepoint(m, session, flush):
    doc = m.Document(name="d", content=b"a")
    session.add(doc)
    a = doc.content
    savepoint = session.begin_nested()  # flushes "a" in the outer transaction
    doc.content = b"b"
    b = doc.content
    flush(session)
    savepoint.rollback()
    assert gone(b) and alive(a)
    session.commit()
    assert alive(a) and doc.content.file_id == a.file_id


def test_double_assignment_inside_released_savepoint(m, session, flush):
    doc = m.Document(name="d", content=b"a")
    session.add(doc)
    a = doc.content
    with session.begin_nested():
        doc.content = b"b"
        flush(session)
    assert alive(a)
    session.commit()
    assert gone(a) and alive(doc.content)


# -- failures -----------------------------------------------------------------------


def test_failed_commit_deletes_nothing_old(m, session, flush):
    committed_doc(m, session)
    doc = committed_doc(m, session, content=b"old")
    old = doc.content
    doc.content = b"new"
    new = doc.content
    session.add(m.Document(name=session.query(m.Document).first().name))  # duplicate name
    flush_failed = False
    try:
        flush(session)
    except IntegrityError:
        flush_failed = True
    if not flush_failed:
        with pytest.raises(IntegrityError):
            session.commit()
    assert alive(old)  # the database did not commit: nothing may go
    session.rollback()
    assert alive(old) and gone(new)


def test_delete_failure_after_commit_is_logged(m, session, flush, caplog):
    DepotManager.configure("failing", {"depot.backend": "tests.test_fields_sqlalchemy.FailingDeleteStorage"})
    DepotManager.set_default("failing")
    doc = committed_doc(m, session, content=b"old")
    doc.content = b"new"
    flush(session)
    with caplog.at_level(logging.ERROR, logger="depot.fields"):
        session.commit()  # does not raise
    assert "could not delete" in caplog.text and "storage unavailable" in caplog.text
    assert doc.content.file.read() == b"new"


def test_missing_storage_at_commit_is_logged(m, session, flush, caplog):
    doc = committed_doc(m, session, content=b"old")
    old = doc.content
    doc.content = None
    flush(session)
    DepotManager._depots.pop("default")
    with caplog.at_level(logging.ERROR, logger="depot.fields"):
        session.commit()
    assert old.path in caplog.text and "no storage named" in caplog.text


# -- several models, columns and sessions ---------------------------------------------


def test_polymorphic_models(m, session, flush):
    dog = m.Dog(photo=b"dog photo", bone=b"bone")
    cat = m.Cat(photo=b"cat photo")
    session.add_all([dog, cat])
    flush(session)
    session.commit()
    dog_photo, bone, cat_photo = dog.photo, dog.bone, cat.photo
    assert alive(dog_photo) and alive(bone) and alive(cat_photo)
    dog.bone = b"new bone"
    new_bone = dog.bone
    cat.photo = b"new cat"
    new_cat = cat.photo
    flush(session)
    session.rollback()
    assert gone(new_bone) and gone(new_cat) and alive(bone) and alive(cat_photo)
    session.delete(dog)
    cat.photo = None
    flush(session)
    session.commit()
    assert gone(dog_photo) and gone(bone) and gone(cat_photo)
    session.expunge_all()
    assert [type(a).__name__ for a in session.query(m.Animal)] == ["Cat"]


# Not generated for SQLite, which lets one connection write at a time.
@pytest.mark.parametrize("db", ["postgresql", "mariadb"], indirect=True)
def test_several_sessions_at_once(m, flush):
    one, two = Session(m.engine), Session(m.engine)
    try:
        a = m.Document(name="one", content=b"one")
        b = m.Document(name="two", content=b"two")
        one.add(a)
        two.add(b)
        flush(two)  # one writer at a time: SQLite would lock otherwise
        one.rollback()
        two.commit()
        assert gone(a.content)
        assert alive(b.content)
        c = committed_doc(m, one, content=b"three")
        old = c.content
        c.content = b"four"
        four = c.content
        b_value = b.content
        b.content = None
        flush(two)
        two.commit()
        assert gone(b_value)
        one.rollback()
        assert gone(four) and alive(old)
    finally:
        one.close()
        two.close()


def test_close_without_commit_discards_uploads(m, flush):
    session = Session(m.engine)
    doc = m.Document(name="closed", content=b"x")
    session.add(doc)
    flush(session)
    value = doc.content
    session.close()
    # Flushed, the row is rolled back with its upload.  Never flushed, the object
    # left the session (closing expunges it) with its upload, which goes with the object.
    assert gone(value) or not inspect(doc).has_identity
    del doc
    gc.collect()
    assert gone(value)


def test_object_left_by_close_can_be_added_again(m):
    with Session(m.engine) as session:
        doc = m.Document(name="again", content=b"x")
        session.add(doc)
    with Session(m.engine) as session:
        session.add(doc)
        session.commit()
        assert alive(doc.content)


def test_assignment_outside_transaction_is_tracked(m, session, flush):
    doc = committed_doc(m, session, content=b"old")
    old = doc.content
    session.commit()  # no transaction is open now
    doc.content = b"new"
    new = doc.content
    flush(session)
    session.commit()
    assert gone(old) and alive(new)


def test_images_in_rows(m, session, flush):
    photo = m.Photo(image=_png((300, 200), "RGBA"))
    session.add(photo)
    flush(session)
    image = photo.image
    assert len(image.files) == 2 and image.thumb_path in image.files
    session.rollback()
    assert gone(image)
    photo = m.Photo(image=_png((300, 200)))
    session.add(photo)
    session.commit()
    photo_id = photo.id
    session.expunge_all()
    photo = session.get(m.Photo, photo_id)
    assert Image.open(photo.image.thumb_file).size == (128, 85)
    assert photo.image.thumb_url == "/depot/" + photo.image.thumb_path


def test_raw_sql_value_compatible_with_filedepot_rows(m, session):
    legacy = {
        "depot_name": "default", "files": ["default/x"], "file_id": "x", "path": "default/x",
        "filename": "a.txt", "content_type": "text/plain", "uploaded_at": "2020-01-01 00:00:00",
        "_public_url": None,
    }
    session.execute(
        text("INSERT INTO %s (name, content) VALUES ('legacy', :c)" % m.Document.__tablename__),
        {"c": json.dumps(legacy)},
    )
    doc = session.query(m.Document).filter_by(name="legacy").one()
    assert doc.content == legacy and doc.content.uploaded_at == "2020-01-01 00:00:00"
    session.rollback()


# -- objects never added to a session --------------------------------------------------


def test_object_never_added_to_a_session_leaves_no_upload(m):
    doc = m.Document(name="never", content=b"x", thumbed=_png())
    doc.content = b"y"
    assert stored_count() == 4  # x, y, the image and its thumbnail
    del doc
    gc.collect()
    assert stored_count() == 0


def test_value_moved_to_a_saved_object_survives_its_first_owner(m, session, flush):
    draft = m.Document(name="draft", content=b"x")
    value = draft.content
    kept = m.Document(name="kept", content=value)
    session.add(kept)
    flush(session)
    del draft
    gc.collect()
    assert alive(value)
    session.commit()
    assert alive(value)


def test_object_added_to_a_session_is_not_guarded(m, session):
    doc = m.Document(name="added", content=b"x")
    value = doc.content
    session.add(doc)
    session.commit()
    session.expunge_all()
    del doc
    gc.collect()
    assert alive(value)
