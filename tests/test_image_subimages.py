"""Sub-images (icons, pages, frames, tiles) are held to the size limit before any pixel is decoded.

Each hostile file is a few hundred bytes (the icon a hundred kilobytes) whose
first picture looks small while another one declares a huge size.  The
memory tests run the real upload paths in a fresh interpreter and compare its
peak resident memory before and after: a decoded 12000x12000 picture would
add at least 144 MB.
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

import pytest
from PIL import IcoImagePlugin, Image, ImageFile

from depot.imaging import ImageRejected, ImageTooLarge, make_thumbnail, open_image

from ._hostile_images import (
    HUGE,
    encode,
    gif_with_frame,
    ico_embedding,
    mpo_with_second_frame,
    png_zeros,
    tiff,
    two_frames,
    webp_with_canvas,
    webp_with_second_frame,
)

pytestmark = pytest.mark.usefixtures("memory_depots")

ROOT = Path(__file__).resolve().parent.parent


def hostile(size):
    """Every kind of file whose sub-image declares ``size`` while its header shows 16x16."""
    return {
        "ico-png": ico_embedding(png_zeros(*size)),
        "ico-second-entry": _two_icons(png_zeros(*size)),
        "tiff-second-page": tiff([(16, 16, None), (size[0], size[1], None)]),
        "tiff-tile": tiff([(16, 16, size)]),
        "gif-first-frame": gif_with_frame(0, size),
        "gif-second-frame": gif_with_frame(1, size),
        "mpo-second-frame": mpo_with_second_frame(size),
        "webp-canvas": webp_with_canvas(size),
    }


def _two_icons(huge_png):
    """A genuine 16x16 icon listed first, then a 32x32 entry embedding ``huge_png``."""
    small = encode(Image.new("RGBA", (16, 16), (255, 0, 0, 255)), "PNG")
    header = b"\0\0\1\0\2\0"
    first_at = len(header) + 32
    entries = (
        bytes((16, 16, 0, 0)) + (1).to_bytes(2, "little") + (32).to_bytes(2, "little")
        + len(small).to_bytes(4, "little") + first_at.to_bytes(4, "little")
        + bytes((32, 32, 0, 0)) + (1).to_bytes(2, "little") + (32).to_bytes(2, "little")
        + len(huge_png).to_bytes(4, "little") + (first_at + len(small)).to_bytes(4, "little")
    )
    return header + entries + small + huge_png


SMALL_HOSTILE = hostile((300, 300))


@pytest.mark.parametrize("name", sorted(SMALL_HOSTILE))
def test_sub_image_over_the_limit_is_refused_undecoded(name):
    Image.init()  # loading plugins builds images of its own
    decoded = AssertionError("a pixel was decoded")
    with mock.patch.object(ImageFile.ImageFile, "load", side_effect=decoded), \
            mock.patch.object(IcoImagePlugin.IcoImageFile, "load", side_effect=decoded):
        with pytest.raises(ImageTooLarge, match="300x300 pixels .* more than the limit of 10000"):
            open_image(io.BytesIO(SMALL_HOSTILE[name]), max_pixels=10000)


def _genuine():
    icon = Image.new("RGBA", (32, 32), (0, 128, 0, 255))
    pages = [Image.new("L", (40, 30), 10), Image.new("L", (60, 50), 200)]
    return {
        "ico": encode(icon, "ICO", sizes=[(16, 16), (32, 32)]),
        "tiff": encode(pages[0], "TIFF", save_all=True, append_images=pages[1:]),
        "gif": bytes(two_frames("GIF")),
        "mpo": bytes(two_frames("MPO")),
        "webp": bytes(two_frames("WEBP", lossless=True)),
    }


@pytest.mark.parametrize("fmt, data", sorted(_genuine().items()))
def test_genuine_multi_picture_files_are_accepted(fmt, data):
    image = open_image(io.BytesIO(data), max_pixels=3000)
    assert image.format == fmt.upper()
    assert image.tell() == 0  # the scan of the other pictures left the first one current
    assert Image.open(io.BytesIO(make_thumbnail(image, (8, 8), "PNG"))).size[0] <= 8


_PROBE = textwrap.dedent("""
    import json, resource, sys
    from depot.manager import DepotManager
    from depot.fields.filters.thumbnails import WithThumbnailFilter
    from depot.fields.specialized.image import UploadedImageWithThumb
    from depot.fields.upload import UploadedFile
    from depot.imaging import open_image
    import io
    from PIL import Image

    Image.init()
    DepotManager.configure("default", {"depot.backend": "memory"})
    for fmt in ("PNG", "GIF", "TIFF", "MPO", "WEBP", "ICO"):  # warm up: imports, codecs
        sample = io.BytesIO()
        Image.new("RGB", (4, 4)).save(sample, fmt)
        UploadedFile(UploadedImageWithThumb(sample.getvalue()).file.read())._apply_filters([WithThumbnailFilter()])
    DepotManager._clear()
    DepotManager.configure("default", {"depot.backend": "memory"})
    with open(sys.argv[1], "rb") as f:
        data = f.read()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcomes = []
    for attach in (lambda: UploadedImageWithThumb(data),
                   lambda: UploadedFile(data)._apply_filters([WithThumbnailFilter()])):
        try:
            attach()
            outcomes.append("accepted")
        except Exception as exc:
            outcomes.append(type(exc).__name__)
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({"outcomes": outcomes, "growth_kib": growth, "stored": DepotManager.get().list()}))
""")


@pytest.fixture(scope="module")
def huge_files():
    return hostile(HUGE)


@pytest.mark.parametrize("name", sorted(SMALL_HOSTILE))
def test_hostile_upload_is_refused_in_bounded_memory(name, huge_files, tmp_path):
    data = huge_files[name]
    assert len(data) < 200_000  # small on disk
    path = tmp_path / "upload"
    path.write_bytes(data)
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["outcomes"] == ["ImageTooLarge", "ImageTooLarge"]
    assert report["stored"] == []
    assert report["growth_kib"] < 100 * 1024, "%d MiB more at peak" % (report["growth_kib"] // 1024)


def test_webp_frame_larger_than_its_canvas_is_refused():
    """libwebp refuses a frame that overflows the canvas: a rejection, never an allocation."""
    with pytest.raises(ImageRejected):
        open_image(io.BytesIO(webp_with_second_frame(HUGE)))
