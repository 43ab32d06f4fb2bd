"""The middleware's redirects to cloud storages, followed to the real servers.

Storages are configured the way applications do it (``DepotManager.configure``
with INI-style string options), the middleware answers through WebTest, and
the redirect is followed with ``requests``: public files get a permanent 301
to their plain URL, private ones a 302 to a signed URL that is not cached.
"""
from __future__ import annotations

import warnings

import pytest

pytest.importorskip("boto3")
pytest.importorskip("google.cloud.storage")
requests = pytest.importorskip("requests")
webtest = pytest.importorskip("webtest")

from depot.manager import DepotManager  # noqa: E402
from tests.servers import unique_name  # noqa: E402
from tests.test_storage_gcs import make_service_account_info  # noqa: E402

CONTENT = bytes(range(256)) * 1000


def empty_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"application"]


@pytest.fixture
def app():
    return webtest.TestApp(DepotManager.make_middleware(empty_app))


def s3_config(backend, server, policy, **extra):
    config = {
        "depot.backend": backend,
        "depot.access_key_id": server.access_key,
        "depot.secret_access_key": server.secret_key,
        "depot.bucket": unique_name("depot-redirect"),
        "depot.policy": policy,
    }
    config.update(("depot." + key, value) for key, value in extra.items())
    return config


def configure(name, config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # awss3 warns, as filedepot did
        return DepotManager.configure(name, config)


def follow(app, storage_name, file_id, status):
    response = app.get("/depot/%s/%s" % (storage_name, file_id), status=status)
    target = requests.get(response.location, timeout=30)
    return response, target


S3_BACKENDS = {
    "s3": lambda server, policy: s3_config("s3", server, policy, endpoint_url=server.endpoint_url,
                                           region_name=server.region, url_expires="300"),
    "awss3": lambda server, policy: s3_config("awss3", server, policy, host=server.endpoint_url),
}


@pytest.mark.parametrize("backend", sorted(S3_BACKENDS))
def test_public_s3_file_is_a_permanent_redirect(app, moto_server, backend):
    storage = configure("files", S3_BACKENDS[backend](moto_server, "public-read"))
    file_id = storage.create(CONTENT, "data.bin")
    response, target = follow(app, "files", file_id, 301)
    assert "?" not in response.location and "Cache-Control" not in response.headers
    assert (target.status_code, target.content) == (200, CONTENT)


@pytest.mark.parametrize("backend", sorted(S3_BACKENDS))
@pytest.mark.parametrize("server_name", ["moto_server", "seaweedfs_server"])
def test_private_s3_file_is_a_signed_temporary_redirect(app, request, backend, server_name):
    server = request.getfixturevalue(server_name)
    storage = configure("files", S3_BACKENDS[backend](server, "private"))
    file_id = storage.create(CONTENT, "secret.bin")
    response, target = follow(app, "files", file_id, 302)
    assert "Signature=" in response.location
    assert response.headers["Cache-Control"] == "no-store"
    assert (target.status_code, target.content) == (200, CONTENT)
    unsigned = requests.get(response.location.split("?", 1)[0], timeout=30)
    assert unsigned.status_code == 403


def test_public_gcs_file_is_a_permanent_redirect(app, gcs_emulator_env):
    storage = configure("files", {"depot.backend": "gcs", "depot.project_id": gcs_emulator_env.project,
                                  "depot.bucket": unique_name("depot-redirect")})
    file_id = storage.create(CONTENT, "data.bin")
    response, target = follow(app, "files", file_id, 301)
    assert response.location.startswith(gcs_emulator_env.endpoint)
    assert (target.status_code, target.content) == (200, CONTENT)


def test_private_gcs_file_is_a_signed_temporary_redirect(app, gcs_emulator_env, service_account_info):
    storage = configure("files", {"depot.backend": "gcs", "depot.credentials": service_account_info,
                                  "depot.bucket": unique_name("depot-redirect"), "depot.policy": "private"})
    file_id = storage.create(CONTENT, "secret.bin")
    response, target = follow(app, "files", file_id, 302)
    assert "X-Goog-Signature=" in response.location
    assert response.headers["Cache-Control"] == "no-store"
    assert (target.status_code, target.content) == (200, CONTENT)


def test_private_gcs_file_without_signing_credentials_is_served(app, gcs_emulator_env):
    storage = configure("files", {"depot.backend": "gcs", "depot.bucket": unique_name("depot-redirect"),
                                  "depot.policy": "private"})
    file_id = storage.create(CONTENT, "secret.bin")
    response = app.get("/depot/files/%s" % file_id, status=200)
    assert response.body == CONTENT
    ranged = app.get("/depot/files/%s" % file_id, headers={"Range": "bytes=1000-1999"}, status=206)
    assert ranged.body == CONTENT[1000:2000]


@pytest.fixture(scope="module")
def service_account_info():
    return make_service_account_info()


# -- UploadedFile.url without a middleware: the storage's own signed URL ---------------


@pytest.fixture
def no_middleware():
    DepotManager._clear()
    yield
    DepotManager._clear()


def uploaded(storage_name):
    from depot.fields.upload import UploadedFile

    return UploadedFile(CONTENT, storage_name)


@pytest.mark.parametrize("backend", sorted(S3_BACKENDS))
@pytest.mark.parametrize("server_name", ["moto_server", "seaweedfs_server"])
def test_private_s3_url_without_middleware_is_freshly_signed(no_middleware, request, backend, server_name):
    server = request.getfixturevalue(server_name)
    configure("files", S3_BACKENDS[backend](server, "private"))
    value = uploaded("files")
    assert dict.__getitem__(value, "_public_url") is None  # the row keeps no expiring link
    url = value.url
    assert "Signature=" in url
    assert (requests.get(url, timeout=30).status_code, requests.get(url, timeout=30).content) == (200, CONTENT)
    if backend == "s3":
        assert "X-Amz-Expires=300" in url  # the storage's url_expires
    assert requests.get(url.split("?", 1)[0], timeout=30).status_code == 403


def test_private_gcs_url_without_middleware_is_freshly_signed(no_middleware, gcs_emulator_env, service_account_info):
    configure("files", {"depot.backend": "gcs", "depot.credentials": service_account_info,
                        "depot.bucket": unique_name("depot-url"), "depot.policy": "private"})
    value = uploaded("files")
    assert dict.__getitem__(value, "_public_url") is None
    url = value.url
    assert "X-Goog-Signature=" in url
    target = requests.get(url, timeout=30)
    assert (target.status_code, target.content) == (200, CONTENT)


def test_private_s3_url_with_a_middleware_is_the_middleware_url(app, moto_server):
    configure("files", S3_BACKENDS["s3"](moto_server, "private"))
    value = uploaded("files")
    assert value.url == "/depot/files/%s" % value.file_id


def test_private_gcs_without_signing_credentials_has_no_url_without_middleware(no_middleware, gcs_emulator_env):
    configure("files", {"depot.backend": "gcs", "depot.bucket": unique_name("depot-url"), "depot.policy": "private"})
    value = uploaded("files")
    with pytest.raises(RuntimeError, match="^No WSGI middleware currently registered$"):
        value.url
