"""The decision of a direct upload to the middleware (depot.serving.uploads), and the body reader of the core."""
import time
from http import HTTPStatus

import pytest

from depot.io import checksums
from depot.serving.core import DRAIN_LIMIT, UploadBody, _BodyRefused
from depot.serving.signing import UPLOAD, LinkSigner
from depot.serving.uploads import Admitted, BodyCheck, Refusal, admit, check_url, is_upload_url
from depot.uploads.intents import ATTACH_GRACE, SNIFF_BYTES, STREAM_GRACE, PendingUpload

ID = "d37138cf-2364-4128-8236-9cfaa8a6567c"
PATH = "/depot/default/" + ID
NOW = int(time.time())  # BodyCheck.end reads the clock: the intents must be current
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.fixture
def signer():
    return LinkSigner("s3cret", 600)


def record(**changes):
    values = dict(storage="default", file_id=ID, created_at=NOW - 10, expires_at=NOW + 600, max_size=2000,
                  content_types=("image/*",), filename="photo.png", checksum=None)
    values.update(changes)
    return PendingUpload(**values)


def upload_query(signer, path="default/" + ID, expires=NOW + 600):
    return signer.sign(path, expires=expires, purpose=UPLOAD)


def status_of(outcome):
    return outcome.status if isinstance(outcome, Refusal) else None


# -- stage 1: method, path, signature ------------------------------------------

def test_a_signed_put_names_its_file(signer):
    assert check_url("PUT", PATH, upload_query(signer), "/depot", signer, NOW) == ("default", ID)
    assert is_upload_url(PATH, upload_query(signer), "/depot", signer, NOW)


@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE", "OPTIONS"])
def test_other_methods_are_405(signer, method):
    refusal = check_url(method, PATH, upload_query(signer), "/depot", signer, NOW)
    assert refusal.status == HTTPStatus.METHOD_NOT_ALLOWED and refusal.code == "method"


def test_expired_url_is_403_expired(signer):
    query = upload_query(signer, expires=NOW + 5)
    assert check_url("PUT", PATH, query, "/depot", signer, NOW + 4) == ("default", ID)
    refusal = check_url("PUT", PATH, query, "/depot", signer, NOW + 5)
    assert (refusal.status, refusal.code) == (HTTPStatus.FORBIDDEN, "expired")
    assert not is_upload_url(PATH, query, "/depot", signer, NOW + 5)


@pytest.mark.parametrize("query", [
    "",  # unsigned
    "expires=%d&signature=AAAA" % (NOW + 600),  # tampered
    "{download}",  # a download link's signature
    "{other_id}",  # another upload's signature
    "{other_secret}",
], ids=["unsigned", "tampered", "download", "other_id", "other_secret"])  # ids without the time: xdist's workers must agree
def test_bad_signatures_are_403_bad_signature(signer, query):
    query = query.format(
        download=signer.sign("default/" + ID, now=NOW),
        other_id=upload_query(signer, path="default/other"),
        other_secret=LinkSigner("other", 600).sign("default/" + ID, expires=NOW + 600, purpose=UPLOAD),
    )
    refusal = check_url("PUT", PATH, query, "/depot", signer, NOW)
    assert (refusal.status, refusal.code) == (HTTPStatus.FORBIDDEN, "bad-signature")


def test_an_upload_signature_does_not_serve_downloads(signer):
    assert signer.remaining(("default/" + ID).encode(), upload_query(signer), NOW) is None


@pytest.mark.parametrize("path", ["/depot/default", "/depot/default/a/b", "/depot/default/..", "/depot/default/\x00"])
def test_paths_naming_no_file_are_404(signer, path):
    refusal = check_url("PUT", path, upload_query(signer), "/depot", signer, NOW)
    assert (refusal.status, refusal.code) == (HTTPStatus.NOT_FOUND, "not-an-intent")


# -- stage 2: the intent and the declared headers -----------------------------

def test_admitted_with_declared_length_and_type():
    admitted = admit(record(), False, {"CONTENT_LENGTH": "1000", "CONTENT_TYPE": "image/png"}, NOW)
    assert admitted == Admitted(1000, "image/png")


def test_type_comes_from_the_filename_when_not_declared():
    assert admit(record(), False, {"CONTENT_LENGTH": "5"}, NOW).content_type == "image/png"
    assert admit(record(filename=None, content_types=()), False, {}, NOW).content_type == "application/octet-stream"


@pytest.mark.parametrize("rec, present, headers, length_known, status, code", [
    (None, False, {}, True, HTTPStatus.NOT_FOUND, "not-an-intent"),
    (record(expires_at=NOW), False, {}, True, HTTPStatus.FORBIDDEN, "expired"),
    (record(), True, {}, True, HTTPStatus.CONFLICT, "already-uploaded"),
    (record(), False, {"CONTENT_LENGTH": "2001"}, True, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too-large"),
    (record(), False, {"CONTENT_LENGTH": "-1"}, True, HTTPStatus.BAD_REQUEST, "incomplete"),
    (record(), False, {"CONTENT_LENGTH": "1e3"}, True, HTTPStatus.BAD_REQUEST, "incomplete"),
    (record(), False, {}, False, HTTPStatus.LENGTH_REQUIRED, "incomplete"),
    (record(), False, {"CONTENT_TYPE": "text/html"}, True, HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "bad-type"),
    (record(), False, {"CONTENT_TYPE": "Text/HTML; charset=utf-8"}, True, HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
     "bad-type"),
    # No Content-Type: the type stored (and served) is guessed from the filename, so it is checked.
    (record(filename="page.html"), False, {}, True, HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "bad-type"),
])
def test_refusals_before_the_body(rec, present, headers, length_known, status, code):
    refusal = admit(rec, present, headers, NOW, length_known)
    assert (refusal.status, refusal.code) == (status, code)


def test_chunked_bodies_are_admitted_where_their_end_is_known():
    assert admit(record(), False, {}, NOW, length_known=True) == Admitted(None, "image/png")


def test_the_limit_itself_is_allowed():
    assert not isinstance(admit(record(), False, {"CONTENT_LENGTH": "2000"}, NOW), Refusal)


# -- stage 3: the body ---------------------------------------------------------

def feed_all(check, data, size):
    for offset in range(0, len(data), size):
        refusal = check.feed(data[offset:offset + size])
        if refusal is not None:
            return refusal
    return check.end()


@pytest.mark.parametrize("size", [1, 7, 64, 4096])
def test_body_passes_in_any_chunking(size):
    check = BodyCheck(record(), Admitted(len(PNG), "image/png"))
    assert feed_all(check, PNG, size) is None
    assert check.size == len(PNG) and check.sniffed


def test_sniffing_waits_for_the_first_bytes():
    check = BodyCheck(record(), Admitted(None, "image/png"))
    assert check.feed(b"x" * (SNIFF_BYTES - 1)) is None and not check.sniffed
    refusal = check.feed(b"x")
    assert check.sniffed and (refusal.status, refusal.code) == (HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "bad-type")


def test_a_short_body_is_sniffed_at_its_end():
    check = BodyCheck(record(), Admitted(None, "image/png"))
    assert check.feed(b"GIF89a") is None
    assert check.end() is None  # a GIF is an image/*
    check = BodyCheck(record(), Admitted(None, "image/png"))
    assert check.feed(b"hello") is None
    assert check.end().code == "bad-type"


def test_a_declared_type_the_bytes_contradict_is_refused():
    # Declared image/png (allowed), but the bytes are a PDF.
    check = BodyCheck(record(), Admitted(None, "image/png"))
    assert feed_all(check, b"%PDF-1.7" + b"x" * 100, 16).code == "bad-type"


def test_too_large_as_soon_as_the_limit_is_passed():
    check = BodyCheck(record(max_size=100, content_types=()), Admitted(None, "application/octet-stream"))
    assert check.feed(b"x" * 100) is None
    refusal = check.feed(b"x")
    assert (refusal.status, refusal.code) == (HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too-large")


def test_fewer_bytes_than_announced_is_incomplete():
    check = BodyCheck(record(), Admitted(len(PNG) + 1, "image/png"))
    assert (feed_all(check, PNG, 100).status, check.size) == (HTTPStatus.BAD_REQUEST, len(PNG))


def test_a_body_ending_long_after_the_intent_expired_is_refused():
    """Past the stream grace the collection may have taken the marker: nothing may be stored then."""
    check = BodyCheck(record(), Admitted(len(PNG), "image/png"))
    for start in range(0, len(PNG), 100):
        assert check.feed(PNG[start:start + 100]) is None
    assert check.end(now=NOW + 600 + STREAM_GRACE - 1) is None
    refusal = check.end(now=NOW + 600 + STREAM_GRACE + 1)
    assert (refusal.status, refusal.code) == (HTTPStatus.FORBIDDEN, "expired")
    assert STREAM_GRACE < ATTACH_GRACE  # the collection never meets an upload in flight


def test_an_exact_size_is_the_only_size_admitted():
    """An intent that gave ``size``: another declared length is refused before the body, another body after."""
    exact = record(size=10, content_types=())
    for length, status in [("11", HTTPStatus.REQUEST_ENTITY_TOO_LARGE), ("9", HTTPStatus.BAD_REQUEST)]:
        refusal = admit(exact, False, {"CONTENT_LENGTH": length}, NOW)
        assert (refusal.status, refusal.code) == (status, "too-large" if length == "11" else "incomplete")
    assert admit(exact, False, {"CONTENT_LENGTH": "10"}, NOW) == Admitted(10, "image/png")
    check = BodyCheck(exact, Admitted(None, "application/octet-stream"))
    assert check.feed(b"x" * 10) is None
    assert check.feed(b"x").status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE  # chunked, growing past it
    check = BodyCheck(exact, Admitted(None, "application/octet-stream"))
    assert check.feed(b"x" * 9) is None
    assert (check.end().status, check.end().code) == (HTTPStatus.BAD_REQUEST, "incomplete")  # chunked, short
    check = BodyCheck(exact, Admitted(None, "application/octet-stream"))
    assert feed_all(check, b"x" * 10, 3) is None


def test_a_claimed_upload_is_no_intent_any_more():
    refusal = admit(record(claimed_at=NOW - 1), False, {}, NOW)
    assert (refusal.status, refusal.code) == (HTTPStatus.NOT_FOUND, "not-an-intent")


@pytest.mark.parametrize("algorithm", checksums.ALGORITHMS)
def test_checksum_checked_at_the_end(algorithm):
    good = record(checksum=checksums.compute(algorithm, PNG))
    assert feed_all(BodyCheck(good, Admitted(None, "image/png")), PNG, 100) is None
    bad = record(checksum=checksums.compute(algorithm, PNG + b"!"))
    refusal = feed_all(BodyCheck(bad, Admitted(None, "image/png")), PNG, 100)
    assert (refusal.status, refusal.code) == (HTTPStatus.BAD_REQUEST, "bad-checksum")


# -- the reader the storage consumes -------------------------------------------

class Source:
    """A transport's read(n), recording the sizes asked for."""

    def __init__(self, data, piece=None, fail_at=None):
        self.data, self.piece, self.fail_at = data, piece, fail_at
        self.offset = 0
        self.asked = []

    def read(self, n):
        self.asked.append(n)
        if self.fail_at is not None and self.offset >= self.fail_at:
            raise ConnectionResetError("peer gone")
        take = min(n, self.piece or n)
        chunk = self.data[self.offset:self.offset + take]
        self.offset += len(chunk)
        return chunk


def body_for(source, length=None, chunk_size=100, **changes):
    check = BodyCheck(record(**changes), Admitted(length, "image/png"))
    return UploadBody(source.read, check, chunk_size), check


@pytest.mark.parametrize("piece", [None, 3, 50])
@pytest.mark.parametrize("length", [None, len(PNG)])
def test_reader_delivers_the_body_and_never_reads_past_the_length(piece, length):
    source = Source(PNG + b"TRAILING", piece)
    body, check = body_for(source, length)
    out = b"".join(iter(lambda: body.read(37), b""))
    assert out == (PNG if length else PNG + b"TRAILING")
    assert source.offset == len(out) and max(source.asked) <= 100


def test_reader_readinto_and_readall():
    body, _ = body_for(Source(PNG), len(PNG))
    buffer = bytearray(10)
    assert body.readinto(buffer) == 10 and bytes(buffer) == PNG[:10]
    assert body.readall() == PNG[10:]


def test_reader_holds_back_the_first_bytes_until_sniffed():
    body, check = body_for(Source(b"%PDF-" + b"x" * 500, piece=10))
    with pytest.raises(_BodyRefused):
        body.read(1)  # nothing was handed on before the type was refused
    assert body.refusal.code == "bad-type"


@pytest.mark.parametrize("length", [None, 2000 + 500])
def test_reader_refuses_past_max_size(length):
    data = PNG * 3
    body, _ = body_for(Source(data), length=None, max_size=2000)
    with pytest.raises(_BodyRefused):
        while body.read(100):
            pass
    assert body.refusal.code == "too-large"


def test_reader_turns_transport_errors_into_incomplete():
    body, _ = body_for(Source(PNG, fail_at=300), len(PNG))
    with pytest.raises(_BodyRefused) as info:
        while body.read(100):
            pass
    assert body.refusal.code == "incomplete" and isinstance(info.value.__cause__, ConnectionResetError)


def test_reader_reports_the_end_only_after_the_checksum():
    bad = checksums.compute("sha256", b"other")
    body, _ = body_for(Source(PNG), checksum=bad)
    with pytest.raises(_BodyRefused):
        while body.read(100):
            pass
    assert body.refusal.code == "bad-checksum"


def test_drain_reads_what_is_left_up_to_the_limit():
    source = Source(b"x" * 1000)
    body, _ = body_for(source, length=1000)
    body.drain()
    assert source.offset == 1000
    source = Source(b"x" * (DRAIN_LIMIT + 10))
    body, _ = body_for(source, length=DRAIN_LIMIT + 10)
    body.drain()
    assert source.offset == 0  # too much to be worth reading
