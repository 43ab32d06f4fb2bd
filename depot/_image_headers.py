"""The sizes an image file declares for all its pictures, read from headers, before any pixel is decoded.

Pillow reports the size of one picture per file: the first frame or page,
or for an icon the size its directory claims.  Other pictures of the same
file can be far larger: an ICO directory entry says 16x16 but embeds a
12000x12000 PNG (which Pillow decodes while opening the icon), a GIF frame
extends the canvas beyond the screen size, a TIFF page, an MPO frame or a
TIFF tile declares its own size.  A browser or a later job may decode any
of them, so all of them are held to the size limit:
:func:`sizes_before_open` for the formats Pillow decodes or allocates while
opening (ICO, WebP), :func:`sub_image_sizes` for the other pictures of an
opened image.

Only headers are read: a few bytes per picture, whatever the pixel counts.
The position of the file and the current frame of the image are left as
they were.
"""
from __future__ import annotations

import struct
from typing import IO, Any, Iterable, Iterator, List, Optional, Tuple

__all__ = ["sizes_before_open", "sub_image_sizes"]

Size = Tuple[int, int]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_ICO_MAGIC = b"\0\0\1\0"


def sizes_before_open(fileobj: IO[bytes], formats: Iterable[str]) -> List[Size]:
    """The sizes to check before Pillow even opens ``fileobj``.

    Pillow's ICO plugin decodes the largest icon while opening the file, and
    its WebP plugin creates the decoder, which allocates the canvas: their
    sizes must be known first.  Other files give ``[]``.
    """
    position = fileobj.tell()
    try:
        head = fileobj.read(30)
        fileobj.seek(position)
        if "ICO" in formats and head[:4] == _ICO_MAGIC:
            return list(_ico(fileobj))
        if "WEBP" in formats:
            canvas = _webp_canvas(head)
            return [canvas] if canvas else []
        return []
    finally:
        fileobj.seek(position)


def sub_image_sizes(image: Any, fileobj: IO[bytes]) -> List[Size]:
    """The sizes of every picture of an opened image besides the one ``image.size`` reports."""
    reader = _READERS.get(image.format)
    if reader is None:
        return []
    position = fileobj.tell()
    try:
        return list(reader(image, fileobj))
    finally:
        fileobj.seek(position)


def _ico(fp: IO[bytes]) -> Iterator[Size]:
    # ICONDIR (6 bytes), then 16-byte entries ending with the data's size and offset.
    count = struct.unpack("<H", _read(fp, 6)[4:6])[0]
    entries = _read(fp, 16 * count)
    for index in range(count):
        offset = struct.unpack("<I", entries[16 * index + 12:16 * index + 16])[0]
        fp.seek(offset)
        head = fp.read(26)
        if head[:8] == _PNG_MAGIC:
            yield struct.unpack(">II", _exact(head, 24)[16:24])
        else:
            # A DIB: its height counts the XOR image and the AND mask, which Pillow halves.
            header_size = struct.unpack("<I", _exact(head, 4)[:4])[0]
            if header_size == 12:  # OS/2 BITMAPCOREHEADER
                width, height = struct.unpack("<HH", _exact(head, 8)[4:8])
            else:
                width, height = struct.unpack("<ii", _exact(head, 12)[4:12])
            yield abs(width), abs(height) // 2


def _gif(image: Any, fp: IO[bytes]) -> Iterator[Size]:
    # Pillow grows the canvas to hold every frame's rectangle, frame after
    # frame: the last canvas is the widest extent by the tallest one.
    fp.seek(6)
    width, height, flags = struct.unpack("<HHB", _read(fp, 7)[:5])
    _skip_colour_table(fp, flags)
    while True:
        block = fp.read(1)
        if block == b",":  # image descriptor
            left, top, frame_width, frame_height, flags = struct.unpack("<HHHHB", _read(fp, 9))
            width, height = max(width, left + frame_width), max(height, top + frame_height)
            _skip_colour_table(fp, flags)
            _read(fp, 1)  # LZW minimum code size
            _skip_sub_blocks(fp)
        elif block == b"!":  # extension: a label, then data sub-blocks
            _read(fp, 1)
            _skip_sub_blocks(fp)
        else:  # trailer, or the end of what any decoder reads
            break
    yield width, height


def _skip_colour_table(fp: IO[bytes], flags: int) -> None:
    if flags & 0x80:
        fp.seek(3 << ((flags & 7) + 1), 1)


def _skip_sub_blocks(fp: IO[bytes]) -> None:
    while True:
        length = fp.read(1)
        if not length or length == b"\0":
            return
        fp.seek(length[0], 1)


def _frames(image: Any, fp: IO[bytes]) -> Iterator[Size]:
    # TIFF pages and MPO frames: Pillow's seek() reads a page's header (its
    # IFD, a JPEG's markers) and decodes nothing.
    current = image.tell()
    try:
        for frame in range(image.n_frames):
            image.seek(frame)
            yield image.size
            tags = getattr(image, "tag_v2", None)
            if tags is not None and 322 in tags and 323 in tags:  # TileWidth, TileLength
                yield int(tags[322]), int(tags[323])
    finally:
        image.seek(current)


_READERS = {"GIF": _gif, "TIFF": _frames, "MPO": _frames}


def _webp_canvas(head: bytes) -> Optional[Size]:
    """The canvas a WebP file declares in its first chunk; ``None`` for other files."""
    if len(head) < 30 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    chunk = head[12:16]
    if chunk == b"VP8X":  # 24-bit canvas width and height, minus one
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    if chunk == b"VP8L":  # 14 bits each after the signature byte, minus one
        bits = int.from_bytes(head[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 ":  # 14 bits each after the frame tag and start code
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


def _read(fp: IO[bytes], size: int) -> bytes:
    return _exact(fp.read(size), size)


def _exact(data: bytes, size: int) -> bytes:
    if len(data) < size:
        raise EOFError("truncated image header")
    return data
