"""Validators for uploads: maximum size and allowed content types, plus the ToscaWidgets 2 one.

:class:`MaxSizeValidator` and :class:`ContentTypeValidator` need no web
framework: call them with an upload (bytes, a file object, a form field
such as cgi/WebOb FieldStorage or Starlette's UploadFile, a
:class:`~depot.io.utils.FileIntent`); they return it unchanged or raise a
:class:`FileValidationError` whose message can be shown to the user.

:class:`TW2FileIntentValidator` exists when ``tw2.core`` can be imported,
as in filedepot.
"""
from __future__ import annotations

import io
import os
from typing import Any, Iterable, Optional, Tuple

from depot.io.interfaces import FileStorage
from depot.io.utils import FileIntent, _is_fieldstorage_like

__all__ = [
    "FileValidationError",
    "FileTooLarge",
    "ContentTypeNotAllowed",
    "MaxSizeValidator",
    "ContentTypeValidator",
    "content_size",
]


class FileValidationError(ValueError):
    """An upload was refused; the message says why in terms a user understands."""


class FileTooLarge(FileValidationError):
    """The upload is larger than allowed."""

    def __init__(self, size: int, max_size: int) -> None:
        super().__init__(
            "File is too large: %s, the maximum is %s" % (_human_size(size), _human_size(max_size))
        )
        self.size = size
        self.max_size = max_size


class ContentTypeNotAllowed(FileValidationError):
    """The upload's content type is not one of the allowed ones."""

    def __init__(self, content_type: str, allowed: Tuple[str, ...]) -> None:
        super().__init__(
            "Files of type %s are not accepted; allowed: %s" % (content_type, ", ".join(allowed))
        )
        self.content_type = content_type
        self.allowed = allowed


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return ("%d %s" % (value, unit)) if unit == "bytes" else ("%.1f %s" % (value, unit))
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def content_size(value: Any) -> Optional[int]:
    """The size in bytes of an upload, or ``None`` when it cannot be known without consuming it.

    A seekable file is measured, whole, by seeking to its end and back, so
    its position is unchanged.
    """
    content = FileStorage.fileinfo(value)[0]
    if isinstance(content, (bytes, bytearray, memoryview)):
        return len(content)
    for attribute in ("size", "content_length"):  # UploadFile, StoredFile
        size = getattr(value, attribute, None)
        if isinstance(size, int) and not isinstance(size, bool):
            return size
    try:
        if hasattr(content, "seekable") and not content.seekable():
            return None
        position = content.tell()
        end = content.seek(0, os.SEEK_END)
        content.seek(position)
        return end
    except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
        return None


class MaxSizeValidator:
    """Refuse uploads larger than ``max_size`` bytes with :class:`FileTooLarge`.

    An upload whose size cannot be known without reading it (a pipe) is
    refused too, unless ``allow_unknown`` is true: the storage must then
    enforce the limit while it copies.
    """

    def __init__(self, max_size: int, allow_unknown: bool = False) -> None:
        if max_size < 0:
            raise ValueError("max_size must not be negative")
        self.max_size = max_size
        self.allow_unknown = allow_unknown

    def __call__(self, value: Any) -> Any:
        size = content_size(value)
        if size is None:
            if not self.allow_unknown:
                raise FileValidationError("The size of the file cannot be determined")
        elif size > self.max_size:
            raise FileTooLarge(size, self.max_size)
        return value


class ContentTypeValidator:
    """Accept only uploads whose content type is in ``allowed``; ``'image/*'`` matches a family.

    The type is the one depot would store: the declared one (form field,
    FileIntent, explicit ``content_type``) or else the guess from the
    filename.  It is what the browser or the client claims, not a check of
    the bytes; use :func:`depot.imaging.open_image` to verify images.
    """

    def __init__(self, allowed: Iterable[str]) -> None:
        self.allowed = tuple(t.strip().lower() for t in allowed)
        if not self.allowed:
            raise ValueError("at least one content type must be allowed")

    def matches(self, content_type: str) -> bool:
        content_type = content_type.split(";", 1)[0].strip().lower()
        family = content_type.split("/", 1)[0] + "/*"
        return content_type in self.allowed or family in self.allowed or "*/*" in self.allowed

    def __call__(self, value: Any, filename: Optional[str] = None, content_type: Optional[str] = None) -> Any:
        resolved = FileStorage.fileinfo(value, filename, content_type)[2]
        if not self.matches(resolved):
            raise ContentTypeNotAllowed(resolved, self.allowed)
        return value


try:
    import tw2.core as _tw2
except ImportError:  # ToscaWidgets is optional, as in filedepot
    _tw2 = None

if _tw2 is not None:

    class TW2FileIntentValidator(_tw2.Validator):
        """Validate a file field of a ToscaWidgets 2 form into a :class:`FileIntent`.

        ``required`` refuses an empty field ("Select a file"); ``extension``
        (such as ``'.png'``) refuses other file names.
        """

        extension: Optional[str] = None
        msgs = {
            "required": ("file_required", "Select a file"),
            "badext": "File name must have '$extension' extension",
        }

        def _convert_to_python(self, value: Any, state: Any = None) -> Any:
            if not _is_fieldstorage_like(value):
                if self.required:
                    raise _tw2.ValidationError("required", self)
                return None
            if self.extension is not None and not value.filename.lower().endswith(self.extension.lower()):
                raise _tw2.ValidationError("badext", self)
            return FileIntent(*FileStorage.fileinfo(value))

    __all__.append("TW2FileIntentValidator")
