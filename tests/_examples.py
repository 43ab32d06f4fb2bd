"""Start an example application as a user would (``python examples/X.py --port 0``) and find its URL."""
from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Mapping, Optional

ROOT = Path(__file__).resolve().parent.parent
ANNOUNCE = re.compile(r"depot demo running at (http://127\.0\.0\.1:\d+)/  \(data in (.*); Ctrl-C to stop\)")


@contextlib.contextmanager
def running_example(script: str, workdir: Path, *args: str, env: Optional[Mapping[str, str]] = None) -> Iterator[str]:
    """Run ``examples/<script>`` on a free port with its data in ``workdir/data``; yields its base URL."""
    data = workdir / "data"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / script), "--port", "0", "--data", str(data), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=workdir, env=env,
    )
    try:
        line = proc.stdout.readline().decode()  # type: ignore[union-attr]
        match = ANNOUNCE.match(line)
        assert match, (line, proc.stderr.read().decode() if proc.poll() is not None else "")  # type: ignore[union-attr]
        assert match.group(2) == str(data)
        yield match.group(1)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
