"""depot.io.boto3.S3Storage against real S3 servers: SeaweedFS (signatures checked) and moto (ACLs)."""
from __future__ import annotations

import bisect
import hashlib
import io
import logging
import os
import pathlib
import re
import socket
import tempfile
import threading
import tracemalloc
import uuid

import pytest

boto3 = pytest.importorskip("boto3")
requests = pytest.importorskip("requests")

from botocore.exceptions import ClientError, EndpointConnectionError  # noqa: E402

from depot.io import boto3 as depot_s3  # noqa: E402
from depot.io import checksums  # noqa: E402
from depot.io.boto3 import (  # noqa: E402
    CANNED_ACL_PRIVATE,
    CANNED_ACL_PUBLIC_READ,
    BucketDriver,
    PrivateS3StoredFile,
    S3AccessError,
    S3EndpointError,
    S3Storage,
    S3StoredFile,
)
from depot.io.checksums import ChecksumMismatch  # noqa: E402
from depot.testing import FailingStream, NonSeekableStream, StorageConformance  # noqa: E402
from tests.servers import MotoServer, unique_name  # noqa: E402

MB = 1024 * 1024
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def raw_client(server, region=None):
    """A plain boto3 client on ``server``, to look at what the storage wrote."""
    kwargs = dict(server.client_kwargs)
    if region:
        kwargs["region_name"] = region
    return boto3.client("s3", **kwargs)


def make_storage(server, bucket=None, **options):
    options.setdefault("region_name", server.region)
    return S3Storage(server.access_key, server.secret_key, bucket=bucket, endpoint_url=server.endpoint_url, **options)


def object_key(storage, file_id):
    return storage._bucket_driver.prefix + file_id


def head(storage, file_id):
    return storage._client.head_object(Bucket=storage._bucket_driver.bucket.name, Key=object_key(storage, file_id))


def pattern(size):
    return (b"0123456789abcdefghij" * (size // 20 + 1))[:size]


def anonymous_get(url):
    return requests.get(url, timeout=30)


@pytest.fixture(scope="module")
def seaweed_bucket(seaweedfs_server):
    return unique_name("depot-s3")


@pytest.fixture
def seaweed_storage(seaweedfs_server, seaweed_bucket):
    # One bucket for the module, one prefix per test: every test starts empty.
    return make_storage(seaweedfs_server, seaweed_bucket, prefix="t-%s/" % uuid.uuid4().hex[:12])


class TestSeaweedFSConformance(StorageConformance):
    @pytest.fixture
    def storage(self, seaweed_storage):
        return seaweed_storage


class TestSeaweedFSMultipartConformance(StorageConformance):
    """Everything above 1 MiB goes through the multipart transfer manager."""

    # Taken as the parts are cut, recorded in the metadata once the upload is complete.

    @pytest.fixture
    def storage(self, seaweedfs_server, seaweed_bucket):
        return make_storage(seaweedfs_server, seaweed_bucket, prefix="m-%s/" % uuid.uuid4().hex[:12],
                            multipart_threshold=MB, max_concurrency=2)


class TestMotoConformance(StorageConformance):
    """Without a prefix, on a bucket of its own, with moto's ACL checks."""

    @pytest.fixture
    def storage(self, moto_server):
        return make_storage(moto_server, unique_name("depot-moto"))


# -- constructor, compatibility --------------------------------------------------


class TestConstructor:
    def test_policy_must_be_known(self):
        with pytest.raises(AssertionError):
            S3Storage("key", "secret", policy="public")

    def test_default_bucket_from_access_key(self, seaweedfs_server):
        storage = make_storage(seaweedfs_server)
        expected = "filedepot-" + seaweedfs_server.access_key.lower()
        assert storage._bucket_driver.bucket.name == expected
        raw_client(seaweedfs_server).head_bucket(Bucket=expected)

    def test_private_attributes(self, seaweed_storage, seaweed_bucket):
        driver = seaweed_storage._bucket_driver
        assert isinstance(driver, BucketDriver)
        assert driver.s3 is seaweed_storage._conn
        assert driver.bucket.name == seaweed_bucket and driver.prefix.startswith("t-")
        assert seaweed_storage._conn.meta.client.meta.endpoint_url == seaweed_storage._client.meta.endpoint_url

    def test_constants(self):
        assert (CANNED_ACL_PUBLIC_READ, CANNED_ACL_PRIVATE) == ("public-read", "private")

    def test_ini_strings_are_coerced(self, seaweedfs_server, seaweed_bucket):
        storage = make_storage(seaweedfs_server, seaweed_bucket, multipart_threshold="6291456",
                               multipart_chunksize="5242880", max_concurrency="3", url_expires="60")
        assert (storage._threshold, storage._part_size, storage._concurrency) == (6291456, 5 * MB, 3)
        assert storage._payload_signing is None
        for value, expected in (("auto", None), ("false", False), ("on", True), (True, True)):
            assert make_storage(seaweedfs_server, seaweed_bucket, payload_signing=value)._payload_signing is expected
        with pytest.raises(ValueError, match="multipart_chunksize"):
            make_storage(seaweedfs_server, seaweed_bucket, multipart_chunksize=MB)
        with pytest.raises(ValueError, match="max_concurrency"):
            make_storage(seaweedfs_server, seaweed_bucket, max_concurrency="many")
        with pytest.raises(ValueError):
            make_storage(seaweedfs_server, seaweed_bucket, payload_signing="sometimes")

    def test_driver_helpers(self, seaweed_storage):
        file_id = seaweed_storage.create(b"driver")
        driver = seaweed_storage._bucket_driver
        assert driver.get_key(file_id).key == driver.prefix + file_id
        assert driver.get_key(str(uuid.uuid4())) is None
        assert driver.new_key("x").key == driver.prefix + "x"
        assert driver.list_key_names() == [file_id]

    def test_get_key_failure_propagates(self, seaweedfs_server, seaweed_storage):
        file_id = seaweed_storage.create(b"x")
        session = boto3.Session(aws_access_key_id=seaweedfs_server.access_key, aws_secret_access_key="wrong")
        s3 = session.resource("s3", endpoint_url=seaweedfs_server.endpoint_url, region_name="us-east-1")
        bucket_name = seaweed_storage._bucket_driver.bucket.name
        driver = BucketDriver(s3, s3.Bucket(bucket_name), seaweed_storage._bucket_driver.prefix)
        with pytest.raises(ClientError) as info:
            driver.get_key(file_id)
        assert info.value.response["Error"]["Code"] == "403"


# -- what is stored ----------------------------------------------------------------


class TestObjectLayout:
    def test_key_metadata_and_headers(self, seaweed_storage):
        name = "Крупный файл àèìòù.txt"
        file_id = seaweed_storage.create(b"content", name)
        stored = head(seaweed_storage, file_id)
        assert stored["Metadata"]["x-depot-filename"] == (
            "%D0%9A%D1%80%D1%83%D0%BF%D0%BD%D1%8B%D0%B9%20%D1%84%D0%B0%D0%B9%D0%BB%20"
            "%C3%A0%C3%A8%C3%AC%C3%B2%C3%B9.txt"
        )
        assert len(stored["Metadata"]["x-depot-modified"]) == 19
        assert stored["ContentType"] == "text/plain"
        # One level of encoding only: filedepot encoded the already quoted name again.
        assert stored["ContentDisposition"] == (
            "inline;filename=\"Krupnyy fayl aeiou.txt\";filename*=utf-8''"
            + stored["Metadata"]["x-depot-filename"]
        )

    def test_storage_class_is_sent(self, moto_server):
        storage = make_storage(moto_server, unique_name("depot-sc"), storage_class="STANDARD_IA")
        file_id = storage.create(b"infrequent")
        assert head(storage, file_id)["StorageClass"] == "STANDARD_IA"

    def test_file_written_outside_depot(self, seaweed_storage):
        file_id = str(uuid.uuid4())
        seaweed_storage._client.put_object(Bucket=seaweed_storage._bucket_driver.bucket.name,
                                           Key=object_key(seaweed_storage, file_id), Body=b"foreign",
                                           ContentType="image/gif")
        f = seaweed_storage.get(file_id)
        assert (f.filename, f.last_modified, f.content_type) == (None, None, "image/gif")
        assert f.read() == b"foreign"
        assert file_id in seaweed_storage.list()
        # filedepot crashed here (quote(None)): the file stays unnamed, its type is kept.
        assert seaweed_storage.replace(file_id, b"replaced") == file_id
        f = seaweed_storage.get(file_id)
        assert (f.filename, f.content_type, f.read()) == (None, "image/gif", b"replaced")
        assert "ContentDisposition" not in head(seaweed_storage, file_id)

    def test_invalid_modified_metadata(self, seaweed_storage):
        file_id = str(uuid.uuid4())
        seaweed_storage._client.put_object(Bucket=seaweed_storage._bucket_driver.bucket.name,
                                           Key=object_key(seaweed_storage, file_id), Body=b"x",
                                           Metadata={"x-depot-modified": "yesterday", "x-depot-filename": "a%20b"})
        f = seaweed_storage.get(file_id)
        assert (f.last_modified, f.filename) == (None, "a b")

    def test_version_follows_the_object(self, seaweed_storage):
        file_id = seaweed_storage.create(b"one")
        etag = head(seaweed_storage, file_id)["ETag"].strip('"')
        assert seaweed_storage.get(file_id).version.startswith(etag + "-")


# -- uploads -------------------------------------------------------------------------


@pytest.fixture
def multipart_storage(seaweedfs_server, seaweed_bucket):
    return make_storage(seaweedfs_server, seaweed_bucket, prefix="mp-%s/" % uuid.uuid4().hex[:12],
                        multipart_threshold=5 * MB, multipart_chunksize=5 * MB, max_concurrency=2)


def part_count(storage, file_id):
    etag = head(storage, file_id)["ETag"].strip('"')
    return int(etag.rsplit("-", 1)[1]) if "-" in etag else 1


class TestUploads:
    def test_small_content_is_one_put(self, multipart_storage):
        file_id = multipart_storage.create(NonSeekableStream(pattern(5 * MB)))
        assert part_count(multipart_storage, file_id) == 1

    @pytest.mark.parametrize("kind", ["non-seekable", "seekable", "bytes", "disk file"])
    def test_large_content_is_multipart(self, multipart_storage, kind):
        data = pattern(12 * MB + 17)
        if kind == "non-seekable":
            content = NonSeekableStream(data)
        elif kind == "seekable":
            content = io.BytesIO(data)
        elif kind == "bytes":
            content = data
        else:
            content = tempfile.TemporaryFile()
            content.write(data)
            content.seek(0)
        file_id = multipart_storage.create(content, "big.bin")
        assert part_count(multipart_storage, file_id) == 3
        f = multipart_storage.get(file_id)
        assert (f.content_length, f.filename, f.content_type) == (len(data), "big.bin", "application/octet-stream")
        assert f.read() == data

    def test_seekable_source_from_its_position(self, multipart_storage):
        data = pattern(11 * MB)
        source = io.BytesIO(b"skipped" + data)
        source.seek(7)
        assert multipart_storage.get(multipart_storage.create(source)).read() == data

    def test_non_seekable_upload_memory_is_bounded(self, multipart_storage):
        size = 60 * MB
        source = NonSeekableStream(pattern(size), chunk=MB)
        tracemalloc.start()
        try:
            file_id = multipart_storage.create(source)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # A 60 MiB upload holds a few 5 MiB parts at a time.
        assert peak < 45 * MB
        assert multipart_storage.get(file_id).content_length == size

    def test_failing_multipart_upload_leaves_nothing(self, multipart_storage):
        existing = multipart_storage.create(b"keep me", "keep.txt")
        with pytest.raises(FailingStream.Boom):
            multipart_storage.create(FailingStream(pattern(13 * MB)))
        with pytest.raises(FailingStream.Boom):
            multipart_storage.replace(existing, FailingStream(pattern(13 * MB)))
        assert multipart_storage.list() == [existing]
        assert multipart_storage.get(existing).read() == b"keep me"
        pending = multipart_storage._client.list_multipart_uploads(
            Bucket=multipart_storage._bucket_driver.bucket.name, Prefix=multipart_storage._bucket_driver.prefix
        )
        assert pending.get("Uploads", []) == []

    def test_part_size_grows_to_fit_the_part_limit(self, multipart_storage, monkeypatch):
        monkeypatch.setattr(depot_s3, "MAX_PARTS", 2)
        data = pattern(12 * MB)
        file_id = multipart_storage.create(io.BytesIO(data))
        assert part_count(multipart_storage, file_id) == 2
        assert multipart_storage.get(file_id).read() == data

    def test_stream_ending_on_a_part_boundary(self, multipart_storage):
        data = pattern(10 * MB)
        file_id = multipart_storage.create(NonSeekableStream(data, chunk=MB))
        assert part_count(multipart_storage, file_id) == 2
        assert multipart_storage.get(file_id).read() == data

    def test_text_file_is_refused(self, multipart_storage, tmp_path):
        path = tmp_path / "big.txt"
        path.write_text("x" * (6 * MB))
        with open(path) as text, pytest.raises(TypeError):
            multipart_storage.create(text)
        assert multipart_storage.list() == []


def record_parts(storage, alter_part=None):
    """The (x-amz-content-sha256, x-amz-checksum-*) headers of each UploadPart sent, in part order.

    Parts go out on several threads: a busy machine sends part 2 before part 1.
    With ``alter_part``, one bit of that part's body is flipped after signing.
    """
    sent = []
    lock = threading.Lock()
    numbers: list = []  # the part number of each entry of ``sent``, sorted

    def record(request, **kwargs):
        checksum = [name for name in request.headers.keys() if name.lower().startswith("x-amz-checksum-")
                    and name.lower() not in ("x-amz-checksum-algorithm", "x-amz-checksum-type")]
        headers = [request.headers.get(name) for name in ["x-amz-content-sha256"] + checksum[:1]]
        headers += [None] * (2 - len(headers))
        number = int(re.search(r"[?&]partNumber=(\d+)", request.url).group(1))
        with lock:
            at = bisect.bisect_right(numbers, number)
            numbers.insert(at, number)
            sent.insert(at, tuple(h.decode() if isinstance(h, bytes) else h for h in headers))
        if alter_part is not None and "partNumber=%d&" % alter_part in request.url + "&":
            body = bytearray(request.body)
            body[100] ^= 1
            request.body = bytes(body)

    storage._client.meta.events.register("before-send.s3.UploadPart", record)
    # Clients created later (the unsigned one) copy the session's handlers.
    storage._session.events.register("before-send.s3.UploadPart", record)
    return sent


def offline_https_s3(monkeypatch):
    """Answer the S3 calls of a multipart upload to an https endpoint without a network.

    Requests are fully built and signed by botocore, then answered in
    ``before-send``.  Returns the ``(x-amz-content-sha256, sha256 of the
    part)`` of each UploadPart.
    """
    from botocore.awsrequest import AWSResponse

    answers = {
        "ListBuckets": b"<ListAllMyBucketsResult><Buckets><Bucket><Name>bkt</Name></Bucket></Buckets>"
                       b"</ListAllMyBucketsResult>",
        "CreateMultipartUpload": b"<InitiateMultipartUploadResult><Bucket>bkt</Bucket><Key>k</Key>"
                                 b"<UploadId>u1</UploadId></InitiateMultipartUploadResult>",
        "UploadPart": b"",
        "CompleteMultipartUpload": b"<CompleteMultipartUploadResult><ETag>\"e\"</ETag></CompleteMultipartUploadResult>",
        # Records the checksum in the metadata once the upload is complete.
        "CopyObject": b"<CopyObjectResult><ETag>\"c\"</ETag></CopyObjectResult>",
    }
    sent = []

    class Raw:
        def __init__(self, body):
            self.body = body

        def stream(self, **kwargs):
            yield self.body

    def answer(request, event_name, **kwargs):
        operation = event_name.rsplit(".", 1)[-1]
        if operation == "UploadPart":
            header = request.headers.get("x-amz-content-sha256")
            header = header.decode() if isinstance(header, bytes) else header
            body = request.body
            digest = hashlib.sha256(bytes(body)).hexdigest() if isinstance(body, (bytes, bytearray)) else None
            sent.append((header, digest))
        return AWSResponse(request.url, 200, {"ETag": '"p"'}, Raw(answers[operation]))

    class OfflineSession(boto3.Session):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.events.register("before-send.s3", answer)

    monkeypatch.setattr(depot_s3.boto3, "Session", OfflineSession)
    return sent


@pytest.fixture(params=["seaweedfs", "moto"])
def s3_server(request):
    return request.getfixturevalue(request.param + "_server")


def parts_storage(server, **options):
    bucket = unique_name("depot-parts") if isinstance(server, MotoServer) else "depot-parts"
    return make_storage(server, bucket, prefix="p-%s/" % uuid.uuid4().hex[:12], multipart_threshold=5 * MB,
                        multipart_chunksize=5 * MB, max_concurrency=2, **options)


class TestPayloadSigning:
    """Parts carry a CRC32; ``auto`` follows botocore (unsigned only over https), ``False`` never signs."""

    @pytest.mark.parametrize("signing", [None, True, False])
    def test_parts_store_the_right_bytes(self, s3_server, signing):
        storage = parts_storage(s3_server, payload_signing=signing)
        sent = record_parts(storage)
        data = pattern(12 * MB + 17)
        file_id = storage.create(NonSeekableStream(data, chunk=MB), "parts.bin")
        assert storage.get(file_id).read() == data
        # Counted as sent: moto's copy that records the checksum makes the object single-part.
        assert len(sent) == 3 and all(crc for _, crc in sent)
        hashes = {payload for payload, _ in sent}
        if signing is False:
            assert hashes == {"UNSIGNED-PAYLOAD"}
        else:
            # These servers are plain http: auto signs, as botocore does.
            assert all(len(h) == 64 and h != "UNSIGNED-PAYLOAD" for h in hashes)

    @pytest.mark.parametrize("signing", [None, "auto"])
    def test_auto_signs_every_part_over_plain_http(self, seaweedfs_server, signing):
        assert seaweedfs_server.endpoint_url.startswith("http://")
        storage = parts_storage(seaweedfs_server, payload_signing=signing)
        signed = []

        def record(request, **kwargs):
            header = request.headers.get("x-amz-content-sha256")
            header = header.decode() if isinstance(header, bytes) else header
            signed.append((header, hashlib.sha256(bytes(request.body)).hexdigest()))

        # auto sends parts with the storage's own client.
        storage._client.meta.events.register("before-send.s3.UploadPart", record)
        data = pattern(11 * MB)
        file_id = storage.create(NonSeekableStream(data, chunk=MB))
        assert storage.get(file_id).read() == data
        assert len(signed) == 3
        assert all(header == digest for header, digest in signed)

    @pytest.mark.parametrize("signing", [None, True, False])
    def test_https_rule(self, monkeypatch, signing):
        """Over https auto leaves parts unsigned (botocore's rule); True still signs them, False never."""
        sent = offline_https_s3(monkeypatch)
        storage = S3Storage("AKIDEXAMPLE", "secret", bucket="bkt", endpoint_url="https://s3.invalid",
                            region_name="us-east-1", multipart_threshold=5 * MB, multipart_chunksize=5 * MB,
                            payload_signing=signing)
        data = pattern(11 * MB)
        storage.create(NonSeekableStream(data, chunk=MB))
        assert len(sent) == 3
        if signing:
            assert [header for header, _ in sent] == [digest for _, digest in sent]
        else:
            assert all("UNSIGNED-PAYLOAD" in header for header, _ in sent)

    def test_docs_and_benchmark_state_the_plain_http_rule(self):
        root = pathlib.Path(__file__).resolve().parent.parent
        guide = " ".join((root / "docs" / "userguide.rst").read_text().split())
        bench = " ".join((root / "benchmarks" / "bench_s3.py").read_text().split())
        assert "payload_signing" in guide and "only over https" in guide and "CRC32" in guide
        assert "payload_signing" in bench and "plain http" in bench

    def test_parts_without_checksum_are_signed(self, seaweedfs_server, monkeypatch):
        monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
        storage = parts_storage(seaweedfs_server)
        sent = record_parts(storage)
        data = pattern(11 * MB)
        assert storage.get(storage.create(NonSeekableStream(data, chunk=MB))).read() == data
        assert len(sent) == 3 and all(len(h) == 64 and crc is None for h, crc in sent)

    @pytest.mark.parametrize("checksum", ["crc32c", None])
    @pytest.mark.parametrize("signing", [None, True, False])
    def test_altered_part_is_refused_and_aborted(self, seaweedfs_server, signing, checksum):
        # SeaweedFS checks the part's CRC32C (depot's) or CRC32 (botocore's) and, when signed,
        # its SHA-256 (moto checks none of them). Unsigned, the checksum alone catches it.
        storage = parts_storage(seaweedfs_server, payload_signing=signing, checksum=checksum)
        existing = storage.create(b"keep me")
        record_parts(storage, alter_part=2)
        with pytest.raises((ClientError, ChecksumMismatch)) as info:
            storage.replace(existing, NonSeekableStream(pattern(12 * MB), chunk=MB))
        error = info.value if isinstance(info.value, ClientError) else info.value.__cause__
        assert error.operation_name == "UploadPart"
        if signing is False:
            assert isinstance(info.value, ChecksumMismatch)
            assert "refused file %s" % existing in str(info.value) and "S3Storage" in str(info.value)
        assert storage.list() == [existing]
        assert storage.get(existing).read() == b"keep me"
        pending = storage._client.list_multipart_uploads(
            Bucket=storage._bucket_driver.bucket.name, Prefix=storage._bucket_driver.prefix
        )
        assert pending.get("Uploads", []) == []


# -- reading -------------------------------------------------------------------------


class TestRanges:
    def test_range_of_a_large_object(self, seaweed_storage):
        data = pattern(3 * MB)
        f = seaweed_storage.get(seaweed_storage.create(data))
        assert b"".join(f.iter_range(3 * MB - 10, None)) == data[-10:]
        assert b"".join(f.iter_range(MB, MB + 5, chunk_size=2)) == data[MB:MB + 5]
        assert list(f.iter_range(5, 5)) == []

    def test_range_after_replace_refuses_to_mix_versions(self, seaweed_storage):
        file_id = seaweed_storage.create(b"A" * 100)
        f = seaweed_storage.get(file_id)
        seaweed_storage.replace(file_id, b"B" * 100)
        with pytest.raises(IOError, match=file_id):
            list(f.iter_range(0, 10))

    def test_range_of_closed_file(self, seaweed_storage):
        f = seaweed_storage.get(seaweed_storage.create(b"data"))
        f.close()
        with pytest.raises(ValueError):
            list(f.iter_range(0, 2))


# -- ACLs and URLs -------------------------------------------------------------------


class TestPublicUrls:
    def test_public_read_on_moto(self, moto_server):
        storage = make_storage(moto_server, unique_name("depot-pub"))
        file_id = storage.create(b"public bytes", "p.txt")
        f = storage.get(file_id)
        assert type(f) is S3StoredFile and f.public_url_signed is False
        assert f.public_url == "%s/%s/%s" % (moto_server.endpoint_url, storage._bucket_driver.bucket.name, file_id)
        grants = storage._client.get_object_acl(Bucket=storage._bucket_driver.bucket.name, Key=file_id)["Grants"]
        assert {"URI": ALL_USERS, "Type": "Group"}.items() <= next(
            g["Grantee"] for g in grants if g["Permission"] == "READ"
        ).items()
        response = anonymous_get(f.public_url)
        assert (response.status_code, response.content) == (200, b"public bytes")

    def test_private_on_moto(self, moto_server):
        storage = make_storage(moto_server, unique_name("depot-priv"), policy="private", url_expires=120)
        file_id = storage.create(b"private bytes", "p.txt")
        f = storage.get(file_id)
        assert isinstance(f, PrivateS3StoredFile) and f.public_url_signed is True
        grants = storage._client.get_object_acl(Bucket=storage._bucket_driver.bucket.name, Key=file_id)["Grants"]
        assert all(g["Grantee"].get("URI") != ALL_USERS for g in grants)
        plain = "%s/%s/%s" % (moto_server.endpoint_url, storage._bucket_driver.bucket.name, file_id)
        assert anonymous_get(plain).status_code == 403
        assert "X-Amz-Expires=120" in f.public_url and "X-Amz-Signature=" in f.public_url
        response = anonymous_get(f.public_url)
        assert (response.status_code, response.content) == (200, b"private bytes")

    def test_private_url_is_checked_by_seaweedfs(self, seaweedfs_server, seaweed_bucket):
        storage = make_storage(seaweedfs_server, seaweed_bucket, policy="private", prefix="priv/")
        f = storage.get(storage.create(b"signed"))
        assert anonymous_get(f.public_url).content == b"signed"
        tampered = f.public_url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
        assert anonymous_get(tampered).status_code == 403


# -- bucket bootstrap ----------------------------------------------------------------


class SpySession(boto3.Session):
    """A real boto3 session that records the S3 operations its clients call."""

    calls: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.events.register("before-call.s3", self._record)

    def _record(self, model, **kwargs):
        SpySession.calls.append(model.name)


@pytest.fixture
def spy_session(monkeypatch):
    SpySession.calls = []
    monkeypatch.setattr(depot_s3.boto3, "Session", SpySession)
    return SpySession


class TestBucketBootstrap:
    def test_existing_bucket_is_found_with_list_buckets(self, seaweedfs_server, seaweed_bucket, spy_session):
        make_storage(seaweedfs_server, seaweed_bucket)  # the bucket exists from here on, whatever ran before
        spy_session.calls.clear()
        make_storage(seaweedfs_server, seaweed_bucket)
        assert spy_session.calls == ["ListBuckets"]

    def test_missing_bucket_sequence_on_a_real_server(self, moto_server, spy_session):
        storage = make_storage(moto_server, unique_name("depot-seq"))
        assert spy_session.calls == ["ListBuckets", "CreateBucket", "HeadBucket", "PutPublicAccessBlock"]
        assert storage.get(storage.create(b"seq")).read() == b"seq"

    def test_creation_in_a_region(self, moto_server, spy_session):
        name = unique_name("depot-eu")
        storage = make_storage(moto_server, name, region_name="eu-west-1")
        assert spy_session.calls[:2] == ["ListBuckets", "CreateBucket"]
        client = raw_client(moto_server, "eu-west-1")
        assert client.get_bucket_location(Bucket=name)["LocationConstraint"] == "eu-west-1"
        assert client.get_bucket_ownership_controls(Bucket=name)["OwnershipControls"]["Rules"] == [
            {"ObjectOwnership": "BucketOwnerPreferred"}
        ]
        assert client.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": False, "IgnorePublicAcls": False,
            "BlockPublicPolicy": True, "RestrictPublicBuckets": True,
        }
        assert storage.get(storage.create(b"eu")).read() == b"eu"

    def test_private_bucket_keeps_default_access_block(self, moto_server, spy_session):
        make_storage(moto_server, unique_name("depot-pab"), policy="private")
        assert "PutPublicAccessBlock" not in spy_session.calls

    def test_unsupported_calls_are_logged_once(self, seaweedfs_server, caplog):
        with caplog.at_level(logging.WARNING, logger="depot.io.boto3"):
            first = make_storage(seaweedfs_server, unique_name("depot-ni"))
            second = make_storage(seaweedfs_server, unique_name("depot-ni"))
        notes = [r.getMessage() for r in caplog.records if "does not implement" in r.getMessage()]
        assert len(notes) <= 1  # once per process and endpoint: an earlier test may have logged it
        assert all(seaweedfs_server.endpoint_url in note and "public access block" in note for note in notes)
        for storage in (first, second):
            assert storage.get(storage.create(b"works")).read() == b"works"

    def test_bad_credentials_name_bucket_and_endpoint(self, seaweedfs_server, seaweed_bucket):
        with pytest.raises(ClientError) as info:
            S3Storage(seaweedfs_server.access_key, "wrong secret", bucket=seaweed_bucket,
                      endpoint_url=seaweedfs_server.endpoint_url, region_name="us-east-1")
        assert isinstance(info.value, S3AccessError)
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        message = str(info.value)
        assert seaweed_bucket in message and seaweedfs_server.endpoint_url in message and "secret key" in message

    def test_unreachable_endpoint(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        endpoint = "http://127.0.0.1:%d" % port
        with pytest.raises(EndpointConnectionError) as info:
            S3Storage("key", "secret", bucket="nowhere", endpoint_url=endpoint, region_name="us-east-1")
        assert isinstance(info.value, S3EndpointError)
        assert endpoint in str(info.value) and "nowhere" in str(info.value)


class ScriptedS3:
    """S3 behind botocore's ``_make_api_call``: records each operation and answers from a few buckets.

    ``list_error`` is the error code ListBuckets answers with (403 for
    ``AccessDenied``), ``head_error`` the one HeadBucket answers for an
    existing bucket.
    """

    def __init__(self, buckets=(), list_error=None, head_error=None, foreign=(), create_error="BucketAlreadyExists"):
        self.buckets = set(buckets)
        self.foreign = set(foreign)  # other accounts' buckets: not listed, not creatable
        self.create_error = create_error
        self.list_error = list_error
        self.head_error = head_error
        self.calls = []

    @staticmethod
    def error(code, status, operation):
        return ClientError({"Error": {"Code": code, "Message": code},
                            "ResponseMetadata": {"HTTPStatusCode": status}}, operation)

    def __call__(self, client, operation, params):
        self.calls.append((operation, params))
        ok = {"ResponseMetadata": {"HTTPStatusCode": 200}}
        if operation == "ListBuckets":
            if self.list_error:
                raise self.error(self.list_error, 403 if self.list_error == "AccessDenied" else 500, operation)
            return dict(ok, Buckets=[{"Name": name} for name in sorted(self.buckets)])
        if operation == "HeadBucket":
            if params["Bucket"] not in self.buckets | self.foreign:
                raise self.error("404", 404, operation)
            if self.head_error:
                raise self.error(self.head_error, 403, operation)
            return ok
        if operation == "CreateBucket":
            if params["Bucket"] in self.foreign:
                raise self.error(self.create_error, 409 if self.create_error == "BucketAlreadyExists" else 403,
                                 operation)
            self.buckets.add(params["Bucket"])
            return ok
        if operation == "PutPublicAccessBlock":
            return ok
        raise AssertionError("unexpected S3 call %s" % operation)

    @property
    def operations(self):
        return [operation for operation, _ in self.calls]


@pytest.fixture
def scripted_s3(monkeypatch):
    from botocore.client import BaseClient

    def install(**options):
        api = ScriptedS3(**options)
        monkeypatch.setattr(BaseClient, "_make_api_call", lambda client, op, params: api(client, op, params))
        return api

    return install


def scripted_storage(**options):
    return S3Storage("AKIDEXAMPLE", "secret", bucket="bkt", endpoint_url="http://s3.invalid", region_name="us-east-1",
                     **options)


class TestBucketBootstrapSequence:
    """The calls of filedepot 0.12's bootstrap (SPEC 2.4), with botocore's ``_make_api_call`` patched."""

    def test_listed_bucket_is_used_as_is(self, scripted_s3):
        api = scripted_s3(buckets=["other", "bkt"])
        storage = scripted_storage()
        assert api.operations == ["ListBuckets"]
        assert storage._bucket_driver.bucket.name == "bkt"

    def test_unlisted_bucket_is_created_waited_for_and_opened_to_acls(self, scripted_s3):
        api = scripted_s3(buckets=["other"])
        scripted_storage()
        assert api.operations == ["ListBuckets", "CreateBucket", "HeadBucket", "PutPublicAccessBlock"]
        create, put_block = api.calls[1][1], api.calls[3][1]
        assert create == {"Bucket": "bkt", "ObjectOwnership": "BucketOwnerPreferred"}
        assert put_block["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": False, "IgnorePublicAcls": False, "BlockPublicPolicy": True, "RestrictPublicBuckets": True,
        }

    def test_private_bucket_gets_no_public_access_block(self, scripted_s3):
        api = scripted_s3()
        scripted_storage(policy="private")
        assert api.operations == ["ListBuckets", "CreateBucket", "HeadBucket"]

    @pytest.mark.parametrize("code", ["InternalError", "InvalidAccessKeyId", "SignatureDoesNotMatch"])
    def test_list_buckets_error_propagates(self, scripted_s3, code):
        api = scripted_s3(buckets=["bkt"], list_error=code)
        with pytest.raises(ClientError) as info:
            scripted_storage()
        assert info.value.response["Error"]["Code"] == code
        assert info.value.operation_name == "ListBuckets"
        assert api.operations == ["ListBuckets"]

    def test_access_denied_listing_falls_back_to_head(self, scripted_s3):
        api = scripted_s3(buckets=["bkt"], list_error="AccessDenied")
        storage = scripted_storage()
        assert api.operations == ["ListBuckets", "HeadBucket"]
        assert storage._bucket_driver.bucket.name == "bkt"

    def test_access_denied_listing_then_missing_bucket_is_created(self, scripted_s3):
        api = scripted_s3(list_error="AccessDenied")
        scripted_storage()
        assert api.operations == ["ListBuckets", "HeadBucket", "CreateBucket", "HeadBucket", "PutPublicAccessBlock"]

    def test_access_denied_everywhere_propagates(self, scripted_s3):
        api = scripted_s3(buckets=["bkt"], list_error="AccessDenied", head_error="403")
        with pytest.raises(ClientError) as info:
            scripted_storage()
        assert info.value.operation_name == "HeadBucket"
        assert api.operations == ["ListBuckets", "HeadBucket"]

    @pytest.mark.parametrize("create_error", ["BucketAlreadyExists", "AccessDenied"])
    def test_unlisted_bucket_of_another_account_is_used_when_head_answers(self, scripted_s3, create_error):
        api = scripted_s3(foreign=["bkt"], create_error=create_error)
        storage = scripted_storage()
        assert api.operations == ["ListBuckets", "CreateBucket", "HeadBucket"]
        assert storage._bucket_driver.bucket.name == "bkt"

    def test_unlisted_uncreatable_unreachable_bucket_raises_the_create_error(self, scripted_s3):
        api = scripted_s3(foreign=["bkt"], head_error="403")
        with pytest.raises(ClientError) as info:
            scripted_storage()
        assert info.value.operation_name == "CreateBucket"
        assert info.value.response["Error"]["Code"] == "BucketAlreadyExists"
        assert api.operations == ["ListBuckets", "CreateBucket", "HeadBucket"]


# -- checksums (integrity): a transfer broken on the way is refused ------------


@pytest.mark.parametrize("algorithm", ["crc32c", "sha256", "md5"])
def test_a_body_corrupted_after_its_checksum_is_refused(seaweed_storage, algorithm):
    seaweed_storage.checksum_algorithm = algorithm
    kept = seaweed_storage.create(b"previous content", "a.txt")
    client = seaweed_storage._client
    real_put = client.put_object

    def flip_on_the_way(**kwargs):
        # The checksum was computed from these bytes; one flips in transit.
        body = bytearray(kwargs["Body"])
        body[3] ^= 0x01
        return real_put(**dict(kwargs, Body=bytes(body)))

    client.put_object = flip_on_the_way
    try:
        with pytest.raises(ChecksumMismatch, match="S3Storage .* refused file .*nothing was stored"):
            seaweed_storage.create(b"hello integrity", "b.txt")
        with pytest.raises(ChecksumMismatch):
            seaweed_storage.replace(kept, b"new content")
    finally:
        client.put_object = real_put
    assert seaweed_storage.list() == [kept]  # nothing new is visible
    assert seaweed_storage.get(kept).read() == b"previous content"


def no_pending_uploads(storage):
    pending = storage._client.list_multipart_uploads(
        Bucket=storage._bucket_driver.bucket.name, Prefix=storage._bucket_driver.prefix
    )
    return pending.get("Uploads", []) == []


class TestMultipartChecksums:
    """Multipart uploads: CRC32C per part and of the whole object, checked by SeaweedFS; the option's checksum recorded."""

    @pytest.mark.parametrize("algorithm", ["crc32c", "sha256", "md5"])
    def test_parts_and_whole_object_carry_crc32c(self, seaweedfs_server, algorithm):
        storage = parts_storage(seaweedfs_server, checksum=algorithm)
        sent = record_parts(storage)
        calls = []
        storage._client.meta.events.register(
            "before-call.s3.*", lambda params, model, **kw: calls.append((model.name, params)))
        data = os.urandom(12 * MB + 17)
        file_id = storage.create(NonSeekableStream(data, chunk=MB), "parts.bin")
        parts = [data[i:i + 5 * MB] for i in range(0, len(data), 5 * MB)]
        assert [crc for _, crc in sent] == [checksums.crc32c_base64(p) for p in parts]
        create = [p for name, p in calls if name == "CreateMultipartUpload"][0]
        assert create["headers"]["x-amz-checksum-type"] == "FULL_OBJECT"
        complete = [p for name, p in calls if name == "CompleteMultipartUpload"][0]
        assert complete["headers"]["x-amz-checksum-crc32c"] == checksums.crc32c_base64(data)
        # SeaweedFS verified and kept the whole object's CRC32C (not a checksum of checksums).
        whole = storage._client.head_object(Bucket=storage._bucket_driver.bucket.name,
                                            Key=object_key(storage, file_id), ChecksumMode="ENABLED")
        assert whole["ChecksumCRC32C"] == checksums.crc32c_base64(data)
        assert storage.get(file_id).checksum == checksums.compute(algorithm, data)
        assert storage.get(file_id).read() == data

    def test_whole_object_checksum_altered_is_refused(self, seaweedfs_server):
        storage = parts_storage(seaweedfs_server)
        existing = storage.create(b"keep me")
        client = storage._client
        real_complete = client.complete_multipart_upload

        def altered(**kwargs):
            # The parts arrived intact; the object they make is not the one checksummed.
            return real_complete(**dict(kwargs, ChecksumCRC32C=checksums.crc32c_base64(b"other bytes")))

        client.complete_multipart_upload = altered
        try:
            with pytest.raises(ChecksumMismatch, match="refused file %s.*CompleteMultipartUpload" % existing):
                storage.replace(existing, NonSeekableStream(pattern(12 * MB), chunk=MB))
        finally:
            client.complete_multipart_upload = real_complete
        assert storage.list() == [existing]
        assert storage.get(existing).read() == b"keep me"
        assert no_pending_uploads(storage)

    def test_recording_keeps_acl_type_and_name(self, moto_server):
        # On moto, which checks ACLs (SeaweedFS serves no object anonymously).
        storage = parts_storage(moto_server)
        data = pattern(11 * MB)
        file_id = storage.create(NonSeekableStream(data, chunk=MB), "r\u00e9sum\u00e9.pdf", "application/pdf")
        f = storage.get(file_id)
        assert (f.filename, f.content_type, f.content_length) == ("r\u00e9sum\u00e9.pdf", "application/pdf", len(data))
        assert f.checksum == checksums.compute("crc32c", data)
        assert anonymous_get(f.public_url).content == data  # still public-read after the copy

    def test_checksum_none_keeps_botocore_crc32(self, seaweedfs_server):
        storage = parts_storage(seaweedfs_server, checksum=None)
        sent = record_parts(storage)
        data = pattern(11 * MB)
        file_id = storage.create(NonSeekableStream(data, chunk=MB))
        assert storage.get(file_id).checksum is None and storage.get(file_id).read() == data
        assert len(sent) == 3 and all(crc for _, crc in sent)
