"""Reading image files of digits safely: any common format in, an RGBA or grey array out.

Whatever the bytes, the answer is an array or an ``ImageError`` with a message: a damaged
file of any format ends as an error, never as another exception, and no image larger than a
pixel budget is decoded whole (a large JPEG is decoded at a reduced scale instead).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.files import FileRefused, read_regular

MAX_FILE_BYTES = 10 * 1024 * 1024  # a photo of a digit is far smaller
# 16 megapixels: a 12 MP phone photo (4032 x 3024) and a 4000 x 4000 scan fit, with a canvas
# (at most 340 x 340) far below. Decoded as RGBA that is 64 MB; larger is a decompression bomb
# or a panorama, not a digit. A larger JPEG is decoded at 1/2, 1/4 or 1/8 scale to fit.
MAX_PIXELS = 16_000_000

# Raster formats only. EPS is left out above all: PIL reads it by running Ghostscript on it.
_RASTER_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "AVIF", "ICO", "CUR", "ICNS", "DDS", "TGA",
                   "PPM", "PCX", "SGI", "QOI", "JPEG2000", "PSD", "XBM", "XPM", "IM", "SUN")
Image.init()
FORMATS = tuple(f for f in _RASTER_FORMATS if f in Image.OPEN)  # those this PIL can open

_GREY_MODES = ("1", "L")
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


class ImageError(ValueError):
    """The file is not an image this project can read; the message says why."""


def load_image_bytes(data: bytes, source: str = "the file", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode ``data`` into a uint8 array: [H, W] grey or [H, W, 4] RGBA.

    An image of more than ``max_pixels`` pixels is refused from its header, before it is
    decoded; a JPEG is instead decoded at the largest of 1/2, 1/4 or 1/8 scale that fits.
    """
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{source} is {len(data) / 1e6:.1f} MB; images here are at most {MAX_FILE_BYTES / 1e6:.1f} MB")
    if not data:
        raise ImageError(f"{source} is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=FORMATS)
            _fit_budget(img, source, max_pixels)
            if getattr(img, "is_animated", False):
                img.seek(0)  # the first frame of an animation
            img.load()
            if img.size[0] * img.size[1] > max_pixels:  # a format that picks its frame only when loading
                raise ImageError(f"{source} is {img.size[0]} x {img.size[1]} pixels, too large to be a drawing")
            ImageOps.exif_transpose(img, in_place=True)  # photos from phones are often stored rotated
            if min(img.size) < 1:
                raise ImageError(f"{source} has no pixels")
            return _to_array(img)
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"{source} is not an image that can be read ({type(err).__name__})") from None
    except NotImplementedError as err:
        raise ImageError(f"{source} is in a variant of its format that cannot be read ({_said(err)})") from None
    except MemoryError:
        raise ImageError(f"{source} is too large to decode") from None
    except Exception as err:  # noqa: BLE001 - a damaged file makes PIL's decoders raise almost anything
        raise ImageError(f"{source} is truncated or damaged ({_said(err)})") from None


def _said(err: BaseException) -> str:
    text = str(err).replace("\n", " ")[:120]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _fit_budget(img: Image.Image, source: str, max_pixels: int) -> None:
    """Refuse an image of more than ``max_pixels`` from its header, or have a JPEG decode scaled down."""
    w, h = img.size
    if w * h <= max_pixels:
        return
    if img.format in ("JPEG", "MPO"):  # MPO: a phone's JPEG with extra pictures after the first
        for scale in (2, 4, 8):
            if -(-w // scale) * -(-h // scale) <= max_pixels:
                img.draft(img.mode, (w // scale, h // scale))
                if img.size[0] * img.size[1] <= max_pixels:
                    return
                break
    raise ImageError(f"{source} is {w} x {h} pixels, too large to be a drawing (at most {max_pixels:,} pixels)")


def _to_array(img: Image.Image) -> np.ndarray:
    """A decoded image -> uint8 [H, W] or [H, W, 4], converting only what is not already so."""
    if img.mode in _WIDE_MODES:
        if img.mode.startswith("I;16"):
            wide = np.asarray(img).astype(np.uint32)
            wide *= 255
            wide //= 65535  # 65535 -> 255, as 8-bit files read
            return wide.astype(np.uint8)
        arr = np.asarray(img, dtype=np.float32)
        arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
        top = max(float(arr.max()), 1.0)
        arr /= np.float32(top)
        arr *= np.float32(255.0)
        return np.clip(arr, 0, 255, out=arr).astype(np.uint8)
    if img.mode == "L" or img.mode == "RGBA":
        return np.asarray(img)
    if img.mode in _GREY_MODES:
        return np.asarray(img.convert("L"))
    # palette, CMYK, LA, RGB, YCbCr...: go through RGBA so transparency survives
    return np.asarray(img.convert("RGBA"))


def load_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read and decode an image file; a device, a pipe or a file over MAX_FILE_BYTES is refused unread."""
    try:
        data = read_regular(path, MAX_FILE_BYTES, "image")
    except FileRefused as err:
        raise ImageError(str(err)) from None
    return load_image_bytes(data, str(path), max_pixels)
