"""Images made to be as costly as possible for the canvas pipeline and the image reader.

Each builder returns what a caller could really hand the project: uint8 pixel arrays as an
image file decodes to (grey or RGBA, at most ``core.images.MAX_PIXELS``), or the bytes of a
file. The tests use them to check that each is answered quickly or refused, and the bench
times the worst of them with ``time_worst_cases``.
"""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
from PIL import Image

from core import drawn


def filled_square(side: int = 1000, square: int = 700) -> np.ndarray:
    """A white filled square on black: a "stroke" as wide as the digit. uint8 [side, side].

    Under the 85 % that counts as a filled canvas, so it is read as a drawing; its stroke
    width grows with the image, which is what made the erosion cost grow with side^4.
    """
    img = np.zeros((side, side), np.uint8)
    top = (side - square) // 2
    img[top:top + square, top:top + square] = 255
    return img


def thick_strokes(side: int = 4000, digit: int = 8) -> np.ndarray:
    """A digit drawn with a very wide brush on an opaque black canvas. uint8 RGBA [side, side, 4]."""
    style = drawn.Style(height=0.8, aspect=0.7, cx=0.5, cy=0.5, slant=0.1, rotate_deg=5, stroke=0.11, wobble=0)
    ink = drawn.render(drawn.place(drawn.TEMPLATES[digit][0], style, side), side, style.stroke * side)
    return np.dstack([ink, ink, ink, np.full_like(ink, 255)])


def thin_lines(side: int = 4000, spacing: int = 4) -> np.ndarray:
    """A scribble of one-pixel lines across most of a huge canvas: the most outline per pixel of ink.
    uint8 grey [side, side], black lines on white."""
    img = np.full((side, side), 255, np.uint8)
    lo, hi = side // 8, side - side // 8
    img[lo:hi:spacing, lo:hi] = 0
    img[lo:hi, lo:hi:spacing] = 0
    return img


def translucent_noise(side: int = 4000, seed: int = 0) -> np.ndarray:
    """Random colours with random partial transparency over an opaque border: every pixel takes
    the slow path of compositing over the background. uint8 RGBA [side, side, 4]."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (side, side, 4), dtype=np.uint8)
    img[..., 3] |= 0x80  # mostly opaque, never fully transparent: not a transparent background
    img[:8], img[-8:], img[:, :8], img[:, -8:] = 0, 0, 0, 0
    img[:8, ..., 3], img[-8:, ..., 3], img[:, :8, 3], img[:, -8:, 3] = 255, 255, 255, 255
    return img


def long_strip(length: int = 4_000_000, height: int = 4) -> np.ndarray:
    """A strip a few pixels high and millions long, ink along its middle: its border is nearly all
    of it. uint8 grey [height, length]."""
    img = np.zeros((height, length), np.uint8)
    img[1:-1, length // 10: -length // 10] = 255
    return img


WORST_CASES = {  # name -> builder: the shapes the bench times and the tests bound
    "filled square 700 px in 1000 px": filled_square,
    "4000x4000 RGBA, thick strokes": thick_strokes,
    "4000x4000 grey, one-pixel lines": thin_lines,
    "4000x4000 RGBA, translucent noise": translucent_noise,
    "4 x 4,000,000 strip": long_strip,
}


def worst_cases() -> dict[str, np.ndarray]:
    """Every worst case, built: name -> pixels."""
    return {name: build() for name, build in WORST_CASES.items()}


def png_bytes(pixels: np.ndarray, **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", **options)
    return buf.getvalue()


def filled_square_png(side: int = 1000, square: int = 700) -> bytes:
    """The filled square as a PNG file: about 3 KB."""
    return png_bytes(filled_square(side, square), optimize=True)


def huge_png(side: int = 5000, rgba: bool = True) -> bytes:
    """A valid ``side`` x ``side`` PNG (transparent black RGBA, or black grey) of a few tens of KB:
    decoded whole, 5000 x 5000 RGBA is 100 MB in PIL and as much again in each copy."""
    channels, colour_type = (4, 6) if rgba else (1, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" * (1 + side * channels)  # filter byte "none", then zero samples
    z = zlib.compressobj(9)
    body = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, colour_type, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def damaged_dds(size: int = 64) -> bytes:
    """A DDS file whose pixel format is a FourCC no decoder knows, followed by garbage.

    PIL raises NotImplementedError for it, which is neither OSError nor ValueError."""
    header = struct.pack("<4sI", b"DDS ", 124)
    header += struct.pack("<IIIIII", 0x1007, size, size, 0, 0, 0) + b"\0" * 44  # caps, size; reserved
    header += struct.pack("<II4sIIIII", 32, 0x4, b"ZZZZ", 0, 0, 0, 0, 0)  # pixel format: FourCC "ZZZZ"
    header += struct.pack("<IIIII", 0x1000, 0, 0, 0, 0)
    return header + bytes(range(256)) * 4


def time_worst_cases(model=None, repeats: int = 3) -> dict[str, dict[str, float]]:
    """For each of ``worst_cases()``: milliseconds of ``preprocess`` alone and of ``classify`` (pixels
    to an answer: preprocessing and the model), the fastest of ``repeats`` runs; the bundled model
    by default. The fastest run is the cost of the work; slower ones measure the machine's load."""
    from core import checkpoint, paths
    from core.inference import classify, preprocess

    model = model if model is not None else checkpoint.load(paths.BUNDLED_MODEL).build()
    classify(model, filled_square(280, 150))  # warm up
    out = {}
    for name, build in WORST_CASES.items():
        pixels = build()
        out[name] = {"preprocess_ms": _fastest_ms(lambda: preprocess(pixels), repeats),
                     "classify_ms": _fastest_ms(lambda: classify(model, pixels), repeats)}
    return out


def _fastest_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return round(min(times), 1)
