"""A rejected upload leaves nothing in the storage (SQLAlchemy on a real SQLite database).

Whatever an assignment stored before it failed (the main file, thumbnails of
earlier filters) is deleted when it fails, whether the object is in a session
(then committed or rolled back) or not; an app catching ``ValueError`` answers
400.  The Ming counterparts are in test_fields_ming.py.
"""
from __future__ import annotations

import gc
import json
import pickle

import pytest
from sqlalchemy import Column, Integer, Unicode, create_engine
from sqlalchemy.orm import Session, declarative_base

from depot.fields.filters.thumbnails import WithThumbnailFilter
from depot.fields.interfaces import FileFilter
from depot.fields.specialized.image import UploadedImageWithThumb
from depot.fields.sqlalchemy import UploadedFileField
from depot.imaging import ImageRejected
from depot.manager import DepotManager

from ._dedup import DedupUploadedFile
from ._hostile_images import REJECTED_CASES, REJECTED_IDS, encode, noisy


class Refuse(FileFilter):
    """A filter that rejects every upload, after the filters before it stored their thumbnails."""

    def on_save(self, uploaded_file):
        raise ValueError("refused by the application")


Base = declarative_base()


class Document(Base):
    __tablename__ = "depot_rejected_document"
    id = Column(Integer, primary_key=True)
    name = Column(Unicode(50))
    thumbed = Column(UploadedFileField(filters=[WithThumbnailFilter((16, 16)), WithThumbnailFilter((8, 8))]))
    image = Column(UploadedFileField(upload_type=UploadedImageWithThumb))
    chained = Column(UploadedFileField(filters=[WithThumbnailFilter((16, 16)), Refuse()]))
    deduped = Column(UploadedFileField(upload_type=DedupUploadedFile, filters=[WithThumbnailFilter((16, 16))]))
    deduped_refused = Column(
        UploadedFileField(
            upload_type=DedupUploadedFile,
            filters=[WithThumbnailFilter((16, 16)), WithThumbnailFilter((8, 8)), Refuse()],
        )
    )


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    engine = create_engine("sqlite:///%s" % (tmp_path_factory.mktemp("rejected") / "rejected.db"))
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def depots():
    DepotManager.configure("default", {"depot.backend": "memory"})


def stored():
    return DepotManager.get().list()


def assign_in_session(engine, column, content, expected, end):
    with Session(engine) as session:
        doc = Document(name="doc")
        session.add(doc)
        with pytest.raises(expected):
            setattr(doc, column, content)
        assert stored() == []  # at once, not only at the end of the transaction
        getattr(session, end)()
        if end == "commit":
            assert session.get(Document, doc.id).name == "doc"
            assert getattr(session.get(Document, doc.id), column) is None
    assert stored() == []


@pytest.mark.parametrize("column", ["thumbed", "image"])
@pytest.mark.parametrize("end", ["commit", "rollback"])
@pytest.mark.parametrize("content, expected", REJECTED_CASES, ids=REJECTED_IDS)
def test_rejected_image_in_session_leaves_nothing(engine, column, end, content, expected):
    assert issubclass(expected, ImageRejected) and issubclass(expected, ValueError)
    assign_in_session(engine, column, content, expected, end)


@pytest.mark.parametrize("column", ["thumbed", "image"])
@pytest.mark.parametrize("content, expected", REJECTED_CASES, ids=REJECTED_IDS)
def test_rejected_image_without_session_leaves_nothing(column, content, expected):
    with pytest.raises(expected):
        Document(name="doc", **{column: content})
    doc = Document(name="doc")
    with pytest.raises(expected):
        setattr(doc, column, content)
    del doc
    gc.collect()
    assert stored() == []


@pytest.mark.parametrize("end", ["commit", "rollback", "nosession"])
def test_failing_filter_deletes_main_file_and_earlier_thumbnails(engine, end):
    png = encode(noisy((40, 30)))
    if end == "nosession":
        with pytest.raises(ValueError, match="refused by the application"):
            Document(chained=png)
        assert stored() == []
    else:
        assign_in_session(engine, "chained", png, ValueError, end)


def test_rejection_keeps_the_committed_value(engine):
    with Session(engine) as session:
        doc = Document(name="kept", thumbed=encode(noisy((40, 30))))
        session.add(doc)
        session.commit()
        kept = list(doc.thumbed.files)
        with pytest.raises(ImageRejected):
            doc.thumbed = b"not an image"
        session.commit()
        assert doc.thumbed.files == kept
    assert sorted(stored()) == sorted(path.split("/")[1] for path in kept)


def test_rejection_keeps_files_a_deduplicating_override_shares_with_a_committed_row(engine):
    """Only the files the failed assignment created go, not the existing ones an override reused."""
    DedupUploadedFile.known.clear()
    png = encode(noisy((40, 30)))
    with Session(engine) as session:
        committed = Document(name="first", deduped=png)
        session.add(committed)
        session.commit()
        shared = list(committed.deduped.files)
        assert len(shared) == 2  # the image and its 16x16 thumbnail
        other = Document(name="second")
        session.add(other)
        with pytest.raises(ValueError, match="refused by the application"):
            # Reuses the image and the 16x16 thumbnail, creates the 8x8 one, then is refused.
            other.deduped_refused = png
        session.commit()
        assert other.deduped_refused is None
        assert session.get(Document, committed.id).deduped.file.read() == png
    # The row's files are all there; the 8x8 thumbnail the failed assignment created is gone.
    assert sorted(stored()) == sorted(path.split("/")[1] for path in shared)


def test_created_files_stay_out_of_the_stored_value(engine):
    """The record of created files is state of the Python object, never part of the row's JSON."""
    DedupUploadedFile.known.clear()
    with Session(engine) as session:
        doc = Document(name="json", deduped=encode(noisy((20, 20))))
        value = doc.deduped
        assert value._created == value.files
        assert "_created" not in value and "_created" not in json.loads(value.encode())
        assert "_created" not in dict(pickle.loads(pickle.dumps(value)))
        session.add(doc)
        session.commit()
        raw = session.connection().exec_driver_sql(
            "SELECT deduped FROM depot_rejected_document WHERE id = ?", (doc.id,)
        ).scalar_one()
    assert "_created" not in json.loads(raw)
