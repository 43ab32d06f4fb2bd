"""``depot fsck`` and :func:`depot.fsck.check` on real databases (SQLite, PostgreSQL, MariaDB) and storages.

The models live in a module written to a temporary directory and imported
by name, as ``depot fsck --models`` does.  Rows are inserted with their
attachments' JSON (the layout UploadedFile writes, thumbnails included) so
that thousands of them take seconds; a few rows are stored through the ORM
with real images to show the real layout is read the same way.
"""
import contextlib
import datetime
import json
import sys
import textwrap
import uuid

import pytest

pytest.importorskip("sqlalchemy")
from sqlalchemy import column, create_engine, insert, table, update  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

import depot.io.utils  # noqa: E402
from depot.cli.errors import ExitCode  # noqa: E402
from depot.fsck import DEFAULT_GRACE, FsckError, SQLAlchemySource, check, parse_duration, referenced_paths  # noqa: E402
from depot.manager import DepotManager  # noqa: E402

#: Rows of the worlds of the two tests #15 asks for "in a database with
#: thousands of rows" (more than one batch of ROWS_PER_BATCH).
ROWS = 3000
#: Rows of every other world: their point is one rule each, not the size, and
#: storing each world's files is what the test run spends its time on.
SMALL_ROWS = 300
OLD = "2020-01-01 00:00:00"

MODELS = '''
from sqlalchemy import Column, Integer, String
from sqlalchemy.orm import declarative_base
from depot.fields.sqlalchemy import UploadedFileField
from depot.fields.specialized.image import UploadedImageWithThumb
from depot.fields.filters.thumbnails import WithThumbnailFilter

Base = declarative_base()

class Doc(Base):
    __tablename__ = "fsck_docs_{suffix}"
    id = Column(Integer, primary_key=True)
    title = Column(String(50))
    content = Column(UploadedFileField())

class Photo(Base):
    __tablename__ = "fsck_photos_{suffix}"
    code = Column(String(20), primary_key=True)
    image = Column(UploadedFileField(upload_storage="pics", upload_type=UploadedImageWithThumb,
                                     filters=[WithThumbnailFilter((16, 16))]))
'''


@contextlib.contextmanager
def backdated(stamp=OLD):
    """Files stored inside get ``stamp`` as their modification time (the storages ask utils.timestamp())."""
    original = depot.io.utils.timestamp
    depot.io.utils.timestamp = lambda: stamp
    try:
        yield
    finally:
        depot.io.utils.timestamp = original


def _value(storage_name, storage, thumb=False, content=b"data"):
    """An attachment's JSON as UploadedFile writes it (with an image thumbnail when ``thumb``)."""
    file_id = storage.create(content, "f.bin", "application/octet-stream")
    path = "%s/%s" % (storage_name, file_id)
    value = {"depot_name": storage_name, "files": [path], "file_id": file_id, "path": path,
             "filename": "f.bin", "content_type": "application/octet-stream",
             "uploaded_at": "2026-01-01 00:00:00", "_public_url": None}
    if thumb:
        thumb_id = storage.create(b"thumb", "thumb.png", "image/png")
        thumb_path = "%s/%s" % (storage_name, thumb_id)
        value["files"].append(thumb_path)
        value.update({"thumb_16x16_id": thumb_id, "thumb_16x16_path": thumb_path, "thumb_16x16_url": None})
    return value


class World:
    """Two tables (one using an alias), two storages, and a known set of disagreements."""

    def __init__(self, engine, models, files, photos):
        self.engine, self.m, self.files, self.photos = engine, models, files, photos
        self.expected_missing = {}
        self.old_orphans = set()
        self.young_orphans = set()

    def populate(self, rows=ROWS):
        docs = [{"id": i, "title": "doc %d" % i, "content": json.dumps(_value("files", self.files))}
                for i in range(1, rows + 1)]  # from 1: MySQL takes an id of 0 for "auto-increment"
        photos = [{"code": "p%04d" % i, "image": json.dumps(_value("photos", self.photos, thumb=True))}
                  for i in range(rows // 10)]
        docs.append({"id": rows + 1, "title": "no file", "content": None})
        with self.engine.begin() as conn:
            conn.execute(insert(raw(self.m.Doc)), docs)
            conn.execute(insert(raw(self.m.Photo)), photos)
        self.docs = {d["id"]: json.loads(d["content"]) for d in docs if d["content"]}
        self.photo_values = {p["code"]: json.loads(p["image"]) for p in photos}

    def add_orm_rows(self):
        from tests.test_fields_sqlalchemy import _png

        with Session(self.engine) as session:
            session.add(self.m.Doc(id=10**6, content=b"through the ORM"))
            session.add(self.m.Photo(code="orm", image=_png()))
            session.commit()

    def break_things(self):
        # A row whose main file is gone.
        gone = self.docs[100]
        self.files.delete(gone["file_id"])
        self.expected_missing[gone["path"]] = ["fsck_docs_%s" % self.m.suffix, [100], "content"]
        # A photo whose thumbnail is gone.
        photo = self.photo_values["p0005"]
        self.photos.delete(photo["thumb_16x16_id"])
        self.expected_missing[photo["thumb_16x16_path"]] = ["fsck_photos_%s" % self.m.suffix, ["p0005"], "image"]
        # A photo replaced while its old files (main and thumbnail) were never deleted.
        with backdated():
            replaced = _value("photos", self.photos, thumb=True)
        new = _value("photos", self.photos, thumb=True)
        photos = raw(self.m.Photo)
        with self.engine.begin() as conn:
            conn.execute(update(photos).where(photos.c.code == "p0007"), {"image": json.dumps(new)})
            conn.execute(update(photos).where(photos.c.code == "p0008"), {"image": json.dumps(replaced)})
        old = self.photo_values["p0008"]
        self.photo_values["p0007"], self.photo_values["p0008"] = new, replaced
        # p0008's previous files are old orphans: backdate them by rewriting them in place.
        for path in old["files"]:
            with backdated():
                self.photos.replace(path.split("/", 1)[1], b"old", "old.bin")
            self.old_orphans.add(path)
        # p0007's previous files were created just now: young orphans.
        self.young_orphans.update(self._previous_p0007)
        # An old orphan main file and a young one.
        with backdated():
            self.old_orphans.add("files/" + self.files.create(b"lost", "lost.bin"))
        self.young_orphans.add("files/" + self.files.create(b"in flight", "new.bin"))

    def remember_p0007(self):
        self._previous_p0007 = list(self.photo_values["p0007"]["files"])

    def referenced(self):
        paths = set()
        for value in list(self.docs.values()) + list(self.photo_values.values()):
            paths.update(value["files"])
        return paths - set(self.expected_missing)


def raw(model):
    """The model's table without column types: values are written as given (JSON text), as a migration would."""
    t = model.__table__
    return table(t.name, *[column(c.name) for c in t.columns])


def write_models(tmp_path, monkeypatch):
    suffix = uuid.uuid4().hex[:8]
    name = "fsck_models_%s" % suffix
    (tmp_path / ("%s.py" % name)).write_text(textwrap.dedent(MODELS.format(suffix=suffix)))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(name)
    module.suffix = suffix
    return name, module


def write_config(tmp_path):
    config = tmp_path / "depot.toml"
    config.write_text(textwrap.dedent('''
        [depot]
        default = "files"
        [depot.aliases]
        pics = "photos"
        [depot.storages.files]
        backend = "local"
        storage_path = "%s"
        [depot.storages.photos]
        backend = "local"
        storage_path = "%s"
    ''' % (tmp_path / "files", tmp_path / "photos")))
    return config


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return "sqlite:///%s" % (tmp_path / "fsck.db")
    return request.getfixturevalue("%s_url" % request.param)


@pytest.fixture
def local_depots(tmp_path):
    DepotManager._clear()
    DepotManager.configure("files", {"depot.backend": "local", "depot.storage_path": str(tmp_path / "files")})
    DepotManager.configure("photos", {"depot.backend": "local", "depot.storage_path": str(tmp_path / "photos")})
    DepotManager.alias("pics", "photos")
    DepotManager.set_default("files")
    yield DepotManager.get("files"), DepotManager.get("photos")
    DepotManager._clear()


@pytest.fixture
def world(request, db_url, tmp_path, monkeypatch, local_depots, no_ambient_settings):
    """The world of SMALL_ROWS rows; ``@pytest.mark.thousands_of_rows`` asks for ROWS."""
    name, module = write_models(tmp_path, monkeypatch)
    engine = create_engine(db_url)
    module.Base.metadata.create_all(engine)
    w = World(engine, module, *local_depots)
    w.module_name, w.url, w.config = name, db_url, write_config(tmp_path)
    w.rows = ROWS if request.node.get_closest_marker("thousands_of_rows") else SMALL_ROWS
    w.populate(w.rows)
    w.add_orm_rows()
    yield w
    module.Base.metadata.drop_all(engine)
    engine.dispose()


def fsck_json(run_cli, w, *extra):
    code, out, err = run_cli("-c", w.config, "fsck", "--models", w.module_name, "--db", w.url, "--json", *extra)
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines and lines[-1]["kind"] == "summary", (out, err)
    return code, lines[:-1], lines[-1]


@pytest.mark.thousands_of_rows
def test_clean_database_exits_0(world, run_cli):
    code, problems, summary = fsck_json(run_cli, world)
    assert (code, problems) == (ExitCode.OK, [])
    # 3000 docs + 300 photos + the two ORM rows; photos have two files each (the ORM photo three).
    assert summary["values"] == ROWS + ROWS // 10 + 2
    assert summary["stored"] == ROWS + 1 + 2 * (ROWS // 10) + 3
    assert summary["storages"] == ["files", "photos"]
    code, out, err = run_cli("-c", world.config, "--progress", "fsck", "--models", world.module_name,
                             "--db", world.url)
    assert code == 0 and "0 missing, 0 orphans" in out and "clean" in out
    assert "depot: listing storage photos\n" in err and "checking the rows again" not in err


@pytest.mark.thousands_of_rows
def test_finds_each_disagreement_then_deletes_only_old_orphans(world, run_cli):
    world.remember_p0007()
    world.break_things()

    code, problems, summary = fsck_json(run_cli, world)
    assert code == ExitCode.FAILURES
    missing = {p["path"]: p for p in problems if p["kind"] == "missing"}
    assert set(missing) == set(world.expected_missing)
    for path, (table_name, key, column_name) in world.expected_missing.items():
        assert missing[path]["locations"] == [{"table": table_name, "key": key, "column": column_name}]
    orphans = {p["path"]: p["action"] for p in problems if p["kind"] == "orphan"}
    assert orphans == dict({p: "reported" for p in world.old_orphans}, **{p: "kept_young" for p in world.young_orphans})
    assert summary["remaining"] == 2 + len(world.old_orphans)

    # The human form: one line per problem naming table, key and column.
    code, out, _ = run_cli("-c", world.config, "fsck", "--models", world.module_name, "--db", world.url)
    assert code == 1
    thumb = world.photo_values["p0005"]["thumb_16x16_path"]
    assert "missing  %s  referenced by fsck_photos_%s (p0005) image: no such file" % (thumb, world.m.suffix) in out
    assert "2 missing, 3 orphans, 3 kept (younger than 24h); 5 to fix" in out

    code, problems, summary = fsck_json(run_cli, world, "--delete-orphans")
    assert code == ExitCode.FAILURES  # the missing files remain
    deleted = {p["path"] for p in problems if p.get("action") == "deleted"}
    assert deleted == world.old_orphans and summary["deleted"] == len(world.old_orphans)
    for path in world.old_orphans:
        assert not DepotManager.get(path.split("/")[0]).exists(path.split("/")[1])
    for path in world.young_orphans | world.referenced():
        storage, file_id = path.split("/")
        assert DepotManager.get(storage).exists(file_id), path

    # With a grace period of 0 the young orphans go too; everything referenced stays.
    code, problems, summary = fsck_json(run_cli, world, "--delete-orphans", "--grace", "0s", "--force")
    assert {p["path"] for p in problems if p.get("action") == "deleted"} == world.young_orphans
    for path in world.referenced():
        storage, file_id = path.split("/")
        assert DepotManager.get(storage).exists(file_id), path
    assert summary["remaining"] == 2 and summary["orphans"] == len(world.young_orphans)


def test_library_api(world):
    # Models found through the module's classes; storages and the alias through DepotManager.
    source = SQLAlchemySource(world.engine, [world.m])
    assert sorted(t.table.name for t in source.tables) == sorted(
        ["fsck_docs_%s" % world.m.suffix, "fsck_photos_%s" % world.m.suffix])
    found = []
    report = check([source], on_problem=found.append)
    assert report.clean and found == [] and report.storages == ["files", "photos"]


def test_engine_from_module_sessionmaker(world, run_cli, tmp_path):
    module_name = "fsck_session_%s" % uuid.uuid4().hex[:8]
    (tmp_path / ("%s.py" % module_name)).write_text(textwrap.dedent("""
        from sqlalchemy import create_engine
        from sqlalchemy.orm import sessionmaker
        from %s import Base, Doc, Photo
        SessionLocal = sessionmaker(bind=create_engine(%r))
    """ % (world.module_name, world.url)))
    code, out, err = run_cli("-c", world.config, "fsck", "--models", module_name)
    sys.modules.pop(module_name, None)
    assert code == 0, err
    assert "clean" in out


def test_file_stored_during_the_scan_is_never_deleted(world):
    """Rule 1: files are listed before rows are read, so an upload during the scan is not a candidate."""
    source = SQLAlchemySource(world.engine, [world.m])
    late = []

    class UploadDuringScan:
        storages = source.storages

        def values(self):
            for i, item in enumerate(source.values()):
                if i == 10 and not late:
                    with backdated():  # even looking old it must survive: it was not listed
                        late.append(world.files.create(b"late", "late.bin"))
                yield item

    report = check([UploadDuringScan()], delete_orphans=True, grace=parse_duration("0s"), allow_short_grace=True)
    assert world.files.exists(late[0]) and report.deleted == 0


def test_file_referenced_after_the_first_scan_is_kept(world):
    """Rule 4: candidates are checked against a second scan of the rows before deletion."""
    with backdated():
        orphan_id = world.files.create(b"soon referenced", "x.bin")
    path = "files/" + orphan_id
    source = SQLAlchemySource(world.engine, [world.m])
    scans = []

    class CommitsBetweenScans:
        storages = source.storages

        def values(self):
            scans.append(1)
            if len(scans) == 2:  # a transaction commits a reference to the file meanwhile
                value = {"files": [path], "path": path, "file_id": orphan_id, "depot_name": "files"}
                with world.engine.begin() as conn:
                    conn.execute(insert(raw(world.m.Doc)), {"id": 10**7, "content": json.dumps(value)})
            return source.values()

    found = []
    report = check([CommitsBetweenScans()], delete_orphans=True, on_problem=found.append)
    assert len(scans) == 2 and world.files.exists(orphan_id)
    assert [(p.path, p.action) for p in found] == [(path, "kept_referenced")]
    assert report.rescued == 1 and report.deleted == 0 and report.clean


def test_unreadable_value_is_reported_and_stops_deletion(world, run_cli):
    with backdated():
        orphan = world.files.create(b"orphan", "o.bin")
    with world.engine.begin() as conn:
        conn.execute(insert(raw(world.m.Doc)), [{"id": 10**7, "content": "{not json"},
                                                     {"id": 10**7 + 1, "content": '{"files": ["no-slash"]}'}])
    code, problems, summary = fsck_json(run_cli, world, "--delete-orphans")
    assert code == ExitCode.FAILURES
    assert sorted(p["locations"][0]["key"][0] for p in problems if p["kind"] == "unreadable") == [10**7, 10**7 + 1]
    assert world.files.exists(orphan) and summary["deleted"] == 0
    assert "unreadable" in summary["deletion_refused"]


def test_wrong_database_deletes_nothing(world, run_cli, tmp_path):
    """Rows that reference none of the listed files (an empty database): no file is taken for an orphan to delete."""
    empty = create_engine("sqlite:///%s" % (tmp_path / "empty.db"))
    world.m.Base.metadata.create_all(empty)
    found = []
    report = check([SQLAlchemySource(empty, [world.m])], delete_orphans=True, grace=parse_duration("0"),
                   allow_short_grace=True, on_problem=found.append)
    assert report.values == 0 and report.orphans == report.stored > world.rows
    assert report.deleted == 0 and "no row references any file of files, photos" in report.deletion_refused
    assert {p.action for p in found} == {"reported"}
    assert all(world.files.exists(v["file_id"]) for v in world.docs.values())
    # The same when only one storage is unused: its files stay, the other storage's orphans go.
    photos_table = raw(world.m.Photo)
    with world.engine.begin() as conn:
        conn.execute(photos_table.delete())
    with backdated():
        lost = world.files.create(b"lost", "lost.bin")
    found = []
    report = check([SQLAlchemySource(world.engine, [world.m])], delete_orphans=True, on_problem=found.append)
    assert [p.file_id for p in found if p.action == "deleted"] == [lost]
    assert report.deletion_refused == "no row references any file of photos: is this the right database?"
    assert all(world.photos.exists(v["file_id"]) for v in world.photo_values.values())
    # A module without attachment columns is refused whatever --storage says.
    with pytest.raises(FsckError):
        check([SQLAlchemySource(empty, [])], storages=["files"], delete_orphans=True)


def _insert_docs(w, values, first=10**7):
    with w.engine.begin() as conn:
        conn.execute(insert(raw(w.m.Doc)), [{"id": first + i, "content": json.dumps(v)} for i, v in enumerate(values)])


def _renamed(value, name):
    """``value`` as written when its storage was called ``name``."""
    paths = [name + "/" + p.split("/", 1)[1] for p in value["files"]]
    return dict(value, depot_name=name, files=paths, path=paths[0])


def test_references_through_an_alias_are_kept(world, run_cli, tmp_path):
    """Rows written before the default moved name 'old/<id>', 'old' now an alias of 'files': not orphans."""
    DepotManager.alias("old", "files")
    with backdated():
        by_alias = [_renamed(_value("files", world.files), "old") for _ in range(3)]
        lost = world.files.create(b"lost", "lost.bin")
    _insert_docs(world, by_alias)
    found = []
    report = check([SQLAlchemySource(world.engine, [world.m])], delete_orphans=True, on_problem=found.append)
    assert [(p.path, p.action) for p in found] == [("files/" + lost, "deleted")]
    assert report.missing == 0 and report.deletion_refused is None
    assert all(world.files.exists(v["file_id"]) for v in by_alias)
    # The same through the command line, the alias coming from the settings file.
    config = tmp_path / "aliased.toml"
    config.write_text(world.config.read_text().replace('pics = "photos"', 'pics = "photos"\nold = "files"'))
    DepotManager._aliases.pop("old")
    with backdated():
        lost = world.files.create(b"lost", "lost.bin")
    code, out, err = run_cli("-c", config, "fsck", "--models", world.module_name, "--db", world.url, "--json",
                             "--delete-orphans")
    problems = [json.loads(line) for line in out.splitlines()][:-1]
    assert code == ExitCode.OK, (out, err)
    assert [(p["path"], p["action"]) for p in problems] == [("files/" + lost, "deleted")]
    assert all(world.files.exists(v["file_id"]) for v in by_alias)


def test_two_names_for_the_same_files_delete_nothing(world):
    """'mirror' is not an alias but a storage of the same directory: its references protect 'files'' files."""
    DepotManager.configure("mirror", {"depot.backend": "local", "depot.storage_path": world.files.storage_path})
    with backdated():
        through_mirror = _renamed(_value("files", world.files), "mirror")
        lost = world.files.create(b"lost", "lost.bin")
    _insert_docs(world, [through_mirror])
    found = []
    report = check([SQLAlchemySource(world.engine, [world.m])], delete_orphans=True, on_problem=found.append)
    assert world.files.exists(through_mirror["file_id"]) and world.files.exists(lost) and report.deleted == 0
    assert "storages files and mirror share their files" in report.deletion_refused
    assert {p.action for p in found if p.storage == "files"} == {"reported"}
    # Listed both, each sees the other's files as orphans: neither deletes.
    report = check([SQLAlchemySource(world.engine, [world.m])], storages=["mirror"], delete_orphans=True)
    assert report.deleted == 0 and world.files.exists(lost) and world.files.exists(world.docs[1]["file_id"])


def test_places_overlap_by_bucket_and_prefix():
    from depot.fsck._place import overlap

    assert overlap(("s3", "b", "a/"), ("s3", "b", "a/"))
    assert overlap(("s3", "b", ""), ("s3", "b", "a/"))  # the unprefixed storage lists the other's keys
    assert not overlap(("s3", "b", "a/"), ("s3", "b", "c/"))
    assert not overlap(("s3", "b", "a/"), ("s3", "other", "a/"))
    assert not overlap(("s3", "b", ""), ("gcs", "b", ""))


def test_short_grace_needs_force(world, run_cli):
    with backdated("%s" % (datetime.datetime.utcnow() - datetime.timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S")):
        recent = world.files.create(b"in flight for 5 minutes", "x.bin")
    for grace in ("0s", "30m"):
        code, _, err = run_cli("-c", world.config, "fsck", "--models", world.module_name, "--db", world.url,
                               "--delete-orphans", "--grace", grace)
        assert code == ExitCode.USAGE and "--force" in err and "too short" in err
        with pytest.raises(FsckError, match="too short"):
            check([SQLAlchemySource(world.engine, [world.m])], delete_orphans=True, grace=parse_duration(grace))
    assert world.files.exists(recent)
    # Reporting with a short grace needs no flag; an hour is enough to delete.
    code, _, _ = run_cli("-c", world.config, "fsck", "--models", world.module_name, "--db", world.url,
                         "--grace", "0s")
    assert code == ExitCode.FAILURES and world.files.exists(recent)
    code, problems, _ = fsck_json(run_cli, world, "--delete-orphans", "--grace", "1h")
    assert code == ExitCode.OK and [p["action"] for p in problems] == ["kept_young"]
    code, problems, _ = fsck_json(run_cli, world, "--delete-orphans", "--grace", "1m", "--force")
    assert [p["action"] for p in problems] == ["deleted"] and not world.files.exists(recent)


def test_connection_inside_a_transaction_refuses_deletion(world):
    """Rule 4 needs a fresh read: a caller's open transaction may keep the first scan's snapshot."""
    with backdated():
        orphan_id = world.files.create(b"soon referenced", "x.bin")
    with world.engine.connect() as conn:
        conn.begin()
        with pytest.raises(FsckError, match="inside a transaction"):
            check([SQLAlchemySource(conn, [world.m])], delete_orphans=True)
        assert check([SQLAlchemySource(conn, [world.m])]).orphans == 1  # reporting is fine
        conn.rollback()
        # Outside a transaction: each scan's own transaction ends with it, so the
        # second scan sees a reference committed meanwhile (on MariaDB too, REPEATABLE READ).
        source = SQLAlchemySource(conn, [world.m])
        scans = []

        class CommitsBetweenScans:
            storages = source.storages

            def values(self):
                scans.append(1)
                assert not conn.in_transaction()
                if len(scans) == 2:
                    path = "files/" + orphan_id
                    _insert_docs(world, [{"files": [path], "path": path, "file_id": orphan_id}])
                return source.values()

        report = check([CommitsBetweenScans()], delete_orphans=True)
        assert len(scans) == 2 and report.rescued == 1 and world.files.exists(orphan_id)
        assert not conn.in_transaction()


def test_usage_errors_exit_2(world, run_cli):
    base = ["-c", world.config, "fsck", "--db", world.url]
    code, _, err = run_cli(*base, "--models", "no_such_module_for_fsck")
    assert code == ExitCode.USAGE and "cannot import the models" in err
    code, _, err = run_cli(*base, "--models", world.module_name, "--grace", "soon")
    assert code == ExitCode.USAGE and "--grace" in err
    code, _, err = run_cli(*base, "--models", world.module_name, "--storage", "nowhere")
    assert code == ExitCode.USAGE and "'nowhere'" in err
    code, _, err = run_cli("-c", world.config, "fsck", "--models", world.module_name)
    assert code == ExitCode.USAGE and "no database" in err


def test_memory_storage_through_the_library(tmp_path, monkeypatch):
    """Memory storages configured by the application (DepotManager), an alias, SQLite."""
    DepotManager._clear()
    try:
        DepotManager.configure("files", {"depot.backend": "memory"})
        DepotManager.configure("photos", {"depot.backend": "memory"})
        DepotManager.alias("pics", "photos")
        _, module = write_models(tmp_path, monkeypatch)
        engine = create_engine("sqlite:///%s" % (tmp_path / "mem.db"))
        module.Base.metadata.create_all(engine)
        w = World(engine, module, DepotManager.get("files"), DepotManager.get("photos"))
        w.populate(rows=1000)
        w.remember_p0007()
        w.break_things()
        found = []
        report = check([SQLAlchemySource(engine, [module])], delete_orphans=True, on_problem=found.append)
        assert {p.path for p in found if p.kind == "missing"} == set(w.expected_missing)
        assert {p.path for p in found if p.action == "deleted"} == w.old_orphans
        assert {p.path for p in found if p.action == "kept_young"} == w.young_orphans
        assert report.missing == 2 and report.deleted == len(w.old_orphans)
        for path in w.referenced() | w.young_orphans:
            assert DepotManager.get_file(path)
    finally:
        DepotManager._clear()


def test_s3_listing_in_pages(tmp_path, monkeypatch, seaweedfs_server):
    """An object store: the listing is read a page at a time, and orphans are deleted there too."""
    from tests.servers import unique_name

    import depot.fsck._listing as listing

    monkeypatch.setattr(listing, "PAGE_SIZE", 50)
    s = seaweedfs_server
    DepotManager._clear()
    try:
        DepotManager.configure("files", {
            "depot.backend": "depot.io.boto3.S3Storage", "depot.bucket": unique_name("fsck"),
            "depot.endpoint_url": s.endpoint_url, "depot.access_key_id": s.access_key,
            "depot.secret_access_key": s.secret_key, "depot.region_name": s.region})
        DepotManager.configure("photos", {"depot.backend": "memory"})
        DepotManager.alias("pics", "photos")
        s3 = DepotManager.get("files")
        pages = []
        s3._bucket_driver.s3.meta.client.meta.events.register(
            "before-call.s3.ListObjects", lambda **kw: pages.append(1))
        _, module = write_models(tmp_path, monkeypatch)
        engine = create_engine("sqlite:///%s" % (tmp_path / "s3.db"))
        module.Base.metadata.create_all(engine)
        w = World(engine, module, s3, DepotManager.get("photos"))
        w.populate(rows=220)
        gone = w.docs[100]
        s3.delete(gone["file_id"])
        orphans = {s3.create(b"orphan %d" % i, "o.bin") for i in range(3)}
        found = []
        report = check([SQLAlchemySource(engine, [module])], delete_orphans=True,
                       grace=parse_duration("0"), allow_short_grace=True, on_problem=found.append)
        assert len(pages) == 5  # 222 objects, 50 per request
        assert [p.path for p in found if p.kind == "missing"] == [gone["path"]]
        assert {p.file_id for p in found if p.action == "deleted"} == orphans
        assert report.stored == (220 - 1 + 3) + 2 * 22
        assert all(s3.exists(v["file_id"]) for k, v in w.docs.items() if k != 100)
    finally:
        DepotManager._clear()


def test_referenced_paths_and_durations():
    value = {"files": ["a/1", "a/2"], "path": "a/1", "thumb_path": "a/3", "thumb_8x8_path": "a/2",
             "other_path": "/not/a/reference"}
    assert referenced_paths(value) == ["a/1", "a/2", "a/3"]
    with pytest.raises(ValueError):
        referenced_paths({"files": "a/1"})
    with pytest.raises(ValueError):
        referenced_paths({"files": ["nostorage"]})
    assert parse_duration("24h") == DEFAULT_GRACE and parse_duration("90").total_seconds() == 90
    assert parse_duration("2w").days == 14
    with pytest.raises(ValueError):
        parse_duration("-1h")
    with pytest.raises(FsckError):
        check([], lookup=None)


MING_MODELS = """
import os
from ming import create_datastore, schema
from ming.odm import FieldProperty, Mapper, MappedClass, ThreadLocalODMSession
from depot.fields.ming import DepotExtension, UploadedFileProperty

datastore = create_datastore(os.environ["FSCK_TEST_MONGO_URI"])
session = ThreadLocalODMSession(bind=datastore, extensions=(DepotExtension,))

class Note(MappedClass):
    class __mongometa__:
        name = "fsck_notes_{suffix}"
    __mongometa__.session = session
    _id = FieldProperty(schema.ObjectId)
    attachment = UploadedFileProperty()

Mapper.compile_all()
"""


def test_ming_documents_on_a_real_server(mongo_database_uri, tmp_path, monkeypatch, run_cli, no_ambient_settings):
    """Ming: the same check over UploadedFileProperty fields, files in GridFS on the same server."""
    pytest.importorskip("ming")
    from depot.fsck import MingSource

    suffix = uuid.uuid4().hex[:8]
    module_name = "fsck_ming_%s" % suffix
    (tmp_path / ("%s.py" % module_name)).write_text(MING_MODELS.format(suffix=suffix))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FSCK_TEST_MONGO_URI", mongo_database_uri)
    DepotManager._clear()
    module = __import__(module_name)
    try:
        DepotManager.configure("gridfs", {"depot.backend": "gridfs", "depot.mongouri": mongo_database_uri})
        notes = [module.Note(attachment=b"note %d" % i) for i in range(50)]
        module.Note(attachment=None)
        module.session.flush()
        storage = DepotManager.get("gridfs")
        gone = notes[7].attachment
        storage.delete(gone.file_id)
        with backdated():
            orphan = storage.create(b"orphan", "o.txt")

        # The command: storages from its own options, documents through the module's session.
        code, out, err = run_cli("--backend", "gridfs=gridfs", "-o", "gridfs.mongouri=" + mongo_database_uri,
                                 "fsck", "--ming", "--models", module_name, "--json")
        assert code == ExitCode.FAILURES, err
        lines = [json.loads(line) for line in out.splitlines()]
        assert [(p["kind"], p["path"]) for p in lines[:-1]] == [("missing", gone.path), ("orphan", "gridfs/" + orphan)]
        assert lines[0]["locations"] == [{"table": module.Note.__mongometa__.name, "key": [str(notes[7]._id)],
                                          "column": "attachment"}]

        found = []
        report = check([MingSource([module.Note])], delete_orphans=True, on_problem=found.append)
        assert [(p.path, p.locations[0][1]) for p in found if p.kind == "missing"] == [
            (gone.path, [str(notes[7]._id)])]
        assert [(p.file_id, p.action) for p in found if p.kind == "orphan"] == [(orphan, "deleted")]
        assert report.values == 50 and not storage.exists(orphan)
        assert all(storage.exists(n.attachment.file_id) for n in notes if n is not notes[7])
        module.session.clear()
    finally:
        storage = DepotManager.get("gridfs")
        if storage is not None:
            storage._cli.close()
        module.datastore.conn.close()
        sys.modules.pop(module_name, None)
        DepotManager._clear()


def test_rows_stream_through_a_server_side_cursor(postgresql_url, tmp_path, monkeypatch, memory_depots):
    """PostgreSQL: rows come from a server-side cursor, a batch at a time, not one result in memory."""
    _, module = write_models(tmp_path, monkeypatch)
    engine = create_engine(postgresql_url)
    module.Base.metadata.create_all(engine)
    try:
        value = json.dumps({"files": ["default/x"], "path": "default/x"})
        with engine.begin() as conn:
            conn.execute(insert(raw(module.Doc)), [{"id": i, "content": value} for i in range(1, 251)])
        with engine.connect() as conn:
            source = SQLAlchemySource(conn, [module.Doc], rows_per_batch=100)
            values = source.values()
            next(values)
            cursors = conn.exec_driver_sql("SELECT statement FROM pg_cursors").scalars().all()
            # One server-side cursor, for the rows (the query above ran without one: the
            # streaming option stays on fsck's statement, not on the caller's connection).
            assert len(cursors) == 1 and "fsck_docs_" in cursors[0], cursors
            assert sum(1 for _ in values) == 249
    finally:
        module.Base.metadata.drop_all(engine)
        engine.dispose()


def test_local_listing_is_lazy(tmp_path):
    from depot.fsck._listing import iter_ids
    from depot.io.local import LocalFileStorage

    storage = LocalFileStorage(str(tmp_path / "s"))
    ids = {storage.create(b"x", "x") for _ in range(5)}
    (tmp_path / "s" / ".new-staging").mkdir()  # what list() leaves out, iter_ids does too
    storage.list = None  # iter_ids must not build the whole list
    walk = iter_ids(storage)
    assert not isinstance(walk, list) and set(walk) == ids
    assert list(iter_ids(LocalFileStorage(str(tmp_path / "none")))) == []


def test_depot_script_imports_models_from_the_current_directory(tmp_path):
    """The installed ``depot`` script (not ``python -m``), run from a project checkout, engine from the module."""
    import os
    import subprocess

    script = os.path.join(os.path.dirname(sys.executable), "depot")
    if not os.path.exists(script):
        pytest.skip("the depot script is not installed next to this interpreter")
    (tmp_path / "shopmodels.py").write_text(textwrap.dedent('''
        from sqlalchemy import Column, Integer, create_engine
        from sqlalchemy.orm import declarative_base
        from depot.fields.sqlalchemy import UploadedFileField
        Base = declarative_base()
        class Item(Base):
            __tablename__ = "items"
            id = Column(Integer, primary_key=True)
            picture = Column(UploadedFileField())
        def get_engine():
            return create_engine("sqlite:///items.db")
    '''))
    (tmp_path / "depot.ini").write_text("[depot.storages.files]\nbackend = local\nstorage_path = ./files\n")
    engine = create_engine("sqlite:///%s" % (tmp_path / "items.db"))
    engine.connect().close()
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE items (id INTEGER PRIMARY KEY, picture VARCHAR(4000))")
        conn.exec_driver_sql("""INSERT INTO items VALUES (7, '{"files": ["files/%s"]}')""" % uuid.uuid4())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DEPOT_CONFIG")}
    proc = subprocess.run([script, "fsck", "--models", "shopmodels"], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "referenced by items (7) picture: no such file" in proc.stdout


def test_direct_upload_attached_but_not_committed_is_never_deleted(world, monkeypatch):
    """An upload made long ago, claimed by an attach whose row is not committed yet, is no orphan.

    The claim replaces its marker by a claimed one (never deletes it), so
    fsck skips it like a pending upload whatever its age; once the
    transaction is over and ``depot gc`` dropped the marker, the rows decide.
    """
    from depot.uploads import collect_pending, create_upload_intent
    from depot.uploads.attach import DirectUpload
    from tests._uploads import UploadURLs

    monkeypatch.setattr(DepotManager, "_middleware", UploadURLs())
    intent = create_upload_intent("files", max_size=100)
    with backdated():
        world.files._store_at(intent.file_id, b"uploaded long ago", "old.bin")
    attaching = DirectUpload(intent.file_id, "files").open()  # checked and claimed, the row not committed
    try:
        source = SQLAlchemySource(world.engine, [world.m])
        report = check([source], delete_orphans=True, grace=parse_duration("0s"), allow_short_grace=True)
        assert world.files.exists(intent.file_id)
        assert report.pending_uploads == 1 and report.deleted == 0
    finally:
        attaching.close()
    # Never committed, and the process died: gc drops only the claimed marker, once old...
    assert collect_pending("files", older_than=60, now=datetime.datetime.now().timestamp() + 120) == []
    assert world.files.exists(intent.file_id)
    # ...and fsck, seeing no row reference it, takes it for the orphan it now is.
    report = check([source], delete_orphans=True, grace=parse_duration("0s"), allow_short_grace=True)
    assert not world.files.exists(intent.file_id)
    assert (report.pending_uploads, report.orphans, report.deleted) == (0, 1, 1)
