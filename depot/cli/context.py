"""What every command receives: the storages, the output streams and error reporting."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator, List, Optional, TextIO, Tuple, cast

from depot.cli.config import Storages
from depot.cli.errors import ExitCode, FileError
from depot.cli.progress import Progress, progress_enabled
from depot.io.interfaces import FileStorage, StoredFile

__all__ = ["Context", "split_target", "describe", "missing_reason"]


#: What :func:`missing_reason` says of a malformed id and of a well-formed one not found.
INVALID_ID = "not a valid file id"
NO_SUCH_FILE = "no such file"


def split_target(arg: str, storage: Optional[str]) -> Tuple[Optional[str], str]:
    """``'STORAGE/ID'`` (the form of ``UploadedFile.path``) or a bare ``ID`` in ``storage``."""
    name, slash, file_id = arg.partition("/")
    if slash:
        return name, file_id
    return storage, arg


@dataclass
class Context:
    """One run of the command: its storages, streams and the per-file errors met so far."""

    storages: Storages
    progress_choice: Optional[bool] = None
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    errors: List[FileError] = field(default_factory=list)
    not_found: int = 0
    #: The progress line being drawn, erased before anything else is printed.
    active_progress: Optional[Progress] = None

    @property
    def binary_stdout(self) -> BinaryIO:
        return cast(BinaryIO, getattr(self.stdout, "buffer", self.stdout))

    def print(self, text: str = "", *, flush: bool = False) -> None:
        """One line on stdout, never glued to the progress line.

        Flushed when asked, and during a progress line (a script reading the
        ids of ``put`` gets each one as soon as its file is stored).
        """
        if self.active_progress is not None:
            self.active_progress.clear()
            flush = True
        _write_line(self.stdout, text)
        if flush:
            self.stdout.flush()

    def warn(self, text: str) -> None:
        if self.active_progress is not None:
            self.active_progress.clear()
        _write_line(self.stderr, "depot: %s" % text)
        self.stderr.flush()

    @contextmanager
    def progress(
        self, label: str, total_files: Optional[int] = None, total_bytes: Optional[int] = None
    ) -> Iterator[Progress]:
        """A progress line on stderr for the ``with`` block; erased at its end."""
        enabled = progress_enabled(self.progress_choice, self.stderr)
        progress = Progress(label, total_files, total_bytes, enabled=enabled, stream=self.stderr)
        self.active_progress = progress
        try:
            yield progress
        finally:
            self.active_progress = None
            progress.close()

    def storage(self, name: Optional[str]) -> Tuple[str, FileStorage]:
        """The real name and the storage for ``name`` (``None``: the default)."""
        storage = self.storages.get(name)
        return self.storages.name_of(name), storage

    def fail(self, storage: str, file_id: str, message: str, *, missing: bool = False) -> None:
        """Report one file that failed; the command goes on with the next one."""
        error = FileError(storage, file_id, message)
        self.errors.append(error)
        if missing:
            self.not_found += 1
        self.warn(str(error))

    def open_file(self, storage_name: str, storage: FileStorage, file_id: str) -> Optional[StoredFile]:
        """``storage.get(file_id)``, reporting a missing, malformed or unreadable file."""
        try:
            return storage.get(file_id)
        except Exception as exc:
            missing = missing_reason(storage, file_id, exc)
            self.fail(storage_name, file_id, missing or describe(exc), missing=missing is not None)
        return None

    def exit_code(self) -> ExitCode:
        """OK; NOT_FOUND when every failure was a missing file; FAILURES otherwise."""
        if not self.errors:
            return ExitCode.OK
        if self.not_found == len(self.errors):
            return ExitCode.NOT_FOUND
        return ExitCode.FAILURES


def missing_reason(storage: FileStorage, file_id: str, exc: BaseException) -> Optional[str]:
    """Why ``file_id`` cannot exist in ``storage`` (``exc`` came from using it), or ``None``.

    Storages raise ``ValueError`` for a malformed id but also for a corrupt
    file, and ``IOError`` for a missing file but also for a network failure:
    asking ``exists`` tells them apart, so that only what cannot succeed is
    called missing (exit status 3) and the rest stays worth a retry.
    """
    if not isinstance(exc, (ValueError, IOError)):
        return None
    try:
        present = storage.exists(file_id)
    except ValueError:
        return INVALID_ID
    except Exception:
        return None
    return None if present else NO_SUCH_FILE


def _write_line(stream: TextIO, text: str) -> None:
    # A stored filename may hold what the stream cannot encode (lone
    # surrogates from a non-UTF-8 name, under a strict UTF-8 stdout): escape
    # it rather than fail half-way through a listing.
    try:
        stream.write(text + "\n")
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "utf-8"
        stream.write(text.encode(encoding, "backslashreplace").decode(encoding) + "\n")


def describe(exc: BaseException) -> str:
    """``'ErrorType: message'``, enough to act on without a traceback."""
    text = str(exc)
    return "%s: %s" % (type(exc).__name__, text) if text else type(exc).__name__

