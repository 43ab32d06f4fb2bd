"""Opening untrusted images safely, and making thumbnails from them (Pillow).

Uploaded images come from users: a few kilobytes of PNG can declare a
100000x100000 canvas that takes tens of gigabytes to decode (a
decompression bomb), and Pillow also opens formats that are not pictures
one wants from the web (EPS runs Ghostscript).  :func:`open_image` reads
only the headers, refuses such files with :class:`ImageRejected` before any
pixel is decoded (every picture of the file counts: icons, pages, frames,
tiles, see :mod:`depot._image_headers`), and accepts only the raster formats
of :data:`DEFAULT_FORMATS`.  A file that turns out damaged while decoded is
refused the same way, through :func:`decoding`.
"""
from __future__ import annotations

import io
import struct
import warnings
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, Iterable, Iterator, Optional, Tuple

from depot._image_headers import sizes_before_open, sub_image_sizes
from depot._optional import require

if TYPE_CHECKING:  # the checker sees Pillow's own types; at run time a missing Pillow names the extra
    from PIL import Image
else:
    Image = require("PIL.Image", "image", "depot image support")

__all__ = [
    "ImageRejected",
    "NotAnImage",
    "ImageTooLarge",
    "DamagedImage",
    "DEFAULT_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "open_image",
    "decoding",
    "exif_orientation",
    "apply_orientation",
    "make_thumbnail",
    "save_image",
]

#: The raster formats accepted from uploads (Pillow format names).  MPO is
#: what Pillow calls the JPEG files many cameras write.
DEFAULT_FORMATS: Tuple[str, ...] = ("JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF", "ICO")

#: Pillow's own warning threshold: about 89 megapixels, 358 MB once decoded as RGBA.
DEFAULT_MAX_PIXELS = 89478485

# Formats that cannot store an alpha channel: transparent sources are
# flattened on white for them instead of failing as filedepot did for JPEG.
_NO_ALPHA = frozenset(("JPEG", "JPG", "MPO", "BMP", "PPM", "PCX", "PDF", "EPS", "XBM", "MSP", "SPIDER"))

_ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpositions that make the picture upright.
_ORIENTATIONS = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),
}
_SWAPS_AXES = frozenset((5, 6, 7, 8))


class ImageRejected(ValueError):
    """The upload is not an image this application accepts: bad input, a ``ValueError``."""


# Each rejection is also what filedepot let through from Pillow, so that code
# catching those (``OSError``, ``DecompressionBombError``) still does.


class NotAnImage(ImageRejected, Image.UnidentifiedImageError):
    """The content is not an image in one of the accepted formats (also an ``OSError``, as in Pillow)."""


class ImageTooLarge(ImageRejected, Image.DecompressionBombError):
    """The image declares more pixels than allowed (a decompression bomb, or just too big)."""


class DamagedImage(NotAnImage):
    """The image is in an accepted format but cannot be decoded (truncated, corrupt)."""


# What Pillow raises on a damaged file, while opening or decoding it.
_DECODE_ERRORS = (OSError, SyntaxError, EOFError, ValueError, struct.error, IndexError)


@contextmanager
def decoding() -> Iterator[None]:
    """Report Pillow's failures on an untrusted image as :class:`ImageRejected`.

    Wrap the steps that read or decode the upload (never the encoding of a
    result, whose errors are the application's): a truncated or corrupt
    file must be refused as bad input (a ``ValueError``), not fail as an
    ``OSError`` from deep inside Pillow.
    """
    with warnings.catch_warnings():
        # Our own limit decides; Pillow's warning would only be noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            yield
        except ImageRejected:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageTooLarge("Image refused: %s" % exc) from None
        except Image.UnidentifiedImageError:
            raise NotAnImage("Not an image in an accepted format") from None
        except _DECODE_ERRORS as exc:
            raise DamagedImage("The image cannot be decoded: %s" % (exc or type(exc).__name__)) from exc


def open_image(
    fileobj: IO[bytes], max_pixels: Optional[int] = None, formats: Optional[Iterable[str]] = None
) -> Any:
    """Open ``fileobj`` lazily as a Pillow image after checking its declared size and format.

    Only the header is read: the pixels are decoded later, by whatever uses
    the image, and only once the size is known to be acceptable.
    ``max_pixels`` defaults to :data:`DEFAULT_MAX_PIXELS`, ``formats`` to
    :data:`DEFAULT_FORMATS`.
    """
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    allowed = _registered(tuple(formats) if formats is not None else DEFAULT_FORMATS)
    with decoding():
        # Pillow decodes an icon, and allocates a WebP canvas, while opening the file.
        for size in sizes_before_open(fileobj, allowed):
            _check_size(size, limit)
        try:
            image = Image.open(fileobj, formats=allowed)
        except Image.UnidentifiedImageError:
            raise NotAnImage(
                "Not an image in an accepted format (%s)" % ", ".join(allowed)
            ) from None
        try:
            _check_size(image.size, limit)
            for size in sub_image_sizes(image, fileobj):
                _check_size(size, limit)
        except BaseException:
            image.close()
            raise
    return image


def _check_size(size: Tuple[int, int], limit: int) -> None:
    width, height = size
    if width * height > limit:
        raise ImageTooLarge(
            "Image refused: it declares %dx%d pixels (%d), more than the limit of %d"
            % (width, height, width * height, limit)
        )


def _registered(formats: Tuple[str, ...]) -> Tuple[str, ...]:
    # Pillow only knows the formats of plugins it has loaded; init() loads them all, once.
    if any(fmt.upper() not in Image.OPEN for fmt in formats):
        Image.init()
    return tuple(fmt.upper() for fmt in formats if fmt.upper() in Image.OPEN)


def exif_orientation(image: Any) -> int:
    """The EXIF orientation (1 to 8) of ``image``; 1 (upright) when absent or unreadable."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # corrupt EXIF must not make an otherwise fine picture fail
        return 1
    return value if value in _ORIENTATIONS else 1


def apply_orientation(image: Any, orientation: int) -> Any:
    """``image`` turned upright according to an EXIF ``orientation``."""
    methods = _ORIENTATIONS.get(orientation, ())
    for method in methods:
        image = image.transpose(method)
    if methods:
        # Upright now: the copied tag must not turn it a second time (a
        # thumbnail made from it, a viewer of a file saved with its EXIF).
        exif = image.getexif()
        exif.pop(_ORIENTATION_TAG, None)
        if "exif" in image.info:
            image.info["exif"] = exif.tobytes()
    return image


def _flatten(image: Any) -> Any:
    """An RGB copy of ``image`` with any transparency composited on white."""
    if image.mode in ("RGB", "L"):
        return image
    if image.mode not in ("RGBA", "LA") and not (image.mode == "P" and "transparency" in image.info):
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def save_image(image: Any, fmt: str, **options: Any) -> bytes:
    """Encode ``image`` as ``fmt``, flattening transparency when the format has no alpha."""
    out = io.BytesIO()
    if fmt.upper() in _NO_ALPHA:
        _flatten(image).save(out, fmt, **options)
        return out.getvalue()
    try:
        image.save(out, fmt, **options)
    except (OSError, ValueError, KeyError):
        # A format without alpha support that we did not know about.
        out = io.BytesIO()
        _flatten(image).save(out, fmt, **options)
    return out.getvalue()


#: zlib level of PNG thumbnails: level 6 (Pillow's default) spends three
#: times as long for files a few percent smaller, on images this small.
THUMBNAIL_PNG_COMPRESS_LEVEL = 3


def _has_alpha(image: Any) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def make_thumbnail(image: Any, size: Tuple[int, int], fmt: str, resample: Any = None) -> bytes:
    """Encode a thumbnail of ``image`` fitting ``size``, upright, as ``fmt``.

    ``image`` may be freshly opened: Pillow then decodes a JPEG directly at
    a reduced scale (``draft``), which is several times faster than decoding
    it fully.  It is modified in place.  The thumbnail keeps an alpha
    channel only when the source has one (an opaque photo gains nothing from
    a fourth channel but size and time).
    """
    orientation = exif_orientation(image)
    width, height = size
    if orientation in _SWAPS_AXES:
        width, height = height, width
    if resample is None:
        resample = Image.Resampling.LANCZOS
    alpha = _has_alpha(image)
    with decoding():
        image.thumbnail((width, height), resample)
        image.load()  # thumbnail() leaves an image already small enough undecoded
        image = apply_orientation(image, orientation)
        if fmt.upper() not in _NO_ALPHA:
            image = image.convert("RGBA" if alpha else "RGB")
    options = {}
    if fmt.upper() == "PNG":
        options["compress_level"] = THUMBNAIL_PNG_COMPRESS_LEVEL
    return save_image(image, fmt, **options)
