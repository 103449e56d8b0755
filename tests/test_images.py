"""Image files of every awkward kind, through the same reader the CLI uses."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from core import drawn
from core.images import MAX_PIXELS, ImageError, load_image, load_image_bytes
from core.inference import preprocess


def digit_ink(size=120) -> np.ndarray:
    style = drawn.Style(height=0.7, aspect=0.6, cx=0.5, cy=0.5, slant=0, rotate_deg=0, stroke=0.08, wobble=0)
    return drawn.render(drawn.place(drawn.TEMPLATES[7][0], style, size), size, 0.08 * size)


REF = preprocess(digit_ink()).image


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def same_digit(pixels) -> bool:
    got = preprocess(pixels).image
    return got is not None and float((got * REF).sum() / np.sqrt((got ** 2).sum() * (REF ** 2).sum())) > 0.95


@pytest.mark.parametrize("make", [
    lambda ink: encode(Image.fromarray(255 - ink), "PNG"),  # grey, black on white
    lambda ink: encode(Image.fromarray(255 - ink).convert("P"), "PNG"),  # palette
    lambda ink: encode(Image.fromarray(255 - ink).convert("CMYK"), "JPEG", quality=95),  # CMYK JPEG
    lambda ink: encode(Image.fromarray((ink.astype(np.uint16) * 257)), "PNG"),  # 16-bit grey
    lambda ink: encode(Image.fromarray(np.dstack([ink] * 3 + [ink])), "PNG"),  # ink on transparent
    lambda ink: encode(Image.fromarray(ink).convert("LA"), "PNG"),  # grey + alpha
], ids=["grey", "palette", "cmyk", "16-bit", "rgba-transparent", "la"])
def test_common_image_kinds_read_as_the_same_digit(make):
    assert same_digit(load_image_bytes(make(digit_ink())))


def test_an_animated_image_uses_its_first_frame():
    first = Image.fromarray(255 - digit_ink())
    second = Image.new("L", first.size, 255)
    data = encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    assert same_digit(load_image_bytes(data))


def test_exif_rotation_is_applied():
    ink = digit_ink()
    stored = Image.fromarray(255 - np.rot90(ink, k=1))  # stored rotated 90 degrees anticlockwise
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    data = encode(stored, "JPEG", exif=exif.tobytes(), quality=95)
    assert same_digit(load_image_bytes(data))
    assert not same_digit(np.asarray(Image.open(io.BytesIO(data))))  # the control: unrotated it is not a 7


def test_a_1x1_image_is_nothing_drawn_not_an_error():
    pixels = load_image_bytes(encode(Image.new("L", (1, 1), 0), "PNG"))
    assert pixels.shape == (1, 1) and not preprocess(pixels).ok


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"GIF89a but not really", "not an image"),
    (b"%PDF-1.4 a document", "not an image"),
], ids=["empty", "fake-gif", "pdf"])
def test_files_that_are_not_images_are_refused(data, message):
    with pytest.raises(ImageError, match=message):
        load_image_bytes(data)


def test_postscript_is_not_read_at_all():
    """PIL reads EPS by running Ghostscript on it: a program, not pixels."""
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n0 0 moveto 28 28 lineto stroke\n%%EOF\n"
    assert Image.open(io.BytesIO(eps)).format == "EPS"  # the control: PIL alone would take it
    with pytest.raises(ImageError, match="not an image"):
        load_image_bytes(eps)


def test_a_truncated_image_is_refused():
    data = encode(Image.fromarray(255 - digit_ink(400)), "PNG")
    with pytest.raises(ImageError, match="truncated or damaged"):
        load_image_bytes(data[: len(data) // 2])


def test_a_decompression_bomb_is_refused_before_decoding():
    """A tiny PNG that claims 30000 x 30000 pixels: refused from its header, nothing allocated."""
    width = height = 30_000
    assert width * height > MAX_PIXELS

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))
    assert len(png) < 200
    with pytest.raises(ImageError, match="too large|not an image"):
        load_image_bytes(png)


def test_oversized_files_are_refused_by_size(tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + b"\0" * (11 * 1024 * 1024))
    with pytest.raises(ImageError, match=r"at most 10\.5 MB"):
        load_image(big)
    with pytest.raises(ImageError, match=r"at most 10\.5 MB"):
        load_image_bytes(big.read_bytes())
