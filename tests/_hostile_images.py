"""Uploads an image field must refuse, shared by the image, SQLAlchemy and Ming tests."""
from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image

from depot.imaging import DamagedImage, ImageTooLarge, NotAnImage


def encode(image, fmt="PNG", **options):
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width=100000, height=100000):
    """A valid PNG header declaring a huge canvas: a few bytes that would decode to 40 GB."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + png_chunk(b"IEND", b""))


def noisy(size=(300, 200)):
    """An image whose pixels do not compress: truncating its file cuts pixel data."""
    rng = random.Random("%dx%d" % size)
    return Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))


def truncated(data):
    return data[: len(data) // 2]


#: (id, content, the ImageRejected subclass expected)
REJECTED = [
    ("text", b"plain text, not a picture", NotAnImage),
    ("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="9"/></svg>',
     NotAnImage),
    ("bomb", png_bomb(), ImageTooLarge),
    ("truncated-jpeg", truncated(encode(noisy(), "JPEG")), DamagedImage),
    ("truncated-png", truncated(encode(noisy(), "PNG")), DamagedImage),
    ("empty", b"", NotAnImage),
]
REJECTED_IDS = [case[0] for case in REJECTED]
REJECTED_CASES = [case[1:] for case in REJECTED]


# -- files whose sub-images declare more than their header shows --------------------------------

#: Over the default limit (89 Mpx) and under Pillow's own error threshold (179 Mpx): only depot's
#: check stands between these files and a 144 MB (or larger) decode.
HUGE = (12000, 12000)


def png_zeros(width, height):
    """A grayscale PNG of ``width`` x ``height`` black pixels, every row present, compressed tiny."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    rows = b"\0" * ((width + 1) * 64)
    idat = bytearray()
    for start in range(0, height, 64):
        idat += compressor.compress(rows if start + 64 <= height else rows[: (width + 1) * (height - start)])
    idat += compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", bytes(idat)) + png_chunk(b"IEND", b"")


def ico_embedding(png, declared=(16, 16)):
    """An icon whose directory entry says ``declared`` but whose data is ``png``."""
    entry = struct.pack("<BBBBHHII", declared[0] % 256, declared[1] % 256, 0, 0, 1, 32, len(png), 6 + 16)
    return struct.pack("<HHH", 0, 1, 1) + entry + png


def tiff(pages):
    """A little-endian 8-bit grayscale TIFF; each page is ``(width, height, tile_size or None)``.

    Each page holds a few bytes of pixels only: the files are headers.
    """
    data = bytearray(b"II*\x00\x08\x00\x00\x00")
    for index, (width, height, tile) in enumerate(pages):
        pixels = b"\x80" * 16
        tags = {256: (4, width), 257: (4, height), 258: (3, 8), 259: (3, 1), 262: (3, 1), 277: (3, 1)}
        if tile:
            tags.update({322: (4, tile[0]), 323: (4, tile[1]), 324: (4, None), 325: (4, len(pixels))})
        else:
            tags.update({273: (4, None), 278: (4, height), 279: (4, len(pixels))})
        pixels_at = len(data) + 2 + 12 * len(tags) + 4
        data += struct.pack("<H", len(tags))
        for tag in sorted(tags):
            kind, value = tags[tag]
            value = pixels_at if value is None else value
            data += struct.pack("<HHI", tag, kind, 1)
            data += struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        data += struct.pack("<I", pixels_at + len(pixels) if index < len(pages) - 1 else 0)
        data += pixels
    return bytes(data)


def two_frames(fmt, **options):
    first, second = Image.new("RGB", (16, 16), (255, 0, 0)), Image.new("RGB", (16, 16), (0, 0, 255))
    return bytearray(encode(first, fmt, save_all=True, append_images=[second], **options))


def gif_descriptors(data):
    """Offsets of the image descriptors of a GIF (walking its blocks)."""
    flags = data[10]
    pos = 13 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0)
    found = []
    while data[pos:pos + 1] in (b",", b"!"):
        if data[pos:pos + 1] == b",":
            found.append(pos)
            flags = data[pos + 9]
            pos += 10 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0) + 1
        else:
            pos += 2
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    return found


def gif_with_frame(index, size):
    data = two_frames("GIF")
    struct.pack_into("<HH", data, gif_descriptors(data)[index] + 5, *size)
    return bytes(data)


def mpo_with_second_frame(size):
    data = two_frames("MPO")
    sof = data.rfind(b"\xff\xc0")  # the second frame's start of frame: length, precision, height, width
    struct.pack_into(">HH", data, sof + 5, size[1], size[0])
    return bytes(data)


def webp_with_canvas(size):
    data = two_frames("WEBP", lossless=True)
    assert data[12:16] == b"VP8X"
    data[24:27] = (size[0] - 1).to_bytes(3, "little")
    data[27:30] = (size[1] - 1).to_bytes(3, "little")
    return bytes(data)


def webp_with_second_frame(size):
    """An animated WebP whose second frame's bitstream declares ``size`` inside a 16x16 canvas."""
    data = two_frames("WEBP", lossless=True)
    frame = data.find(b"ANMF", data.find(b"ANMF", 30) + 4)
    header = data.find(b"VP8L", frame) + 8  # signature byte, then 14-bit width-1 and height-1
    assert data[header] == 0x2F
    bits = int.from_bytes(data[header + 1:header + 5], "little") & ~((1 << 28) - 1)
    bits |= (size[0] - 1) | ((size[1] - 1) << 14)
    data[header + 1:header + 5] = bits.to_bytes(4, "little")
    return bytes(data)
