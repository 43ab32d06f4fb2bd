"""Request path to stored file (depot.serving.paths)."""
import pytest

from depot.serving.paths import is_under_mount, mount_prefix, split_file_path

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
        "/depot/default/.hidden",
        "/depot/default/" + ID + "%2F..",
        "/depot/default/a\x00b",
        "/depot/default/\u00e9",
        "/depot/default/" + "a" * 129,
        "/depot/" + "n" * 256 + "/" + ID,
    ],
)
def test_odd_paths_name_no_file(path):
    assert split_file_path(path, "/depot") is None


def test_file_paths():
    assert split_file_path("/depot/default/" + ID, "/depot") == ("default", ID)
    assert split_file_path("/hello/lfs/default/" + ID, "/hello/lfs") == ("default", ID)
    assert split_file_path("/depot/default/5f0c1a2b3c4d5e6f7a8b9c0d", "/depot") == ("default", "5f0c1a2b3c4d5e6f7a8b9c0d")
