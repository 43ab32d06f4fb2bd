"""Run Python code in a fresh interpreter where some top-level packages cannot be imported.

This stands in for an environment without an optional extra (pytest, boto3...)
without building a second virtualenv.
"""
from __future__ import annotations

import subprocess
import sys
from typing import Iterable, List

_PRELUDE = """\
import sys

class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in %r:
            raise ImportError("blocked " + name)

sys.meta_path.insert(0, _Block())
"""


def run_without(modules: Iterable[str], code: str, args: List[str] = (), **kwargs) -> subprocess.CompletedProcess:
    """Run ``code`` (with ``args`` in ``sys.argv[1:]``) where importing any of ``modules`` fails."""
    script = _PRELUDE % (frozenset(modules),) + code
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run([sys.executable, "-c", script, *args], **kwargs)
