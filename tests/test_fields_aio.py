"""Attachments with SQLAlchemy's AsyncSession, on SQLite (aiosqlite) and PostgreSQL (asyncpg).

The transaction lifecycle (rollback removes new files, commit removes
replaced ones, savepoints) and :func:`depot.fields.aio.attach`, which stores
an upload off the event loop before assigning it.
"""
from __future__ import annotations

import io
import tempfile
import time
import uuid

import pytest

anyio = pytest.importorskip("anyio")
pytest.importorskip("greenlet")
pytest.importorskip("sqlalchemy.ext.asyncio")

from PIL import Image  # noqa: E402
from sqlalchemy import Column, Integer, Unicode, event, select  # noqa: E402
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine  # noqa: E402
from sqlalchemy.orm import declarative_base  # noqa: E402

from depot.fields.aio import attach, deletions_done  # noqa: E402
from depot.fields.filters.thumbnails import WithThumbnailFilter  # noqa: E402
from depot.fields.specialized.image import UploadedImageWithThumb  # noqa: E402
from depot.fields.sqlalchemy import UploadedFileField  # noqa: E402
from depot.io.memory import MemoryFileStorage  # noqa: E402
from depot.manager import DepotManager  # noqa: E402

pytestmark = pytest.mark.anyio


class SlowStorage(MemoryFileStorage):
    """Writes and deletes that block like a remote backend's."""

    delay = 0.4

    def _save(self, *args):
        time.sleep(self.delay)
        return super()._save(*args)

    def delete(self, file_or_id):
        time.sleep(self.delay)
        super().delete(file_or_id)


def make_models(suffix):
    Base = declarative_base()

    class Document(Base):
        __tablename__ = "depot_adoc_%s" % suffix
        id = Column(Integer, primary_key=True)
        name = Column(Unicode(100))
        content = Column(UploadedFileField)
        thumbed = Column(UploadedFileField(filters=[WithThumbnailFilter((16, 16))]))
        photo = Column(UploadedFileField(upload_type=UploadedImageWithThumb))
        slow = Column(UploadedFileField(upload_storage="slow"))

    return Base, Document


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(params=["aiosqlite", "asyncpg"])
def database_url(request, tmp_path):
    if request.param == "aiosqlite":
        pytest.importorskip("aiosqlite")
        return "sqlite+aiosqlite:///%s" % (tmp_path / "aio.db")
    pytest.importorskip("asyncpg")
    return request.getfixturevalue("postgresql_url").replace("+psycopg2", "+asyncpg")


@pytest.fixture
async def db(database_url):
    engine = create_async_engine(database_url)
    if engine.dialect.name == "sqlite":
        # As for pysqlite: SQLAlchemy must emit BEGIN itself for SAVEPOINT to work.
        @event.listens_for(engine.sync_engine, "connect")
        def _connect(dbapi_connection, record):
            dbapi_connection.isolation_level = None

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(connection):
            connection.exec_driver_sql("BEGIN")

    Base, Document = make_models(uuid.uuid4().hex[:10])
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    Session = async_sessionmaker(engine, expire_on_commit=False)
    yield Session, Document
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.drop_all)
    await engine.dispose()


@pytest.fixture(autouse=True)
def depots():
    DepotManager._clear()
    DepotManager.configure("default", {"depot.backend": "memory"})
    DepotManager.configure("slow", {"depot.backend": "tests.test_fields_aio.SlowStorage"})
    yield
    DepotManager._clear()


def exists(path):
    depot_name, file_id = path.split("/", 1)
    return DepotManager.get(depot_name).exists(file_id)


async def settled():
    """Wait for the deletions that commits and rollbacks handed to worker threads."""
    await deletions_done(timeout=30)


def alive(value):
    return bool(value["files"]) and all(exists(p) for p in value["files"])


def gone(value):
    return not any(exists(p) for p in value["files"])


def stored():
    return len(DepotManager.get("default").files)


def png(size=(40, 30)):
    out = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(out, "PNG")
    return out.getvalue()


def starlette_upload(data, filename, content_type):
    from starlette.datastructures import Headers, UploadFile

    spool = tempfile.SpooledTemporaryFile(max_size=1024)
    spool.write(data)
    spool.seek(0)
    return UploadFile(spool, size=len(data), filename=filename, headers=Headers({"content-type": content_type}))


async def chunks(*parts):
    for part in parts:
        await anyio.sleep(0)
        yield part


async def committed(Session, Document, **values):
    async with Session() as session:
        doc = Document(name="doc", **values)
        session.add(doc)
        await session.commit()
        return doc.id, doc


# -- the lifecycle under AsyncSession ----------------------------------------------------


@pytest.mark.parametrize("flush", [True, False], ids=["flush", "noflush"])
async def test_rollback_removes_new_upload(db, flush):
    Session, Document = db
    async with Session() as session:
        doc = Document(name="doc")
        value = await attach(doc, "content", starlette_upload(b"hello", "hello.txt", "text/plain"))
        assert (value.filename, value.content_type, value.file.read()) == ("hello.txt", "text/plain", b"hello")
        session.add(doc)
        if flush:
            await session.flush()
        assert alive(value)
        await session.rollback()
    await settled()
    assert gone(value)


async def test_commit_keeps_new_upload(db):
    Session, Document = db
    async with Session() as session:
        doc = Document(name="doc")
        await attach(doc, "content", chunks(b"streamed ", b"body"))
        session.add(doc)
        await session.commit()
    await settled()
    async with Session() as session:
        loaded = (await session.scalars(select(Document))).one()
        assert loaded.content.file.read() == b"streamed body"
        assert alive(loaded.content)


@pytest.mark.parametrize("how", ["attach", "assign"])
async def test_replace_then_commit_deletes_old(db, how):
    Session, Document = db
    doc_id, _ = await committed(Session, Document, content=b"old")
    async with Session() as session:
        doc = await session.get(Document, doc_id)
        old = doc.content
        if how == "attach":
            new = await attach(doc, "content", b"new")
        else:
            doc.content = b"new"
            new = doc.content
        await session.commit()
    await settled()
    assert gone(old) and alive(new)


async def test_replace_expired_value_is_loaded_then_deleted_at_commit(db):
    Session, Document = db
    doc_id, _ = await committed(Session, Document, content=b"old")
    async with Session() as session:
        doc = await session.get(Document, doc_id)
        old = doc.content
        session.expire(doc, ["content"])
        new = await attach(doc, "content", b"new")
        await session.commit()
    await settled()
    assert gone(old) and alive(new)


async def test_replace_then_rollback_keeps_old(db):
    Session, Document = db
    doc_id, _ = await committed(Session, Document, content=b"old")
    async with Session() as session:
        doc = await session.get(Document, doc_id)
        old = doc.content
        new = await attach(doc, "content", b"new")
        await session.flush()
        await session.rollback()
    await settled()
    assert alive(old) and gone(new)


async def test_attaching_a_stored_value_assigns_it(db):
    Session, Document = db
    _, doc = await committed(Session, Document, content=b"shared")
    other = Document(name="other")
    assert await attach(other, "content", doc.content) is doc.content
    assert stored() == 1


async def test_delete_row_then_commit_deletes(db):
    Session, Document = db
    doc_id, doc = await committed(Session, Document, content=b"doomed")
    async with Session() as session:
        await session.delete(await session.get(Document, doc_id))
        await session.commit()
    await settled()
    assert gone(doc.content)


async def test_delete_row_then_rollback_keeps(db):
    Session, Document = db
    doc_id, doc = await committed(Session, Document, content=b"kept")
    async with Session() as session:
        await session.delete(await session.get(Document, doc_id))
        await session.flush()
        await session.rollback()
    await settled()
    assert alive(doc.content)


async def test_savepoint_rollback_deletes_only_its_files(db):
    Session, Document = db
    async with Session() as session:
        outer = Document(name="outer")
        await attach(outer, "content", b"outer")
        session.add(outer)
        savepoint = await session.begin_nested()
        inner = Document(name="inner")
        await attach(inner, "content", b"inner")
        session.add(inner)
        await session.flush()
        await savepoint.rollback()
        await settled()
        assert gone(inner.content) and alive(outer.content)
        await session.commit()
    await settled()
    assert alive(outer.content)


async def test_released_savepoint_then_commit_keeps_and_outer_rollback_removes(db):
    Session, Document = db
    doc_id, doc = await committed(Session, Document, content=b"v1")
    async with Session() as session:
        loaded = await session.get(Document, doc_id)
        async with session.begin_nested():
            v2 = await attach(loaded, "content", b"v2")
        await settled()
        assert alive(doc.content) and alive(v2)  # nothing final before the outermost commit
        await session.commit()
    await settled()
    assert gone(doc.content) and alive(v2)

    async with Session() as session:
        loaded = await session.get(Document, doc_id)
        async with session.begin_nested():
            v3 = await attach(loaded, "content", b"v3")
        await session.rollback()
    await settled()
    assert alive(v2) and gone(v3)


async def test_filters_and_image_types_from_async_uploads(db):
    Session, Document = db
    async with Session() as session:
        doc = Document(name="pictures")
        thumbed = await attach(doc, "thumbed", starlette_upload(png(), "a.png", "image/png"))
        photo = await attach(doc, "photo", chunks(png((60, 50))))
        assert len(thumbed["files"]) == 2 and len(photo["files"]) == 2
        assert Image.open(DepotManager.get().get(thumbed["thumb_16x16_id"])).size == (16, 12)
        assert Image.open(photo.thumb_file).size[0] <= 128
        session.add(doc)
        await session.flush()
        await session.rollback()
    await settled()
    assert gone(thumbed) and gone(photo) and stored() == 0


# -- attach: never blocks, never leaves anything behind ---------------------------------


class Broken(Exception):
    pass


async def test_failing_source_or_filter_stores_nothing_and_keeps_the_value(db):
    Session, Document = db
    doc_id, doc = await committed(Session, Document, content=b"kept")

    async def broken():
        yield b"partial"
        raise Broken()

    async with Session() as session:
        loaded = await session.get(Document, doc_id)
        with pytest.raises(Broken):
            await attach(loaded, "content", broken())
        with pytest.raises(ValueError):  # not an image: the thumbnail filter refuses it
            await attach(loaded, "thumbed", b"not an image")
        assert loaded.content == doc.content and loaded.thumbed is None
    await settled()
    assert stored() == 1


async def test_cancelled_attach_stores_nothing(db):
    Session, Document = db
    started = anyio.Event()

    async def stalls():
        yield b"x" * 300000
        started.set()
        await anyio.sleep_forever()
        yield b"never"

    doc = Document(name="doc")
    async with anyio.create_task_group() as tg:
        tg.start_soon(attach, doc, "content", stalls())
        await started.wait()
        tg.cancel_scope.cancel()
    assert doc.content is None
    await settled()
    assert stored() == 0


async def test_attach_refuses_other_attributes(db):
    _, Document = db
    with pytest.raises(TypeError):
        await attach(Document(), "name", b"x")
    with pytest.raises(TypeError):
        await attach(Document(), "missing", b"x")
    with pytest.raises(TypeError):
        await attach(object(), "content", b"x")
    assert stored() == 0


async def test_uploads_and_deletions_leave_the_loop_free(db):
    Session, Document = db
    lateness = []
    done = anyio.Event()

    async def ticker():
        while not done.is_set():
            before = time.perf_counter()
            await anyio.sleep(0.01)
            lateness.append(time.perf_counter() - before - 0.01)

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        async with Session() as session:
            doc = Document(name="slow")
            first = await attach(doc, "slow", b"one")  # a blocking write of SlowStorage.delay
            session.add(doc)
            await session.commit()
            second = await attach(doc, "slow", b"two")
            started = time.perf_counter()
            await session.commit()  # the old file's slow delete must not hold the commit
            commit_time = time.perf_counter() - started
        assert exists(first["files"][0])
        await settled()
        done.set()
    assert not exists(first["files"][0]) and exists(second["files"][0])
    assert commit_time < SlowStorage.delay / 2
    assert max(lateness) < SlowStorage.delay / 2, max(lateness)  # blocked, it would be the whole delay


async def test_blocking_code_still_deletes_before_commit_returns(tmp_path):
    # No event loop in this thread: the tracker deletes synchronously, as ever.
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    Base, Document = make_models("sync")
    engine = create_engine("sqlite:///%s" % (tmp_path / "sync.db"))
    Base.metadata.create_all(engine)

    def scenario():
        with Session(engine, expire_on_commit=False) as session:
            doc = Document(name="doc", content=b"old")
            session.add(doc)
            session.commit()
            old = doc.content
            doc.content = b"new"
            session.commit()
            return gone(old)

    assert await anyio.to_thread.run_sync(scenario)
