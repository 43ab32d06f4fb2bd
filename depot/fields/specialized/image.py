""":class:`UploadedImageWithThumb`: an image kept within a maximum size, with a thumbnail."""
from __future__ import annotations

import io
from typing import Any, Optional, Tuple

from depot.imaging import (
    Image,
    apply_orientation,
    decoding,
    exif_orientation,
    make_thumbnail,
    open_image,
    save_image,
)
from depot.io.interfaces import FileStorage
from depot.io.utils import file_from_content

from ..upload import UploadedFile

__all__ = ["UploadedImageWithThumb"]


class UploadedImageWithThumb(UploadedFile):
    """An uploaded image, reduced to fit ``max_size`` and stored with a thumbnail.

    Override the class attributes in a subclass to change the limits:
    ``max_size`` (an image whose larger side reaches it is reduced to fit a
    ``max_size`` square and re-encoded in its own format, upright),
    ``thumbnail_size`` and ``thumbnail_format``; ``max_pixels`` and
    ``accepted_formats`` are the :func:`depot.imaging.open_image` limits.
    Smaller images are stored byte for byte as uploaded.

    Extra keys: ``thumb_id``, ``thumb_path`` and ``_thumb_public_url``.
    """

    max_size: int = 1024
    thumbnail_format: str = "PNG"
    thumbnail_size: Tuple[int, int] = (128, 128)
    max_pixels: Optional[int] = None
    accepted_formats: Optional[Tuple[str, ...]] = None

    def process_content(
        self, content: Any, filename: Optional[str] = None, content_type: Optional[str] = None
    ) -> None:
        content, filename, content_type = FileStorage.fileinfo(content, filename, content_type)
        must_close, fileobj = file_from_content(content)
        try:
            image = open_image(fileobj, self.max_pixels, self.accepted_formats)
            if max(image.size) >= self.max_size:
                fmt = image.format
                image = self._reduced(image)
                stored: Any = io.BytesIO(save_image(image, fmt, **_save_options(image)))
            else:
                stored = fileobj  # already fine: kept exactly as uploaded
            # Decoded before anything is stored: a damaged image is refused
            # (ImageRejected) while the storage is still untouched.
            thumbnail = make_thumbnail(image, self.thumbnail_size, self.thumbnail_format)
            stored.seek(0)
            super().process_content(stored, filename, content_type)
        finally:
            if must_close:
                fileobj.close()
        thumb_path, thumb_id = self.store_content(thumbnail, "thumb.%s" % self.thumbnail_format.lower(), None)
        self["thumb_id"] = thumb_id
        self["thumb_path"] = thumb_path
        self["_thumb_public_url"] = self._stored_facts(thumb_path, thumb_id).public_url

    def _reduced(self, image: Any) -> Any:
        """``image`` upright and fitting a ``max_size`` square (decoded)."""
        orientation = exif_orientation(image)
        width, height = image.size
        scale = self.max_size / max(width, height)
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
        # A JPEG at least twice the target decodes directly at 1/2, 1/4 or 1/8
        # of its size (never below the target); the resize then finishes.
        with decoding():
            image.draft("RGB" if image.mode == "RGB" else None, target)
            image.thumbnail((self.max_size, self.max_size), Image.Resampling.BILINEAR)
            image.load()
            return apply_orientation(image, orientation)

    @property
    def thumb_file(self) -> Any:
        """A new :class:`~depot.io.interfaces.StoredFile` of the thumbnail at every access."""
        return self.depot.get(dict.__getitem__(self, "thumb_id"))

    @property
    def thumb_url(self) -> str:
        """The thumbnail's public URL, or the URL the middleware serves it at."""
        return self._url_of("_thumb_public_url", "thumb_path")


def _save_options(image: Any) -> dict:
    # Keep the colour profile: without it a wide-gamut photo looks washed out.
    icc = image.info.get("icc_profile")
    return {"icc_profile": icc} if icc else {}
