"""Request path to stored file (depot.serving.paths)."""
from urllib.parse import unquote_to_bytes

import pytest

from depot.serving.paths import is_under_mount, mount_prefix, quote_file_path, split_file_path

ID = "d37138cf-2364-4128-8236-9cfaa8a6567c"


def test_mountpoint_must_be_absolute():
    with pytest.raises(ValueError, match="DepotMiddleware mountpoint must be an absolute path"):
        mount_prefix("depot")
    assert mount_prefix("/depot") == "/depot"
    assert mount_prefix("/hello/lfs/") == "/hello/lfs"
    assert mount_prefix("/") == ""


@pytest.mark.parametrize("path, under", [("/depot", True), ("/depot/", True), ("/depot/a/b", True),
                                         ("/depotskipped", False), ("/", False), ("/dep", False)])
def test_under_mount(path, under):
    assert is_under_mount(path, "/depot") is under


def test_root_mount_takes_every_path():
    assert is_under_mount("/anything", "")
    assert split_file_path("/default/" + ID, "") == ("default", ID)


@pytest.mark.parametrize(
    "path",
    [
        "/depot",
        "/depot/",
        "/depot/nodepot",
        "/depot/default/",
        "/depot//" + ID,
        "/depot/x/default/" + ID,  # filedepot took the last two segments
        "/depot/default/" + ID + "/",
        "/depot/default/../" + ID,
        "/depot/default/..",
        "/depot/default/.",
        "/depot/default/a\\b",
        "/depot/default/a\x1fb",
        "/depot/default/a\x7fb",
        "/depot/default/a\xc2\x85b",  # U+0085 (a C1 control) in UTF-8
        "/depot/default/a\x00b",
        "/depot/default/\u00e9",  # the byte 0xE9 alone: not UTF-8, so never an id
        "/depot/" + "n" * 256 + "/" + ID,
    ],
)
def test_odd_paths_name_no_file(path):
    assert split_file_path(path, "/depot") is None


def test_file_paths():
    assert split_file_path("/depot/default/" + ID, "/depot") == ("default", ID)
    assert split_file_path("/hello/lfs/default/" + ID, "/hello/lfs") == ("default", ID)
    assert split_file_path("/depot/default/5f0c1a2b3c4d5e6f7a8b9c0d", "/depot") == ("default", "5f0c1a2b3c4d5e6f7a8b9c0d")


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/depot/default/user:42", ("default", "user:42")),
        ("/depot/default/a+b", ("default", "a+b")),
        ("/depot/default/.hidden", ("default", ".hidden")),
        ("/depot/default/a..b", ("default", "a..b")),
        # Not decoded by the server: a literal "%2F", no separator (UUID storages refuse it).
        ("/depot/default/" + ID + "%2F..", ("default", ID + "%2F..")),
        ("/depot/default/" + "a" * 300, ("default", "a" * 300)),
        ("/depot/default/caf\xc3\xa9", ("default", "caf\u00e9")),  # WSGI's latin-1 view of UTF-8 bytes
        ("/depot/st\xc3\xa9/x", ("st\u00e9", "x")),
    ],
)
def test_ids_are_left_to_the_storage(path, expected):
    assert split_file_path(path, "/depot") == expected


def test_filedepot_double_slash_urls():
    # filedepot 0.12 with mountpoint='/files/' made '/files//default/<id>'.
    assert split_file_path("/files//default/" + ID, mount_prefix("/files/")) == ("default", ID)
    assert split_file_path("/files///default/" + ID, "/files") == ("default", ID)


@pytest.mark.parametrize("file_id", ["user:42", "a+b", "a b", "x?y#z", "50%", "caf\u00e9", ".hidden", ID])
def test_quoted_paths_come_back(file_id):
    quoted = quote_file_path("default/" + file_id)
    assert not set(quoted) & set(" ?#")
    raw = unquote_to_bytes(quoted).decode("latin-1")  # what a WSGI server puts in PATH_INFO
    assert split_file_path("/depot/" + raw, "/depot") == ("default", file_id)
