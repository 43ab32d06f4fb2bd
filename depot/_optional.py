"""Import optional libraries with an error that says which extra installs them."""
from __future__ import annotations

import importlib
from types import ModuleType

DISTRIBUTION = "depot"


def install_hint(extra: str) -> str:
    return "pip install '%s[%s]'" % (DISTRIBUTION, extra)


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or raise :class:`ImportError` naming the extra that provides it.

    ``feature`` says what needs it (``'depot.io.boto3.S3Storage'``), so the
    message tells the user both what failed and how to fix it.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            "%s needs the %r package, which is not installed: %s (%s)"
            % (feature, module.split(".")[0], install_hint(extra), exc)
        ) from exc
