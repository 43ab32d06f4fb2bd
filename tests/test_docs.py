"""The documentation says what the code does: CLI commands, exit statuses, settings examples.

(The build itself, with warnings as errors, runs in .ci/run.)
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from depot.cli import _EPILOG, build_parser
from depot.cli.config import load_settings
from depot.cli.errors import ExitCode
from depot.io.registry import known_backends

DOCS = Path(__file__).resolve().parent.parent / "docs"


def page(name):
    return (DOCS / name).read_text(encoding="utf-8")


def code_blocks(text, language):
    """The bodies of ``.. code-block:: <language>`` directives, dedented."""
    blocks = []
    pattern = re.compile(r"^( *)\.\. code-block:: %s\n\n((?:\1   .*\n|\n)+)" % re.escape(language), re.M)
    for match in pattern.finditer(text):
        indent = len(match.group(1)) + 3
        blocks.append("\n".join(line[indent:] for line in match.group(2).splitlines()))
    return blocks


def test_every_command_is_documented():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    cli = page("cli.rst")
    for name in commands:
        assert "``depot %s " % name in cli, name


def test_exit_status_table_matches_the_code():
    table = re.search(r"Exit status\n-+\n\n(=+ +=+\n.*?\n=+ +=+\n)(.*?)\n=+ +=+", page("cli.rst"), re.S).group(2)
    documented = {int(code) for code in re.findall(r"^(\d+) ", table, re.M)}
    assert documented == {int(code) for code in ExitCode}
    for code in ExitCode:
        assert "%d " % code in _EPILOG


@pytest.mark.parametrize("language, suffix", [("toml", ".toml"), ("ini", ".ini")])
def test_settings_examples_load(tmp_path, language, suffix):
    blocks = [b for b in code_blocks(page("cli.rst"), language) if "[depot.storages." in b]
    assert blocks
    for text in blocks:
        path = tmp_path / ("depot" + suffix)
        path.write_text(text.replace("...\n", ""))
        settings = load_settings(str(path))
        assert settings.storages["files"]["depot.backend"] == "local"
        assert settings.default == "files"


def test_backend_table_lists_every_short_name():
    guide = page("userguide.rst")
    for name, info in known_backends().items():
        if name == "boto3":  # an alias of s3
            continue
        assert "``%s``" % name in guide and info.path.rsplit(".", 1)[0] in guide


def test_every_page_is_in_the_toctree():
    index = page("index.rst")
    for rst in DOCS.glob("*.rst"):
        if rst.stem != "index":
            assert "   %s\n" % rst.stem in index, rst.name


def test_examples_page_names_existing_scripts():
    text = page("examples.rst")
    named = set(re.findall(r"``examples/(\w+\.py)``", text))
    assert {"demo_app.py", "flask_app.py", "starlette_app.py", "library.py"} <= named
    for script in named:
        assert (DOCS.parent / "examples" / script).exists(), script
