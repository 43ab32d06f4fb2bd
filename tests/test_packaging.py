"""The README's two commands, .ci/run and the packaging metadata stay in step; the tree is lint- and type-clean."""
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def readme_commands():
    text = (ROOT / "README.rst").read_text()
    return re.findall(r"^    (python3 -m venv .*)$", text, flags=re.M)[:2]


def test_readme_starts_with_two_commands():
    text = (ROOT / "README.rst").read_text()
    head = text[: text.index("----")]
    commands = readme_commands()
    assert len(commands) == 2
    assert all(cmd in head for cmd in commands)
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert readme_commands()[1] in ci.splitlines()
    assert "DEPOT_TEST_REQUIRE_SERVERS=1" in ci


def package_data():
    try:
        import tomllib
    except ImportError:  # Python 3.10: tomli comes with the cli extra
        import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["depot"]


def test_py_typed_is_shipped():
    assert (ROOT / "depot" / "py.typed").exists()
    assert "py.typed" in package_data()


def test_browser_module_is_shipped():
    # depot-upload.js is package data: a wheel without it breaks every direct-upload page.
    assert "static/*.js" in package_data()
    assert (ROOT / "depot" / "static" / "depot-upload.js").is_file()


def test_version():
    import depot

    assert re.match(r"\d+\.\d+", depot.__version__)


def test_lint_clean():
    """ruff with the rules of pyproject.toml: unused names, shadowed loop variables, lost tracebacks..."""
    ruff = pathlib.Path(sys.executable).with_name("ruff")
    command = [str(ruff)] if ruff.exists() else [sys.executable, "-m", "ruff"]
    result = subprocess.run([*command, "check", "--no-cache", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_types_check_clean():
    """mypy over depot/ with [tool.mypy] of pyproject.toml: the package ships py.typed, so its hints must hold."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "depot"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert result.returncode == 0, "mypy found errors in depot/:\n" + result.stdout + result.stderr


def test_typecheck_runs_in_tox():
    tox = (ROOT / "tox.ini").read_text()
    assert "[testenv:typecheck]" in tox and "python -m mypy depot" in tox


def test_mypy_excuses_only_untyped_third_party_modules():
    # A blanket ignore of depot's own modules would make test_types_check_clean prove nothing.
    try:
        import tomllib
    except ImportError:  # Python 3.10: tomli comes with the cli extra
        import tomli as tomllib
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert mypy["files"] == ["depot"]
    assert not {"ignore_errors", "follow_imports", "exclude", "disable_error_code"} & set(mypy)
    for override in mypy["overrides"]:
        assert set(override) == {"module", "ignore_missing_imports"}
        assert [m for m in override["module"] if m.split(".")[0] == "depot"] == []
