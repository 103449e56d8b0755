import numpy as np
import pytest

from core import data, drawn
from core.inference import classify, predict_proba, preprocess, to_ink
from core.models import SeedCNN


def canvas_with(strokes_style: drawn.Style, size: int = 280, digit: int = 3) -> np.ndarray:
    strokes = drawn.place(drawn.TEMPLATES[digit][0], strokes_style, size)
    return drawn.render(strokes, size, strokes_style.stroke * size)


BASE = drawn.Style(height=0.7, aspect=0.7, cx=0.5, cy=0.5, slant=0.0, rotate_deg=0.0, stroke=0.07, wobble=0.0)


def rgba(ink: np.ndarray, ink_rgb, bg_rgb, transparent: bool = False) -> np.ndarray:
    """Paint an ink mask (uint8, 255 = ink) in the given colours, as a canvas would export it."""
    a = ink.astype(np.float32)[..., None] / 255.0
    rgb = a * np.array(ink_rgb, np.float32) + (1 - a) * np.array(bg_rgb, np.float32)
    alpha = a[..., 0] * 255 if transparent else np.full(ink.shape, 255.0)
    return np.dstack([rgb, alpha]).round().astype(np.uint8)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_the_result_looks_like_mnist():
    pre = preprocess(canvas_with(BASE))
    assert pre.ok and pre.image.shape == (28, 28) and pre.image.dtype == np.float32
    rows, cols = np.nonzero(pre.image > 0.1)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (19, 20, 21)  # longer side ~20 px
    ys, xs = np.indices((28, 28))
    mass = pre.image.sum()
    cy, cx = (ys * pre.image).sum() / mass, (xs * pre.image).sum() / mass
    assert abs(cy - 13.5) < 1.0 and abs(cx - 13.5) < 1.0  # centre of mass in the middle
    assert set(pre.steps) == {"canvas", "cropped", "scaled", "centred"}


@pytest.mark.parametrize("variant", [
    dict(cx=0.25, cy=0.3, height=0.4),  # small, top left
    dict(cx=0.7, cy=0.65, height=0.55),  # bottom right
    dict(height=0.9),  # large
    dict(stroke=0.05),  # thinner brush
])
def test_the_same_digit_anywhere_and_at_any_size_gives_nearly_the_same_28x28(variant):
    ref = preprocess(canvas_with(BASE)).image
    style = drawn.Style(**{**vars(BASE), **variant})
    other = preprocess(canvas_with(style)).image
    assert similarity(ref, other) > 0.85


@pytest.mark.parametrize("scheme", ["white on black", "black on white", "blue on transparent",
                                    "white on transparent", "grey on dark grey"])
def test_stroke_colours_and_backgrounds_do_not_matter(scheme):
    ink = canvas_with(BASE)
    ref = preprocess(ink).image
    pixels = {
        "white on black": rgba(ink, (255, 255, 255), (0, 0, 0)),
        "black on white": rgba(ink, (0, 0, 0), (255, 255, 255)),
        "blue on transparent": rgba(ink, (20, 40, 220), (0, 0, 0), transparent=True),
        "white on transparent": rgba(ink, (255, 255, 255), (255, 255, 255), transparent=True),
        "grey on dark grey": rgba(ink, (200, 200, 200), (40, 40, 40)),
    }[scheme]
    assert similarity(ref, preprocess(pixels).image) > 0.97


def test_any_canvas_size_works():
    small = drawn.render(drawn.place(drawn.TEMPLATES[7][0], BASE, 100), 100, 7)
    large = drawn.render(drawn.place(drawn.TEMPLATES[7][0], BASE, 600), 600, 42)
    assert similarity(preprocess(small).image, preprocess(large).image) > 0.9


@pytest.mark.parametrize("pixels, message", [
    (np.zeros((280, 280, 4), np.uint8), "Nothing drawn"),
    (np.full((280, 280, 4), 255, np.uint8), "Nothing drawn"),  # white, opaque, no ink
    (np.zeros((280, 280), np.uint8) + np.pad(np.full((2, 2), 255, np.uint8), ((139, 139), (139, 139))),
     "Nothing drawn"),  # a speck
])
def test_a_blank_canvas_gives_nothing_drawn(pixels, message):
    pre = preprocess(pixels)
    assert not pre.ok and message in pre.message


def test_a_single_dot_and_a_filled_canvas_are_explained():
    dot = drawn.render([[(140.0, 140.0), (141.0, 140.0)]], 280, 20)
    assert "dot" in preprocess(dot).message
    filled = np.full((280, 280), 255, np.uint8)
    filled[:5] = 0  # a black canvas painted white except a sliver
    assert "filled" in preprocess(filled, background="dark").message


def test_classify_never_predicts_for_a_blank_canvas():
    result = classify(SeedCNN(), np.zeros((200, 200, 4), np.uint8))
    assert not result.ok and result.digit is None and result.probabilities is None


def test_batches_predict_as_single_images_do():
    model = SeedCNN().eval()
    images = np.stack([preprocess(canvas_with(BASE, digit=d)).image for d in range(10)])
    batch = predict_proba(model, images)
    assert batch.shape == (10, 10)
    np.testing.assert_allclose(batch.sum(1), 1.0, rtol=1e-5)
    for i in range(10):
        np.testing.assert_allclose(predict_proba(model, images[i]), batch[i], rtol=1e-4, atol=1e-6)


def test_many_images_are_scored_in_device_sized_batches_with_the_same_answers(monkeypatch):
    model = SeedCNN().eval()
    images = np.random.default_rng(0).random((301, 28, 28), dtype=np.float32)
    assert data.scoring_batch("cpu") < data.scoring_batch("cuda")  # a GPU wants large batches, a CPU's cache small
    seen = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda x: seen.append(len(x)) or forward(x))
    chunked = predict_proba(model, images)
    n = data.scoring_batch("cpu")
    assert seen == [n] * (301 // n) + [301 % n]
    monkeypatch.setattr(data, "CPU_SCORING_BATCH", 1000)
    np.testing.assert_allclose(chunked, predict_proba(model, images), rtol=1e-5, atol=1e-6)  # one batch of 301
    assert seen[-1] == 301 and predict_proba(model, images[:0]).shape == (0, 10)


def test_to_ink_handles_grey_and_16_bit_arrays():
    grey = np.zeros((50, 50), np.uint8)
    grey[10:40, 20:25] = 255
    assert to_ink(grey).max() == 1.0
    assert np.allclose(to_ink(grey.astype(np.uint16) * 257), to_ink(grey), atol=1e-3)
    with pytest.raises(ValueError):
        to_ink(np.zeros((3, 3, 3, 3)))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("background", ["auto", "dark", "light"])
def test_8_bit_images_read_as_the_same_values_given_as_floats(channels, background):
    """8-bit pixels go through a lookup table; floats through the arithmetic it was built from."""
    rng = np.random.default_rng(channels)
    pixels = rng.integers(0, 256, (40, 50, channels), dtype=np.uint8)
    if channels in (2, 4):
        pixels[..., -1] |= 0x80  # mostly opaque: compositing over the background
    for p in (pixels, pixels.max(axis=2, keepdims=True) // 255 * 255):  # any colours; black and white
        np.testing.assert_allclose(to_ink(p, background), to_ink(p.astype(np.float32) / 255, background), atol=2e-6)
    if channels in (2, 4):  # strokes on a transparent background: the ink is the paint's opacity
        pixels[..., -1] = 0
        pixels[10:30, 20:25, -1] = 200
        np.testing.assert_allclose(to_ink(pixels), pixels[..., -1] / 255, atol=1e-6)
    binary = (pixels > 127).astype(np.uint8)  # 0s and 1s are already in [0, 1], as for floats
    np.testing.assert_allclose(to_ink(binary, background), to_ink(binary.astype(np.float32), background), atol=2e-6)


@pytest.mark.parametrize("side, k", [(7, 1), (30, 4), (25, 12), (40, 30), (64, 15)])
def test_the_fast_erosion_is_the_minimum_over_a_square(side, k):
    """A row then a column pass, a few steps whatever k: the (2k+1)^2 minimum, the image's outside not counted."""
    from core.inference import _min_filter

    img = np.random.default_rng(side).random((side, side + 5), dtype=np.float32)
    expected = np.empty_like(img)
    for y in range(img.shape[0]):
        for x in range(img.shape[1]):
            expected[y, x] = img[max(0, y - k):y + k + 1, max(0, x - k):x + k + 1].min()
    np.testing.assert_array_equal(_min_filter(_min_filter(img, k, 1), k, 0), expected)
