"""depot.io.gcs.GCSStorage against fake-gcs-server (anonymous, through STORAGE_EMULATOR_HOST)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import uuid

import pytest

pytest.importorskip("google.cloud.storage")
requests = pytest.importorskip("requests")

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from google.auth.credentials import AnonymousCredentials  # noqa: E402

from depot.io.gcs import GCSStorage, GCSStoredFile, PrivateGCSStoredFile  # noqa: E402
from depot.testing import FailingStream, NonSeekableStream, StorageConformance  # noqa: E402
from tests.servers import unique_name  # noqa: E402

MB = 1024 * 1024


def pattern(size):
    return (b"0123456789abcdefghij" * (size // 20 + 1))[:size]


def make_service_account_info():
    """A service-account key made up here: enough to sign URLs, never sent to Google."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return {
        "type": "service_account", "project_id": "depot-sa-project", "private_key_id": "k1",
        "private_key": pem, "client_email": "depot@depot-sa-project.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token",
    }


@pytest.fixture(scope="session")
def service_account_info():
    return make_service_account_info()


@pytest.fixture(scope="module")
def gcs_bucket(gcs_server):
    return unique_name("depot-gcs")


def make_storage(gcs_server, bucket, **options):
    options.setdefault("project_id", gcs_server.project)
    return GCSStorage(bucket=bucket, **options)


@pytest.fixture
def gcs_storage(gcs_emulator_env, gcs_bucket):
    # One bucket for the module, one prefix per test: every test starts empty.
    return make_storage(gcs_emulator_env, gcs_bucket, prefix="t-%s/" % uuid.uuid4().hex[:12])


class TestConformance(StorageConformance):
    @pytest.fixture
    def storage(self, gcs_storage):
        return gcs_storage


class TestResumableConformance(StorageConformance):
    """Everything above 1 MiB goes through resumable uploads of 256 KiB chunks."""

    # CRC32C and MD5: GCS's own of the object; SHA-256: taken as the upload reads, recorded after it.

    @pytest.fixture
    def storage(self, gcs_emulator_env, gcs_bucket):
        return make_storage(gcs_emulator_env, gcs_bucket, prefix="r-%s/" % uuid.uuid4().hex[:12],
                            multipart_threshold=MB, chunk_size=256 * 1024)


class TestPrivateConformance(StorageConformance):
    @pytest.fixture
    def storage(self, gcs_emulator_env):
        return make_storage(gcs_emulator_env, unique_name("depot-gcs-priv"), policy="private")


# -- constructor and credentials ------------------------------------------------------


class TestConstructor:
    def test_policy_must_be_known(self, gcs_emulator_env):
        with pytest.raises(AssertionError):
            make_storage(gcs_emulator_env, "any", policy="public")

    def test_bucket_is_required(self, gcs_emulator_env):
        with pytest.raises(ValueError, match="bucket"):
            GCSStorage()

    def test_no_credentials_outside_an_emulator(self, monkeypatch):
        monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
        monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
        with pytest.raises(ValueError, match="GOOGLE_APPLICATION_CREDENTIALS environment variable not set"):
            GCSStorage(bucket="b")

    def test_emulator_needs_no_credentials(self, gcs_emulator_env, gcs_bucket):
        storage = make_storage(gcs_emulator_env, gcs_bucket)
        assert isinstance(storage.client._credentials, AnonymousCredentials)
        assert storage.bucket.name == gcs_bucket

    @pytest.mark.parametrize("form", ["dict", "file", "env", "object"])
    def test_service_account_credentials(self, gcs_emulator_env, service_account_info, tmp_path, monkeypatch, form):
        from google.oauth2 import service_account

        key_file = tmp_path / "key.json"
        key_file.write_text(json.dumps(service_account_info))
        credentials = {
            "dict": service_account_info,
            "file": str(key_file),
            "env": None,
            "object": service_account.Credentials.from_service_account_info(service_account_info),
        }[form]
        if form == "env":
            monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
        storage = GCSStorage(credentials=credentials, bucket=unique_name("depot-sa"), policy="private")
        # The project comes from the key; the emulator is still called anonymously.
        assert storage.client.project == "depot-sa-project"
        assert storage._signer.service_account_email == service_account_info["client_email"]
        file_id = storage.create(b"signed")
        url = storage.get(file_id).public_url
        assert url.startswith(gcs_emulator_env.endpoint) and "X-Goog-Signature=" in url

    def test_ini_strings_are_coerced(self, gcs_emulator_env, gcs_bucket):
        storage = make_storage(gcs_emulator_env, gcs_bucket, multipart_threshold="1048576", chunk_size="524288")
        assert (storage._threshold, storage._chunk_size) == (MB, 512 * 1024)
        with pytest.raises(ValueError, match="multiple"):
            make_storage(gcs_emulator_env, gcs_bucket, chunk_size=300 * 1024)


# -- what is stored ----------------------------------------------------------------------


class TestBlobLayout:
    def test_blob_name_metadata_and_headers(self, gcs_storage):
        file_id = gcs_storage.create(b"content", "Крупный файл.txt")
        blob = gcs_storage.bucket.get_blob(gcs_storage._prefix + file_id)
        quoted = "%D0%9A%D1%80%D1%83%D0%BF%D0%BD%D1%8B%D0%B9%20%D1%84%D0%B0%D0%B9%D0%BB.txt"
        assert blob.metadata["x-depot-filename"] == quoted
        assert blob.metadata["x-depot-content-type"] == "text/plain"
        assert len(blob.metadata["x-depot-modified"]) == 19
        assert blob.content_type == "text/plain"
        assert blob.content_disposition == "inline;filename=\"Krupnyy fayl.txt\";filename*=utf-8''" + quoted
        stored = gcs_storage.get(file_id)
        assert isinstance(stored, GCSStoredFile) and stored.blob.name == blob.name
        assert stored.version == str(blob.generation)

    def test_storage_class_is_used(self, gcs_emulator_env, gcs_bucket):
        storage = make_storage(gcs_emulator_env, gcs_bucket, storage_class="NEARLINE", prefix="sc/")
        file_id = storage.create(b"cold")
        assert storage.bucket.get_blob("sc/" + file_id).storage_class == "NEARLINE"

    def test_list_honours_the_prefix(self, gcs_emulator_env, gcs_bucket):
        first = make_storage(gcs_emulator_env, gcs_bucket, prefix="one-%s/" % uuid.uuid4().hex)
        second = make_storage(gcs_emulator_env, gcs_bucket, prefix="two-%s/" % uuid.uuid4().hex)
        a, b = first.create(b"a"), second.create(b"b")
        assert (first.list(), second.list()) == ([a], [b])

    def test_blob_written_outside_depot(self, gcs_storage):
        file_id = str(uuid.uuid4())
        gcs_storage.bucket.blob(gcs_storage._prefix + file_id).upload_from_string(b"foreign", content_type="image/gif")
        f = gcs_storage.get(file_id)
        assert (f.filename, f.content_type, f.last_modified, f.read()) == (None, "image/gif", None, b"foreign")
        assert gcs_storage.replace(file_id, b"replaced") == file_id
        f = gcs_storage.get(file_id)
        assert (f.filename, f.content_type, f.read()) == (None, "image/gif", b"replaced")
        assert f.blob.content_disposition is None


# -- uploads and reads -----------------------------------------------------------------


@pytest.fixture
def resumable_storage(gcs_emulator_env, gcs_bucket):
    return make_storage(gcs_emulator_env, gcs_bucket, prefix="big-%s/" % uuid.uuid4().hex[:12],
                        multipart_threshold=MB, chunk_size=256 * 1024)


class TestUploadsAndReads:
    @pytest.mark.parametrize("kind", ["non-seekable", "seekable", "bytes"])
    def test_resumable_upload(self, resumable_storage, kind):
        data = pattern(3 * MB + 11)
        content = {"non-seekable": NonSeekableStream(data), "seekable": io.BytesIO(data), "bytes": data}[kind]
        f = resumable_storage.get(resumable_storage.create(content, "big.bin"))
        assert (f.content_length, f.filename) == (len(data), "big.bin")
        assert f.read() == data

    def test_failing_resumable_upload_keeps_original(self, resumable_storage):
        file_id = resumable_storage.create(b"original", "keep.txt")
        with pytest.raises(FailingStream.Boom):
            resumable_storage.replace(file_id, FailingStream(pattern(2 * MB)))
        with pytest.raises(FailingStream.Boom):
            resumable_storage.create(FailingStream(pattern(2 * MB)))
        assert resumable_storage.list() == [file_id]
        assert resumable_storage.get(file_id).read() == b"original"

    def test_chunked_reads_stay_on_one_generation(self, gcs_storage):
        file_id = gcs_storage.create(pattern(100))
        f = gcs_storage.get(file_id)
        assert f.read(10) == pattern(10)  # fetched a whole block: the rest comes from memory
        gcs_storage.replace(file_id, b"Z" * 100)
        assert f.read(20) == pattern(30)[10:]

    def test_read_past_the_block_after_replace_is_an_error(self, gcs_storage, monkeypatch):
        monkeypatch.setattr("depot.io.gcs.READ_BLOCK", 16)
        file_id = gcs_storage.create(pattern(100))
        f = gcs_storage.get(file_id)
        assert f.read(16) == pattern(16)
        gcs_storage.replace(file_id, b"Z" * 100)
        with pytest.raises(IOError, match=file_id):
            f.read(16)

    def test_ranges(self, gcs_storage, monkeypatch):
        monkeypatch.setattr("depot.io.gcs.READ_BLOCK", 1000)
        data = pattern(5000)
        f = gcs_storage.get(gcs_storage.create(data))
        assert b"".join(f.iter_range(1234, 4321, chunk_size=300)) == data[1234:4321]
        assert all(len(c) <= 300 for c in f.iter_range(0, None, chunk_size=300))
        gcs_storage.replace(f.file_id, b"new")
        with pytest.raises(IOError, match=f.file_id):
            list(f.iter_range(0, 10))


# -- URLs and ACLs -------------------------------------------------------------------------


class TestUrls:
    def test_public_read_is_per_object(self, gcs_emulator_env):
        # fake-gcs-server has no bucket IAM API: making the bucket public, as filedepot did, would fail here.
        storage = make_storage(gcs_emulator_env, unique_name("depot-gcs-pub"))
        file_id = storage.create(b"for everyone", "a.txt")
        f = storage.get(file_id)
        assert f.public_url_signed is False
        assert {"entity": "allUsers", "role": "READER"} in list(f.blob.acl)
        assert f.public_url == "%s/%s/%s" % (gcs_emulator_env.endpoint, storage.bucket.name, file_id)
        assert requests.get(f.public_url, timeout=30).content == b"for everyone"

    def test_private_without_signing_credentials_has_no_url(self, gcs_emulator_env):
        storage = make_storage(gcs_emulator_env, unique_name("depot-gcs-priv"), policy="private")
        f = storage.get(storage.create(b"secret"))
        assert isinstance(f, PrivateGCSStoredFile) and f.public_url_signed is True
        assert f.public_url is None
        assert all(entry.get("entity") != "allUsers" for entry in f.blob.acl)

    def test_private_signed_url(self, gcs_emulator_env, service_account_info):
        storage = make_storage(gcs_emulator_env, unique_name("depot-gcs-priv"), policy="private",
                               credentials=service_account_info, url_expires="90")
        f = storage.get(storage.create(b"secret"))
        assert "X-Goog-Expires=90" in f.public_url
        assert requests.get(f.public_url, timeout=30).content == b"secret"


# -- names filedepot 0.12 code uses ------------------------------------------------------


class PolicyBucket:
    """A bucket's IAM endpoints, holding a real :class:`google.api_core.iam.Policy`."""

    def __init__(self):
        from google.api_core.iam import Policy

        self.policy = Policy.from_api_repr({"version": 1, "etag": "CAE=", "bindings": [
            {"role": "roles/storage.legacyBucketOwner", "members": ["projectOwner:p"]},
        ]})
        self.calls = []

    def get_iam_policy(self, **kwargs):
        self.calls.append(("get", kwargs))
        return self.policy

    def set_iam_policy(self, policy, **kwargs):
        self.calls.append(("set", kwargs))
        self.policy = policy
        return policy


class TestSetBucketPublicIam:
    def test_appends_an_object_viewer_binding(self, gcs_storage):
        bucket = PolicyBucket()
        gcs_storage.set_bucket_public_iam(bucket)
        assert [call for call, _ in bucket.calls] == ["get", "set"]
        assert bucket.calls[0][1] == {"requested_policy_version": 3}
        bindings = bucket.policy.to_api_repr()["bindings"]
        assert {"role": "roles/storage.legacyBucketOwner", "members": ["projectOwner:p"]} in bindings
        assert {"role": "roles/storage.objectViewer", "members": ["allUsers"]} in bindings

    def test_members_can_be_chosen(self, gcs_storage):
        bucket = PolicyBucket()
        gcs_storage.set_bucket_public_iam(bucket, members=("allAuthenticatedUsers", "domain:example.com"))
        viewers = [b for b in bucket.policy.to_api_repr()["bindings"] if b["role"] == "roles/storage.objectViewer"]
        assert sorted(viewers[0]["members"]) == ["allAuthenticatedUsers", "domain:example.com"]

    def test_patching_it_as_filedepot_tests_do(self, gcs_emulator_env, gcs_bucket):
        from unittest import mock

        with mock.patch.object(GCSStorage, "set_bucket_public_iam", autospec=True) as patched:
            storage = make_storage(gcs_emulator_env, gcs_bucket, prefix="iam/")
            file_id = storage.create(b"public object")
        # Public-read makes each object public; the bucket's IAM policy is left alone.
        patched.assert_not_called()
        assert requests.get(storage.get(file_id).public_url, timeout=30).content == b"public object"



# -- checksums (integrity): a transfer broken on the way is refused ------------

from google.cloud.storage.exceptions import DataCorruption  # noqa: E402

from depot.io.checksums import ChecksumMismatch  # noqa: E402


@pytest.mark.parametrize("algorithm", ["crc32c", "sha256", "md5"])
@pytest.mark.parametrize("threshold", [8 * MB, 1024 * 1024], ids=["one-request", "resumable"])
def test_a_body_corrupted_after_its_checksum_is_refused(gcs_emulator_env, gcs_bucket, threshold, algorithm):
    # Whatever checksum is stored, the transfer is verified with a CRC32C.
    storage = make_storage(gcs_emulator_env, gcs_bucket, prefix="c-%s/" % uuid.uuid4().hex[:12],
                           multipart_threshold=threshold, chunk_size=256 * 1024, checksum=algorithm)
    kept = storage.create(b"previous content", "a.txt")
    content = b"hello integrity " * (200000 if threshold < 8 * MB else 1)
    http = storage.client._http
    real_request = http.request

    def flip_on_the_way(method, url, data=None, **kwargs):
        # google-cloud-storage computed the CRC32C from the bytes; one flips in transit.
        if isinstance(data, (bytes, bytearray)) and b"hello integrity" in data:
            data = bytes(data).replace(b"hello integrity", b"iello integrity", 1)
        return real_request(method, url, data=data, **kwargs)

    http.request = flip_on_the_way
    try:
        # One request: checked against the CRC32C GCS reports (GCS itself refuses it; the emulator
        # does not). Resumable: google-cloud-storage compares and removes the corrupted object.
        with pytest.raises((ChecksumMismatch, DataCorruption), match="(?i)crc32c"):
            storage.create(content, "b.txt")
    finally:
        http.request = real_request
    assert storage.list() == [kept]  # nothing new is visible
    assert storage.get(kept).read() == b"previous content"


def test_a_streamed_sha256_is_taken_once_and_recorded(gcs_emulator_env, gcs_bucket):
    storage = make_storage(gcs_emulator_env, gcs_bucket, prefix="s-%s/" % uuid.uuid4().hex[:12],
                           multipart_threshold=MB, chunk_size=256 * 1024, checksum="sha256")
    data = os.urandom(3 * MB + 11)
    reads = []

    class Counting(io.RawIOBase):
        # Not seekable: the upload cannot go back, so one pass is all there is.
        def __init__(self):
            self._left = memoryview(data)

        def readable(self):
            return True

        def readinto(self, buffer):
            n = min(len(buffer), len(self._left))
            buffer[:n] = self._left[:n]
            self._left = self._left[n:]
            reads.append(n)
            return n

    file_id = storage.create(Counting(), "big.bin")
    expected = "sha256:" + hashlib.sha256(data).hexdigest()
    assert sum(reads) == len(data)
    assert storage.get(file_id).checksum == expected
    assert storage.bucket.get_blob(storage._prefix + file_id).metadata["x-depot-checksum"] == expected
