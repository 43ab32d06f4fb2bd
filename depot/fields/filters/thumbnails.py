""":class:`WithThumbnailFilter`: store a thumbnail next to every uploaded image."""
from __future__ import annotations

from typing import Any, Tuple

from depot.imaging import Image, make_thumbnail, open_image
from depot.io.utils import file_from_content
from depot.manager import DepotManager

from ..interfaces import FileFilter

__all__ = ["WithThumbnailFilter"]


class WithThumbnailFilter(FileFilter):
    """Store a thumbnail of the uploaded image fitting ``size``, encoded as ``format``.

    Keys added (``<W>x<H>`` being the requested size): ``thumb_<W>x<H>_id``,
    ``thumb_<W>x<H>_path`` and ``thumb_<W>x<H>_url``.  The URL is the
    middleware's URL of the thumbnail, recorded at save time when a
    middleware is registered, as filedepot did, but never signed: a signed
    link would expire while the row lives on.  Reading the key
    (``uploaded.thumb_<W>x<H>_url`` or ``uploaded['thumb_<W>x<H>_url']``)
    signs it afresh when the middleware has a secret, and asks the
    middleware registered by then when none was at save time (``None``).

    Any format Pillow can write works; transparent images are flattened on
    white for formats without alpha (JPEG, BMP...).  The upload must be an
    image (:func:`depot.imaging.open_image` rules: accepted formats only,
    decompression bombs refused).
    """

    def __init__(self, size: Tuple[int, int] = (128, 128), format: str = "PNG") -> None:
        self.thumbnail_size = size
        self.thumbnail_format = format

    def on_save(self, uploaded_file: Any) -> None:
        must_close, content = file_from_content(uploaded_file.original_content)
        try:
            data = make_thumbnail(
                open_image(content), self.thumbnail_size, self.thumbnail_format, Image.Resampling.BILINEAR
            )
        finally:
            if must_close:
                content.close()
        width, height = self.thumbnail_size
        key = "thumb_%sx%s" % (width, height)
        path, file_id = uploaded_file.store_content(data, "%s.%s" % (key, self.thumbnail_format.lower()))
        uploaded_file[key + "_id"] = file_id
        uploaded_file[key + "_path"] = path
        uploaded_file[key + "_url"] = DepotManager.links().to_store(path)
