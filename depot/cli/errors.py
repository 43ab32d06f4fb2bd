"""Exit codes of the ``depot`` command and the errors that carry them."""
from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["ExitCode", "CLIError", "FileError"]


class ExitCode(enum.IntEnum):
    """What the ``depot`` command's exit status means.

    Scripts can rely on these values; they are documented in the user guide.
    """

    #: Everything asked for was done.
    OK = 0
    #: The command ran to the end but some files failed; each one was reported
    #: on stderr with its storage and id (``migrate``, ``cp``, ``put``, ``rm``...).
    FAILURES = 1
    #: The command line, the settings file or a storage's configuration is
    #: wrong (unknown storage name, missing option, backend extra not installed).
    USAGE = 2
    #: A file id or storage named on the command line does not exist.
    NOT_FOUND = 3
    #: A storage could not be reached or failed in a way that stopped the command.
    STORAGE = 4
    #: Interrupted (Ctrl-C or SIGTERM); what was done so far is reported.
    INTERRUPTED = 130


class CLIError(Exception):
    """An error that ends the command with a message and an exit code."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class FileError:
    """One file that could not be processed, named by storage and id.

    ``storage`` is empty for a local file (``file_id`` is then its path).
    """

    storage: str
    file_id: str
    message: str

    def __str__(self) -> str:
        if not self.storage:
            return "%s: %s" % (self.file_id, self.message)
        return "storage %s, file %s: %s" % (self.storage, self.file_id, self.message)
