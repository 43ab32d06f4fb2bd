"""The documentation says what the code does: CLI commands, exit statuses, settings examples.

The build with warnings as errors runs here as ``pip install -e '.[all]' sphinx``
would run it, without the testing extra (and in .ci/run).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from depot.cli import _EPILOG, build_parser
from depot.cli.config import load_settings
from depot.cli.errors import ExitCode
from depot.io.registry import known_backends

from ._blocked import run_without

DOCS = Path(__file__).resolve().parent.parent / "docs"


def page(name):
    return (DOCS / name).read_text(encoding="utf-8")


def code_blocks(text, language):
    """The bodies of ``.. code-block:: <language>`` directives, dedented."""
    blocks = []
    pattern = re.compile(r"^( *)\.\. code-block:: %s\n\n((?:\1   .*\n|\n)+)" % re.escape(language), re.M)
    for match in pattern.finditer(text):
        blocks.append(textwrap.dedent(match.group(2)))
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


# -- every Python snippet of every page runs as written --------------------------------

#: Runs the snippets of one page in order, in one namespace, as a reader would
#: paste them into one session; reports the snippet that failed.
_RUNNER = """
import json, sys, traceback
namespace = {"__name__": "__docs__"}
for name, line, code in json.load(open(sys.argv[1])):
    try:
        exec(compile(code, "%s, snippet at line %d" % (name, line), "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
"""


def python_snippets(name):
    """``(line, code)`` of each python block of page ``name``."""
    text = page(name)
    return [(text.count("\n", 0, m.start()) + 1, textwrap.dedent(m.group(2))) for m in _BLOCK.finditer(text)]


_BLOCK = re.compile(r"^( *)\.\. code-block:: python\n\n((?:\1   .*\n|\n)+)", re.M)
PAGES = sorted(p.name for p in DOCS.glob("*.rst"))


def _sample_files(folder):
    """The files the snippets open, as a reader would have them at hand."""
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 30, 30)).save(folder / "logo.png", "PNG")
    Image.new("RGB", (800, 600), (30, 30, 200)).save(folder / "photo.jpg", "JPEG")
    (folder / "report.pdf").write_bytes(b"%PDF-1.4\n% a small report\n%%EOF\n")


def _services(request, text, monkeypatch_env):
    """Servers a page's snippets talk to, reached through the usual environment variables."""
    if '"depot.backend": "s3"' in text:
        moto = request.getfixturevalue("moto_server")
        monkeypatch_env.update(AWS_ENDPOINT_URL=moto.endpoint_url, AWS_ACCESS_KEY_ID="testing",
                               AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    if "create_datastore(" in text:
        monkeypatch_env["MONGODB_URL"] = request.getfixturevalue("mongo_database_uri")
    if "DEPOT_LINK_SECRET" in text:
        monkeypatch_env["DEPOT_LINK_SECRET"] = "a secret for the docs"


@pytest.mark.parametrize("name", PAGES)
def test_every_python_snippet_runs_as_written(request, tmp_path, name):
    snippets = python_snippets(name)
    if not snippets:
        assert ".. code-block:: python" not in page(name)
        return
    pytest.importorskip("PIL")
    _sample_files(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(DOCS.parent)}
    env.pop("AWS_ENDPOINT_URL", None)
    _services(request, page(name), env)
    conformance = [(line, code) for line, code in snippets if "(StorageConformance)" in code]
    plain = [(name, line, code) for line, code in snippets if (line, code) not in conformance]
    (tmp_path / "snippets.json").write_text(json.dumps(plain))
    result = subprocess.run([sys.executable, "-c", _RUNNER, str(tmp_path / "snippets.json")], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for line, code in conformance:  # a test module: pytest runs it
        module = tmp_path / ("test_snippet_%d.py" % line)
        module.write_text(code)
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(module)],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-3000:]


def test_the_conformance_suite_names_the_flag_to_set(tmp_path):
    """The userguide's conformance snippet without its flag fails with a message saying which one."""
    (line, code), = [(line, code) for line, code in python_snippets("userguide.rst") if "(StorageConformance)" in code]
    module = tmp_path / "test_without_flag.py"
    without_flag = re.sub(r"^( +)has_real_files = True.*$", r"\1pass", code, flags=re.M)
    assert without_flag != code
    module.write_text(without_flag)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(module),
                             "-k", "test_real_file"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(DOCS.parent)})
    assert result.returncode == 1
    assert "set has_real_files = True on TestMyStorage" in result.stdout


def test_database_snippets_filter_and_validate():
    """What the database page's filter and upload type do, checked beyond running."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from sqlalchemy.orm import Session, declarative_base

    from depot.fields.sqlalchemy import UploadedFileField
    from depot.io.utils import FileIntent
    from depot.manager import DepotManager

    WithTextPreview = _defined_in_docs("database.rst", "WithTextPreview")
    PdfOnly = _defined_in_docs("database.rst", "PdfOnly")
    DepotManager.configure("documents", {"depot.backend": "memory"})
    Base = declarative_base()

    class Doc(Base):
        __tablename__ = "docs"
        id = sqlalchemy.Column(sqlalchemy.Integer, primary_key=True)
        text = sqlalchemy.Column(UploadedFileField(upload_storage="documents", filters=[WithTextPreview()]))
        pdf = sqlalchemy.Column(UploadedFileField(upload_storage="documents", upload_type=PdfOnly))

    engine = sqlalchemy.create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        doc = Doc(text=b"0123456789" * 500)
        session.add(doc)
        session.commit()
        assert DepotManager.get_file(doc.text["preview_path"]).read() == b"0123456789" * 100
        assert len(doc.text.files) == 2
        with pytest.raises(ValueError, match="only PDF files are accepted"):
            doc.pdf = b"plain text"
        doc.pdf = FileIntent(b"%PDF-1.4", "a.pdf", "application/pdf")
        session.commit()
        assert (doc.pdf.filename, doc.pdf.file.read()) == ("a.pdf", b"%PDF-1.4")


#: Top-level modules of the testing extra that ``pip install -e '.[all]' sphinx`` does not install.
TESTING_ONLY = ("pytest", "_pytest", "tw2", "webtest")

_SPHINX_BUILD = "from sphinx.cmd.build import main\nsys.exit(main(sys.argv[1:]))\n"


def test_docs_build_with_warnings_as_errors_without_pytest(tmp_path):
    """Autodoc imports every documented module without the testing extra; nothing is dropped."""
    pytest.importorskip("sphinx")
    html = tmp_path / "html"
    result = run_without(
        TESTING_ONLY, _SPHINX_BUILD,
        ["-W", "--keep-going", "-q", "-b", "html", "-d", str(tmp_path / "doctrees"), str(DOCS), str(html)],
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    api = (html / "api.html").read_text(encoding="utf-8")
    for documented in ("depot.testing.StorageConformance", "depot.manager.DepotManager",
                       "depot.io.utils.FileIntent", "depot.fields.sqlalchemy.UploadedFileField"):
        assert 'id="%s"' % documented in api, documented

def _defined_in_docs(page_name, class_name):
    """Run the lines of the python block of ``page_name`` that define ``class_name``; return the class."""
    (block,) = [code for _, code in python_snippets(page_name) if "class %s(" % class_name in code]
    # Only the imports and the class itself: the rest of the block belongs to the page's session.
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("class %s(" % class_name))
    end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i][0].isspace()), len(lines))
    code = "\n".join([line for line in lines[:start] if line.startswith(("from ", "import "))] + lines[start:end])
    namespace = {}
    exec(compile(code, "%s:%s" % (page_name, class_name), "exec"), namespace)
    return namespace[class_name]


# -- every code block fits a 1280 px window -----------------------------------------------

#: Characters of code that fit beside the sidebar, without a scrollbar, at the page width set in
#: docs/conf.py (1160 px), measured in headless Chromium at 1280 px (no <pre> scrolls).
CODE_WIDTH = 79


def test_code_lines_fit_the_page():
    conf = (DOCS / "conf.py").read_text()
    assert '"page_width": "1160px"' in conf and "depot.css" in conf
    assert "overflow-x: auto" in (DOCS / "_static" / "depot.css").read_text()
    too_long = []
    pattern = re.compile(r"^( *)\.\. code-block:: \w+\n\n((?:\1   .*\n|\n)+)", re.M)
    for name in PAGES:
        text = page(name)
        for match in pattern.finditer(text):
            start = text.count("\n", 0, match.start()) + 3
            indent = len(match.group(1))  # a block nested in a list is as much narrower
            for offset, line in enumerate(textwrap.dedent(match.group(2)).splitlines()):
                if indent + len(line) > CODE_WIDTH:
                    too_long.append("%s:%d (%d characters)" % (name, start + offset, len(line)))
    assert not too_long, too_long


def test_a_second_middleware_raises_unless_it_replaces_the_first():
    """What serving.rst says of make_middleware: filedepot's error by default, replace=True swaps."""
    from depot.manager import DepotManager

    def application(environ, start_response):
        start_response("200 OK", [])
        return [b""]

    DepotManager.configure("files", {"depot.backend": "memory"})
    first = DepotManager.make_middleware(application)
    with pytest.raises(RuntimeError, match="There is already a WSGI middleware registered"):
        DepotManager.make_middleware(application, mountpoint="/other")
    assert DepotManager.get_middleware() is first
    second = DepotManager.make_middleware(application, mountpoint="/media", replace=True)
    assert DepotManager.get_middleware() is second
    assert DepotManager.url_for("files/x") == "/media/files/x"
