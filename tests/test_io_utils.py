import array
import io
import os
import tempfile
import types
from unittest import mock

import pytest

from depot.io import utils
from depot.io.interfaces import FileStorage
from depot.io.memory import MemoryFileStorage
from depot.io.utils import FileIntent, _FileInfo, _is_fieldstorage_like, file_from_content
from depot.testing import FieldStorageLike, NonSeekableStream


def test_constants():
    assert utils.INMEMORY_FILESIZE == 1024 * 1024
    assert utils.DEFAULT_CONTENT_TYPE == "application/octet-stream"
    assert utils.DEFAULT_NAME == "unnamed"


def test_timestamp_format():
    value = utils.timestamp()
    assert len(value) == 19
    assert utils.parse_timestamp(value).strftime("%Y-%m-%d %H:%M:%S") == value


@pytest.mark.parametrize("bad", [None, "", "2001-01-01", "2001-01-01T00:00:01", "2001-13-01 00:00:01", 5,
                                 "2001-01-01 00:00:01+00:00"])
def test_parse_timestamp_rejects(bad):
    assert utils.parse_timestamp(bad) is None


def test_fileid():
    assert FileStorage.fileid("abc") == "abc"
    assert FileStorage.fileid(type("F", (), {"file_id": "xyz"})()) == "xyz"


class TestFileInfo:
    def test_bytes(self):
        assert FileStorage.fileinfo(b"x") == (b"x", "unnamed", "application/octet-stream")

    def test_bytes_with_name(self):
        assert FileStorage.fileinfo(b"x", "a.png") == (b"x", "a.png", "image/png")

    def test_unknown_extension(self):
        assert FileStorage.fileinfo(b"x", "a.unknownext")[2] == "application/octet-stream"

    def test_fieldstorage(self):
        fs = FieldStorageLike(b"data", "a.txt", "text/x-custom")
        content, name, ctype = FileStorage.fileinfo(fs)
        assert content is fs.file
        assert (name, ctype) == ("a.txt", "text/x-custom")

    def test_content_type_attribute(self):
        obj = io.BytesIO(b"x")
        obj.content_type = "image/gif"
        obj.filename = "a.png"
        assert FileStorage.fileinfo(obj)[1:] == ("a.png", "image/gif")

    def test_explicit_arguments_win(self):
        fs = FieldStorageLike(b"data", "a.txt", "text/x-custom")
        assert FileStorage.fileinfo(fs, "b.csv", "text/y")[1:] == ("b.csv", "text/y")

    def test_named_file(self):
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            assert FileStorage.fileinfo(f)[1:] == (os.path.basename(f.name), "application/json")

    def test_file_intent_is_taken_as_given(self):
        intent = FileIntent(b"x", "name.png", "text/plain")
        assert FileStorage.fileinfo(intent, "other.txt", "image/jpeg") == (b"x", "name.png", "text/plain")
        assert intent._filename == "name.png" and intent._content_type == "text/plain"

    def test_existing_used_without_filename(self):
        existing = type("E", (), {"filename": "old.txt", "content_type": "text/old"})()
        assert FileStorage.fileinfo(b"x", None, "ignored/type", existing) == (b"x", "old.txt", "text/old")
        assert FileStorage.fileinfo(b"x", None, None, lambda: existing)[1:] == ("old.txt", "text/old")

    def test_existing_ignored_with_filename(self):
        existing = type("E", (), {"filename": "old.txt", "content_type": "text/old"})()
        assert FileStorage.fileinfo(b"x", "new.csv", None, existing)[1:] == ("new.csv", "text/csv")

    def test_fileinfo_class(self):
        assert _FileInfo(b"x", "a.txt").get_info() == (b"x", "a.txt", "text/plain")


def test_is_fieldstorage_like():
    assert _is_fieldstorage_like(FieldStorageLike(b"x", "a"))
    assert not _is_fieldstorage_like(io.BytesIO())
    fs = FieldStorageLike(b"x", "a")
    fs.file = None
    assert not _is_fieldstorage_like(fs)


class TestFileFromContent:
    def test_bytes(self):
        must_close, f = file_from_content(b"hello")
        assert must_close is True
        assert f.read() == b"hello"
        f.close()

    def test_file_is_rewound(self):
        src = io.BytesIO(b"hello")
        src.read()
        must_close, f = file_from_content(src)
        assert (must_close, f.read()) == (False, b"hello")

    def test_fieldstorage(self):
        fs = FieldStorageLike(b"data", "a.txt")
        assert file_from_content(fs) == (False, fs.file)

    def test_file_intent_bytes(self):
        must_close, f = file_from_content(FileIntent(b"abc", "a", "b"))
        assert (must_close, f.read()) == (True, b"abc")

    def test_file_intent_file(self):
        src = io.BytesIO(b"abc")
        assert file_from_content(FileIntent(src, "a", "b")) == (False, src)

    def test_stored_file_is_spooled(self):
        storage = MemoryFileStorage()
        stored = storage.get(storage.create(b"stored"))
        must_close, f = file_from_content(stored)
        assert (must_close, f.read()) == (True, b"stored")

    def test_non_seekable_is_spooled(self):
        must_close, f = file_from_content(NonSeekableStream(b"x" * 3000000))
        assert must_close is True
        assert f.read() == b"x" * 3000000

    def test_str_is_refused(self):
        with pytest.raises(TypeError, match="Only bytes can be stored"):
            file_from_content("text")


class TestCopyStream:
    def test_user_space_copy(self):
        dst = io.BytesIO()
        assert utils.copy_stream(NonSeekableStream(b"abc" * 100000), dst, chunk_size=1000) == 300000
        assert dst.getvalue() == b"abc" * 100000

    def test_read_only_objects(self):
        class ReadOnly:
            def __init__(self):
                self.src = io.BytesIO(b"q" * 5000)

            def read(self, n=-1):
                return self.src.read(n)

        dst = io.BytesIO()
        assert utils.copy_stream(ReadOnly(), dst, chunk_size=1000) == 5000

    def test_text_is_refused(self):
        with pytest.raises(TypeError):
            utils.copy_stream(io.StringIO("text"), io.BytesIO())

    def test_kernel_copy_falls_back(self, tmp_path):
        src_path = tmp_path / "src"
        src_path.write_bytes(b"k" * 100000)
        with open(src_path, "rb") as src, open(tmp_path / "dst", "wb") as dst:
            with mock.patch("os.copy_file_range", side_effect=OSError("unsupported"), create=True):
                assert utils.copy_stream(src, dst) == 100000
        assert (tmp_path / "dst").read_bytes() == b"k" * 100000

    def test_spooled_file_is_not_forced_to_disk(self):
        spooled = tempfile.SpooledTemporaryFile(1024 * 1024)
        spooled.write(b"s" * 1000)
        spooled.seek(0)
        dst = io.BytesIO()
        utils.copy_stream(spooled, dst)
        assert dst.getvalue() == b"s" * 1000
        assert not spooled._rolled


def test_check_content():
    utils.check_content(b"x")
    utils.check_content(io.BytesIO())
    with pytest.raises(TypeError, match="Only bytes can be stored, not unicode"):
        utils.check_content("x")
    with pytest.raises(TypeError, match="content must be bytes or a file object"):
        utils.check_content(42)


def test_new_uuid_is_random_and_valid():
    ids = {utils.new_uuid() for _ in range(100)}
    assert len(ids) == 100
    for i in ids:
        utils.check_uuid(i)


# -- content and metadata checks ----------------------------------------------


def test_as_byte_content_flattens_without_copying_contiguous_buffers():
    data = array.array("i", [1, 2, 3, 4])
    flat = utils.as_byte_content(memoryview(data))
    assert (flat.format, flat.nbytes, len(flat)) == ("B", 16, 16)
    data[0] = 7  # a view, not a copy: large buffers are not duplicated
    assert flat.tobytes() == data.tobytes()
    strided = memoryview(b"abcdef")[::2]
    assert utils.as_byte_content(strided) == b"ace"
    for unchanged in (b"x", bytearray(b"x"), "text", io.BytesIO(b"x"), 12):
        assert utils.as_byte_content(unchanged) is unchanged


def test_file_from_content_takes_any_buffer():
    must_close, f = file_from_content(memoryview(b"0123456789")[::2])
    assert must_close and f.read() == b"02468"
    must_close, f = file_from_content(array.array("h", [1, 2]))
    assert must_close and f.read() == array.array("h", [1, 2]).tobytes()


@pytest.mark.parametrize(
    "name, clean",
    [
        ("plain.txt", "plain.txt"),
        ("été.txt", "été.txt"),
        (os.fsdecode(b"caf\xe9.txt"), "caf\ufffd.txt"),
        (os.fsdecode("日本.txt".encode("utf-8")), "日本.txt"),
        ("a\ud800b", "a\ufffdb"),
        ("\ud83d\ude00", "\U0001f600"),
        ("\udce9\ud800", "\ufffd\ufffd"),
    ],
)
def test_clean_filename(name, clean):
    assert utils.clean_filename(name) == clean
    clean.encode("utf-8")


def test_check_content_type():
    for good in ("text/plain", "text/plain; charset=utf-8", "whatever", "text/é"):
        assert utils.check_content_type(good) == good
    for bad in ("text/html\t", "a\nb", "a\rb", "\x00", "a\x1fb", "a\x7f", "a\udc80"):
        with pytest.raises(ValueError, match="Invalid content type"):
            utils.check_content_type(bad)


def test_fileinfo_refuses_non_strings_and_keeps_existing_facts():
    with pytest.raises(TypeError, match="filename must be a string, not int"):
        FileStorage.fileinfo(b"x", 123)
    with pytest.raises(TypeError, match="content_type must be a string, not bytes"):
        FileStorage.fileinfo(b"x", "a.txt", b"text/plain")
    with pytest.raises(TypeError, match="filename"):
        FileStorage.fileinfo(FileIntent(b"x", b"a.txt", "text/plain"))
    # Facts read from a stored file are taken as they are (a foreign file may have None).
    existing = types.SimpleNamespace(filename=None, content_type=None)
    assert FileStorage.fileinfo(b"x", existing=existing)[1:] == (None, None)
