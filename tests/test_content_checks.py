"""Names and types that used to be stored as given and then broke every GET."""
from __future__ import annotations

import json
import os
import sys

import pytest

from depot.cli import main

from .test_middleware_support import make_app

pytest_plugins = ["tests.test_middleware_support"]

LATIN1_NAME = os.fsdecode(b"caf\xe9 menu.txt")  # what os.listdir gives for a Latin-1 name


@pytest.mark.parametrize("name", [LATIN1_NAME, "lone\udc80\ud800.txt"])
def test_surrogate_filename_is_served(storage, name):
    file_id = storage.create(b"menu", name)
    resp = make_app().get("/depot/default/%s" % file_id)
    assert resp.status == "200 OK" and resp.body == b"menu"
    assert "\ufffd" in storage.get(file_id).filename
    assert "filename*=utf-8''" in resp.headers["Content-Disposition"]
    assert "%EF%BF%BD" in resp.headers["Content-Disposition"]  # U+FFFD, percent-encoded


@pytest.mark.skipif(sys.platform != "linux", reason="needs a file system that takes any bytes as a name")
def test_depot_put_of_a_non_utf8_path(tmp_path, capsys):
    path = os.path.join(os.fsencode(str(tmp_path)), b"caf\xe9.txt")
    with open(path, "wb") as f:
        f.write(b"menu")
    args = ["--local", "files=%s" % (tmp_path / "files")]
    assert main(args + ["put", os.fsdecode(path)]) == 0
    file_id = capsys.readouterr().out.strip()
    assert main(args + ["info", "--json", file_id]) == 0
    assert json.loads(capsys.readouterr().out)["filename"] == "caf\ufffd.txt"
    assert main(args + ["ls", "-l"]) == 0
    assert "caf\ufffd.txt" in capsys.readouterr().out
