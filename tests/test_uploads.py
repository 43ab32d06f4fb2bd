"""Direct uploads, the core: intents, the check before attaching, collection of uploads never attached.

The bytes are written as the middleware endpoint writes them, with
``storage._store_at``; the HTTP paths are tested in their own modules.
"""
from __future__ import annotations

import hashlib
import json
import time

import pytest

from depot.io import checksums
from depot.manager import DepotManager
from depot.uploads import (
    PendingUpload,
    UploadRefused,
    collect_pending,
    create_upload_intent,
    finish_upload,
    pending_uploads,
)
from depot.uploads._api import claim_upload
from depot.uploads.intents import ATTACH_GRACE, check_content_types, claimed, sniff_content_type, type_allowed
from tests._uploads import PNG_HEAD, UploadURLs, backend_fixture, storage_fixture  # noqa: F401 - fixtures

# -- arguments checked at the door ----------------------------------------------------


@pytest.mark.parametrize("options, message", [
    ({"max_size": 0}, "max_size must be a positive integer"),
    ({"max_size": -5}, "max_size must be a positive integer"),
    ({"max_size": 1.5}, "max_size must be a positive integer"),
    ({"max_size": True}, "max_size must be a positive integer"),
    ({"max_size": "10"}, "max_size must be a positive integer"),
    ({"max_size": 10, "content_types": ["image"]}, "Malformed content type 'image'"),
    ({"max_size": 10, "content_types": ["image/png; x=1"]}, "Malformed content type"),
    ({"max_size": 10, "content_types": [3]}, "Malformed content type 3"),
    ({"max_size": 10, "content_types": 5}, "content_types must be a sequence"),
    ({"max_size": 10, "expires_in": 0}, "expires_in must be an integer number of seconds from 1 to 604800"),
    ({"max_size": 10, "expires_in": 8 * 86400}, "expires_in must be"),
    ({"max_size": 10, "expires_in": 60.0}, "expires_in must be"),
    ({"max_size": 10, "checksum": "sha256"}, "checksum must be '<algorithm>:<hex digest>'"),
    ({"max_size": 10, "checksum": "sha1:" + "0" * 40}, "checksum must be"),
    ({"max_size": 10, "checksum": "sha256:abcd"}, "a sha256 digest is 64 hexadecimal digits"),
    ({"max_size": 10, "checksum": "crc32c:zzzzzzzz"}, "a crc32c digest is 8 hexadecimal digits"),
    ({"max_size": 10, "checksum": b"md5:00"}, "checksum must be"),
    ({"max_size": 10, "multipart": "yes"}, "multipart must be True, False or None"),
    ({"max_size": 10, "part_size": 0}, "part_size must be a positive integer"),
    ({"max_size": 10, "filename": ""}, "filename must be a non-empty string"),
    ({"max_size": 10, "method": "GET"}, "method must be one of POST, PUT, MULTIPART, RESUMABLE or None"),
    ({"max_size": 10, "method": 1}, "method must be one of"),
    ({"max_size": 10, "method": "put", "multipart": True}, "method PUT contradicts multipart=True"),
    ({"max_size": 10, "method": "MULTIPART", "multipart": False}, "method MULTIPART contradicts"),
    ({"max_size": 10, "size": 11}, "size must be an integer from 0 to max_size"),
    ({"max_size": 10, "size": -1}, "size must be an integer from 0 to max_size"),
    ({"max_size": 10, "size": "5"}, "size must be an integer"),
    ({"max_size": 10, "size": True}, "size must be an integer"),
])
def test_bad_arguments_are_refused_before_anything_is_written(memory_depots, options, message):
    DepotManager.set_middleware(UploadURLs())
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        create_upload_intent(**options)
    assert list(pending_uploads()) == []


def test_max_size_is_required(memory_depots):
    with pytest.raises(TypeError):
        create_upload_intent()  # type: ignore[call-arg]


def test_unknown_storage(memory_depots):
    with pytest.raises(ValueError, match="No storage named 'nope' is configured"):
        create_upload_intent("nope", max_size=10)


def test_without_a_middleware_no_intent_and_no_marker(memory_depots):
    with pytest.raises(RuntimeError, match="go through the depot middleware"):
        create_upload_intent(max_size=10)
    assert list(pending_uploads()) == []


def test_intent_as_the_browser_gets_it(memory_depots):
    DepotManager.set_middleware(UploadURLs())
    before = time.time()
    intent = DepotManager.create_upload_intent(max_size=1000, content_types=["Image/PNG", "text/*"],
                                               filename="cat.png", checksum="SHA256:" + "AB" * 32,
                                               expires_in=600)
    data = intent.as_dict()
    assert set(data) == {"id", "storage", "method", "url", "fields", "headers", "parts", "max_size",
                         "content_types", "expires_at"}
    assert json.loads(json.dumps(data)) == data
    assert (data["id"], data["storage"], data["method"]) == (intent.file_id, "default", "PUT")
    assert data["url"].startswith("/depot/default/%s?" % intent.file_id)
    assert data["content_types"] == ["image/png", "text/*"]
    assert before + 600 <= data["expires_at"] <= time.time() + 600
    # The marker holds the whole record, normalised.
    record = PendingUpload.from_json(DepotManager.get()._pending_get(intent.file_id))
    assert record.checksum == "sha256:" + "ab" * 32
    assert (record.max_size, record.filename, record.content_types) == (1000, "cat.png", ("image/png", "text/*"))
    assert record.multipart is None
    assert PendingUpload.from_json(record.to_json()) == record
    assert [file_id for file_id, _ in pending_uploads()] == [intent.file_id]
    assert DepotManager.get().list() == []


def test_multipart_wishes_reach_the_backend(memory_depots):
    seen = []

    class Recording(UploadURLs):
        def upload_url_for(self, record):
            seen.append(record.multipart)
            return super().upload_url_for(record)

    DepotManager.set_middleware(Recording())
    create_upload_intent(max_size=10, multipart=True, part_size=5 * 2**20)
    assert seen == [{"wanted": True, "part_size": 5 * 2**20, "method": None}]


def test_a_backend_answer_is_recorded_in_the_marker(memory_depots):
    from depot.uploads import UploadTarget

    storage = DepotManager.get()
    storage._upload_target = lambda record: UploadTarget("MULTIPART", "https://s3/x", parts={"part_size": 5, "urls": ["u1"]},
                                                         multipart={"upload_id": "abc"})
    intent = create_upload_intent(max_size=10)
    assert intent.parts == {"part_size": 5, "urls": ["u1"]}
    assert PendingUpload.from_json(storage._pending_get(intent.file_id)).multipart == {"upload_id": "abc"}


def test_a_failing_backend_leaves_no_marker(memory_depots):
    storage = DepotManager.get()
    abandoned = []

    def failing(record):
        raise IOError("service down")

    storage._upload_target = failing
    storage._abandon_upload = abandoned.append
    with pytest.raises(IOError, match="service down"):
        create_upload_intent(max_size=10)
    assert list(pending_uploads()) == []
    assert len(abandoned) == 1  # what the backend began is undone too


def test_unreadable_marker():
    with pytest.raises(ValueError, match="Not a pending upload record"):
        PendingUpload.from_json(b'{"storage": "x"}')


def test_refusal_names_upload_and_storage():
    exc = UploadRefused("files", "1234", "too-large", "11 bytes, at most 10 allowed")
    assert str(exc) == "Upload 1234 to storage files refused (too-large): 11 bytes, at most 10 allowed"
    assert isinstance(exc, ValueError)
    with pytest.raises(ValueError, match="Unknown refusal code"):
        UploadRefused("files", "1234", "bad", "x")


# -- content types ---------------------------------------------------------------------


@pytest.mark.parametrize("head, declared, expected", [
    (PNG_HEAD, "text/plain", "image/png"),  # the bytes win
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", None, "image/jpeg"),
    (b"GIF89a....", "image/gif", "image/gif"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", None, "image/webp"),
    (b"\x00\x00\x00\x18ftypmp42", None, "video/mp4"),
    (b"%PDF-1.7\n", "application/octet-stream", "application/pdf"),
    (b"PK\x03\x04", None, "application/zip"),
    (b"not a png", "image/png", "application/octet-stream"),  # claims a format it does not have
    (b"not a pdf", "application/pdf", "application/octet-stream"),
    (b"a,b\n1,2\n", "text/csv", "text/csv"),  # no signature to check: the declared type
    (b"{}", "application/json; charset=utf-8", "application/json"),
    (b"", None, "application/octet-stream"),
    (b"x", "bad type", "application/octet-stream"),
])
def test_sniffed_content_type(head, declared, expected):
    assert sniff_content_type(head, declared) == expected


def test_allowed_types():
    assert type_allowed("image/png", ())
    assert type_allowed("image/png", ("image/*",))
    assert not type_allowed("text/plain", ("image/*", "application/pdf"))
    assert check_content_types("image/*") == ("image/*",)
    assert check_content_types(None) == ()


# -- finish_upload: the check before attaching, on every backend ---------------------------


def _upload(storage, intent, data, filename="upload.bin", content_type=None):
    storage._store_at(intent.file_id, data, filename, content_type)


def test_a_matching_upload_passes_and_keeps_its_marker(storage):
    data = PNG_HEAD + b"rest of the image"
    intent = create_upload_intent("files", max_size=len(data), content_types=["image/*"],
                                  checksum="sha256:" + hashlib.sha256(data).hexdigest())
    _upload(storage, intent, data, "cat.png", "image/png")
    record, stored = finish_upload("files", intent.file_id)
    with stored:
        assert stored.read() == data
        assert (stored.file_id, stored.filename, stored.content_type) == (intent.file_id, "cat.png", "image/png")
    assert record.max_size == len(data)
    assert [file_id for file_id, _ in pending_uploads("files")] == [intent.file_id]  # attaching removes it
    assert storage.list() == [intent.file_id]


@pytest.mark.parametrize("case", ["too-large", "bad-type", "bad-checksum"])
def test_a_mismatching_upload_is_deleted_with_its_marker(storage, case):
    data = b"plain text, not an image"
    options = {"max_size": 1000}
    if case == "too-large":
        options["max_size"] = len(data) - 1
    elif case == "bad-type":
        options["content_types"] = ["image/png"]
    else:
        options["checksum"] = checksums.compute("crc32c", b"other bytes")
    intent = create_upload_intent(**options)
    _upload(storage, intent, data, "fake.png", "image/png" if case == "bad-type" else "text/plain")
    with pytest.raises(UploadRefused) as refused:
        finish_upload(None, intent.file_id)
    assert (refused.value.code, refused.value.storage, refused.value.file_id) == (case, "files", intent.file_id)
    assert intent.file_id in str(refused.value) and "files" in str(refused.value)
    assert not storage.exists(intent.file_id)
    assert storage._pending_get(intent.file_id) is None
    with pytest.raises(UploadRefused) as again:
        finish_upload(None, intent.file_id)
    assert again.value.code == "not-an-intent"


def test_incomplete_upload_keeps_its_marker_for_a_later_attempt(storage):
    intent = create_upload_intent(max_size=100)
    with pytest.raises(UploadRefused) as refused:
        finish_upload("files", intent.file_id)
    assert refused.value.code == "incomplete"
    assert storage._pending_get(intent.file_id) is not None
    _upload(storage, intent, b"now complete")
    assert finish_upload("files", intent.file_id)[1].read() == b"now complete"


#: A method each backend does not offer.
UNOFFERED = {"memory": "POST", "local": "MULTIPART", "gridfs": "RESUMABLE", "s3": "RESUMABLE", "awss3": "POST",
             "gcs": "POST"}


def test_a_method_the_storage_does_not_offer_is_refused_naming_it(storage, backend):
    with pytest.raises(ValueError, match=r"storage files \(.*not %s" % UNOFFERED[backend]):
        create_upload_intent(max_size=10, method=UNOFFERED[backend].lower())
    assert list(pending_uploads("files")) == []
    if backend in ("memory", "local", "gridfs", "awss3"):
        intent = create_upload_intent(max_size=10, method="PUT")
        assert intent.method == "PUT"
        assert PendingUpload.from_json(storage._pending_get(intent.file_id)).multipart["method"] == "PUT"


def test_exact_size_is_recorded_and_checked(storage):
    intent = create_upload_intent(max_size=100, size=10)
    assert PendingUpload.from_json(storage._pending_get(intent.file_id)).size == 10
    # Shorter: a truncated upload; deleted, the marker kept for another try.
    _upload(storage, intent, b"x" * 9)
    with pytest.raises(UploadRefused) as short:
        finish_upload("files", intent.file_id)
    assert short.value.code == "incomplete" and "9 bytes stored, 10 announced" in str(short.value)
    assert not storage.exists(intent.file_id) and storage._pending_get(intent.file_id) is not None
    _upload(storage, intent, b"x" * 10)
    assert finish_upload("files", intent.file_id)[1].read() == b"x" * 10
    # Larger (within max_size): refused, deleted with its marker.
    larger = create_upload_intent(max_size=100, size=10)
    _upload(storage, larger, b"x" * 11)
    with pytest.raises(UploadRefused) as refused:
        finish_upload("files", larger.file_id)
    assert refused.value.code == "too-large" and "exactly 10" in str(refused.value)
    assert not storage.exists(larger.file_id) and storage._pending_get(larger.file_id) is None
    empty = create_upload_intent(max_size=100, size=0)
    _upload(storage, empty, b"")
    assert finish_upload("files", empty.file_id)[1].read() == b""


def test_gc_claims_before_deleting_and_then_refuses_attaches(storage, monkeypatch):
    """gc swaps the marker for a collecting one first: an attach after it is refused; a crash is finished later."""
    intent = create_upload_intent(max_size=100, expires_in=60)
    _upload(storage, intent, b"never attached")
    record = PendingUpload.from_json(storage._pending_get(intent.file_id))
    late = intent.expires_at + ATTACH_GRACE + 1
    # kill -9 between gc's claim and the deletion of the file.
    monkeypatch.setattr(storage, "_abandon_upload", lambda record: (_ for _ in ()).throw(SystemExit))
    with pytest.raises(SystemExit):
        collect_pending("files", older_than=0, now=late)
    left = PendingUpload.from_json(storage._pending_get(intent.file_id))
    assert left.collecting and left.claimed_at == late and storage.exists(intent.file_id)
    assert not claim_upload(storage, record)  # an attach after gc's claim loses
    with pytest.raises(UploadRefused) as refused:
        finish_upload("files", intent.file_id)
    assert refused.value.code == "not-an-intent" and "being collected" in str(refused.value)
    monkeypatch.undo()
    # The next collection finishes: the file, then the marker.
    assert collect_pending("files", older_than=0, now=late + 1) == [intent.file_id]
    assert not storage.exists(intent.file_id) and storage._pending_get(intent.file_id) is None


def test_an_attach_claim_keeps_gc_from_the_file_even_past_expiry(storage):
    """Claimed by an attach (not collecting): gc never deletes the file, whatever the expiry."""
    intent = create_upload_intent(max_size=100, expires_in=60)
    _upload(storage, intent, b"attached")
    record, stored = finish_upload("files", intent.file_id)
    stored.close()
    assert claim_upload(storage, record, now=record.created_at + 1)
    late = intent.expires_at + ATTACH_GRACE + 10
    assert collect_pending("files", older_than=5, now=late) == []
    assert storage.exists(intent.file_id) and storage._pending_get(intent.file_id) is None


def test_a_claimed_upload_keeps_a_marker_that_only_gc_drops(storage):
    """Attaching claims the marker (fsck then never takes the file for an orphan); gc drops only the marker."""
    intent = create_upload_intent(max_size=100)
    _upload(storage, intent, b"attached")
    record, stored = finish_upload("files", intent.file_id)
    stored.close()
    claimed_at = record.created_at + 3000
    assert claim_upload(storage, record, now=claimed_at)
    assert not claim_upload(storage, record)  # a second attach is refused
    assert claimed(storage._pending_get(intent.file_id))
    assert [file_id for file_id, _ in pending_uploads("files")] == [intent.file_id]
    with pytest.raises(UploadRefused) as again:
        finish_upload("files", intent.file_id)
    assert again.value.code == "not-an-intent" and "already attached" in str(again.value)
    # Old by its creation, young by its claim: kept whole.
    assert collect_pending("files", older_than=1800, now=record.created_at + 3600) == []
    assert storage._pending_get(intent.file_id) is not None
    # Claimed long ago: the marker goes, never the file (a row may reference it).
    assert collect_pending("files", older_than=1800, now=claimed_at + 3600) == []
    assert storage._pending_get(intent.file_id) is None and list(pending_uploads("files")) == []
    assert storage.exists(intent.file_id)


def test_never_an_intent(storage):
    file_id = storage.create(b"stored the usual way")
    for unknown in (file_id, storage._new_upload_id(), "not an id"):
        with pytest.raises(UploadRefused) as refused:
            finish_upload("files", unknown)
        assert refused.value.code == "not-an-intent"
    assert storage.exists(file_id)  # a refusal for lack of a marker never deletes


def test_checksum_of_another_algorithm_is_computed(memory_depots):
    DepotManager.set_middleware(UploadURLs())
    storage = DepotManager.get()
    data = b"x" * (600 * 1024)  # more than one read
    good = create_upload_intent(max_size=len(data), checksum="md5:" + hashlib.md5(data).hexdigest())
    storage._store_at(good.file_id, data)
    assert finish_upload(None, good.file_id)[1].read() == data
    storage.checksum_algorithm = None  # the storage records none: computed from the bytes
    bad = create_upload_intent(max_size=len(data), checksum="sha256:" + hashlib.sha256(b"y").hexdigest())
    storage._store_at(bad.file_id, data)
    with pytest.raises(UploadRefused, match="bad-checksum"):
        finish_upload(None, bad.file_id)


# -- collecting the uploads never attached -------------------------------------------------


def test_collect_removes_only_old_unattached_uploads(storage):
    old_uploaded = create_upload_intent(max_size=100)
    _upload(storage, old_uploaded, b"never attached")
    old_empty = create_upload_intent(max_size=100)  # permitted, never uploaded
    attached = create_upload_intent(max_size=100)
    _upload(storage, attached, b"attached")
    finish_upload("files", attached.file_id)
    storage._pending_delete(attached.file_id)  # what attaching does
    kept = storage.create(b"stored the usual way")
    later = time.time() + 3600 + ATTACH_GRACE + 60  # expired, and past the grace to attach
    young = create_upload_intent(max_size=100)
    _upload(storage, young, b"in flight")
    # Nothing is old enough yet.
    assert collect_pending("files", older_than=3600) == []
    removed = collect_pending("files", older_than=1800, now=later)
    assert sorted(removed) == sorted([old_uploaded.file_id, old_empty.file_id, young.file_id])
    assert sorted(storage.list()) == sorted([attached.file_id, kept])
    assert list(pending_uploads("files")) == []


def test_collect_arguments(memory_depots):
    with pytest.raises(ValueError, match="older_than must be a number of seconds"):
        collect_pending(older_than=-1)
    with pytest.raises(TypeError):
        collect_pending()  # type: ignore[call-arg]


def test_collect_removes_an_upload_whose_marker_is_unreadable(memory_depots):
    storage = DepotManager.get()
    file_id = storage._new_upload_id()
    storage._pending_put(file_id, b"not json")
    storage._store_at(file_id, b"an upload")
    assert collect_pending(older_than=60, now=time.time() + ATTACH_GRACE + 120) == [file_id]
    assert storage.list() == [] and list(pending_uploads()) == []


def test_collect_never_takes_an_intent_that_may_still_be_attached(storage):
    """However small ``older_than``, an intent is only collected once expired for longer than the grace."""
    week = create_upload_intent(max_size=100, expires_in=7 * 86400)
    _upload(storage, week, b"uploaded with a week-long URL")
    assert collect_pending("files", older_than=86400, now=time.time() + 2 * 86400) == []
    assert collect_pending("files", older_than=0, now=week.expires_at + ATTACH_GRACE - 5) == []
    assert finish_upload("files", week.file_id)[1].read() == b"uploaded with a week-long URL"
    assert collect_pending("files", older_than=0, now=week.expires_at + ATTACH_GRACE + 5) == [week.file_id]
    assert storage.list() == []


def test_attach_refused_once_expired_past_the_grace(storage, monkeypatch):
    intent = create_upload_intent(max_size=100, expires_in=60)
    _upload(storage, intent, b"data")
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 60 + ATTACH_GRACE - 30)
    finish_upload("files", intent.file_id)[1].close()  # late, within the grace: accepted
    monkeypatch.setattr(time, "time", lambda: real_time() + 3 * 86400)
    with pytest.raises(UploadRefused) as refused:
        finish_upload("files", intent.file_id)
    assert refused.value.code == "expired"
    assert not storage.exists(intent.file_id) and list(pending_uploads("files")) == []


def test_collect_racing_an_attach_never_deletes_the_attached_file(storage, monkeypatch):
    """The collection claims the marker before deleting: an attach that claimed it first wins."""
    from depot.uploads.attach import DirectUpload

    intent = create_upload_intent(max_size=100, expires_in=60)
    _upload(storage, intent, b"attached while collected")
    late = intent.expires_at + ATTACH_GRACE - 1
    real_get = storage._pending_get
    opened = []

    def get_then_attach(file_id):
        raw = real_get(file_id)
        # The collection has read the marker: an attach (within the grace) claims it now.
        monkeypatch.setattr(storage, "_pending_get", real_get)
        opened.append(DirectUpload(file_id, "files").open())
        return raw

    monkeypatch.setattr(storage, "_pending_get", get_then_attach)
    assert collect_pending("files", older_than=0, now=late + 2) == []
    assert storage.exists(opened[0].file_id)  # (on S3 a POST upload moved to a new id at attach)
    assert opened[0].read() == b"attached while collected"
    opened[0].close()


def test_a_stored_type_not_allowed_is_refused_even_when_the_bytes_sniff_right(storage):
    """PNG bytes stored as text/html would be served as HTML: the stored type is checked too."""
    data = PNG_HEAD + b"<html><script>alert(1)</script>"
    intent = create_upload_intent(max_size=1000, content_types=["image/png", "image/jpeg"])
    _upload(storage, intent, data, "cat.png", "text/html")
    with pytest.raises(UploadRefused) as refused:
        finish_upload("files", intent.file_id)
    assert refused.value.code == "bad-type" and "text/html" in str(refused.value)
    assert not storage.exists(intent.file_id)
