"""Safe image opening, WithThumbnailFilter and UploadedImageWithThumb."""
from __future__ import annotations

import io
import struct
import zlib
from unittest import mock

import pytest
from PIL import Image, JpegImagePlugin

from depot.fields.filters.thumbnails import WithThumbnailFilter
from depot.fields.interfaces import FileFilter
from depot.fields.specialized.image import UploadedImageWithThumb
from depot.fields.upload import UploadedFile
from depot.imaging import ImageRejected, ImageTooLarge, NotAnImage, make_thumbnail, open_image
from depot.io.utils import FileIntent
from depot.manager import DepotManager

from ._hostile_images import REJECTED_CASES, REJECTED_IDS


pytestmark = pytest.mark.usefixtures("memory_depots")


def encode(image, fmt="PNG", **options):
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def picture(size=(300, 200), mode="RGB"):
    """An image with a left/right and top/bottom difference, so orientation is visible."""
    image = Image.new(mode, size, (255, 0, 0, 128) if mode == "RGBA" else (255, 0, 0))
    image.paste((0, 0, 255, 255) if mode == "RGBA" else (0, 0, 255), (0, 0, size[0] // 2, size[1] // 4))
    return image


def png_bomb(width=100000, height=100000):
    """A valid PNG header declaring a huge canvas: a few bytes that would decode to 40 GB."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def stored_image(storage_path_or_id):
    return Image.open(DepotManager.get().get(storage_path_or_id))


# -- open_image -----------------------------------------------------------------------


def test_decompression_bomb_refused_before_decoding():
    Image.init()  # loading plugins builds images of its own
    with mock.patch.object(Image.Image, "load", side_effect=AssertionError("decoded")):
        with pytest.raises(ImageTooLarge, match="Image refused.*(10000000000|100000x100000)"):
            open_image(io.BytesIO(png_bomb()))
    with pytest.raises(ImageTooLarge, match="more than the limit of 1000"):
        open_image(io.BytesIO(encode(picture((40, 30)))), max_pixels=1000)


@pytest.mark.parametrize(
    "content",
    [b"plain text, not a picture", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", b""],
    ids=["text", "eps", "empty"],
)
def test_only_accepted_image_formats(content):
    with pytest.raises(NotAnImage, match="Not an image"):
        open_image(io.BytesIO(content))


def test_formats_can_be_restricted():
    with pytest.raises(NotAnImage):
        open_image(io.BytesIO(encode(picture(), "GIF")), formats=["PNG", "JPEG"])
    assert open_image(io.BytesIO(encode(picture(), "GIF"))).format == "GIF"


def test_errors_are_value_errors():
    assert issubclass(ImageRejected, ValueError)


def test_jpeg_thumbnail_decodes_at_reduced_scale():
    image = open_image(io.BytesIO(encode(picture((1600, 1200)), "JPEG")))
    with mock.patch.object(JpegImagePlugin.JpegImageFile, "draft", autospec=True,
                           side_effect=JpegImagePlugin.JpegImageFile.draft) as draft:
        data = make_thumbnail(image, (128, 128), "PNG")
    assert draft.called
    assert image.size[0] <= 128  # the decoded bitmap, never the full 1600x1200
    assert Image.open(io.BytesIO(data)).size == (128, 96)


@pytest.mark.parametrize("mode, expected", [("RGB", "RGB"), ("RGBA", "RGBA"), ("L", "RGB")])
def test_png_thumbnail_keeps_alpha_only_when_the_source_has_it(mode, expected):
    source = picture().convert(mode)
    data = make_thumbnail(open_image(io.BytesIO(encode(source))), (64, 64), "PNG")
    thumb = Image.open(io.BytesIO(data))
    assert (thumb.format, thumb.mode, thumb.size) == ("PNG", expected, (64, 43))
    rgb, original = thumb.convert("RGB"), source.convert("RGB")
    assert rgb.getpixel((0, 0)) == original.getpixel((0, 0))  # the corners survived
    assert rgb.getpixel((63, 42)) == original.getpixel((299, 199))


# -- WithThumbnailFilter ------------------------------------------------------------------


def thumbnailed(content, *filters):
    value = UploadedFile(content)
    value._apply_filters(filters)
    return value


def test_thumbnail_filter_png_keys_and_size():
    DepotManager.make_middleware(None)
    value = thumbnailed(encode(picture()), WithThumbnailFilter((20, 10)))
    thumb = DepotManager.get().get(value.thumb_20x10_id)
    assert (thumb.filename, thumb.content_type) == ("thumb_20x10.png", "image/png")
    assert Image.open(thumb).size == (15, 10)
    assert value.thumb_20x10_path == "default/" + value.thumb_20x10_id
    assert value.thumb_20x10_url == "/depot/" + value.thumb_20x10_path
    assert dict.__getitem__(value, "thumb_20x10_url") == value.thumb_20x10_url  # stored at save time
    assert value.files == [value.path, value.thumb_20x10_path]


def test_thumbnail_url_without_middleware_is_resolved_later():
    value = thumbnailed(encode(picture()), WithThumbnailFilter((20, 10)))
    assert dict.__getitem__(value, "thumb_20x10_url") is None
    DepotManager.make_middleware(None, mountpoint="/media")
    assert value.thumb_20x10_url == "/media/" + value.thumb_20x10_path


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_thumbnail_any_format_from_transparent_source(fmt):
    value = thumbnailed(encode(picture(mode="RGBA")), WithThumbnailFilter((32, 32), fmt))
    thumb = stored_image(value.thumb_32x32_id)
    assert thumb.format == fmt and thumb.size == (32, 21)
    if fmt in ("JPEG", "BMP"):
        assert thumb.mode == "RGB"
        # The transparent red was composited on white: lighter than pure red.
        assert thumb.convert("RGB").getpixel((31, 20))[1] > 0


def test_several_thumbnail_filters():
    value = thumbnailed(encode(picture()), WithThumbnailFilter((20, 10)), WithThumbnailFilter((64, 64), "JPEG"))
    assert stored_image(value.thumb_20x10_id).size == (15, 10)
    assert stored_image(value.thumb_64x64_id).size == (64, 43)
    assert len(value.files) == 3


@pytest.mark.parametrize("wrap", [bytes, io.BytesIO, lambda b: FileIntent(b, "p.png", "image/png")],
                         ids=["bytes", "file", "intent-bytes"])
def test_thumbnail_filter_inputs(wrap):
    value = thumbnailed(wrap(encode(picture())), WithThumbnailFilter((20, 10)))
    assert stored_image(value.thumb_20x10_id).size == (15, 10)


def test_thumbnail_filter_refuses_non_images():
    with pytest.raises(NotAnImage):
        thumbnailed(b"not an image", WithThumbnailFilter())


# -- UploadedImageWithThumb ------------------------------------------------------------------


def test_small_image_as_bytes_is_stored_unchanged():
    data = encode(picture())
    value = UploadedImageWithThumb(data)
    assert value.file.read() == data
    assert Image.open(value.thumb_file).size == (128, 85)
    assert (value.filename, value.content_type) == ("unnamed", "application/octet-stream")
    assert value.files == [value.path, value.thumb_path]
    assert value._thumb_public_url is None
    DepotManager.make_middleware(None)
    assert value.thumb_url == "/depot/" + value.thumb_path
    thumb = DepotManager.get().get(value.thumb_id)
    assert (thumb.filename, thumb.content_type) == ("thumb.png", "image/png")


def test_maximum_size_keeps_format_and_names():
    value = UploadedImageWithThumb(FileIntent(encode(picture((1280, 1280))), "big.png", "image/png"))
    image = Image.open(value.file)
    assert image.format == "PNG" and image.size == (1024, 1024)
    assert (value.filename, value.content_type) == ("big.png", "image/png")


def test_custom_limits_and_jpeg_thumbnail_of_transparent_image():
    class Small(UploadedImageWithThumb):
        max_size = 100
        thumbnail_size = (10, 10)
        thumbnail_format = "JPEG"

    value = Small(io.BytesIO(encode(picture(mode="RGBA"))))
    assert Image.open(value.file).size == (100, 67)
    thumb = Image.open(value.thumb_file)
    assert (thumb.format, thumb.size, thumb.mode) == ("JPEG", (10, 7), "RGB")
    assert DepotManager.get().get(value.thumb_id).filename == "thumb.jpeg"


def _jpeg_rotated(size, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(picture(size), "JPEG", exif=exif.tobytes())


def test_exif_orientation_honoured_in_thumbnail():
    value = UploadedImageWithThumb(_jpeg_rotated((300, 200), 6))  # camera held upright
    assert Image.open(value.thumb_file).size == (85, 128)
    assert Image.open(value.file).size == (300, 200)  # small: stored as uploaded, tag kept


def test_exif_orientation_applied_when_reduced():
    class Small(UploadedImageWithThumb):
        max_size = 100

    value = Small(_jpeg_rotated((300, 200), 6))
    stored = Image.open(value.file)
    assert stored.size == (67, 100)
    # ROTATE_270 moves the blue top-left block to the top-right corner.
    assert stored.convert("RGB").getpixel((60, 5))[2] > 200


def test_image_type_refuses_bombs_and_non_images():
    with pytest.raises(ImageTooLarge):
        UploadedImageWithThumb(png_bomb())
    with pytest.raises(NotAnImage):
        UploadedImageWithThumb(b"not an image")
    assert DepotManager.get().files == {}


# -- every file, thumbnails included, goes through store_content -----------------------------


class ThumbnailsElsewhere(UploadedFile):
    """Keeps thumbnails in a storage of their own and renames every file."""

    def store_content(self, content, filename=None, content_type=None):
        if filename and filename.startswith("thumb"):
            file_id = DepotManager.get("thumbs").create(content, "small-" + filename, content_type)
            path = "thumbs/" + file_id
            self["files"].append(path)
            return path, file_id
        return super().store_content(content, "main-" + (filename or "upload"), content_type)


class ImageThumbnailsElsewhere(ThumbnailsElsewhere, UploadedImageWithThumb):
    pass


@pytest.fixture
def thumbs_depot():
    DepotManager.configure("thumbs", {"depot.backend": "memory"})


def test_image_with_thumb_stores_both_files_through_store_content(thumbs_depot):
    value = ImageThumbnailsElsewhere(FileIntent(encode(picture()), "photo.png", "image/png"))
    assert value.filename == "main-photo.png" == value.file.filename
    assert value.thumb_path == "thumbs/" + value.thumb_id
    thumb = DepotManager.get("thumbs").get(value.thumb_id)
    assert (thumb.filename, thumb.content_type) == ("small-thumb.png", "image/png")
    assert Image.open(thumb).size == (128, 85)
    assert value.files == [value.path, value.thumb_path]
    assert DepotManager.get().list() == [value.file_id]


def test_thumbnail_filter_stores_through_store_content(thumbs_depot):
    value = ThumbnailsElsewhere(encode(picture()))
    value._apply_filters([WithThumbnailFilter((20, 10))])
    assert value.thumb_20x10_path == "thumbs/" + value.thumb_20x10_id
    thumb = DepotManager.get("thumbs").get(value.thumb_20x10_id)
    assert thumb.filename == "small-thumb_20x10.png"
    assert Image.open(thumb).size == (15, 10)
    assert value.file.filename == "main-upload"
    assert value.files == [value.path, value.thumb_20x10_path]


def test_rejection_deletes_only_what_the_base_store_content_created(thumbs_depot):
    """A file an override stored by other means may be an existing, shared one: it is kept.

    The main file went through ``super().store_content``: it is deleted.  The
    thumbnail the override created itself is its own to delete (docs/database.rst).
    """
    class Refuse(FileFilter):
        def on_save(self, uploaded_file):
            raise ValueError("refused")

    value = ThumbnailsElsewhere(encode(picture()))
    thumbs = DepotManager.get("thumbs")
    with pytest.raises(ValueError, match="refused"):
        value._apply_filters([WithThumbnailFilter((20, 10)), Refuse()])
    assert len(thumbs.list()) == 1 and DepotManager.get().list() == []
    assert Image.open(thumbs.get(thumbs.list()[0])).size == (15, 10)


@pytest.mark.parametrize("content, expected", REJECTED_CASES, ids=REJECTED_IDS)
@pytest.mark.parametrize("attach", [
    lambda content: UploadedImageWithThumb(content),
    lambda content: thumbnailed(content, WithThumbnailFilter((20, 10))),
], ids=["UploadedImageWithThumb", "WithThumbnailFilter"])
def test_rejected_images_raise_value_errors_and_store_nothing(attach, content, expected):
    with pytest.raises(expected) as raised:
        attach(content)
    assert isinstance(raised.value, ImageRejected) and isinstance(raised.value, ValueError)
    assert DepotManager.get().list() == []


def test_rejections_are_also_what_filedepot_raised():
    """ValueError for new code; Pillow's OSError / DecompressionBombError for code written for 0.12."""
    with pytest.raises(OSError):
        UploadedImageWithThumb(b"not an image")
    with pytest.raises(Image.UnidentifiedImageError):
        thumbnailed(b"", WithThumbnailFilter())
    with pytest.raises(OSError):
        UploadedImageWithThumb(REJECTED_CASES[REJECTED_IDS.index("truncated-jpeg")][0])
    with pytest.raises(Image.DecompressionBombError):
        UploadedImageWithThumb(png_bomb())
    assert DepotManager.get().list() == []
