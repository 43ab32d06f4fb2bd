"""SQLAlchemy attachments in transactions the session does not own, and objects leaving the session.

- sessions joined to an outer ``connection.begin()`` (every ``join_transaction_mode``):
  files are deleted only when the outer transaction commits, uploads when it rolls back;
- a file column changed and the row deleted before a flush;
- objects expunged before their row was written;
- assignments on detached and expired instances (no SQL, no ``DetachedInstanceError``).

Run on SQLite, PostgreSQL and MariaDB like ``test_fields_sqlalchemy.py``, whose
models and helpers are reused.
"""
from __future__ import annotations

import gc
import uuid

import pytest
from sqlalchemy import Column, ForeignKey, Integer, MetaData, Table, create_engine, delete, event, insert, select
from sqlalchemy.exc import IntegrityError, SAWarning
from sqlalchemy.orm import Session, defer

from depot.fields._lifecycle import files_of
from tests import test_fields_sqlalchemy as base

alive, gone, stored_count = base.alive, base.gone, base.stored_count
depots = base.depots  # the autouse storages fixture
flush = base.flush

# None is the session's default mode (conditional_savepoint in SQLAlchemy 2).
JOIN_MODES = [None, "conditional_savepoint", "create_savepoint", "rollback_only"]


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mariadb"])
def db(request, tmp_path_factory):
    if request.param == "sqlite":
        engine = base._sqlite_engine(tmp_path_factory.mktemp("sqlite") / "transactions.db")
    else:
        engine = create_engine(request.getfixturevalue("%s_url" % request.param))
    suffix = uuid.uuid4().hex[:10]
    models = base.make_models(suffix)
    models.Base.metadata.create_all(engine)
    models.engine = engine
    # A foreign key checked at COMMIT, to make an outer commit fail (MariaDB has none).
    models.checked = None
    if engine.dialect.name != "mysql":
        metadata = MetaData()
        models.checked = Table(
            "depot_checked_%s" % suffix, metadata,
            Column("id", Integer, primary_key=True),
            Column("doc_id", ForeignKey(models.Document.id, deferrable=True, initially="DEFERRED")),
        )
        metadata.create_all(engine)
    yield models
    if models.checked is not None:
        models.checked.metadata.drop_all(engine)
    models.Base.metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture
def m(db):
    yield db
    with db.engine.begin() as connection:
        if db.checked is not None:
            connection.execute(db.checked.delete())
        for table in reversed(db.Base.metadata.sorted_tables):
            connection.execute(table.delete())


def saved(m, **values):
    """A committed Document, through a session of its own; returns (id, its values)."""
    with Session(m.engine) as session:
        doc = m.Document(name="doc-%s" % uuid.uuid4().hex[:8], **values)
        session.add(doc)
        session.commit()
        return doc.id, {key: getattr(doc, key) for key in values}


def committed_content(m, doc_id, key="content"):
    """The value the database holds for everybody (read outside any test transaction)."""
    with m.engine.connect() as connection:
        return connection.execute(
            select(m.Document.__table__.c[key]).where(m.Document.__table__.c.id == doc_id)
        ).scalar_one_or_none()


class Joined:
    """``connection.begin()`` + ``Session(bind=connection, join_transaction_mode=mode)``."""

    def __init__(self, m, mode, outer_savepoint=False):
        self.connection = m.engine.connect()
        if m.engine.dialect.name == "sqlite":  # for test_failed_outer_commit_keeps_every_file
            self.connection.connection.dbapi_connection.execute("PRAGMA foreign_keys = ON")
        self.outer = self.connection.begin()
        self.savepoint = self.connection.begin_nested() if outer_savepoint else None
        kw = {} if mode is None else {"join_transaction_mode": mode}
        self.session = Session(bind=self.connection, **kw)

    def close(self):
        self.session.close()
        if self.outer.is_active:
            self.outer.rollback()
        self.connection.close()


def _joined_sessions(models):
    """A factory of :class:`Joined` sessions over ``models``, all closed when the test ends."""
    opened = []

    def make(mode, **kw):
        opened.append(Joined(models, mode, **kw))
        return opened[-1]

    yield make
    for j in opened:
        j.close()


@pytest.fixture
def joined(m):
    yield from _joined_sessions(m)


# -- #12.1: sessions joined to an outer transaction ----------------------------------------


@pytest.mark.parametrize("mode", JOIN_MODES)
def test_joined_replace_then_outer_rollback_keeps_old(m, joined, mode, flush):
    doc_id, old = saved(m, content=b"old", thumbed=base._png())
    j = joined(mode)
    doc = j.session.get(m.Document, doc_id)
    doc.content = b"new"
    doc.thumbed = None
    new = doc.content
    flush(j.session)
    j.session.commit()
    assert alive(old["content"]) and alive(old["thumbed"]) and alive(new)  # nothing is durable yet
    j.outer.rollback()
    assert alive(old["content"]) and alive(old["thumbed"]) and gone(new)
    assert committed_content(m, doc_id)["file_id"] == old["content"].file_id


@pytest.mark.parametrize("mode", JOIN_MODES)
def test_joined_replace_then_outer_commit_deletes_old(m, joined, mode, flush):
    doc_id, old = saved(m, content=b"old")
    j = joined(mode)
    doc = j.session.get(m.Document, doc_id)
    doc.content = b"new"
    new = doc.content
    flush(j.session)
    j.session.commit()
    assert alive(old["content"])
    j.outer.commit()
    j.connection.close()  # the commit is known to have succeeded once the connection is back
    assert gone(old["content"]) and alive(new)
    assert committed_content(m, doc_id)["file_id"] == new.file_id


@pytest.mark.parametrize("mode", JOIN_MODES)
def test_joined_upload_removed_when_outer_rolls_back(m, joined, mode, flush):
    j = joined(mode)
    doc = m.Document(name="joined", content=b"x", thumbed=base._png())
    j.session.add(doc)
    flush(j.session)
    j.session.commit()
    values = [doc.content, doc.thumbed]
    assert all(alive(v) for v in values)
    j.session.close()
    j.outer.rollback()
    assert all(gone(v) for v in values) and stored_count() == 0


@pytest.mark.parametrize("mode", JOIN_MODES)
def test_joined_delete_row_waits_for_outer_commit(m, joined, mode, flush):
    doc_id, old = saved(m, content=b"a", second=b"b")
    j = joined(mode)
    j.session.delete(j.session.get(m.Document, doc_id))
    flush(j.session)
    j.session.commit()
    assert all(alive(v) for v in old.values())
    j.outer.commit()
    j.connection.close()
    assert all(gone(v) for v in old.values())


@pytest.mark.parametrize("mode", JOIN_MODES)
def test_joined_several_session_transactions_then_outer_rollback(m, joined, mode, flush):
    doc_id, old = saved(m, content=b"old")
    j = joined(mode)
    doc = j.session.get(m.Document, doc_id)
    doc.content = b"first"
    first = doc.content
    flush(j.session)
    j.session.commit()
    doc = j.session.get(m.Document, doc_id)
    doc.content = b"second"
    second = doc.content
    extra = m.Document(name="extra", content=b"extra")
    extra_value = extra.content
    j.session.add(extra)
    flush(j.session)
    j.session.commit()
    assert alive(old["content"]) and alive(first) and alive(second)
    j.session.close()
    j.outer.rollback()
    assert alive(old["content"]) and gone(first) and gone(second) and gone(extra_value)
    assert stored_count() == 1


@pytest.mark.parametrize("mode", JOIN_MODES)
def test_joined_several_session_transactions_then_outer_commit(m, joined, mode, flush):
    doc_id, old = saved(m, content=b"old")
    j = joined(mode)
    doc = j.session.get(m.Document, doc_id)
    doc.content = b"first"
    first = doc.content
    j.session.commit()
    doc = j.session.get(m.Document, doc_id)
    doc.content = b"second"
    second = doc.content
    flush(j.session)
    j.session.commit()
    j.session.close()
    j.outer.commit()
    j.connection.close()
    assert gone(old["content"]) and gone(first) and alive(second) and stored_count() == 1


@pytest.mark.parametrize("mode", JOIN_MODES)
def test_joined_session_rollback_is_immediate(m, joined, mode, flush):
    doc_id, old = saved(m, content=b"old")
    j = joined(mode)
    doc = j.session.get(m.Document, doc_id)
    doc.content = b"new"
    new = doc.content
    flush(j.session)
    j.session.rollback()
    assert gone(new) and alive(old["content"])


@pytest.mark.parametrize("outcome", ["rollback", "release"])
@pytest.mark.parametrize("mode", JOIN_MODES)
def test_joined_inside_an_outer_savepoint(m, joined, mode, outcome, flush):
    doc_id, old = saved(m, content=b"old")
    j = joined(mode, outer_savepoint=True)
    doc = j.session.get(m.Document, doc_id)
    doc.content = b"new"
    new = doc.content
    added_doc = m.Document(name="added", content=b"added")
    added = added_doc.content
    j.session.add(added_doc)
    flush(j.session)
    j.session.commit()
    assert alive(old["content"]) and alive(new)
    if outcome == "rollback":
        j.savepoint.rollback()
        assert gone(new) and gone(added) and alive(old["content"])
    else:
        j.savepoint.commit()
        assert alive(new) and alive(old["content"])  # released: the outer transaction decides
    j.session.close()
    j.outer.commit()
    j.connection.close()
    if outcome == "rollback":
        assert alive(old["content"]) and stored_count() == 1
        assert committed_content(m, doc_id)["file_id"] == old["content"].file_id
    else:
        assert gone(old["content"]) and alive(new) and alive(added)


@pytest.mark.parametrize("mode", JOIN_MODES)
def test_joined_outer_savepoint_opened_after_the_session_commit(m, joined, mode):
    doc_id, old = saved(m, content=b"old")
    j = joined(mode)
    doc = j.session.get(m.Document, doc_id)
    doc.content = b"new"
    new = doc.content
    j.session.commit()
    j.connection.begin_nested().rollback()  # none of the session's work is inside it
    assert alive(new) and alive(old["content"])
    j.outer.rollback()
    assert gone(new) and alive(old["content"])


def test_control_fully_commit_is_durable_at_once(m, joined, flush):
    doc_id, old = saved(m, content=b"old")
    j = joined("control_fully")
    doc = j.session.get(m.Document, doc_id)
    doc.content = b"new"
    flush(j.session)
    j.session.commit()  # commits the outer transaction itself
    assert not j.outer.is_active
    assert gone(old["content"]) and alive(doc.content)


def test_outer_commit_confirmed_by_the_next_transaction(m, joined):
    doc_id, old = saved(m, content=b"old")
    j = joined(None)
    doc = j.session.get(m.Document, doc_id)
    doc.content = b"new"
    j.session.commit()
    j.outer.commit()
    assert alive(old["content"])  # the commit event fires before COMMIT: not known yet
    with j.connection.begin():
        assert gone(old["content"])


# Not generated for MariaDB, which has no constraint checked at COMMIT.
@pytest.mark.parametrize("db", ["sqlite", "postgresql"], indirect=True)
def test_failed_outer_commit_keeps_every_file(m, joined, flush):
    assert m.checked is not None
    doc_id, old = saved(m, content=b"old")
    j = joined(None)
    doc = j.session.get(m.Document, doc_id)
    doc.content = b"new"
    new = doc.content
    flush(j.session)
    j.session.commit()
    j.connection.execute(insert(m.checked).values(id=1, doc_id=doc_id + 1000))  # violated at COMMIT
    with pytest.raises(IntegrityError):
        j.outer.commit()
    if m.engine.dialect.name == "sqlite":  # SQLite keeps the transaction open after a failed COMMIT
        j.connection.connection.dbapi_connection.rollback()
    j.connection.close()
    assert alive(old["content"])  # the row still points at it
    assert alive(new)  # unknown outcome: kept, an orphan at worst
    assert committed_content(m, doc_id)["file_id"] == old["content"].file_id


def test_joined_outer_rollback_with_the_session_still_open(m, joined):
    doc_id, old = saved(m, content=b"old")
    j = joined("create_savepoint")
    doc = j.session.get(m.Document, doc_id)
    doc.content = b"new"
    new = doc.content
    j.session.commit()
    doc.content = b"newer"  # a second session transaction, never committed
    newer = doc.content
    j.session.flush()
    j.outer.rollback()
    j.session.close()
    assert gone(new) and gone(newer) and alive(old["content"])


# -- #12.2: change a file column, then delete the row before a flush -----------------------


@pytest.mark.parametrize("change", ["replace", "clear"])
@pytest.mark.parametrize("expired", [False, True], ids=["loaded", "expired"])
def test_changed_then_deleted_row_drops_both_values(m, flush, change, expired):
    doc_id, old = saved(m, content=b"old", thumbed=base._png())
    with Session(m.engine) as session:
        doc = session.get(m.Document, doc_id)
        if expired:
            session.expire(doc)
        doc.content = b"new" if change == "replace" else None
        new = doc.content
        session.delete(doc)
        flush(session)
        assert alive(old["content"])
        session.commit()
    assert gone(old["content"]) and gone(old["thumbed"])
    assert new is None or gone(new)
    assert stored_count() == 0


@pytest.mark.parametrize("expired", [False, True], ids=["loaded", "expired"])
def test_changed_then_deleted_row_rollback_keeps_committed(m, flush, expired):
    doc_id, old = saved(m, content=b"old")
    with Session(m.engine) as session:
        doc = session.get(m.Document, doc_id)
        if expired:
            session.expire(doc)
        doc.content = b"new"
        new = doc.content
        session.delete(doc)
        flush(session)
        session.rollback()
    assert alive(old["content"]) and gone(new)


@pytest.mark.parametrize("unloaded", ["expired", "deferred"])
def test_deleting_a_row_already_gone_only_warns(m, unloaded):
    """SQLAlchemy only warns when the row of an object being deleted is gone:
    reading its file column that was not loaded must not fail the flush either,
    and the file, that the row's deleter answers for, is kept."""
    doc_id, old = saved(m, content=b"old")
    with Session(m.engine, expire_on_commit=False) as session:
        doc = session.get(m.Document, doc_id, options=[defer(m.Document.content)] if unloaded == "deferred" else [])
        if unloaded == "expired":
            session.expire(doc, ["content"])
        session.commit()  # ends the read: SQLite would refuse the delete below meanwhile
        with m.engine.begin() as connection:  # behind the session's back
            connection.execute(delete(m.Document.__table__))
        session.delete(doc)
        with pytest.warns(SAWarning, match="0 were matched"):
            session.commit()
    assert alive(old["content"])


def test_changed_in_one_flush_deleted_in_the_next(m):
    doc_id, old = saved(m, content=b"old")
    with Session(m.engine) as session:
        doc = session.get(m.Document, doc_id)
        doc.content = b"flushed"
        flushed = doc.content
        session.flush()
        doc.content = b"last"
        last = doc.content
        session.delete(doc)
        session.commit()
    assert gone(old["content"]) and gone(flushed) and gone(last) and stored_count() == 0


# -- #12.3: objects expunged before their row was written -----------------------------------


def test_expunged_pending_object_does_not_keep_its_upload(m, flush):
    with Session(m.engine) as session:
        doc = m.Document(name="expunged", content=b"x", thumbed=base._png())
        session.add(doc)
        session.expunge(doc)
        session.commit()
        assert session.scalar(select(m.Document.id)) is None
        values = [doc.content, doc.thumbed]
        # Handed back to the object: adding it again would still store it.
        assert all(alive(v) for v in values)
        del doc
        gc.collect()
        assert all(gone(v) for v in values) and stored_count() == 0


def test_expunged_pending_object_added_again_keeps_its_upload(m):
    with Session(m.engine) as session:
        doc = m.Document(name="back", content=b"x")
        session.add(doc)
        session.expunge(doc)
        session.commit()
        session.add(doc)
        session.commit()
        value = doc.content
        doc_id = doc.id
    del doc
    gc.collect()
    assert alive(value) and committed_content(m, doc_id)["file_id"] == value.file_id


def test_expunged_pending_object_added_again_then_rolled_back(m):
    with Session(m.engine) as session:
        doc = m.Document(name="back", content=b"x")
        session.add(doc)
        session.expunge(doc)
        session.commit()
        session.add(doc)
        value = doc.content
        session.rollback()
    assert gone(value)


def test_expunged_object_collected_before_the_commit(m):
    with Session(m.engine) as session:
        doc = m.Document(name="collected", content=b"x")
        session.add(doc)
        session.expunge(doc)
        del doc
        gc.collect()
        session.commit()
    assert stored_count() == 0


def test_expunged_persistent_objects_keep_their_files(m, flush):
    doc_id, old = saved(m, content=b"old")
    with Session(m.engine) as session:
        fresh = m.Document(name="flushed", content=b"flushed")
        session.add(fresh)
        session.flush()  # its row exists: expunging does not unwrite it
        doc = session.get(m.Document, doc_id)
        doc.content = b"new"
        new = doc.content
        session.flush()
        session.expunge(fresh)
        session.expunge(doc)
        session.commit()
    assert alive(fresh.content) and alive(new) and gone(old["content"])
    del fresh, doc
    gc.collect()
    assert alive(new) and stored_count() == 2


def test_expunge_inside_a_savepoint(m, flush):
    with Session(m.engine) as session:
        flushed = m.Document(name="flushed", content=b"flushed")
        session.add(flushed)
        with session.begin_nested():  # flushes "flushed": its row exists
            inner = m.Document(name="inner", content=b"inner")
            pending = m.Document(name="pending", content=b"pending")
            session.add_all([inner, pending])
            session.expunge(pending)
            session.expunge(flushed)
            flush(session)
        session.commit()
        kept, value = flushed.content, pending.content
        del flushed, pending
        gc.collect()
        assert gone(value) and alive(kept) and alive(inner.content) and stored_count() == 2


# -- #11.4: assignments on detached and expired instances ------------------------------------


class StatementCounter:
    def __init__(self, engine):
        self.engine, self.count, self.sql = engine, 0, []
        event.listen(engine, "before_cursor_execute", self)

    def __call__(self, conn, cursor, statement, *args):
        self.count += 1
        self.sql.append(statement)

    def close(self):
        event.remove(self.engine, "before_cursor_execute", self)


@pytest.fixture
def statements(m):
    counter = StatementCounter(m.engine)
    yield counter
    counter.close()


def _detached(m, doc_id, loaded):
    with Session(m.engine, expire_on_commit=False) as session:
        doc = session.get(m.Document, doc_id)
        if not loaded:
            session.expire(doc)
    return doc


@pytest.mark.parametrize("how", ["add", "merge"])
@pytest.mark.parametrize("loaded", [True, False], ids=["loaded", "unloaded"])
def test_assign_on_detached_instance(m, statements, loaded, how):
    doc_id, old = saved(m, content=b"old")
    doc = _detached(m, doc_id, loaded)
    before = statements.count
    doc.content = b"new"  # no DetachedInstanceError, no query
    assert statements.count == before
    new = doc.content
    with Session(m.engine) as session:
        if how == "add":
            session.add(doc)
        else:
            session.merge(doc)
        session.commit()
    assert committed_content(m, doc_id)["file_id"] == new.file_id
    assert alive(new) and gone(old["content"])


@pytest.mark.parametrize("loaded", [True, False], ids=["loaded", "unloaded"])
def test_assign_on_detached_instance_then_rollback(m, statements, loaded):
    doc_id, old = saved(m, content=b"old")
    doc = _detached(m, doc_id, loaded)
    doc.content = b"new"
    new = doc.content
    with Session(m.engine) as session:
        session.add(doc)
        session.flush()
        session.rollback()
    assert gone(new) and alive(old["content"])


def test_assign_on_expired_instance_issues_no_sql(m, statements, flush):
    with Session(m.engine) as session:
        doc = m.Document(name="expired", content=b"old")
        session.add(doc)
        old = doc.content
        session.commit()  # expire_on_commit: every attribute is unloaded
        before = statements.count
        doc.content = b"new"
        assert statements.count == before
        new = doc.content
        flush(session)
        session.commit()
        doc_id = doc.id
    assert committed_content(m, doc_id)["file_id"] == new.file_id
    assert alive(new) and gone(old) and stored_count() == 1


def test_expired_columns_read_back_in_one_query(m, statements):
    doc_id, old = saved(m, content=b"old", second=b"second", thumbed=base._png())
    with Session(m.engine) as session:
        doc = session.get(m.Document, doc_id)
        session.expire(doc)
        doc.content, doc.second, doc.thumbed = b"a", b"b", None
        before = statements.count
        session.flush()
        flush_sql = [" ".join(sql.split()) for sql in statements.sql[before:]]
        # One query reads the three stored values (SQLAlchemy may reload the
        # expired row for its UPDATE on its own: that one also selects "name").
        ours = [sql for sql in flush_sql if sql.startswith("SELECT") and ".name" not in sql]
        assert len(ours) == 1 and all(c in ours[0] for c in ("content", "second", "thumbed")), flush_sql
        session.commit()
    assert all(gone(v) for v in old.values()) and stored_count() == 2


@pytest.mark.parametrize("how", ["merge", "add"])
def test_detached_stale_copy_never_deletes_the_committed_file(m, how):
    doc_id, first = saved(m, content=b"first")
    stale = _detached(m, doc_id, loaded=True)  # remembers "first"
    with Session(m.engine) as session:
        session.get(m.Document, doc_id).content = b"second"
        session.commit()
    second = committed_content(m, doc_id)
    stale.content = b"third"
    third = stale.content
    with Session(m.engine) as session:
        # merge loads the committed "second" and replaces it; add only knows the stale "first"
        getattr(session, how)(stale)
        session.commit()
    assert committed_content(m, doc_id)["file_id"] == third.file_id
    assert gone(first["content"]) and alive(third)
    if how == "merge":
        assert gone(second)
    else:
        assert alive(second)  # an orphan, never a loss


def test_deferred_column_assigned_without_loading(m, statements):
    from sqlalchemy.orm import defer

    doc_id, old = saved(m, content=b"old")
    with Session(m.engine) as session:
        doc = session.scalars(select(m.Document).options(defer(m.Document.content))).one()
        before = statements.count
        doc.content = b"new"
        assert statements.count == before
        new = doc.content
        session.commit()
    assert gone(old["content"]) and alive(new)


def test_expunged_persistent_object_with_an_unflushed_change(m, flush):
    doc_id, old = saved(m, content=b"old")
    with Session(m.engine) as session:
        doc = session.get(m.Document, doc_id)
        doc.content = b"never written"
        value = doc.content
        session.expunge(doc)
        session.commit()
        assert alive(value) and alive(old["content"])  # handed back to the detached object
        assert committed_content(m, doc_id)["file_id"] == old["content"].file_id
        session.add(doc)  # adding it again writes the change
        session.commit()
    assert alive(value) and gone(old["content"])
    assert committed_content(m, doc_id)["file_id"] == value.file_id


def test_expunged_persistent_object_with_an_unflushed_change_collected(m):
    doc_id, old = saved(m, content=b"old")
    with Session(m.engine) as session:
        doc = session.get(m.Document, doc_id)
        doc.content = b"never written"
        value = doc.content
        session.expunge(doc)
        session.commit()
        del doc
        gc.collect()
    assert gone(value) and alive(old["content"]) and stored_count() == 1


def test_flushed_upload_replaced_then_expunged_stays_with_its_row(m):
    # Found by test_fields_property (seed 127): the flushed upload was dropped at assignment.
    with Session(m.engine) as session:
        doc = m.Document(name="flushed", content=b"flushed")
        session.add(doc)
        session.flush()
        flushed, doc_id = doc.content, doc.id
        doc.content = b"never written"
        unwritten = doc.content
        session.expunge(doc)
        session.commit()
    assert alive(flushed) and committed_content(m, doc_id)["file_id"] == flushed.file_id
    del doc
    gc.collect()
    assert gone(unwritten) and stored_count() == 1


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
@pytest.mark.parametrize("mode", JOIN_MODES)
def test_joined_session_closed_without_commit(m, joined, mode, outcome):
    # "rollback_only" (the default at the top level) leaves flushed work in the
    # outer transaction when the session is closed: found by test_fields_property (seed 252).
    doc_id, old = saved(m, content=b"old")
    j = joined(mode)
    doc = j.session.get(m.Document, doc_id)
    doc.content = b"flushed"
    flushed = doc.content
    added = m.Document(name="added", content=b"added")
    j.session.add(added)
    j.session.flush()
    unflushed = m.Document(name="unflushed", content=b"unflushed")
    j.session.add(unflushed)
    values = [flushed, added.content, unflushed.content]
    j.session.close()
    kept = committed_content(m, doc_id)
    getattr(j.outer, outcome)()
    j.connection.close()
    del added, unflushed, doc
    gc.collect()
    stored_now = committed_content(m, doc_id)
    assert alive(stored_now) and stored_now is not None and kept["file_id"] == old["content"].file_id
    if outcome == "rollback" or stored_now["file_id"] == old["content"].file_id:
        # the session's work was rolled back (by the close or by the outer transaction)
        assert alive(old["content"]) and all(gone(v) for v in values) and stored_count() == 1
    else:
        assert stored_now["file_id"] == flushed.file_id
        assert gone(old["content"]) and alive(values[0]) and alive(values[1]) and gone(values[2])
        assert stored_count() == 2


def test_expired_assignment_on_inherited_classes(m, statements):
    with Session(m.engine) as session:
        dog = m.Dog(photo=b"dog photo", bone=b"bone")
        cat = m.Cat(photo=b"cat photo")
        session.add_all([dog, cat])
        session.commit()
        other_dog = m.Dog(photo=b"other photo", bone=b"other bone")
        session.add(other_dog)
        session.commit()
        old = [dog.photo, dog.bone, cat.photo]
        session.expire_all()
        before = statements.count
        dog.photo, dog.bone, cat.photo = b"new dog photo", b"new bone", b"new cat photo"
        assert statements.count == before
        new = [dog.photo, dog.bone, cat.photo]
        session.commit()
        assert all(gone(v) for v in old) and all(alive(v) for v in new)
        assert alive(other_dog.photo) and alive(other_dog.bone) and stored_count() == 5


def test_expunged_then_added_again_and_flushed_keeps_its_upload(m):
    with Session(m.engine) as session:
        doc = m.Document(name="twice", content=b"x")
        session.add(doc)
        session.expunge(doc)
        session.add(doc)
        session.flush()  # its row holds the upload now
        session.expunge(doc)
        session.commit()
        value, doc_id = doc.content, doc.id
    del doc
    gc.collect()
    assert alive(value) and committed_content(m, doc_id)["file_id"] == value.file_id


@pytest.mark.parametrize("how", ["expire", "refresh", "expire_all"])
def test_expiring_an_unflushed_assignment_drops_its_upload(m, how):
    doc_id, old = saved(m, content=b"old")
    with Session(m.engine) as session:
        doc = session.get(m.Document, doc_id)
        doc.content = b"discarded"
        discarded = doc.content
        if how == "expire_all":
            session.expire_all()
        else:
            getattr(session, how)(doc)
        assert doc.content.file_id == old["content"].file_id
        session.commit()
    assert gone(discarded) and alive(old["content"]) and stored_count() == 1


def test_expiring_another_attribute_keeps_the_unflushed_assignment(m):
    doc_id, old = saved(m, content=b"old")
    with Session(m.engine) as session:
        doc = session.get(m.Document, doc_id)
        doc.content = b"new"
        new = doc.content
        session.expire(doc, ["name"])
        session.commit()
    assert alive(new) and gone(old["content"])
    assert committed_content(m, doc_id)["file_id"] == new.file_id


def test_expiring_after_a_flush_keeps_the_written_upload(m):
    doc_id, old = saved(m, content=b"old")
    with Session(m.engine) as session:
        doc = session.get(m.Document, doc_id)
        doc.content = b"new"
        new = doc.content
        session.flush()
        session.expire(doc)
        session.commit()
    assert alive(new) and gone(old["content"])


def test_expunged_object_keeps_its_upload_through_a_rollback(m):
    with Session(m.engine) as session:
        doc = m.Document(name="kept", content=b"x")
        session.add(doc)
        session.flush()  # another object's work, to have something to roll back
        pending = m.Document(name="pending", content=b"y")
        session.add(pending)
        session.expunge(pending)
        session.rollback()
        value = pending.content
        assert gone(doc.content) and alive(value)
        session.add(pending)
        session.commit()
    assert alive(value)


# -- SQLite without the savepoint recipe: the driver commits behind SQLAlchemy's back ----------


@pytest.fixture(scope="module", params=["legacy", "autocommit"])
def lite(request, tmp_path_factory):
    """Plain pysqlite engines: legacy transaction control (SQLAlchemy's default), or
    ``isolation_level=None`` without anybody emitting ``BEGIN`` (every write commits)."""
    path = tmp_path_factory.mktemp("sqlite") / ("%s.db" % request.param)
    engine = create_engine("sqlite:///%s" % path)
    if request.param == "autocommit":
        event.listen(engine, "connect", lambda dbapi_connection, record: setattr(dbapi_connection, "isolation_level", None))
    models = base.make_models(uuid.uuid4().hex[:10])
    models.Base.metadata.create_all(engine)
    models.engine = engine
    models.checked = None
    yield models
    models.Base.metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture
def lm(lite):
    yield lite
    with lite.engine.begin() as connection:
        for table in reversed(lite.Base.metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture
def ljoined(lm):
    yield from _joined_sessions(lm)


def assert_rows_keep_their_files(m):
    """Every file a committed row points at exists (the invariant the fix is about)."""
    with m.engine.connect() as connection:
        for value in connection.execute(select(m.Document.__table__.c.content)).scalars():
            assert value is None or alive(value), value


def committed_names(m):
    with m.engine.connect() as connection:
        return set(connection.execute(select(m.Document.__table__.c.name)).scalars())


def _in_driver_transaction(j):
    return j.connection.connection.dbapi_connection.in_transaction


@pytest.mark.parametrize("mode", JOIN_MODES)
def test_pysqlite_joined_upload_then_outer_rollback(lm, ljoined, mode, flush):
    j = ljoined(mode)
    doc = lm.Document(name="joined", content=b"x")
    value = doc.content
    j.session.add(doc)
    flush(j.session)
    j.session.commit()
    durable = not _in_driver_transaction(j)  # create_savepoint: RELEASE committed for real
    assert durable == (mode == "create_savepoint" or lm.engine.url.database.endswith("autocommit.db"))
    j.session.close()
    j.outer.rollback()
    present = "joined" in committed_names(lm)
    assert present == durable
    assert alive(value) if present else gone(value)
    assert_rows_keep_their_files(lm)


@pytest.mark.parametrize("mode", JOIN_MODES)
def test_pysqlite_joined_replace_then_outer_rollback(lm, ljoined, mode, flush):
    doc_id, old = saved(lm, content=b"old")
    j = ljoined(mode)
    doc = j.session.get(lm.Document, doc_id)
    doc.content = b"new"
    new = doc.content
    flush(j.session)
    j.session.commit()
    j.outer.rollback()
    stored = committed_content(lm, doc_id)["file_id"]
    assert alive(old["content"])  # replaced or not, the old file is kept when unsure
    if stored == new.file_id:
        assert alive(new)
    else:
        assert stored == old["content"].file_id and gone(new)
    assert_rows_keep_their_files(lm)


@pytest.mark.parametrize("outcome", ["rollback", "release"])
@pytest.mark.parametrize("mode", JOIN_MODES)
def test_pysqlite_joined_inside_an_outer_savepoint(lm, ljoined, mode, outcome, flush):
    j = ljoined(mode, outer_savepoint=True)  # its SAVEPOINT starts the driver's transaction
    doc = lm.Document(name="added", content=b"added")
    value = doc.content
    j.session.add(doc)
    flush(j.session)
    j.session.commit()  # (reading doc now would open a savepoint the user's rollback removes)
    if outcome == "rollback":
        j.savepoint.rollback()  # ROLLBACK TO SAVEPOINT really undoes the row
        assert gone(value)
    else:
        j.savepoint.commit()  # RELEASE: the driver commits
    j.session.close()
    j.outer.rollback()
    present = bool(committed_names(lm) & {"added"})
    assert present == (outcome == "release")
    assert alive(value) if present else gone(value)
    assert_rows_keep_their_files(lm)


def test_pysqlite_released_savepoint_then_more_work_then_outer_rollback(lm, ljoined):
    """The driver's transaction the rollback undoes started after the session's rows were committed."""
    j = ljoined("create_savepoint")
    doc = lm.Document(name="first", content=b"first")
    j.session.add(doc)
    j.session.commit()  # RELEASE: committed
    first, doc_id = doc.content, doc.id
    j.connection.execute(insert(lm.Document.__table__).values(name="raw"))  # starts a driver transaction
    later = lm.Document(name="later", content=b"later")
    j.session.add(later)
    j.session.commit()
    j.session.close()
    j.outer.rollback()
    assert committed_content(lm, doc_id) is not None and alive(first)
    assert_rows_keep_their_files(lm)


@pytest.mark.parametrize("end", ["rollback", "close"])
@pytest.mark.parametrize("nested", [False, True])
def test_pysqlite_plain_session(lm, nested, end):
    """A session of its own: commit keeps, rollback deletes, unless the driver committed already."""
    with Session(lm.engine) as session:
        kept = lm.Document(name="kept", content=b"kept")
        session.add(kept)
        session.commit()
        old = kept.content
        kept.content = b"replacement"
        new = kept.content
        session.commit()
        assert gone(old) and alive(new)
        if nested:
            with session.begin_nested():  # SAVEPOINT, then RELEASE: on pysqlite that commits
                doc = lm.Document(name="nested", content=b"nested")
                session.add(doc)
        else:
            doc = lm.Document(name="plain", content=b"plain")
            session.add(doc)
            session.flush()
        value = doc.content
        doc_id = doc.id
        getattr(session, end)()
    present = committed_content(lm, doc_id) is not None
    assert present == (nested or lm.engine.url.database.endswith("autocommit.db"))
    assert alive(value) if present else gone(value)
    assert_rows_keep_their_files(lm)


def test_pysqlite_savepoint_rollback_still_deletes(lm):
    with Session(lm.engine) as session:
        session.add(lm.Document(name="before", content=b"before"))
        session.flush()  # the driver's transaction is open (legacy mode): the savepoint nests in it
        savepoint = session.begin_nested()
        doc = lm.Document(name="inner", content=b"inner")
        session.add(doc)
        session.flush()
        value = doc.content
        savepoint.rollback()
        assert gone(value)
        session.commit()
    assert_rows_keep_their_files(lm)


def test_pysqlite_rollback_without_writes_deletes_the_uploads(lm):
    with Session(lm.engine) as session:
        session.execute(select(lm.Document.__table__.c.id)).all()  # no driver transaction
        doc = lm.Document(name="never", content=b"never")
        session.add(doc)
        value = doc.content
        session.rollback()
    assert gone(value)


# Not generated for autocommit mode, where every write escapes.
@pytest.mark.parametrize("lite", ["legacy"], indirect=True)
def test_pysqlite_escape_lasts_one_transaction(lm):
    """After a transaction the driver committed early, the next one deletes its uploads again."""
    with lm.engine.connect() as connection:
        outer = connection.begin()
        with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
            session.add(lm.Document(name="durable", content=b"durable"))
            session.commit()  # RELEASE: committed by the driver
        outer.rollback()
        outer = connection.begin()
        with Session(bind=connection, join_transaction_mode="rollback_only") as session:
            doc = lm.Document(name="undone", content=b"undone")
            value = doc.content
            session.add(doc)
            session.commit()  # the INSERT opened a real driver transaction
        outer.rollback()
    assert committed_names(lm) == {"durable"}
    assert gone(value)
    assert_rows_keep_their_files(lm)


# -- files changing hands inside one transaction --------------------------------------------


def committed_files_exist(m):
    """Every file the committed rows point at is still stored."""
    with Session(m.engine) as session:
        rows = session.scalars(select(m.Document)).all()
        paths = [p for row in rows for key in ("content", "second") for p in files_of(getattr(row, key))]
    missing = [p for p in paths if not base.exists(p)]
    assert not missing, "committed rows point at deleted files %s" % missing
    return paths


def two_docs(m, session):
    r1 = base.committed_doc(m, session, content=b"one")
    r2 = base.committed_doc(m, session, content=b"two")
    return r1, r2


def test_swap_keeps_both_files(m, flush):
    with Session(m.engine) as session:
        r1, r2 = two_docs(m, session)
        one, two = r1.content, r2.content
        r1.content, r2.content = r2.content, r1.content
        flush(session)
        session.commit()
        assert alive(one) and alive(two)
    committed_files_exist(m)


def test_move_keeps_the_moved_file_and_drops_the_replaced_one(m, flush):
    with Session(m.engine) as session:
        r1, r3 = two_docs(m, session)
        moved, replaced = r1.content, r3.content
        r3.content = r1.content
        r1.content = None
        flush(session)
        session.commit()
        assert alive(moved) and gone(replaced)
    committed_files_exist(m)


@pytest.mark.parametrize("how", ["flush", "autoflush", "begin_nested"])
def test_value_put_back_after_a_flush(m, how):
    with Session(m.engine) as session:
        d = base.committed_doc(m, session, content=b"old")
        old = d.content
        d.content = b"new"
        new = d.content
        base.flush_by(session, how, m.Document)
        d.content = old
        session.commit()
        assert alive(old) and gone(new)
    committed_files_exist(m)


def test_value_put_back_in_a_released_savepoint(m):
    with Session(m.engine) as session:
        d = base.committed_doc(m, session, content=b"old")
        old = d.content
        d.content = b"new"
        session.flush()
        with session.begin_nested():
            d.content = old
        session.commit()
        assert alive(old)
    committed_files_exist(m)


def test_shared_value_reassigned(m, flush):
    with Session(m.engine) as session:
        a, b = two_docs(m, session)
        a.content = b"F"
        shared = a.content
        b.content = a.content
        flush(session)
        a.content = b"G"
        session.commit()
        assert alive(shared) and alive(a.content)
    committed_files_exist(m)


def test_shared_value_kept_by_the_flushed_row_through_a_savepoint_rollback(m):
    with Session(m.engine) as session:
        a, b = two_docs(m, session)
        a.content = b"F"
        shared = a.content
        session.flush()
        savepoint = session.begin_nested()
        b.content = shared
        session.flush()
        savepoint.rollback()
        session.commit()
        assert alive(shared)
    committed_files_exist(m)


@pytest.mark.parametrize("mode", JOIN_MODES)
def test_swap_in_a_joined_session(m, joined, mode):
    with Session(m.engine) as session:
        r1, r2 = two_docs(m, session)
        ids = r1.id, r2.id
    j = joined(mode)
    r1, r2 = (j.session.get(m.Document, i) for i in ids)
    one, two = r1.content, r2.content
    r1.content, r2.content = r2.content, r1.content
    j.session.commit()
    j.outer.commit()
    j.close()  # the connection's return to the pool confirms the commit
    assert alive(one) and alive(two)
    committed_files_exist(m)


# -- uploads moved to another session -----------------------------------------------------


def _sessions(m):
    return Session(m.engine), Session(m.engine)


@pytest.mark.parametrize("began", [False, True])
@pytest.mark.parametrize("b_commits_first", [True, False], ids=["commit-then-rollback", "rollback-then-commit"])
def test_pending_object_moved_to_another_session_survives_the_first_rollback(m, began, b_commits_first):
    a, b = _sessions(m)
    with a, b:
        if began:
            a.begin()
        doc = m.Document(name="moved", content=b"x")
        a.add(doc)
        value = doc.content
        a.expunge(doc)
        b.add(doc)
        for end in ((b.commit, a.rollback) if b_commits_first else (a.rollback, b.commit)):
            end()
        assert alive(value)
    committed_files_exist(m)


def test_persistent_object_with_an_unflushed_change_moved_to_another_session(m):
    doc_id, _ = saved(m, content=b"old")
    with Session(m.engine) as loader:
        doc = loader.get(m.Document, doc_id)
    a, b = _sessions(m)
    with a, b:
        a.add(doc)  # no SQL in A: SQLite lets one writer at a time
        doc.content = b"new"
        value = doc.content
        a.expunge(doc)
        b.add(doc)
        b.commit()
        a.rollback()
        assert alive(value)
        assert committed_content(m, doc_id) == value
    committed_files_exist(m)


def test_merge_into_another_session(m):
    a, b = _sessions(m)
    with a, b:
        doc = m.Document(name="merged", content=b"x")
        a.add(doc)
        value = doc.content
        copy = b.merge(doc)
        b.commit()
        a.rollback()
        assert alive(value) and copy.content["files"] == value["files"]
    committed_files_exist(m)


def test_value_copied_from_an_object_pending_in_another_session(m):
    a, b = _sessions(m)
    with a, b:
        first = m.Document(name="first", content=b"x")
        a.add(first)
        second = m.Document(name="second", content=first.content)
        b.add(second)
        b.commit()
        a.rollback()
        assert alive(second.content)
    committed_files_exist(m)


@pytest.mark.parametrize("fresh", [True, False], ids=["fresh", "read"])
def test_value_shared_by_two_committed_rows_survives_one_replacement(m, fresh):
    with Session(m.engine) as session:
        a, b = two_docs(m, session)
        if fresh:
            a.content = b"F"
        shared = a.content
        b.content = a.content
        session.commit()
        a.content = b"G"  # a later transaction: b's row still holds the file
        session.commit()
        assert alive(shared)
    committed_files_exist(m)
