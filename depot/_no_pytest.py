"""A stand-in for pytest, so that :mod:`depot.testing` imports where pytest is not installed.

The class bodies of the conformance suite use ``pytest.fixture`` and
``pytest.mark.parametrize`` as decorators; without pytest they leave the
functions as they are, so the module imports (for autodoc, or to reach its
helper classes).  Anything needed to *run* a test, such as ``pytest.raises``,
raises :class:`ImportError` saying what to install.
"""
from __future__ import annotations

from typing import Any, Callable

__all__ = ["pytest"]

_MISSING = "running the depot.testing suite needs pytest: pip install pytest"


def _keep(*args: Any, **kwargs: Any) -> Any:
    """A decorator usable bare (``@fixture``) or called (``@fixture(scope=...)``): returns the function."""
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda function: function


class _Mark:
    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__"):  # introspection (copy, pickle, inspect) must see a plain object
            raise AttributeError(name)
        return lambda *args, **kwargs: (lambda function: function)


class _NoPytest:
    fixture = staticmethod(_keep)
    mark = _Mark()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise ImportError("pytest.%s is not available: %s" % (name, _MISSING))


pytest = _NoPytest()
