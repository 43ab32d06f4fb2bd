"""One model-attachment workload, run in whichever interpreter imports ``depot`` (ours or filedepot 0.12).

Usage: fields_worker.py plain ROWS SIZE DIR  |  images JPEG ROWS DIR [MAX_SIZE]
Only the filedepot 0.12 API is used, so the same code measures both.  Prints one JSON line.
"""
import io
import json
import os
import sys
import time

from sqlalchemy import Column, Integer, create_engine, event
from sqlalchemy.orm import Session, declarative_base

from depot.fields.specialized.image import UploadedImageWithThumb
from depot.fields.sqlalchemy import UploadedFileField
from depot.fields.upload import UploadedFile
from depot.manager import DepotManager


READ_PASSES = 3


def setup(path, upload_type):
    DepotManager.configure("default", {"depot.storage_path": os.path.join(path, "files")})
    Base = declarative_base()

    class Row(Base):
        __tablename__ = "rows"
        id = Column(Integer, primary_key=True)
        file = Column(UploadedFileField(upload_type=upload_type))

    engine = create_engine("sqlite:///%s" % os.path.join(path, "bench.db"))

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, record):
        # The benchmark measures depot, not the disk's fsync latency.
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=OFF")

    Base.metadata.create_all(engine)
    return engine, Row


class Clock:
    """Wall time and this process's CPU time (user + system) of a block.

    On a shared machine the wall time also counts other processes' turns;
    the CPU time is what the workload itself cost.
    """

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def insert_then_read(engine, Row, payloads):
    """One commit per row, as a web application saving uploads does; then load every row and read.

    Returns rows per second for both phases, by wall and by CPU time.
    """
    rows = len(payloads)
    assign_wall = assign_cpu = 0.0
    with Clock() as insert:
        with Session(engine) as session:
            for payload in payloads:
                # The assignment is where depot works (upload, facts, tracking);
                # the commit is mostly SQLAlchemy and the database.
                wall, cpu = time.perf_counter(), time.process_time()
                row = Row(file=payload)
                assign_wall += time.perf_counter() - wall
                assign_cpu += time.process_time() - cpu
                session.add(row)
                session.commit()
    # Reading takes a few tens of milliseconds: the fastest of a few passes
    # is a steadier figure than one pass on a busy machine.
    reads = []
    for _ in range(READ_PASSES):
        with Clock() as read:
            with Session(engine) as session:
                for row in session.query(Row):
                    f = row.file.file
                    f.read()
                    f.close()
        reads.append(read)
    return {
        "assign_rows": rows / assign_wall,
        "assign_rows_cpu": rows / assign_cpu,
        "insert_rows": rows / insert.wall,
        "insert_rows_cpu": rows / insert.cpu,
        "read_rows": rows / min(r.wall for r in reads),
        "read_rows_cpu": rows / min(r.cpu for r in reads),
    }


def plain(rows, size, path):
    engine, Row = setup(path, UploadedFile)
    return insert_then_read(engine, Row, [os.urandom(size) for _ in range(rows)])


def images(jpeg, rows, path, max_size=None):
    upload_type = UploadedImageWithThumb
    if max_size is not None:
        upload_type = type("Image%d" % max_size, (UploadedImageWithThumb,), {"max_size": max_size})
    engine, Row = setup(path, upload_type)
    with open(jpeg, "rb") as f:
        data = f.read()
    # File objects, not bytes: filedepot 0.12 fails on small images given as bytes.
    return insert_then_read(engine, Row, [io.BytesIO(data) for _ in range(rows)])


def main(argv):
    if argv[0] == "plain":
        result = plain(int(argv[1]), int(argv[2]), argv[3])
    else:
        result = images(argv[1], int(argv[2]), argv[3], int(argv[4]) if len(argv) > 4 else None)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
