"""depot.io.awss3.S3Storage: on legacy boto (where it imports) and on its boto3 fallback.

Both run against SeaweedFS (signatures checked) and moto (ACLs).  The boto3
fallback is what Python 3.12+ gets; here it is loaded as a separate copy of
the module with ``boto`` made unimportable.
"""
from __future__ import annotations

import importlib.util
import sys
import uuid

import pytest

boto3 = pytest.importorskip("boto3")
requests = pytest.importorskip("requests")

import depot.io.awss3 as awss3  # noqa: E402
from depot.io import boto3 as depot_boto3  # noqa: E402
from depot.io._awss3_boto3 import endpoint_url_for  # noqa: E402
from depot.testing import StorageConformance  # noqa: E402
from tests.servers import unique_name  # noqa: E402

LEGACY = awss3.BACKEND == "boto"
needs_boto = pytest.mark.skipif(not LEGACY, reason="legacy boto does not import on this Python")
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def _load_fallback():
    """A copy of depot.io.awss3 imported while ``boto`` cannot be imported."""
    spec = importlib.util.spec_from_file_location("depot.io._awss3_under_test", awss3.__file__)
    module = importlib.util.module_from_spec(spec)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "boto", None)
        spec.loader.exec_module(module)
    return module


FALLBACK = _load_fallback()
MODULES = [pytest.param(awss3, id=awss3.BACKEND), pytest.param(FALLBACK, id="boto3-fallback")]
if not LEGACY:
    MODULES = MODULES[:1]


def build(module, server, bucket=None, **options):
    with pytest.warns(DeprecationWarning, match="awss3.S3Storage is deprecated in favor of boto3.S3Storage"):
        return module.S3Storage(server.access_key, server.secret_key, bucket=bucket, host=server.endpoint_url,
                                **options)


def raw_client(server):
    return boto3.client("s3", **server.client_kwargs)


@pytest.fixture(scope="module")
def bucket(seaweedfs_server):
    return unique_name("depot-awss3")


@pytest.fixture(params=MODULES)
def module(request):
    return request.param


class TestConformance(StorageConformance):
    @pytest.fixture
    def storage(self, module, seaweedfs_server, bucket):
        # The deprecated boto backend keeps no checksums; the boto3 fallback does.
        self.has_checksums = module.BACKEND != "boto"
        return build(module, seaweedfs_server, bucket, prefix="t-%s/" % uuid.uuid4().hex[:12])


class TestBackendChoice:
    def test_fallback_runs_on_boto3(self):
        assert FALLBACK.BACKEND == "boto3"
        assert issubclass(FALLBACK.S3Storage, depot_boto3.S3Storage)
        assert FALLBACK.S3StoredFile is depot_boto3.S3StoredFile
        assert FALLBACK.BucketDriver is depot_boto3.BucketDriver
        FALLBACK._enable_sigv4()

    @needs_boto
    def test_legacy_internals(self, seaweedfs_server, bucket):
        import boto
        from boto.s3.bucket import Bucket
        from boto.s3.connection import S3Connection

        storage = build(awss3, seaweedfs_server, bucket, prefix="in/")
        assert isinstance(storage._conn, S3Connection)
        assert isinstance(storage._bucket_driver.bucket, Bucket)
        assert storage._bucket_driver.prefix == "in/"
        assert boto.config.get("s3", "use-sigv4") == "True"
        file_id = storage.create(b"legacy")
        assert storage._bucket_driver.get_key(file_id).name == "in/" + file_id
        assert storage._bucket_driver.get_key(str(uuid.uuid4())) is None
        assert storage._bucket_driver.new_key("x").name == "in/x"
        assert storage._bucket_driver.list_key_names() == [file_id]

    def test_constants_and_policy(self, module):
        assert (module.CANNED_ACL_PUBLIC_READ, module.CANNED_ACL_PRIVATE) == ("public-read", "private")
        with pytest.warns(DeprecationWarning), pytest.raises(AssertionError):
            module.S3Storage("key", "secret", policy="world")

    def test_host_forms(self):
        assert endpoint_url_for(None) is None
        assert endpoint_url_for("s3.amazonaws.com") is None
        assert endpoint_url_for("minio.example:9000") == "https://minio.example:9000"
        assert endpoint_url_for("http://127.0.0.1:9000") == "http://127.0.0.1:9000"


class TestStoredLayout:
    def test_default_bucket(self, module, seaweedfs_server):
        storage = build(module, seaweedfs_server)
        expected = "filedepot-" + seaweedfs_server.access_key.lower()
        assert storage._bucket_driver.bucket.name == expected
        raw_client(seaweedfs_server).head_bucket(Bucket=expected)

    def test_same_objects_as_boto3_storage(self, module, seaweedfs_server, bucket):
        """Both S3 modules read what the other wrote, so moving between them needs no migration."""
        prefix = "x-%s/" % uuid.uuid4().hex[:8]
        legacy = build(module, seaweedfs_server, bucket, prefix=prefix)
        modern = depot_boto3.S3Storage(seaweedfs_server.access_key, seaweedfs_server.secret_key, bucket=bucket,
                                       endpoint_url=seaweedfs_server.endpoint_url, prefix=prefix)
        name = "Крупный 100%25 файл.txt"
        for writer, reader in ((legacy, modern), (modern, legacy)):
            f = reader.get(writer.create(b"shared", name))
            assert (f.filename, f.content_type, f.read()) == (name, "text/plain", b"shared")
        stored = raw_client(seaweedfs_server).head_object(Bucket=bucket, Key=prefix + legacy.create(b"x", name))
        assert stored["ContentDisposition"].endswith(
            "filename*=utf-8''%D0%9A%D1%80%D1%83%D0%BF%D0%BD%D1%8B%D0%B9%20100%2525%20%D1%84%D0%B0%D0%B9%D0%BB.txt"
        )

    def test_encrypt_key(self, module, moto_server):
        bucket = unique_name("depot-sse")
        client = raw_client(moto_server)
        encrypted = build(module, moto_server, bucket, encrypt_key="true")
        plain = build(module, moto_server, bucket, encrypt_key="false")
        assert client.head_object(Bucket=bucket, Key=encrypted.create(b"e"))["ServerSideEncryption"] == "AES256"
        assert "ServerSideEncryption" not in client.head_object(Bucket=bucket, Key=plain.create(b"p"))

    def test_written_outside_depot(self, module, seaweedfs_server, bucket):
        storage = build(module, seaweedfs_server, bucket, prefix="o-%s/" % uuid.uuid4().hex[:8])
        file_id = str(uuid.uuid4())
        raw_client(seaweedfs_server).put_object(Bucket=bucket, Key=storage._bucket_driver.prefix + file_id,
                                                Body=b"foreign", ContentType="image/gif")
        f = storage.get(file_id)
        assert (f.filename, f.content_type, f.last_modified, f.read()) == (None, "image/gif", None, b"foreign")
        assert storage.replace(file_id, b"replaced") == file_id
        f = storage.get(file_id)
        assert (f.filename, f.content_type, f.read()) == (None, "image/gif", b"replaced")


class TestAclsAndUrls:
    def test_public_read(self, module, moto_server):
        storage = build(module, moto_server, unique_name("depot-pub"))
        f = storage.get(storage.create(b"public", "p.txt"))
        assert f.public_url_signed is False
        assert f.public_url == "%s/%s/%s" % (moto_server.endpoint_url, storage._bucket_driver.bucket.name, f.file_id)
        assert requests.get(f.public_url, timeout=30).content == b"public"
        client = raw_client(moto_server)
        pab = client.get_public_access_block(Bucket=storage._bucket_driver.bucket.name)
        assert pab["PublicAccessBlockConfiguration"]["BlockPublicAcls"] is False

    def test_private(self, module, moto_server):
        storage = build(module, moto_server, unique_name("depot-priv"), policy="private")
        f = storage.get(storage.create(b"private", "p.txt"))
        assert f.public_url_signed is True
        grants = raw_client(moto_server).get_object_acl(Bucket=storage._bucket_driver.bucket.name,
                                                        Key=f.file_id)["Grants"]
        assert all(g["Grantee"].get("URI") != ALL_USERS for g in grants)
        plain = "%s/%s/%s" % (moto_server.endpoint_url, storage._bucket_driver.bucket.name, f.file_id)
        assert requests.get(plain, timeout=30).status_code == 403
        response = requests.get(f.public_url, timeout=30)
        assert (response.status_code, response.content) == (200, b"private")

    def test_signed_url_checked_by_seaweedfs(self, module, seaweedfs_server, bucket):
        storage = build(module, seaweedfs_server, bucket, policy="private", prefix="s/")
        f = storage.get(storage.create(b"signed"))
        assert requests.get(f.public_url, timeout=30).content == b"signed"
        tampered = f.public_url.replace("Signature=", "Signature=0")
        assert requests.get(tampered, timeout=30).status_code == 403


class TestErrors:
    def test_bad_credentials_name_bucket_and_host(self, module, seaweedfs_server, bucket):
        with pytest.warns(DeprecationWarning), pytest.raises(Exception) as info:
            module.S3Storage(seaweedfs_server.access_key, "wrong", bucket=bucket, host=seaweedfs_server.endpoint_url)
        message = str(info.value)
        assert bucket in message and seaweedfs_server.endpoint_url in message and "secret key" in message
        assert getattr(info.value, "status", None) == 403 or isinstance(info.value, depot_boto3.S3AccessError)

    def test_unsupported_public_access_block_is_tolerated(self, module, seaweedfs_server):
        storage = build(module, seaweedfs_server, unique_name("depot-pab"))
        assert storage.get(storage.create(b"ok")).read() == b"ok"


# -- legacy boto bucket bootstrap (SPEC 2.5) -------------------------------------------


def spy_connection(monkeypatch, *names):
    """Record ``(method, args, kwargs, result)`` of these real ``S3Connection`` methods."""
    from boto.s3.connection import S3Connection

    seen = []
    for name in names:
        original = getattr(S3Connection, name)

        def wrapper(self, *args, _name=name, _original=original, **kwargs):
            result = _original(self, *args, **kwargs)
            seen.append((_name, args, kwargs, result))
            return result

        monkeypatch.setattr(S3Connection, name, wrapper)
    return seen


@needs_boto
class TestLegacyBucketBootstrap:
    def test_existing_bucket_comes_from_lookup(self, seaweedfs_server, bucket, monkeypatch):
        build(awss3, seaweedfs_server, bucket)  # the bucket exists from here on
        seen = spy_connection(monkeypatch, "lookup", "create_bucket")
        storage = build(awss3, seaweedfs_server, bucket)
        assert [(name, args) for name, args, _, _ in seen] == [("lookup", (bucket,))]
        assert storage._bucket_driver.bucket is seen[0][3]

    def test_missing_bucket_comes_from_create_bucket(self, moto_server, monkeypatch):
        name = unique_name("depot-legacy")
        seen = spy_connection(monkeypatch, "lookup", "create_bucket")
        storage = build(awss3, moto_server, name)
        assert [(call, args) for call, args, _, _ in seen] == [("lookup", (name,)), ("create_bucket", (name,))]
        assert seen[0][3] is None
        assert seen[1][2]["headers"] == {"x-amz-object-ownership": "BucketOwnerPreferred"}
        assert storage._bucket_driver.bucket is seen[1][3]
        assert raw_client(moto_server).get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": False, "IgnorePublicAcls": False, "BlockPublicPolicy": True, "RestrictPublicBuckets": True,
        }
        assert storage.get(storage.create(b"legacy")).read() == b"legacy"

    def test_sequence_with_s3connection_patched(self, monkeypatch):
        from unittest import mock

        from boto.s3.connection import S3Connection

        found, created = object(), object()
        response = mock.Mock(status=200, reason="OK", read=mock.Mock(return_value=b""))
        with mock.patch.object(S3Connection, "lookup", autospec=True, return_value=found) as lookup, \
                mock.patch.object(S3Connection, "create_bucket", autospec=True) as create:
            with pytest.warns(DeprecationWarning):
                storage = awss3.S3Storage("AKID", "secret", bucket="old-bucket", host="http://127.0.0.1:1")
            assert storage._bucket_driver.bucket is found
            assert [c.args[1:] for c in lookup.call_args_list] == [("old-bucket",)]
            create.assert_not_called()

        with mock.patch.object(S3Connection, "lookup", autospec=True, return_value=None), \
                mock.patch.object(S3Connection, "create_bucket", autospec=True, return_value=created) as create, \
                mock.patch.object(S3Connection, "make_request", autospec=True, return_value=response) as request:
            with pytest.warns(DeprecationWarning):
                storage = awss3.S3Storage("AKID", "secret", bucket="new-bucket", host="http://127.0.0.1:1",
                                          policy="private")
            assert storage._bucket_driver.bucket is created
            assert create.call_args.args[1:] == ("new-bucket",)
            assert create.call_args.kwargs["headers"] == {"x-amz-object-ownership": "BucketOwnerPreferred"}
            # The public access block goes whatever the policy, as in filedepot.
            assert request.call_args.args[1:3] == ("PUT", "new-bucket")
            assert request.call_args.kwargs["query_args"] == "publicAccessBlock"
