"""The progress line on stderr: bytes moved, rate and time left, drawn by tqdm.

tqdm (in the ``cli`` extra) draws, throttles and sizes the line; this module
only says what to count.  The line follows *bytes*, so it moves during one
large file: with a known total (``put`` of regular files) it is a bar with an
ETA; when the total is learnt file by file (``cp``, ``migrate``) it is
estimated from the files opened so far; from a pipe it is the bytes so far and
the rate.  It is drawn only on a terminal unless forced (``--progress``), and
without tqdm installed there is simply no line.
"""
from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import Any, Optional, TextIO

__all__ = ["Progress", "progress_enabled", "is_terminal", "plural"]

#: Seconds between two redraws: a few times a second.
REDRAW_INTERVAL = 0.2
#: The line never grows wider than this, whatever the terminal.
MAX_WIDTH = 100


def is_terminal(stream: object) -> bool:
    """Whether ``stream`` is an open terminal."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def progress_enabled(choice: Optional[bool], stream: TextIO) -> bool:
    """``--progress``/``--no-progress`` when given, otherwise whether ``stream`` is a terminal."""
    return choice if choice is not None else is_terminal(stream)


def plural(count: int, noun: str) -> str:
    """``'1 file'``, ``'2 files'``."""
    return "%d %s%s" % (count, noun, "" if count == 1 else "s")


def _make_bar(label: str, total: Optional[int], stream: TextIO) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # depot without the cli extra: no line rather than a failure
        return None
    width = min(MAX_WIDTH, shutil.get_terminal_size((80, 24)).columns - 1)
    return tqdm(
        total=total, desc=label, file=stream, unit="B", unit_scale=True, unit_divisor=1024,
        # A fixed width (the bar absorbs the changing numbers), redrawn a few
        # times a second whatever the rate of updates.
        ncols=width, dynamic_ncols=False, mininterval=REDRAW_INTERVAL, miniters=1,
        leave=False, smoothing=0.1,
    )


class Progress:
    """Counts the files and bytes of a long operation; draws them on stderr.

    ``total_bytes`` is the exact total when known.  Otherwise, with
    ``total_files``, each :meth:`start_file` with the file's length refines an
    estimate (lengths seen so far, and their average for the files still to
    come).  :meth:`advance` counts bytes as they move, :meth:`file_done` a file
    handled; :meth:`clear` erases the line before anything else is printed to
    the terminal; :meth:`close` erases it for good.  Safe from several threads.
    """

    def __init__(
        self,
        label: str,
        total_files: Optional[int] = None,
        total_bytes: Optional[int] = None,
        *,
        enabled: bool = True,
        stream: Optional[TextIO] = None,
    ) -> None:
        self.label = label
        self.total_files = total_files
        self.total_bytes = total_bytes
        self.files = 0
        self.bytes = 0
        self._started = 0
        self._seen_length = 0        # sum of the lengths of the files started
        self._lock = threading.RLock()
        self._start = time.monotonic()
        self._bar = _make_bar(self._description(), total_bytes, stream or sys.stderr) if enabled else None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._start

    @property
    def drawn(self) -> bool:
        """Whether a line is being drawn."""
        return self._bar is not None

    def _description(self) -> str:
        if self.total_files is None:
            return self.label
        return "%s %d/%s" % (self.label, self.files, plural(self.total_files, "file"))

    def start_file(self, length: Optional[int]) -> None:
        """A file of ``length`` bytes (``None``: unknown) starts moving; refines the estimated total."""
        with self._lock:
            self._started += 1
            if length is not None:
                self._seen_length += length
            self._update_estimate()

    def _update_estimate(self) -> None:
        if self.total_bytes is not None or not self.total_files or not self._started or self._bar is None:
            return
        average = self._seen_length / self._started
        estimate = int(self._seen_length + average * max(0, self.total_files - self._started))
        self._bar.total = max(estimate, self.bytes)
        self._bar.refresh()

    def advance(self, nbytes: int) -> None:
        """Count ``nbytes`` more bytes moved."""
        with self._lock:
            self.bytes += nbytes
            if self._bar is not None:
                self._bar.update(nbytes)

    def file_done(self, unmoved: int = 0) -> None:
        """Count one more file handled; ``unmoved``: bytes it was expected to move but did not (skipped)."""
        with self._lock:
            self.files += 1
            self._seen_length -= unmoved
            if self._bar is not None:
                self._bar.set_description_str(self._description(), refresh=False)
                self._update_estimate()
                self._bar.refresh()

    def clear(self) -> None:
        """Erase the line (it comes back with the next update); call before printing to the terminal."""
        with self._lock:
            if self._bar is not None:
                self._bar.clear()

    def close(self) -> None:
        """Erase the line and stop drawing."""
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
