"""Reading image files of digits safely: any common format in, an RGBA or grey array out."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_FILE_BYTES = 10 * 1024 * 1024  # a photo of a digit is far smaller
MAX_PIXELS = 25_000_000  # about 5000 x 5000; larger is a decompression bomb, not a digit


class ImageError(ValueError):
    """The file is not an image this project can read; the message says why."""


def load_image_bytes(data: bytes, source: str = "the file") -> np.ndarray:
    """Decode ``data`` into a float-ready array: [H, W] grey or [H, W, 4] RGBA (uint8 or uint16)."""
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{source} is {len(data) / 1e6:.1f} MB; images here are at most {MAX_FILE_BYTES / 1e6:.0f} MB")
    if not data:
        raise ImageError(f"{source} is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageError(f"{source} is {w} x {h} pixels, too large to be a drawing (at most {MAX_PIXELS:,} pixels)")
            if getattr(img, "is_animated", False):
                img.seek(0)  # the first frame of an animation
            img = ImageOps.exif_transpose(img)  # photos from phones are often stored rotated
            img.load()
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"{source} is not an image that can be read ({type(err).__name__})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageError(f"{source} is truncated or damaged ({str(err)[:120]})") from None
    if min(img.size) < 1:
        raise ImageError(f"{source} has no pixels")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        return np.clip(arr / top * 255.0, 0, 255).astype(np.uint8)
    if img.mode in ("1", "L"):
        return np.asarray(img.convert("L"))
    # palette, CMYK, LA, RGB, YCbCr...: go through RGBA so transparency survives
    return np.asarray(img.convert("RGBA"))


def load_image(path: str | Path) -> np.ndarray:
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise ImageError(f"cannot read {path}: {err.strerror}") from None
    if size > MAX_FILE_BYTES:
        raise ImageError(f"{path} is {size / 1e6:.1f} MB; images here are at most {MAX_FILE_BYTES / 1e6:.0f} MB")
    return load_image_bytes(path.read_bytes(), str(path))
