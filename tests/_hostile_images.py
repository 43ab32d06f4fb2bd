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
