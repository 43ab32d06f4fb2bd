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


def insert_then_read(engine, Row, payloads):
    """One commit per row, as a web application saving uploads does; then load every row and read."""
    t0 = time.perf_counter()
    with Session(engine) as session:
        for payload in payloads:
            session.add(Row(file=payload))
            session.commit()
    insert_s = time.perf_counter() - t0
    # Reading takes a few tens of milliseconds: the fastest of a few passes
    # is a steadier figure than one pass on a busy machine.
    read_s = None
    for _ in range(READ_PASSES):
        t1 = time.perf_counter()
        total = 0
        with Session(engine) as session:
            for row in session.query(Row):
                f = row.file.file
                total += len(f.read())
                f.close()
        elapsed = time.perf_counter() - t1
        read_s = elapsed if read_s is None else min(read_s, elapsed)
    return insert_s, read_s, total


def plain(rows, size, path):
    engine, Row = setup(path, UploadedFile)
    payloads = [os.urandom(size) for _ in range(rows)]
    insert_s, read_s, total = insert_then_read(engine, Row, payloads)
    assert total == rows * size
    return {"insert_rows": rows / insert_s, "read_rows": rows / read_s}


def images(jpeg, rows, path, max_size=None):
    upload_type = UploadedImageWithThumb
    if max_size is not None:
        upload_type = type("Image%d" % max_size, (UploadedImageWithThumb,), {"max_size": max_size})
    engine, Row = setup(path, upload_type)
    with open(jpeg, "rb") as f:
        data = f.read()
    # File objects, not bytes: filedepot 0.12 fails on small images given as bytes.
    insert_s, read_s, _ = insert_then_read(engine, Row, [io.BytesIO(data) for _ in range(rows)])
    return {"insert_rows": rows / insert_s, "read_rows": rows / read_s}


def main(argv):
    if argv[0] == "plain":
        result = plain(int(argv[1]), int(argv[2]), argv[3])
    else:
        result = images(argv[1], int(argv[2]), argv[3], int(argv[4]) if len(argv) > 4 else None)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
