"""The README's two commands, .ci/run and the packaging metadata stay in step; the tree is lint-clean."""
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


def test_py_typed_is_shipped():
    assert (ROOT / "depot" / "py.typed").exists()
    assert 'depot = ["py.typed"]' in (ROOT / "pyproject.toml").read_text()


def test_version():
    import depot

    assert re.match(r"\d+\.\d+", depot.__version__)


def test_lint_clean():
    """ruff with the rules of pyproject.toml: unused names, shadowed loop variables, lost tracebacks..."""
    ruff = pathlib.Path(sys.executable).with_name("ruff")
    command = [str(ruff)] if ruff.exists() else [sys.executable, "-m", "ruff"]
    result = subprocess.run([*command, "check", "--no-cache", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
