"""The attach step both ORMs share, the state a value declares, and the links the manager holds.

Behaviour is covered by the ORM suites (test_fields_sqlalchemy.py,
test_fields_ming.py, test_fields_aio.py...); these pin the seams between the
pieces: what a column declares, that a value carries only declared state,
and that every URL goes through the one :class:`depot.links.Links`.
"""
from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, create_engine
from sqlalchemy.orm import Session, declarative_base

from depot.fields._attach import AttachmentOptions, attached, rereads_content
from depot.fields.filters.thumbnails import WithThumbnailFilter
from depot.fields.ming import UploadedFileProperty
from depot.fields.sqlalchemy import UploadedFileField
from depot.fields.upload import UploadedFile
from depot.links import Links
from depot.manager import DepotManager

Base = declarative_base()


class Document(Base):
    __tablename__ = "depot_attach_document"
    id = Column(Integer, primary_key=True)
    content = Column(UploadedFileField(upload_storage="second"))


@pytest.fixture
def depots():
    DepotManager.configure("first", {"depot.backend": "depot.io.memory.MemoryFileStorage"})
    DepotManager.configure("second", {"depot.backend": "depot.io.memory.MemoryFileStorage"})


@pytest.mark.parametrize("make", [UploadedFileField, UploadedFileProperty], ids=["sqlalchemy", "ming"])
def test_both_adapters_declare_the_same_options_and_keep_0_12_names(make):
    thumbs = [WithThumbnailFilter((8, 8))]
    options = make(thumbs, UploadedFile, "second")
    assert isinstance(options, AttachmentOptions)
    assert (options.filters, options.upload_type, options.upload_storage) == (thumbs, UploadedFile, "second")
    # filedepot 0.12's private names read and write the same options.
    assert (options._filters, options._upload_type, options._upload_storage) == (thumbs, UploadedFile, "second")
    options._upload_storage = "first"
    assert options.upload_storage == "first"
    assert rereads_content(options) and not rereads_content(make())


def test_attached_stores_content_and_passes_values_and_none(depots):
    options = UploadedFileField(upload_storage="second")
    assert attached(options, None) is None
    value = attached(options, b"data")
    assert (value.depot_name, value.file.read()) == ("second", b"data")
    assert attached(options, value) is value


def test_a_value_carries_only_the_state_its_class_declares(depots):
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        doc = Document(content=b"data")
        value = doc.content
        session.add(doc)
        session.commit()  # the tracker claimed the upload and settled it
    declared = set().union(*(vars(cls).get("__annotations__", {}) for cls in type(value).__mro__))
    assert {"_depot_claims", "_depot_settled", "original_content"} <= set(vars(value))
    assert set(vars(value)) <= declared, set(vars(value)) - declared


def test_the_manager_links_follow_the_registered_middleware():
    class Mw:
        def url_for(self, path):
            return "/m/" + path

    links = DepotManager.links()
    assert isinstance(links, Links) and links.middleware is None
    with pytest.raises(RuntimeError, match="No WSGI middleware currently registered"):
        DepotManager.url_for("a/b")
    mw = Mw()
    DepotManager.set_middleware(mw)
    assert DepotManager.links().middleware is mw and DepotManager.links() is DepotManager.links()
    assert DepotManager.url_for("a/b") == DepotManager.links().url(None, "a/b") == "/m/a/b"
    # A middleware without a secret: rows record its url_for as it is, and read back unchanged.
    assert DepotManager.links().to_store("a/b") == "/m/a/b"
    assert DepotManager.links().resolve_stored("/m/a/b", "a/b") == "/m/a/b"
    DepotManager._middleware = None  # as filedepot's own tests do: the links follow
    assert DepotManager.links().middleware is None
    DepotManager.set_middleware(mw)
    DepotManager._clear()
    assert DepotManager.links().middleware is None


def test_signed_middleware_links_are_stored_unsigned_and_signed_when_read():
    DepotManager.make_middleware(None, secret="s3cret")
    links = DepotManager.links()
    stored = links.to_store("a/b")
    assert stored == "/depot/a/b"
    assert links.resolve_stored(stored, "a/b").startswith("/depot/a/b?expires=")
    assert links.resolve_stored("https://cdn.example/a/b", "a/b") == "https://cdn.example/a/b"
    assert links.url("https://cdn.example/x", "a/b") == "https://cdn.example/x"
    assert links.url(None, "a/b").startswith("/depot/a/b?expires=")
