"""Random transaction histories against the SQLAlchemy attachment tracker.

Each seed plays a short random history on one session: new rows, assignments,
replacements, clearing, row deletions, flushes, nested savepoints released or
rolled back, rollbacks, commits, expunges (and adding back), expiry, detached
assignments, files changing hands (swaps, moves, a value put back after a
flush, a value shared by two rows), objects moved to a second session that
commits (PostgreSQL), and
for some seeds an outer ``connection.begin()`` the session joins (every
``join_transaction_mode``), with savepoints of its own between session
transactions.  After every step, every row committed to the database must
have its files; once the history's transactions are over and its objects
gone, the storages must hold exactly the files of the committed rows (an
upload two rows shared before a flush may stay behind: when unsure the
tracker keeps the file).

``DEPOT_PROPERTY_SEEDS=<n>`` multiplies the seed counts (300 on SQLite, 100 on
PostgreSQL by default); ``DEPOT_PROPERTY_SEED=<seed>`` replays one seed (its
number and steps are in every failure message).
"""
from __future__ import annotations

import gc
import os
import random
import uuid

import pytest
from sqlalchemy import Column, Integer, create_engine, event, inspect, select
from sqlalchemy.orm import Session, declarative_base

from depot.fields._lifecycle import files_of
from depot.fields.sqlalchemy import UploadedFileField
from depot.manager import DepotManager
from tests import test_fields_sqlalchemy as base

SEEDS = {"sqlite": 300, "sqlite-legacy": 150, "postgresql": 100}
JOIN_MODES = [None, "conditional_savepoint", "create_savepoint", "rollback_only", "control_fully"]
STORAGES = ("default", "other")


def _seeds(kind):
    if os.environ.get("DEPOT_PROPERTY_SEED"):
        return [int(os.environ["DEPOT_PROPERTY_SEED"])]
    return range(SEEDS[kind] * int(os.environ.get("DEPOT_PROPERTY_SEEDS", "1")))


@pytest.fixture(scope="module", params=["sqlite", "sqlite-legacy", "postgresql"])
def db(request, tmp_path_factory):
    if request.param.startswith("sqlite"):
        path = tmp_path_factory.mktemp("sqlite") / "property.db"
        # legacy: pysqlite's own transaction control, without the savepoint recipe;
        # a released outermost savepoint commits, a later rollback undoes nothing.
        engine = create_engine("sqlite:///%s" % path) if "legacy" in request.param else base._sqlite_engine(path)
        # Durability is not under test: no fsync per commit keeps hundreds of histories quick.
        event.listen(engine, "connect", lambda dbapi_connection, record: dbapi_connection.execute(
            "PRAGMA synchronous = OFF"
        ))
    else:
        engine = create_engine(request.getfixturevalue("postgresql_url"))
    Base = declarative_base()

    class Row(Base):
        __tablename__ = "depot_prop_%s" % uuid.uuid4().hex[:10]
        id = Column(Integer, primary_key=True, autoincrement=False)
        a = Column(UploadedFileField)
        b = Column(UploadedFileField(upload_storage="other"))

    Base.metadata.create_all(engine)
    yield engine, Row, request.param
    Base.metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture
def storages():
    DepotManager._clear()
    for name in STORAGES:
        DepotManager.configure(name, {"depot.backend": "memory"})
    yield
    DepotManager._clear()


def stored():
    return {"%s/%s" % (name, file_id) for name in STORAGES for file_id in DepotManager.get(name).files}


class History:
    """One seed's random history; ``log`` is what it did, for the failure messages."""

    def __init__(self, seed, engine, Row, exact=True, script=None):
        self.seed, self.engine, self.Row = seed, engine, Row
        # A fixed history (regression tests): its choices by name, "steps" the operations.
        self.script = script
        # Whether the storages must end with no orphan: where the driver commits
        # behind SQLAlchemy's back, the tracker keeps files it cannot place.
        self.exact = exact
        self.rng = random.Random(seed)
        self.log = []
        self.next_id = 1
        self.content = 0
        self.objects = []  # rows this history handled, in or out of the session
        self.left = []  # objects expunged: kept alive until the end, then collected
        self.session = self.connection = self.outer = None
        self.shared = set()  # files of uploads two holders took before a flush: may be orphans
        self.outer_savepoints = []
        self.savepoints = []

    # -- helpers -------------------------------------------------------------------

    def fail(self, message):
        pytest.fail("seed %d (DEPOT_PROPERTY_SEED=%d): %s\nsteps: %s" % (self.seed, self.seed, message, self.log))

    def committed_rows(self):
        with self.engine.connect() as connection:
            return connection.execute(select(self.Row.__table__)).all()

    def committed_files(self):
        return {path for row in self.committed_rows() for value in (row.a, row.b) for path in files_of(value)}

    def check_committed(self, step):
        missing = {p for p in self.committed_files() if not base.exists(p)}
        if missing:
            self.fail("after %s, committed rows point at deleted files %s" % (step, sorted(missing)))

    def blob(self):
        self.content += 1
        return b"content %d" % self.content

    def live(self):
        session = self.session
        return [o for o in self.objects if o in session and o not in session.deleted and not inspect(o).deleted]

    @staticmethod
    def ident(obj):
        # Never read obj.id: on an expired object it would query (and autoflush).
        identity = inspect(obj).identity
        return identity[0] if identity else obj.__dict__.get("id")

    def readdable(self):
        def intact(obj):
            return all(base.alive(v) for v in (obj.__dict__.get("a"), obj.__dict__.get("b")) if v)

        return [o for o in self.left if inspect(o).transient and intact(o)]

    def pick(self, candidates):
        return self.rng.choice(candidates) if candidates else None

    def decide(self, name, draw):
        """The script's choice ``name`` if it makes it, else ``draw()`` (the random one)."""
        if self.script is not None and name in self.script:
            return self.script[name]
        return draw()

    def joined_transactions(self):
        """The transactions of the connection the session joined that are still going on."""
        if self.connection is None:
            return []
        return [t for t in [self.outer] + self.outer_savepoints if t.is_active]

    def start_afresh(self):
        """Forget the session's objects: rows they stand for may be gone without the session knowing."""
        self.session.expunge_all()
        self.left += self.objects
        self.objects = []

    # -- the history ---------------------------------------------------------------

    def run(self):
        rng = self.rng
        with Session(self.engine) as setup:
            for _ in range(self.decide("rows", lambda: rng.randint(0, 3))):
                setup.add(self.Row(id=self._id(), a=self.blob(), b=self.blob() if rng.random() < 0.5 else None))
            setup.commit()
        self.check_committed("setup")
        kw = {"expire_on_commit": self.decide("expire_on_commit", lambda: rng.random() < 0.5)}
        if self.decide("joined", lambda: rng.random() < 0.5):
            mode = self.decide("join_mode", lambda: rng.choice(JOIN_MODES))
            self.log.append("joined(%s)" % mode)
            self.connection = self.engine.connect()
            self.outer = self.connection.begin()
            if self.decide("outer_savepoint", lambda: rng.random() < 0.3):
                self.outer_savepoints.append(self.connection.begin_nested())
                self.log.append("outer savepoint")
            if mode is not None:
                kw["join_transaction_mode"] = mode
            self.session = Session(bind=self.connection, **kw)
        else:
            self.session = Session(self.engine, **kw)
        for op in self.decide("steps", lambda: [None] * rng.randint(3, 16)):
            step = self.step(op)
            self.check_committed(step)
        self.finish()

    def _id(self):
        self.next_id += 1
        return self.next_id

    def step(self, op=None):
        rng, session = self.rng, self.session
        ops = ["new", "assign", "assign", "clear", "delete", "flush", "commit", "rollback", "begin_nested",
               "end_nested", "end_nested", "expunge", "expire", "load", "detached_assign", "readd",
               "swap", "move", "put_back", "share"]
        if self.engine.dialect.name == "postgresql":  # SQLite lets one connection write at a time
            ops.append("other_session")
        if self.connection is not None and not session.in_transaction():
            ops += ["outer_begin_nested", "outer_end_nested"]
        op = op or rng.choice(ops)
        obj = self.pick(self.live())
        column = rng.choice("ab")
        detail = op
        if op == "new":
            obj = self.Row(id=self._id(), a=self.blob())
            if rng.random() < 0.5:
                obj.b = self.blob()
            session.add(obj)
            self.objects.append(obj)
            detail = "new %d" % obj.id
        elif op in ("assign", "clear") and obj is not None:
            setattr(obj, column, self.blob() if op == "assign" else None)
            detail = "%s %d.%s" % (op, self.ident(obj), column)
        elif op == "delete" and obj is not None and inspect(obj).persistent:
            detail = "delete %d" % self.ident(obj)
            session.delete(obj)
        elif op in ("swap", "move", "share") and obj is not None:
            other = self.pick([o for o in self.live() if o is not obj])
            if other is None:
                return self._note("(%s: one row only)" % op)
            mine, theirs = getattr(obj, column), getattr(other, column)
            self.shared.update(files_of(mine) + files_of(theirs))
            if op == "swap":
                setattr(obj, column, theirs)
                setattr(other, column, mine)
            elif op == "move":
                setattr(other, column, mine)
                setattr(obj, column, None)
            else:
                setattr(other, column, mine)
                if rng.random() < 0.5:
                    setattr(obj, column, self.blob())
            detail = "%s %d.%s %d.%s" % (op, self.ident(obj), column, self.ident(other), column)
        elif op == "put_back" and obj is not None and inspect(obj).persistent:
            old = getattr(obj, column)
            self.shared.update(files_of(old))
            setattr(obj, column, self.blob())
            how = rng.choice(["flush", "autoflush", "begin_nested"])
            base.flush_by(session, how, self.Row)
            setattr(obj, column, old)
            detail = "put back %d.%s after %s" % (self.ident(obj), column, how)
        elif op == "other_session" and obj is not None and inspect(obj).pending:
            # Moved to a second session that commits it: the first one's rollback must keep its files.
            session.expunge(obj)
            self.objects.remove(obj)
            with Session(self.engine) as second:
                second.add(obj)
                second.commit()
            self.left.append(obj)
            detail = "moved %d to another session, committed" % self.ident(obj)
        elif op == "flush":
            session.flush()
        elif op == "commit":
            session.commit()
            self.savepoints.clear()
        elif op == "rollback":
            joined = self.joined_transactions()
            session.rollback()
            self.savepoints.clear()
            if any(not t.is_active for t in joined):
                # The session rolled back the transaction it joined ("rollback_only"):
                # rows its earlier commits wrote there are gone, yet their objects stay
                # persistent; SQLAlchemy itself fails on them (ObjectDeletedError).
                self.start_afresh()
                detail = "rollback (and the joined transaction)"
        elif op == "begin_nested" and len(self.savepoints) < 3:
            self.savepoints.append(session.begin_nested())
        elif op == "end_nested" and self.savepoints:
            savepoint = self.savepoints.pop()
            how = rng.choice(["commit", "rollback"])
            getattr(savepoint, how)()
            detail = "%s nested" % how
        elif op == "expunge" and obj is not None:
            detail = "expunge %d (%s)" % (self.ident(obj), "pending" if inspect(obj).pending else "persistent")
            session.expunge(obj)
            self.objects.remove(obj)
            self.left.append(obj)
        elif op == "readd" and self.readdable():
            # An object expunged before its row was written, added again: its
            # upload must be stored with it.  (One whose upload a rollback deleted
            # is not re-added: that loss is documented in docs/database.rst.)
            obj = self.rng.choice(self.readdable())
            session.add(obj)
            self.left.remove(obj)
            self.objects.append(obj)
            detail = "readd %d" % self.ident(obj)
        elif op == "expire" and obj is not None and inspect(obj).persistent:
            # Discards unflushed assignments: their uploads must go.
            session.expire(obj)
            detail = "expire %d" % self.ident(obj)
        elif op == "load":
            for loaded in session.scalars(select(self.Row)).all():
                if loaded not in self.objects:
                    self.objects.append(loaded)
        elif op == "detached_assign" and obj is not None and inspect(obj).persistent and not session.is_modified(obj):
            # Expunge, assign while detached (no SQL), add back: the one-step form keeps
            # no other copy of the row from appearing meanwhile.
            session.expunge(obj)
            setattr(obj, column, self.blob() if rng.random() < 0.8 else None)
            session.add(obj)
            detail = "detached assign %d.%s" % (self.ident(obj), column)
        elif op == "outer_begin_nested" and len(self.outer_savepoints) < 3 and self.outer.is_active:
            self.outer_savepoints.append(self.connection.begin_nested())
            detail = "outer savepoint"
        elif op == "outer_end_nested" and self.outer_savepoints:
            savepoint = self.outer_savepoints.pop()
            if savepoint.is_active:
                how = rng.choice(["commit", "rollback"])
                getattr(savepoint, how)()
                detail = "%s outer savepoint" % how
                if how == "rollback":
                    # Rows the session committed may be gone: its objects are stale, as
                    # after any rollback the session did not see; an application starts afresh.
                    self.start_afresh()
            else:
                detail = "outer savepoint already ended"
        else:
            detail = "(%s: nothing to do)" % op
        return self._note(detail)

    def _note(self, detail):
        self.log.append(detail)
        return detail

    def abandon(self):
        """Close what a failed history left open, so that the next tests can use the database."""
        if self.session is not None:
            self.session.close()
        if self.connection is not None:
            self.connection.close()

    def finish(self):
        rng = self.rng
        if self.decide("commit_at_end", lambda: rng.random() < 0.5):
            self.session.commit()
            self.log.append("commit")
        self.session.close()
        self.check_committed("session closed")
        if self.connection is not None:
            if self.outer.is_active:
                how = self.decide("outer_end", lambda: rng.choice(["commit", "rollback"]))
                getattr(self.outer, how)()
                self.log.append("%s outer" % how)
            self.connection.close()
            self.check_committed("outer transaction over")
        self.objects.clear()
        self.left.clear()
        self.savepoints.clear()
        self.outer_savepoints.clear()
        self.session = self.outer = self.connection = None
        expected, actual = self.committed_files(), stored()
        if expected != actual:
            # Objects in reference cycles release their uploads only when collected
            # (a full collection for every seed would dominate the run time).
            gc.collect()
            actual = stored()
        if expected - actual or (self.exact and actual - expected - self.shared):
            self.fail("at the end, missing %s, orphaned %s" % (sorted(expected - actual), sorted(actual - expected)))


def play(db, seed, script=None):
    """Play one history on a clean database and storages; returns it."""
    engine, Row, kind = db
    with engine.begin() as connection:
        connection.execute(Row.__table__.delete())
    for name in STORAGES:
        DepotManager.get(name).files.clear()
    history = History(seed, engine, Row, exact=kind != "sqlite-legacy", script=script)
    try:
        history.run()
    except pytest.fail.Exception:
        raise
    except Exception as exc:
        history.fail("%s: %s" % (type(exc).__name__, exc))
    finally:
        history.abandon()
    return history


def test_random_transaction_histories(db, storages):
    for seed in _seeds(db[2]):
        play(db, seed)


def test_rollback_of_the_joined_transaction_leaves_no_stale_object(db, storages):
    """Seed 3022, shrunk.  A session joined in the default mode commits a row
    into the transaction it joined, then its rollback ends that transaction:
    the row is gone with its file, but its object stays persistent, and
    SQLAlchemy's own flush of its deletion fails (ObjectDeletedError).  The
    history starts afresh after such a rollback, as an application must."""
    history = play(db, 3022, script={
        "rows": 0, "expire_on_commit": False, "joined": True, "join_mode": None, "outer_savepoint": False,
        "steps": ["new", "commit", "load", "rollback", "delete"], "commit_at_end": True,
    })
    assert "rollback (and the joined transaction)" in history.log
