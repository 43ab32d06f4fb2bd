"""A progress line on stderr: files done, bytes, rate and an estimate of the time left.

Only the standard library is used.  Redrawing is throttled, so reporting
every chunk costs next to nothing, and the line is drawn only on a terminal
unless forced (``--progress``): logs and pipes get the final summary alone.
"""
from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import Callable, Optional, TextIO

from depot.cli.formatting import human_duration, human_rate, human_size

__all__ = ["Progress", "progress_enabled", "is_terminal"]

#: Seconds between two redraws.
REDRAW_INTERVAL = 0.1


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


class Progress:
    """Counts files and bytes of a long operation and draws them on one line.

    ``total_files`` may be ``None`` when unknown.  :meth:`advance` is called
    as bytes move, :meth:`file_done` once per file; :meth:`close` erases the
    line so the summary printed after it starts on a clean line.  Safe to
    call from several threads.
    """

    def __init__(
        self,
        label: str,
        total_files: Optional[int] = None,
        *,
        enabled: bool = True,
        stream: Optional[TextIO] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total_files = total_files
        self.files = 0
        self.bytes = 0
        self.enabled = enabled
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._start = clock()
        self._last_draw = float("-inf")
        self._drawn = False
        self._lock = threading.Lock()

    @property
    def elapsed(self) -> float:
        return self._clock() - self._start

    def advance(self, nbytes: int) -> None:
        """Count ``nbytes`` more bytes moved."""
        with self._lock:
            self.bytes += nbytes
            self._maybe_draw()

    def file_done(self) -> None:
        """Count one more file handled (copied, skipped or failed)."""
        with self._lock:
            self.files += 1
            self._maybe_draw(force=self.files == self.total_files)

    def render(self, width: int = 80) -> str:
        """The progress line as it would be drawn, at most ``width`` characters."""
        elapsed = self.elapsed
        if self.total_files:
            count = "%d/%d files" % (self.files, self.total_files)
        else:
            count = "%d files" % self.files
        parts = [self.label, count, human_size(self.bytes), human_rate(self.bytes, elapsed)]
        if self.total_files and self.files:
            left = elapsed / self.files * (self.total_files - self.files)
            parts.append("eta " + human_duration(left))
        text = "  ".join(parts)
        if self.total_files:
            room = width - len(text) - 4
            if room >= 10:
                bar = min(room, 30)
                filled = int(bar * self.files / self.total_files)
                text = "[%s%s]  %s" % ("#" * filled, "." * (bar - filled), text)
        return text[:width]

    def _maybe_draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = self._clock()
        if not force and now - self._last_draw < REDRAW_INTERVAL:
            return
        self._last_draw = now
        width = max(20, shutil.get_terminal_size((80, 24)).columns - 1)
        self._stream.write("\r\x1b[K" + self.render(width))
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Erase the line (if one was drawn)."""
        with self._lock:
            if self._drawn:
                self._stream.write("\r\x1b[K")
                self._stream.flush()
                self._drawn = False
