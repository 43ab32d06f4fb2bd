"""depot.validators: framework-free size and content-type checks, and the TW2 validator."""
from __future__ import annotations

import io
import subprocess
import sys

import pytest

from depot.io.utils import FileIntent
from depot.validators import (
    ContentTypeNotAllowed,
    ContentTypeValidator,
    FileTooLarge,
    FileValidationError,
    MaxSizeValidator,
    content_size,
)


class Field:
    """A FieldStorage-like upload."""

    def __init__(self, data: bytes, filename: str = "photo.png", type: str = "image/png"):
        self.file = io.BytesIO(data)
        self.filename = filename
        self.type = type


class Pipe(io.RawIOBase):
    def readable(self):
        return True

    def seekable(self):
        return False


def test_content_size_of_every_input_kind():
    f = io.BytesIO(b"0123456789")
    f.seek(4)
    assert content_size(f) == 10 and f.tell() == 4
    assert content_size(b"abc") == 3
    assert content_size(Field(b"12345")) == 5
    assert content_size(FileIntent(b"ab", "a", "text/plain")) == 2
    assert content_size(Pipe()) is None


def test_max_size():
    validator = MaxSizeValidator(1024)
    upload = Field(b"x" * 1024)
    assert validator(upload) is upload
    with pytest.raises(FileTooLarge, match=r"File is too large: 2.0 KiB, the maximum is 1.0 KiB") as info:
        validator(b"x" * 2048)
    assert (info.value.size, info.value.max_size) == (2048, 1024)
    assert isinstance(info.value, ValueError)


def test_max_size_unknown_sizes():
    with pytest.raises(FileValidationError, match="cannot be determined"):
        MaxSizeValidator(10)(Pipe())
    pipe = Pipe()
    assert MaxSizeValidator(10, allow_unknown=True)(pipe) is pipe
    with pytest.raises(ValueError):
        MaxSizeValidator(-1)


def test_content_types():
    images = ContentTypeValidator(["image/*", "application/PDF"])
    assert images(Field(b"", "a.png", "image/png"))
    assert images(b"%PDF", filename="doc.pdf")
    assert images(FileIntent(b"", "x", "Application/Pdf; charset=binary"))
    with pytest.raises(ContentTypeNotAllowed, match=r"Files of type text/html are not accepted; allowed: image/\*, application/pdf"):
        images(Field(b"<html>", "a.html", "text/html"))
    with pytest.raises(ContentTypeNotAllowed, match="application/octet-stream"):
        images(b"unknown bytes")
    with pytest.raises(ValueError):
        ContentTypeValidator([])


def test_importable_without_tw2():
    code = (
        "import sys; sys.modules['tw2'] = None; sys.modules['tw2.core'] = None\n"
        "import depot.validators as v\n"
        "assert not hasattr(v, 'TW2FileIntentValidator')\n"
        "assert 'TW2FileIntentValidator' not in v.__all__\n"
        "from depot.validators import *\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tw2_validator():
    twc = pytest.importorskip("tw2.core", reason="tw2.core not installed: pip install -e '.[testing]'")
    from depot.validators import TW2FileIntentValidator

    intent = TW2FileIntentValidator().to_python(Field(b"data", "a.png", "image/png"))
    assert isinstance(intent, FileIntent)
    assert (intent._filename, intent._content_type) == ("a.png", "image/png")
    assert TW2FileIntentValidator().to_python(None) is None
    with pytest.raises(twc.ValidationError, match="Select a file"):
        TW2FileIntentValidator(required=True).to_python(b"")
    with pytest.raises(twc.ValidationError, match="File name must have '.jpg' extension"):
        TW2FileIntentValidator(extension=".jpg").to_python(Field(b"data", "a.png"))
    assert TW2FileIntentValidator(extension=".png").to_python(Field(b"d", "A.PNG"))._filename == "A.PNG"


def test_sprox_defaults_for_the_column_type():
    pytest.importorskip("sprox", reason="sprox not installed: pip install -e '.[testing]'")
    from sprox.sa.validatorselector import SAValidatorSelector
    from sprox.sa.widgetselector import SAWidgetSelector
    from tw2.forms import FileField

    from depot.fields.sqlalchemy import UploadedFileField
    from depot.validators import TW2FileIntentValidator

    assert SAWidgetSelector.default_widgets[UploadedFileField] is FileField
    assert SAValidatorSelector.default_validators[UploadedFileField] is TW2FileIntentValidator
