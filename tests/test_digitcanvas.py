"""The drawing square's message is input from a browser: decoded within the square's size, never a traceback."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from dashboard.digitcanvas import decode_drawing


def message(img: Image.Image, generation: int = 3) -> dict:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return {"png": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(), "generation": generation}


def test_a_drawing_comes_back_as_the_pixels_drawn():
    img = Image.new("RGBA", (280, 280), (0, 0, 0, 255))
    img.paste((255, 255, 255, 255), (100, 40, 130, 240))
    pixels, png = decode_drawing(message(img), 280, 3)
    assert pixels.shape == (280, 280, 4) and np.array_equal(pixels, np.asarray(img)) and png.startswith(b"\x89PNG")


@pytest.mark.parametrize("drawing", [
    None, "text", {"png": "", "generation": 3}, {"png": "data:image/png;base64,", "generation": 3},
    {"png": "no comma at all", "generation": 3}, {"png": "data:image/png;base64,@@not base64@@", "generation": 3},
    {"png": "data:image/png;base64," + base64.b64encode(b"not an image").decode(), "generation": 3},
])
def test_a_malformed_message_is_no_drawing(drawing):
    assert decode_drawing(drawing, 280, 3) == (None, None)


def test_a_stale_drawing_from_before_clear_is_ignored():
    assert decode_drawing(message(Image.new("RGBA", (280, 280)), generation=2), 280, 3) == (None, None)


def test_a_picture_far_larger_than_the_square_is_not_decoded():
    # 9000 x 9000 is 79 KB as a PNG and 324 MB decoded: refused from its header
    huge = message(Image.new("L", (9000, 9000)))
    assert decode_drawing(huge, 280, 3) == (None, None)
