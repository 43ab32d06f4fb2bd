"""The documentation says what the code does: CLI commands, exit statuses, settings examples.

The build with warnings as errors runs here as ``pip install -e '.[all]' sphinx``
would run it, without the testing extra (and in .ci/run).
"""
from __future__ import annotations

import re
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


def _defined_in_docs(page_name, class_name):
    """Run the python block of ``page_name`` that defines ``class_name``; return the class."""
    (block,) = [b for b in code_blocks(page(page_name), "python") if "class %s(" % class_name in b]
    namespace = {}
    exec(compile(block, "%s:%s" % (page_name, class_name), "exec"), namespace)
    return namespace[class_name]


def test_database_guide_filter_and_validation_examples_work():
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from sqlalchemy.orm import Session, declarative_base

    from depot.fields.sqlalchemy import UploadedFileField
    from depot.io.utils import FileIntent
    from depot.manager import DepotManager

    WithTextPreview = _defined_in_docs("database.rst", "WithTextPreview")
    PdfOnly = _defined_in_docs("database.rst", "PdfOnly")
    DepotManager._clear()
    try:
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
    finally:
        DepotManager._clear()


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
