"""``depot fsck`` over a large table and a large storage: time and peak memory.

Builds an SQLite database of N rows (one attachment each) and a local
storage of N files, 1% of the rows pointing at missing files and 1% of the
files orphans (old enough to be deleted), then runs :func:`depot.fsck.check`
in a fresh process, once reporting and once with ``delete_orphans``.  The
same is done with N/10 to show that peak memory does not grow with N.

The storage is written in LocalFileStorage's layout directly (a folder per
id holding ``file`` and ``metadata.json``): through ``storage.create`` the
setup would take minutes, and fsck only lists ids and reads metadata, which
is the same either way.  A memory storage was not used because its listing
and lookups cost nothing, which would hide the part of the work that
depends on the storage.

The work directory (database, storage, fsck's temporary index) is on
/dev/shm when it exists, so that the figures measure fsck rather than a busy
disk, and setting up 200,000 files takes seconds; ``--dir`` picks another.

    python benchmarks/bench_fsck.py [--rows 100000] [--dir /tmp]

filedepot 0.12 has no equivalent, so there is no comparison column.
"""
import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
TABLE = "documents"
OLD = "2020-01-01 00:00:00"

MODELS = """
from sqlalchemy import Column, Integer
from sqlalchemy.orm import declarative_base
from depot.fields.sqlalchemy import UploadedFileField

Base = declarative_base()

class Document(Base):
    __tablename__ = %r
    id = Column(Integer, primary_key=True)
    content = Column(UploadedFileField(upload_storage="files"))
""" % TABLE


def _store(root, file_id):
    folder = os.path.join(root, file_id)
    os.mkdir(folder)
    with open(os.path.join(folder, "file"), "wb") as f:
        f.write(b"x" * 64)
    with open(os.path.join(folder, "metadata.json"), "w") as f:
        json.dump({"filename": "f.bin", "content_type": "application/octet-stream",
                   "content_length": 64, "last_modified": OLD}, f)


def build(workdir, rows):
    """The database and the storage; returns (database path, storage path, missing, orphans)."""
    root = os.path.join(workdir, "files")
    os.mkdir(root)
    db_path = os.path.join(workdir, "app.db")
    db = sqlite3.connect(db_path)
    db.execute("CREATE TABLE %s (id INTEGER PRIMARY KEY, content VARCHAR(4000))" % TABLE)
    missing = orphans = 0
    batch = []
    for i in range(rows):
        file_id = str(uuid.uuid4())
        path = "files/" + file_id
        value = {"depot_name": "files", "files": [path], "file_id": file_id, "path": path,
                 "filename": "f.bin", "content_type": "application/octet-stream",
                 "uploaded_at": OLD, "_public_url": None}
        if i % 100 == 50:
            missing += 1  # the row's file is never stored
        else:
            _store(root, file_id)
        if i % 100 == 0:
            orphans += 1
            _store(root, str(uuid.uuid4()))  # a file no row references
        batch.append((i, json.dumps(value)))
        if len(batch) == 5000:
            db.executemany("INSERT INTO %s VALUES (?, ?)" % TABLE, batch)
            batch = []
    db.executemany("INSERT INTO %s VALUES (?, ?)" % TABLE, batch)
    db.commit()
    db.close()
    return db_path, root, missing, orphans


def worker(workdir, db_path, root, delete):
    sys.path.insert(0, workdir)
    from sqlalchemy import create_engine

    import bench_fsck_models
    from depot.fsck import SQLAlchemySource, check
    from depot.manager import DepotManager

    DepotManager.configure("files", {"depot.backend": "local", "depot.storage_path": root})
    source = SQLAlchemySource(create_engine("sqlite:///" + db_path), [bench_fsck_models])
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    report = check([source], delete_orphans=delete, tempdir=workdir)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "baseline_kib": baseline, "peak_kib": peak,
                      "missing": report.missing, "orphans": report.orphans, "deleted": report.deleted,
                      "values": report.values, "stored": report.stored}))


def run_case(rows, directory):
    workdir = tempfile.mkdtemp(prefix="bench-fsck-", dir=directory)
    try:
        started = time.perf_counter()
        db_path, root, missing, orphans = build(workdir, rows)
        setup = time.perf_counter() - started
        with open(os.path.join(workdir, "bench_fsck_models.py"), "w") as f:
            f.write(MODELS)
        results = {}
        for mode in ("report", "delete"):
            proc = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "worker", workdir, db_path, root, mode],
                capture_output=True, text=True, check=False,
            )
            if proc.returncode:
                raise SystemExit(proc.stderr)
            results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        assert results["report"]["missing"] == missing and results["report"]["orphans"] == orphans, results
        assert results["delete"]["deleted"] == orphans, results
        return setup, results
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dir", default="/dev/shm" if os.access("/dev/shm", os.W_OK) else None,
                        help="where the database and the storage go (default /dev/shm, else the temp dir)")
    args = parser.parse_args()
    print("%8s  %8s  %-7s  %8s  %9s  %9s  %9s" % (
        "rows", "files", "mode", "seconds", "rows/s", "base RSS", "peak RSS"))
    for rows in (args.rows // 10, args.rows):
        setup, results = run_case(rows, args.dir)
        for mode, r in results.items():
            print("%8d  %8d  %-7s  %8.2f  %9.0f  %6.1f MiB  %6.1f MiB" % (
                r["values"], r["stored"], mode, r["seconds"], r["values"] / r["seconds"],
                r["baseline_kib"] / 1024.0, r["peak_kib"] / 1024.0))
        print("          (setup of %d rows and files: %.1f s; %d missing, %d orphans found and deleted)" % (
            rows, setup, results["report"]["missing"], results["report"]["orphans"]))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "delete")
    else:
        main()
