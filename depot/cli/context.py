"""What every command receives: the storages, the output streams and error reporting."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import BinaryIO, List, Optional, TextIO, Tuple

from depot.cli.config import Storages
from depot.cli.errors import ExitCode, FileError
from depot.cli.progress import Progress, progress_enabled
from depot.io.interfaces import FileStorage, StoredFile

__all__ = ["Context", "split_target", "describe"]


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

    @property
    def binary_stdout(self) -> BinaryIO:
        return getattr(self.stdout, "buffer", self.stdout)

    def print(self, text: str = "") -> None:
        self.stdout.write(text + "\n")

    def warn(self, text: str) -> None:
        self.stderr.write("depot: %s\n" % text)
        self.stderr.flush()

    def progress(self, label: str, total_files: Optional[int] = None) -> Progress:
        enabled = progress_enabled(self.progress_choice, self.stderr)
        return Progress(label, total_files, enabled=enabled, stream=self.stderr)

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
        except ValueError as exc:
            self.fail(storage_name, file_id, "not a valid file id (%s)" % exc, missing=True)
        except IOError:
            self.fail(storage_name, file_id, "no such file", missing=True)
        except Exception as exc:
            self.fail(storage_name, file_id, describe(exc))
        return None

    def exit_code(self) -> ExitCode:
        """OK; NOT_FOUND when every failure was a missing file; FAILURES otherwise."""
        if not self.errors:
            return ExitCode.OK
        if self.not_found == len(self.errors):
            return ExitCode.NOT_FOUND
        return ExitCode.FAILURES


def describe(exc: BaseException) -> str:
    """``'ErrorType: message'``, enough to act on without a traceback."""
    text = str(exc)
    return "%s: %s" % (type(exc).__name__, text) if text else type(exc).__name__

