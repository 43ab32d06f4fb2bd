"""Direct uploads to S3 and GCS over real HTTP: SeaweedFS (signatures and POST policies checked),
moto server (checks neither: the attach step must) and fake-gcs-server (checks no signature).

The browser's side is played by :class:`Browser` with httpx, following the
protocol of ``depot-upload.js`` (docs/uploads.rst).  Each refusal test says
where the refusal happens: at the service (nothing stored) or at the attach
step (the upload is deleted).
"""
from __future__ import annotations

import hashlib
import io
import struct
import time
import zlib
from dataclasses import replace
from typing import Any, Dict, List, Optional

import pytest

boto3 = pytest.importorskip("boto3")
httpx = pytest.importorskip("httpx")
pytest.importorskip("google.cloud.storage")

from depot.io import checksums  # noqa: E402
from depot.manager import DepotManager  # noqa: E402
from depot.uploads import (  # noqa: E402
    UploadIntent,
    UploadRefused,
    collect_pending,
    create_upload_intent,
    finish_upload,
    pending_uploads,
)
from depot.uploads.intents import claimed  # noqa: E402
from tests.servers import unique_name  # noqa: E402
from tests.test_storage_gcs import make_service_account_info  # noqa: E402

MB = 1024 * 1024
ORIGIN = "http://app.example.test"


def png(size: int = 300) -> bytes:
    """A small valid PNG padded to about ``size`` bytes (a text chunk)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
    body = chunk(b"IDAT", zlib.compress(b"\x00\x00"))
    pad = chunk(b"tEXt", b"c\x00" + b"x" * max(0, size - 80))
    return head + pad + body + chunk(b"IEND", b"")


def pattern(size: int) -> bytes:
    return (b"depot direct upload " * (size // 20 + 1))[:size]


class Failed(Exception):
    """The service refused a request (status and body kept)."""

    def __init__(self, response: Any) -> None:
        super().__init__("%s %s" % (response.status_code, response.text[:300]))
        self.status = response.status_code


class Browser:
    """What ``depot-upload.js`` does, in Python: the protocol each method of an intent asks for.

    ``fail_once`` names chunk/part numbers (1-based) whose first attempt is
    lost before it reaches the server (as a dropped connection would be).
    """

    def __init__(self, origin: str = ORIGIN, fail_once: tuple = ()) -> None:
        self.client = httpx.Client(timeout=60, headers={"Origin": origin})
        self.fail_once = set(fail_once)
        self.requests: List[str] = []
        self.cors: List[bool] = []
        self.exposed: set = set()

    def upload(self, intent: UploadIntent, data: bytes, content_type: str = "application/octet-stream",
               parts: Optional[List[int]] = None, resend: tuple = ()) -> None:
        spec = intent.as_dict()
        method = spec["method"]
        if method == "POST":
            fields = dict(spec["fields"])
            fields.setdefault("Content-Type", content_type)
            response = self.client.post(spec["url"], data=fields, files={"file": ("blob", data, content_type)})
            self._check(response)
        elif method == "PUT":
            headers = dict(spec["headers"])
            headers.setdefault("Content-Type", content_type)
            self._check(self.client.put(spec["url"], content=data, headers=headers))
        elif method == "MULTIPART":
            self._parts(spec["parts"], data, parts, resend)
        elif method == "RESUMABLE":
            self._resumable(spec["url"], spec["parts"], data)
        else:
            raise AssertionError("unknown method %r" % method)

    def _lose(self, url: str, body: bytes, headers: Optional[Dict[str, str]] = None) -> None:
        """Start a PUT of ``body`` and drop the connection half way, as a network failure would."""
        def half_then_fail():
            yield body[: len(body) // 2]
            raise ConnectionAbortedError("connection lost (simulated)")

        headers = dict(headers or {}, **{"Content-Length": str(len(body))})
        with pytest.raises(Exception):  # noqa: B017 - whatever httpx makes of the broken body
            self.client.put(url, content=half_then_fail(), headers=headers)
        self.requests.append("PUT lost")

    def _check(self, response: Any) -> Any:
        self.requests.append("%s %s" % (response.request.method, response.status_code))
        # A browser hands the answer to the page only with this header.
        self.cors.append(response.headers.get("Access-Control-Allow-Origin") in ("*", ORIGIN))
        self.exposed.update(h.strip().lower() for h in
                            response.headers.get("Access-Control-Expose-Headers", "").split(","))
        if response.status_code >= 400:
            raise Failed(response)
        return response

    def _parts(self, parts: Dict[str, Any], data: bytes, only: Optional[List[int]], resend: tuple) -> None:
        size = parts["part_size"]
        count = max(1, -(-len(data) // size))
        numbers = only if only is not None else list(range(1, count + 1))
        for number in numbers:
            body = data[(number - 1) * size: number * size]
            if number in self.fail_once:
                self.fail_once.discard(number)
                self._lose(parts["urls"][number - 1], body)
            self._check(self.client.put(parts["urls"][number - 1], content=body))
            if number in resend:
                self._check(self.client.put(parts["urls"][number - 1], content=body))

    def _resumable(self, url: str, parts: Dict[str, Any], data: bytes) -> None:
        size, chunk, offset, number = len(data), parts["part_size"], 0, 0
        if size == 0:
            self._check(self.client.put(url, headers={"Content-Range": "bytes */0"}))
            return
        while offset < size:
            number += 1
            end = min(offset + chunk, size)
            if number in self.fail_once:
                self.fail_once.discard(number)
                self._lose(url, data[offset:end], {"Content-Range": "bytes %d-%d/%d" % (offset, end - 1, size)})
                if parts["query_status"]:
                    answer = self._check(self.client.put(url, headers={"Content-Range": "bytes */%d" % size}))
                    if answer.status_code in (200, 201):
                        return
                    offset = _next_offset(answer, 0)
                    continue
            response = self._check(self.client.put(
                url, content=data[offset:end], headers={"Content-Range": "bytes %d-%d/%d" % (offset, end - 1, size)}
            ))
            if response.status_code in (200, 201):
                return
            assert response.status_code == 308, response.status_code
            offset = _next_offset(response, end)


def _next_offset(response: Any, default: int) -> int:
    value = response.headers.get("Range")
    return int(value.rsplit("-", 1)[1]) + 1 if value else default


def preflight(url: str, method: str, headers: str) -> Dict[str, str]:
    response = httpx.options(url, headers={"Origin": ORIGIN, "Access-Control-Request-Method": method,
                                           "Access-Control-Request-Headers": headers})
    assert response.status_code in (200, 204), (response.status_code, response.text[:300])
    return {name.lower(): value for name, value in response.headers.items()}


def allows_origin(answer: Dict[str, str]) -> bool:
    return answer.get("access-control-allow-origin") in ("*", ORIGIN)


def intent_with_method(name: str, method: str, **options: Any) -> UploadIntent:
    """An intent asking the storage for ``method``."""
    intent = create_upload_intent(name, method=method, **options)
    assert intent.method == method
    return intent


def assert_nothing_stored(name: str, intent: UploadIntent) -> None:
    assert not DepotManager.get(name).exists(intent.id)


def assert_attached_with(name: str, intent: UploadIntent, data: bytes, checksum: str) -> None:
    """Upload ``data`` as the browser would; it attaches, reporting ``checksum``."""
    Browser().upload(intent, data, "text/plain")
    _, stored = finish_upload(name, intent.id)
    with stored:
        assert stored.checksum == checksum


def assert_post_preflight_passes(name: str) -> None:
    intent = create_upload_intent(name, max_size=100)
    assert allows_origin(preflight(intent.url, "POST", "content-type"))


# -- storages -----------------------------------------------------------------

def configure_s3(server, name: str = "cloud", **options: Any) -> str:
    settings = {
        "depot.backend": "depot.io.boto3.S3Storage",
        "depot.access_key_id": server.access_key,
        "depot.secret_access_key": server.secret_key,
        "depot.endpoint_url": server.endpoint_url,
        "depot.region_name": server.region,
        "depot.bucket": unique_name("up"),
    }
    settings.update({"depot." + key: value for key, value in options.items()})
    DepotManager.configure(name, settings)
    return name


@pytest.fixture
def seaweed(seaweedfs_server) -> str:
    return configure_s3(seaweedfs_server)


@pytest.fixture
def moto(moto_server) -> str:
    name = configure_s3(moto_server)
    storage = DepotManager.get(name)
    # moto answers CORS preflights only for buckets configured for them, as AWS does.
    storage._client.put_bucket_cors(Bucket=storage._bucket_driver.bucket.name, CORSConfiguration={
        "CORSRules": [{"AllowedOrigins": [ORIGIN], "AllowedMethods": ["PUT", "POST"], "AllowedHeaders": ["*"],
                       "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 3600}],
    })
    return name


@pytest.fixture
def gcs(gcs_emulator_env) -> str:
    DepotManager.configure("cloud", {
        "depot.backend": "depot.io.gcs.GCSStorage",
        "depot.bucket": unique_name("up"),
        "depot.credentials": make_service_account_info(),
        "depot.upload_origin": ORIGIN,
    })
    return "cloud"


# -- S3 on SeaweedFS: the service enforces the policy -------------------------

class TestS3Post:
    def test_post_reads_back_like_create(self, seaweed):
        intent = create_upload_intent(seaweed, max_size=1000, content_types=["text/plain"],
                                      filename="notes été.txt")
        assert intent.method == "POST" and intent.fields["Content-Type"] == "text/plain"
        browser = Browser()
        browser.upload(intent, b"hello direct", "text/plain")
        assert browser.cors == [True]
        record, stored = finish_upload(seaweed, intent.id)
        with stored:
            assert stored.read() == b"hello direct"
        stored = DepotManager.get(seaweed).get(intent.id)
        assert stored.filename == "notes été.txt"
        assert stored.content_type == "text/plain"
        assert stored.content_length == len(b"hello direct")
        assert stored.last_modified is not None
        assert stored.public_url and intent.id in stored.public_url

    def test_image_family_is_a_starts_with_condition(self, seaweed):
        intent = create_upload_intent(seaweed, max_size=10000, content_types=["image/*"])
        assert "Content-Type" not in intent.fields
        data = png()
        Browser().upload(intent, data, "image/png")
        _, stored = finish_upload(seaweed, intent.id)
        assert stored.content_type == "image/png"
        stored.close()

    @pytest.mark.parametrize("case", ["too-large", "wrong-type", "family-violated", "tampered", "extra-field"])
    def test_service_refuses_and_stores_nothing(self, seaweed, case):
        types = ["image/*"] if case == "family-violated" else ["text/plain"]
        intent = create_upload_intent(seaweed, max_size=100, content_types=types, filename="a.txt")
        data, content_type = b"small", "text/plain"
        if case == "too-large":
            data = b"x" * 101
        elif case == "wrong-type":
            intent = replace(intent, fields=dict(intent.fields, **{"Content-Type": "text/html"}))
        elif case == "tampered":
            signature = intent.fields["x-amz-signature"]
            intent = replace(intent, fields=dict(intent.fields, **{
                "x-amz-signature": signature[:-1] + ("0" if signature[-1] != "0" else "1")}))
        elif case == "extra-field":
            intent = replace(intent, fields=dict(intent.fields, **{"x-amz-meta-x-depot-filename": "evil.exe"}))
        with pytest.raises(Failed) as refused:
            Browser().upload(intent, data, content_type)
        assert refused.value.status in (400, 403)
        assert_nothing_stored(seaweed, intent)
        with pytest.raises(UploadRefused) as late:
            finish_upload(seaweed, intent.id)
        assert late.value.code == "incomplete"

    def test_expired_intent_is_refused(self, seaweed):
        intent = create_upload_intent(seaweed, max_size=100, expires_in=1)
        time.sleep(2.2)
        with pytest.raises(Failed) as refused:
            Browser().upload(intent, b"late", "text/plain")
        assert refused.value.status == 403
        assert_nothing_stored(seaweed, intent)

    def test_checksum_is_verified_by_the_service(self, seaweed):
        data = b"checked bytes"
        expected = "sha256:" + hashlib.sha256(data).hexdigest()
        intent = create_upload_intent(seaweed, max_size=100, checksum=expected)
        assert intent.fields["x-amz-checksum-sha256"]
        with pytest.raises(Failed) as refused:
            Browser().upload(intent, b"other bytes!!", "text/plain")
        assert refused.value.status == 400
        assert_nothing_stored(seaweed, intent)
        assert_attached_with(seaweed, intent, data, expected)

    def test_cors_preflight(self, seaweed):
        assert_post_preflight_passes(seaweed)


class TestS3Put:
    def test_put_sends_the_signed_headers(self, seaweed):
        intent = intent_with_method(seaweed, "PUT", max_size=1000, content_types=["text/csv"], filename="t.csv")
        assert intent.method == "PUT"
        assert intent.headers["Content-Type"] == "text/csv"
        assert intent.headers["x-amz-meta-x-depot-filename"] == "t.csv"
        Browser().upload(intent, b"a,b\n1,2\n", "text/csv")
        _, stored = finish_upload(seaweed, intent.id)
        assert (stored.filename, stored.content_type, stored.read()) == ("t.csv", "text/csv", b"a,b\n1,2\n")
        stored.close()

    @pytest.mark.parametrize("case", ["wrong-type", "tampered", "expired", "bad-checksum"])
    def test_service_refuses_put(self, seaweed, case):
        data = b"some,csv\n"
        options: Dict[str, Any] = {"max_size": 100, "content_types": ["text/csv"]}
        if case == "bad-checksum":
            options["checksum"] = "crc32c:%08x" % 12345
        if case == "expired":
            options["expires_in"] = 1
        intent = intent_with_method(seaweed, "PUT", **options)
        if case == "wrong-type":
            intent = replace(intent, headers=dict(intent.headers, **{"Content-Type": "text/html"}))
        elif case == "tampered":
            intent = replace(intent, url=intent.url[:-1] + ("0" if intent.url[-1] != "0" else "1"))
        elif case == "expired":
            time.sleep(2.2)
        with pytest.raises(Failed) as refused:
            Browser().upload(intent, data, "text/csv")
        assert refused.value.status in (400, 403)
        assert_nothing_stored(seaweed, intent)

    def test_put_size_is_checked_when_attached(self, seaweed):
        # S3 cannot bound a presigned PUT: the attach step refuses, and deletes the upload.
        intent = intent_with_method(seaweed, "PUT", max_size=10)
        Browser().upload(intent, b"x" * 11, "text/plain")
        with pytest.raises(UploadRefused) as refused:
            finish_upload(seaweed, intent.id)
        assert refused.value.code == "too-large"
        assert_nothing_stored(seaweed, intent)


class TestS3Multipart:
    def test_parts_with_one_sent_twice(self, seaweed):
        data = pattern(11 * MB + 123)
        intent = create_upload_intent(seaweed, max_size=12 * MB, multipart=True, part_size=5 * MB,
                                      filename="big.bin", content_types=["application/octet-stream"])
        assert intent.method == "MULTIPART"
        assert intent.parts["part_size"] == 5 * MB and len(intent.parts["urls"]) == 3
        browser = Browser(fail_once=(2,))
        browser.upload(intent, data, resend=(2,))
        assert all(browser.cors) and "etag" in browser.exposed
        record, stored = finish_upload(seaweed, intent.id)
        assert record.multipart["upload_id"]
        assert stored.read() == data
        assert (stored.filename, stored.content_type) == ("big.bin", "application/octet-stream")
        stored.close()

    def test_an_empty_file_is_one_empty_part(self, seaweed):
        intent = create_upload_intent(seaweed, max_size=10 * MB, multipart=True, part_size=5 * MB)
        Browser().upload(intent, b"")
        _, stored = finish_upload(seaweed, intent.id)
        with stored:
            assert (stored.read(), stored.content_length) == (b"", 0)

    def test_large_intents_go_in_parts_by_default(self, seaweed):
        intent = create_upload_intent(seaweed, max_size=200 * MB)
        assert intent.method == "MULTIPART"
        assert len(intent.parts["urls"]) == -(-200 * MB // intent.parts["part_size"])
        collect_pending(seaweed, older_than=0, now=time.time() + 3 * 3600)

    def test_exact_size_bounds_the_post_policy(self, seaweed):
        intent = create_upload_intent(seaweed, max_size=1000, size=10)
        assert intent.method == "POST"
        for wrong in (b"x" * 9, b"x" * 11):
            with pytest.raises(Failed) as refused:
                Browser().upload(intent, wrong)
            assert refused.value.status == 400  # EntityTooSmall / EntityTooLarge: the policy's range
            assert_nothing_stored(seaweed, intent)
        Browser().upload(intent, b"x" * 10)
        assert finish_upload(seaweed, intent.id)[1].read() == b"x" * 10

    def test_exact_size_needs_every_part_of_the_file(self, seaweed):
        """A browser stopping after a full part: incomplete (marker kept), not a truncated file."""
        data = pattern(11 * MB)
        intent = create_upload_intent(seaweed, max_size=100 * MB, size=len(data), method="MULTIPART",
                                      part_size=5 * MB)
        assert len(intent.parts["urls"]) == 3  # ceil(size / part_size), not ceil(max_size / part_size)
        browser = Browser()
        browser.upload(intent, data, parts=[1, 2])
        with pytest.raises(UploadRefused) as refused:
            finish_upload(seaweed, intent.id)
        assert refused.value.code == "incomplete" and "[3]" in str(refused.value)
        assert DepotManager.get(seaweed)._pending_get(intent.id) is not None
        browser._check(browser.client.put(intent.parts["urls"][2], content=data[10 * MB:10 * MB + 100]))  # short
        with pytest.raises(UploadRefused) as short:
            finish_upload(seaweed, intent.id)
        assert short.value.code == "incomplete" and "announced" in str(short.value)
        # SeaweedFS lists both copies of part 3, in no set order, stamped to the second:
        # the full one is told apart as the newer one.
        time.sleep(1.05 - time.time() % 1)
        browser.upload(intent, data, parts=[3])
        _, stored = finish_upload(seaweed, intent.id)
        with stored:
            assert stored.read() == data

    def test_method_the_storage_does_not_offer(self, seaweed):
        with pytest.raises(ValueError, match="storage %s .* not RESUMABLE" % seaweed):
            create_upload_intent(seaweed, max_size=10, method="RESUMABLE")
        assert list(DepotManager.get(seaweed)._pending_list()) == []

    def test_missing_part_is_incomplete_until_sent(self, seaweed):
        data = pattern(6 * MB)
        intent = create_upload_intent(seaweed, max_size=10 * MB, multipart=True, part_size=5 * MB)
        browser = Browser()
        browser.upload(intent, data, parts=[2])
        with pytest.raises(UploadRefused) as refused:
            finish_upload(seaweed, intent.id)
        assert refused.value.code == "incomplete"
        browser.upload(intent, data, parts=[1])
        _, stored = finish_upload(seaweed, intent.id)
        assert stored.read() == data
        stored.close()

    def test_parts_over_max_size_are_refused_and_dropped(self, seaweed):
        intent = create_upload_intent(seaweed, max_size=11 * MB, multipart=True, part_size=5 * MB)
        Browser().upload(intent, pattern(15 * MB))
        with pytest.raises(UploadRefused) as refused:
            finish_upload(seaweed, intent.id)
        assert refused.value.code == "too-large"
        assert_nothing_stored(seaweed, intent)
        storage = DepotManager.get(seaweed)
        assert storage._pending_get(intent.id) is None
        assert not storage._client.list_multipart_uploads(Bucket=storage._bucket_driver.bucket.name).get("Uploads")

    def test_abandoned_upload_is_aborted(self, seaweed):
        intent = create_upload_intent(seaweed, max_size=10 * MB, multipart=True, part_size=5 * MB)
        Browser().upload(intent, pattern(5 * MB), parts=[1])
        assert collect_pending(seaweed, older_than=0, now=time.time() + 3 * 3600) == [intent.id]
        storage = DepotManager.get(seaweed)
        assert not storage._client.list_multipart_uploads(Bucket=storage._bucket_driver.bucket.name).get("Uploads")
        assert_nothing_stored(seaweed, intent)
        with pytest.raises(UploadRefused) as refused:
            finish_upload(seaweed, intent.id)
        assert refused.value.code == "not-an-intent"

    def test_expired_and_tampered_part_urls_are_refused(self, seaweed):
        intent = create_upload_intent(seaweed, max_size=10 * MB, multipart=True, part_size=5 * MB, expires_in=2)
        url = intent.parts["urls"][0]
        with pytest.raises(Failed) as tampered:
            Browser()._check(httpx.put(url[:-1] + ("0" if url[-1] != "0" else "1"), content=b"x"))
        assert tampered.value.status == 403
        time.sleep(3.2)
        with pytest.raises(Failed) as expired:
            Browser().upload(intent, b"late")
        assert expired.value.status == 403
        with pytest.raises(UploadRefused):
            finish_upload(seaweed, intent.id)

    def test_bad_part_size_is_refused_at_the_door(self, seaweed):
        with pytest.raises(ValueError, match="part_size"):
            create_upload_intent(seaweed, max_size=10 * MB, multipart=True, part_size=MB)
        assert list(DepotManager.get(seaweed)._pending_list()) == []

    def test_cors_preflight_of_a_part(self, seaweed):
        intent = create_upload_intent(seaweed, max_size=10 * MB, multipart=True, part_size=5 * MB)
        assert allows_origin(preflight(intent.parts["urls"][0], "PUT", ""))
        collect_pending(seaweed, older_than=0, now=time.time() + 3 * 3600)


# -- S3 on moto: no policy checked by the service, the attach step refuses -----

class TestMoto:
    def test_post_and_multipart(self, moto):
        intent = create_upload_intent(moto, max_size=100, content_types=["text/plain"], filename="m.txt")
        browser = Browser()
        browser.upload(intent, b"moto says hi", "text/plain")
        assert browser.cors == [True]
        _, stored = finish_upload(moto, intent.id)
        assert (stored.read(), stored.filename) == (b"moto says hi", "m.txt")
        stored.close()
        data = pattern(7 * MB)
        intent = create_upload_intent(moto, max_size=8 * MB, multipart=True, part_size=5 * MB)
        Browser().upload(intent, data, resend=(1,))
        _, stored = finish_upload(moto, intent.id)
        assert stored.read() == data
        stored.close()

    @pytest.mark.parametrize("case", ["too-large", "wrong-type"])
    def test_what_moto_lets_through_is_refused_when_attached(self, moto, case):
        intent = create_upload_intent(moto, max_size=100, content_types=["image/*"])
        data, content_type = (png(200), "image/png") if case == "too-large" else (b"<html>", "image/png")
        Browser().upload(intent, data, content_type)
        with pytest.raises(UploadRefused) as refused:
            finish_upload(moto, intent.id)
        assert refused.value.code == ("too-large" if case == "too-large" else "bad-type")
        assert_nothing_stored(moto, intent)

    @pytest.mark.parametrize("method", ["POST", "PUT"])
    def test_checksum_moto_does_not_verify_is_checked_when_attached(self, moto, method):
        data = b"the expected bytes"
        expected = "sha256:" + hashlib.sha256(data).hexdigest()
        intent = intent_with_method(moto, method, max_size=100, checksum=expected)
        Browser().upload(intent, b"other bytes entirely", "text/plain")  # moto stores them anyway
        with pytest.raises(UploadRefused) as refused:
            finish_upload(moto, intent.id)
        assert refused.value.code == "bad-checksum"
        assert_nothing_stored(moto, intent)
        assert DepotManager.get(moto)._pending_get(intent.id) is None
        intent = intent_with_method(moto, method, max_size=100, checksum=expected)
        assert_attached_with(moto, intent, data, expected)

    def test_cors_preflight_with_bucket_cors(self, moto):
        assert_post_preflight_passes(moto)


# -- GCS on fake-gcs-server ------------------------------------------------------

class TestGcs:
    def test_signed_put_reads_back_like_create(self, gcs):
        intent = create_upload_intent(gcs, max_size=1000, content_types=["text/plain"], filename="g é.txt")
        assert intent.method == "PUT"
        assert intent.headers["x-goog-content-length-range"] == "0,1000"
        assert "X-Goog-Signature=" in intent.url
        browser = Browser()
        browser.upload(intent, b"to gcs", "text/plain")
        assert browser.cors == [True]
        _, stored = finish_upload(gcs, intent.id)
        assert (stored.read(), stored.filename, stored.content_type) == (b"to gcs", "g é.txt", "text/plain")
        # Reported from the CRC32C GCS computed itself.
        assert stored.checksum == checksums.compute("crc32c", b"to gcs")
        assert stored.last_modified is not None
        stored.close()

    def test_exact_size_is_signed_and_checked_when_attached(self, gcs):
        intent = create_upload_intent(gcs, max_size=1000, size=6, method="PUT")
        assert intent.headers["x-goog-content-length-range"] == "6,6"
        # fake-gcs-server does not enforce the range (GCS does): a shorter
        # upload is refused when attached, deleted, and may be sent again.
        Browser().upload(intent, b"short")
        with pytest.raises(UploadRefused) as refused:
            finish_upload(gcs, intent.id)
        assert refused.value.code == "incomplete"
        assert_nothing_stored(gcs, intent)
        Browser().upload(intent, b"to gcs")
        assert finish_upload(gcs, intent.id)[1].read() == b"to gcs"

    def test_method_the_storage_does_not_offer(self, gcs):
        with pytest.raises(ValueError, match="storage %s .* not POST" % gcs):
            create_upload_intent(gcs, max_size=10, method="POST")
        assert list(DepotManager.get(gcs)._pending_list()) == []

    def test_resumable_with_a_lost_chunk(self, gcs):
        data = pattern(3 * 256 * 1024 + 77)
        intent = create_upload_intent(gcs, max_size=4 * MB, multipart=True, part_size=256 * 1024,
                                      filename="clip.bin")
        assert intent.method == "RESUMABLE"
        assert intent.parts == {"part_size": 256 * 1024, "protocol": "gcs-resumable", "query_status": False}
        browser = Browser(fail_once=(2,))
        browser.upload(intent, data)
        assert "PUT lost" in browser.requests
        # Answered to the page; fake-gcs-server does not expose Range (GCS does
        # when the bucket's CORS says so), so the module assumes a whole chunk.
        assert all(browser.cors)
        record, stored = finish_upload(gcs, intent.id)
        assert record.multipart["session"] == intent.url
        assert stored.read() == data
        assert stored.filename == "clip.bin"
        stored.close()

    @pytest.mark.parametrize("case", ["too-large", "wrong-type"])
    def test_what_the_emulator_lets_through_is_refused_when_attached(self, gcs, case):
        # Real GCS refuses both at its door (signed x-goog-content-length-range
        # and Content-Type); fake-gcs-server checks neither.
        intent = create_upload_intent(gcs, max_size=100, content_types=["text/plain"])
        headers = dict(intent.headers)
        data = b"x" * 101
        if case == "wrong-type":
            headers["Content-Type"] = "image/png"
            data = png(60)
        Browser().upload(replace(intent, headers=headers), data)
        with pytest.raises(UploadRefused) as refused:
            finish_upload(gcs, intent.id)
        assert refused.value.code == case.replace("wrong-type", "bad-type")
        assert_nothing_stored(gcs, intent)

    def test_session_finished_after_expiry_is_refused_when_attached(self, gcs, monkeypatch):
        from depot.io import _gcs_uploads

        monkeypatch.setattr(_gcs_uploads, "LATE_GRACE", 0)
        intent = create_upload_intent(gcs, max_size=4 * MB, multipart=True, expires_in=1)
        time.sleep(2.2)
        Browser().upload(intent, b"too late")  # a session outlives its intent: GCS takes it
        with pytest.raises(UploadRefused) as refused:
            finish_upload(gcs, intent.id)
        assert refused.value.code == "expired"
        assert_nothing_stored(gcs, intent)
        assert DepotManager.get(gcs)._pending_get(intent.id) is None

    def test_an_empty_file_in_a_session(self, gcs):
        intent = create_upload_intent(gcs, max_size=4 * MB, multipart=True)
        Browser().upload(intent, b"")
        _, stored = finish_upload(gcs, intent.id)
        with stored:
            assert (stored.read(), stored.content_length) == (b"", 0)

    def test_abandoned_session_leaves_nothing(self, gcs):
        intent = create_upload_intent(gcs, max_size=4 * MB, multipart=True, part_size=256 * 1024)
        assert collect_pending(gcs, older_than=0, now=time.time() + 3 * 3600) == [intent.id]
        assert_nothing_stored(gcs, intent)

    def test_storage_without_signing_credentials_uses_a_session(self, gcs_emulator_env):
        DepotManager.configure("unsigned", {"depot.backend": "depot.io.gcs.GCSStorage",
                                            "depot.bucket": unique_name("up")})
        intent = create_upload_intent("unsigned", max_size=10, content_types=["text/plain"])
        assert intent.method == "RESUMABLE"
        Browser().upload(intent, b"no signer")
        _, stored = finish_upload("unsigned", intent.id)
        assert (stored.read(), stored.content_type) == (b"no signer", "text/plain")
        stored.close()
        with pytest.raises(ValueError, match="sign"):
            intent_with_method("unsigned", "PUT", max_size=10)

    def test_cors_preflight(self, gcs):
        intent = create_upload_intent(gcs, max_size=100, content_types=["text/plain"])
        asked = ",".join(name.lower() for name in intent.headers)
        assert allows_origin(preflight(intent.url, "PUT", asked))
        session = create_upload_intent(gcs, max_size=4 * MB, multipart=True)
        assert allows_origin(preflight(session.url, "PUT", "content-range"))


def test_tiny_png_helper_is_a_png():
    assert io.BytesIO(png()).read(8) == b"\x89PNG\r\n\x1a\n"


# -- legacy awss3 (boto 2 where it imports): one presigned PUT ------------------

@pytest.fixture
def legacy(seaweedfs_server) -> str:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # awss3 is deprecated, and says so
        DepotManager.configure("legacy", {
            "depot.backend": "depot.io.awss3.S3Storage", "depot.access_key_id": seaweedfs_server.access_key,
            "depot.secret_access_key": seaweedfs_server.secret_key, "depot.host": seaweedfs_server.endpoint_url,
            "depot.bucket": unique_name("up"),
        })
    return "legacy"


class TestLegacyAwss3:
    def test_presigned_put(self, legacy):
        intent = create_upload_intent(legacy, max_size=100, content_types=["text/plain"], filename="l é.txt")
        assert intent.method == "PUT"
        Browser().upload(intent, b"legacy", "text/plain")
        _, stored = finish_upload(legacy, intent.id)
        assert (stored.read(), stored.filename, stored.content_type) == (b"legacy", "l é.txt", "text/plain")
        stored.close()

    def test_service_refuses_another_type(self, legacy):
        intent = create_upload_intent(legacy, max_size=100, content_types=["text/plain"])
        with pytest.raises(Failed) as refused:
            Browser().upload(replace(intent, headers=dict(intent.headers, **{"Content-Type": "text/html"})), b"x")
        assert refused.value.status == 403
        assert_nothing_stored(legacy, intent)

    def test_parts_need_the_boto3_storage(self, legacy):
        from depot.io import awss3

        if awss3.BACKEND == "boto3":
            intent = create_upload_intent(legacy, max_size=10 * MB, multipart=True, part_size=5 * MB)
            assert intent.method == "MULTIPART"
            collect_pending(legacy, older_than=0, now=time.time() + 3 * 3600)
        else:
            with pytest.raises(ValueError, match="depot.io.boto3"):
                create_upload_intent(legacy, max_size=10 * MB, multipart=True)
        assert list(DepotManager.get(legacy)._pending_list()) == []


@pytest.fixture(params=["seaweed", "moto", "gcs"])
def object_store(request) -> str:
    return request.getfixturevalue(request.param)


def test_of_two_threads_claiming_one_upload_exactly_one_wins(object_store):
    """Attaching swaps the marker for a claimed one: on object stores too, two claims at once give one winner."""
    import threading

    storage = DepotManager.get(object_store)
    for _ in range(3):
        intent = create_upload_intent(object_store, max_size=100)
        claimed = _claimed_marker(storage, intent.file_id)
        start = threading.Barrier(2)
        wins: List[bool] = []

        def claim(file_id: str, start: threading.Barrier, wins: List[bool], claimed: bytes) -> None:
            start.wait()
            wins.append(storage._pending_claim(file_id, claimed))

        threads = [threading.Thread(target=claim, args=(intent.file_id, start, wins, claimed)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(wins) == [False, True]
        assert storage._pending_get(intent.file_id) == claimed  # swapped, never absent
        assert storage._pending_claim(intent.file_id, claimed) is False
        storage._pending_delete(intent.file_id)
    assert storage.list() == [] and list(pending_uploads(object_store)) == []


def _claimed_marker(storage, file_id: str) -> bytes:
    from depot.uploads.intents import PendingUpload

    record = PendingUpload.from_json(storage._pending_get(file_id))
    return replace(record, claimed_at=time.time()).to_json()


@pytest.mark.parametrize("s3", ["seaweed", "moto"])
def test_a_claim_in_progress_refuses_a_second_one(request, s3, monkeypatch):
    """The interleaving the threads may miss: the second S3 claim runs while the first holds its claim."""
    name = request.getfixturevalue(s3)
    storage = DepotManager.get(name)
    intent = create_upload_intent(name, max_size=100)
    claimed = _claimed_marker(storage, intent.file_id)
    real_get = storage._pending_get
    inner = []

    def get_then_claim_again(file_id):
        raw = real_get(file_id)
        if not inner:
            inner.append(storage._pending_claim(file_id, claimed))
        return raw

    monkeypatch.setattr(storage, "_pending_get", get_then_claim_again)
    first = storage._pending_claim(intent.file_id, claimed)
    assert sorted([first, *inner]) == [False, True]
    assert real_get(intent.file_id) == claimed


def test_a_gcs_marker_rewritten_meanwhile_is_not_claimed(gcs, monkeypatch):
    """The claim rewrites the generation it read: a marker changed in between makes it lose (412)."""
    storage = DepotManager.get(gcs)
    intent = create_upload_intent(gcs, max_size=100)
    claimed = _claimed_marker(storage, intent.file_id)
    real_get_blob = storage.bucket.get_blob

    def get_then_claim_again(name):
        blob = real_get_blob(name)
        monkeypatch.setattr(storage.bucket, "get_blob", real_get_blob)
        assert storage._pending_claim(intent.file_id, claimed) is True
        return blob

    monkeypatch.setattr(storage.bucket, "get_blob", get_then_claim_again)
    assert storage._pending_claim(intent.file_id, claimed) is False
    assert storage._pending_get(intent.file_id) == claimed


@pytest.mark.parametrize("s3", ["seaweed", "moto"])
def test_collection_aborts_a_multipart_upload_the_marker_never_named(request, s3):
    """A crash between CreateMultipartUpload and the marker's rewrite: the upload is found by listing."""
    name = request.getfixturevalue(s3)
    storage = DepotManager.get(name)
    intent = create_upload_intent(name, max_size=100, expires_in=1)
    bucket = storage._bucket_driver.bucket.name
    key = storage._bucket_driver.prefix + intent.file_id
    lost = storage._client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    storage._client.upload_part(Bucket=bucket, Key=key, UploadId=lost, PartNumber=1, Body=b"orphan part")
    assert collect_pending(name, older_than=0, now=intent.expires_at + 2 * 3600) == [intent.file_id]
    left = storage._client.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
    assert [up["UploadId"] for up in left] == []


@pytest.mark.parametrize("s3", ["seaweed", "moto"])
def test_a_presigned_put_cannot_replace_the_uploaded_object(request, s3):
    """The PUT URL is signed with If-None-Match: *: once the object exists the URL is spent."""
    name = request.getfixturevalue(s3)
    intent = intent_with_method(name, "PUT", max_size=100000, content_types=["image/png"])
    assert intent.headers["If-None-Match"] == "*"
    data = png()
    Browser().upload(intent, data, "image/png")
    with pytest.raises(Failed) as refused:
        Browser().upload(intent, b"\x89PNG\r\n\x1a\n" + b"A" * 200000, "image/png")
    assert refused.value.status == 412
    assert DepotManager.get(name).get(intent.file_id).read() == data


@pytest.mark.parametrize("s3", ["seaweed", "moto"])
def test_a_post_policy_cannot_change_the_attached_file(request, s3, tmp_path):
    """A POST policy stays valid after attach (S3 has no conditional POST): the file moved to a new id."""
    from sqlalchemy import Column, Integer, create_engine
    from sqlalchemy.orm import Session, declarative_base

    from depot.fields.sqlalchemy import UploadedFileField
    from depot.fields.upload import UploadedFile

    name = request.getfixturevalue(s3)
    storage = DepotManager.get(name)
    Base = declarative_base()

    class Doc(Base):  # type: ignore[valid-type, misc]
        __tablename__ = "docs"
        id = Column(Integer, primary_key=True)
        content = Column(UploadedFileField(upload_storage=name))

    engine = create_engine("sqlite:///%s" % (tmp_path / "db.sqlite"))
    Base.metadata.create_all(engine)
    intent = create_upload_intent(name, max_size=100000, content_types=["image/png", "image/jpeg"],
                                  filename="cat.png")
    assert intent.method == "POST"
    data = png()
    Browser().upload(intent, data, "image/png")
    with Session(engine) as session:
        doc = Doc(id=1, content=UploadedFile.from_upload(intent.file_id))
        session.add(doc)
        moved = doc.content.file_id
        # The copy has a claimed marker until the commit: depot fsck never takes it for an orphan.
        assert claimed(storage._pending_get(moved)) and storage._pending_get(intent.file_id) is None
        session.commit()
    assert storage._pending_get(moved) is None
    evil = b"<html><script>alert(document.domain)</script></html>"
    Browser().upload(intent, evil, "text/html")  # the same policy, after attach: an orphan at the old key
    with Session(engine) as session:
        value = session.get(Doc, 1).content
        assert value.file_id != intent.file_id
        assert (value.filename, value.content_type) == ("cat.png", "image/png")
        assert value.file.read() == data
    assert storage.get(intent.file_id).read() == evil  # unreferenced: depot fsck reports it
