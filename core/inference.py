"""From canvas pixels to an MNIST-style 28x28, and from there to ten probabilities.

MNIST's digits were made this way (LeCun et al.): the ink is cropped, scaled so that its
longer side is 20 pixels (keeping the aspect ratio, with anti-aliasing), and placed in a
28x28 frame so that its centre of mass sits at the centre. A drawing goes through the same
steps, so a digit drawn small in a corner looks to the model like one drawn large in the
middle. Each step's image is returned too, for display.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from core.data import DATASETS, DatasetInfo, scoring_batch

INK_THRESHOLD = 0.2  # ink below this (after background removal) is anti-aliasing fringe or noise
MIN_INK_FRACTION = 0.0005  # fewer ink pixels than this share of the canvas: nothing drawn
MIN_EXTENT = 0.12  # ink whose bounding box spans less than this share of the canvas is a dot, not a digit
MAX_FILL = 0.85  # more ink than this share of the canvas: the canvas is filled, not drawn on
DIGIT_BOX = 20  # MNIST's longer side of the digit, in pixels
STROKE_SHARE = 0.14  # MNIST's typical stroke width as a share of the digit's longer side (about 2.8 of 20 px)
FRAME = 28
# The cost of preprocessing is bounded whatever the image: a canvas of more pixels than
# MAX_CANVAS_PIXELS is averaged down to at most that many before its ink is read, and the
# cropped ink is scaled down to WORK_SIDE before the stroke work. The Draw page's canvases
# (280 and 340 px) and stored class-set drawings (at most 1000 px) are never shrunk, so
# they give exactly what they gave before these bounds.
MAX_CANVAS_PIXELS = 1024 * 1024
WORK_SIDE = 340


@dataclass
class Preprocessed:
    """The result of preprocessing one drawing. ``ok`` is False for "nothing drawn"."""

    ok: bool
    message: str  # why nothing could be read, or "" when ok
    ink: np.ndarray  # float32 [H, W] in [0, 1]: 1 is ink, whatever the canvas colours were
    cropped: np.ndarray | None = None  # the ink's bounding box
    scaled: np.ndarray | None = None  # longer side DIGIT_BOX px
    image: np.ndarray | None = None  # float32 [28, 28] in [0, 1], white ink on black: what the model sees
    steps: dict = field(default_factory=dict)
    reason: str = ""  # when not ok: "empty", "dot" or "filled"


def to_ink(pixels: np.ndarray, background: str = "auto") -> np.ndarray:
    """Any RGBA/RGB/grey array -> float32 ink in [0, 1] (1 = ink).

    Works for white-on-black, black-on-white and strokes on a transparent background. With
    ``background="auto"`` the background colour is read from the border of the image; a
    canvas that knows its colours says ``"dark"`` or ``"light"``, so that a canvas painted
    edge to edge still reads as ink, not as background.

    Linear in the number of pixels, in a few passes: 8-bit images (what canvases and image
    files give) go through a lookup table, so a 16-megapixel RGBA image costs tens of
    milliseconds.
    """
    if background not in ("auto", "dark", "light"):
        raise ValueError("background must be 'auto', 'dark' or 'light'")
    a = np.asarray(pixels)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[0] < 1 or a.shape[1] < 1 or a.shape[2] < 1:
        raise ValueError(f"expected an image array of shape [H, W] or [H, W, C], got {a.shape}")
    if a.dtype == np.uint8 and a.shape[2] <= 4:
        return _ink_8bit(a, background)
    a = a.astype(np.float32)
    top = float(a.max(initial=0))
    if top > 1.0:
        a /= np.float32(65535.0 if top > 255 else 255.0)
    alpha = a[..., -1] if a.shape[2] in (2, 4) else None
    colour = a[..., :-1] if alpha is not None else a
    border = _border(a)
    if alpha is not None and background == "auto" and np.median(border[:, -1]) < 0.5:
        ink = np.clip(alpha, 0.0, 1.0)  # transparent background: the strokes are wherever there is paint
    else:
        bg = _BACKGROUNDS.get(background)
        if bg is None:
            bg = float(np.median(border[:, :colour.shape[2]].mean(axis=1)))
        grey = colour[..., 0].copy()
        for c in range(1, colour.shape[2]):
            grey += colour[..., c]
        if colour.shape[2] > 1:
            grey /= np.float32(colour.shape[2])
        composited = grey if alpha is None else grey * alpha + np.float32(bg) * (np.float32(1.0) - alpha)
        ink = _ink_from_grey(composited, bg)
    return np.nan_to_num(ink, copy=False, nan=0.0).astype(np.float32, copy=False)


_BACKGROUNDS = {"dark": 0.0, "light": 1.0}


def _border(a: np.ndarray) -> np.ndarray:
    """The pixels along the edge of [H, W, C]: [P, C]."""
    return np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])


def _ink_from_grey(composited: np.ndarray, bg: float) -> np.ndarray:
    """Distance from the background's grey level, clipped to [0, 1]."""
    if bg >= 0.5:  # dark ink on a light background
        ink = (np.float32(bg) - composited) / np.float32(max(bg, 1e-6))
    else:  # light ink on a dark background
        ink = (composited - np.float32(bg)) / np.float32(max(1.0 - bg, 1e-6))
    return np.clip(ink, 0.0, 1.0)


def _median_level(levels: np.ndarray) -> float:
    """The median of non-negative integers, from their histogram (linear, however many there are)."""
    cumulative = np.cumsum(np.bincount(levels.ravel()))
    n = int(cumulative[-1])
    lower, upper = np.searchsorted(cumulative, [(n - 1) // 2, n // 2], side="right")  # the middle one or two
    return (int(lower) + int(upper)) / 2


def _ink_8bit(a: np.ndarray, background: str) -> np.ndarray:
    """``to_ink`` for uint8 [H, W, 1-4]: the ink of each (sum of colour channels, alpha) pair is
    computed once, in a table, and each pixel looks its ink up: a few passes over the image."""
    scale = 255.0 if a.max() > 1 else 1.0  # as for floats: an image of 0s and 1s is already in [0, 1]
    alpha = a[..., -1] if a.shape[2] in (2, 4) else None
    ncolour = a.shape[2] - (alpha is not None)
    border = _border(a)
    if alpha is not None and background == "auto" and _median_level(border[:, -1]) / scale < 0.5:
        return alpha / np.float32(scale)  # transparent background: already within [0, 1]
    bg = _BACKGROUNDS.get(background)
    if bg is None:
        bg = _median_level(border[:, :ncolour].sum(axis=1, dtype=np.uint16)) / scale / ncolour
    level = a[..., 0]
    if ncolour > 1:
        level = level.astype(np.uint16)
        for c in range(1, ncolour):
            level += a[..., c]
    grey = np.arange(255 * ncolour + 1, dtype=np.float32) / np.float32(scale) / np.float32(ncolour)
    if alpha is None or alpha.min() >= scale:  # opaque
        return _ink_from_grey(grey, bg).astype(np.float32)[level]
    opacity = np.arange(256, dtype=np.float32)[None, :] / np.float32(scale)
    table = _ink_from_grey(grey[:, None] * opacity + np.float32(bg) * (np.float32(1.0) - opacity), bg)
    return table.astype(np.float32).ravel()[(level.astype(np.uint32) << 8) | alpha]


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(img))[None, None]
    out = F.interpolate(t, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return out[0, 0].clamp_(0.0, 1.0).numpy()


def stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width of binary-ish ink, from its area and outline: w ~ 2 * area / perimeter."""
    m = ink > 0.5
    area = np.count_nonzero(m)
    if area == 0:
        return 0.0
    padded = np.pad(m, 1)
    edges = np.count_nonzero(padded[1:, :] != padded[:-1, :]) + np.count_nonzero(padded[:, 1:] != padded[:, :-1])
    return float(2.0 * area / max(edges, 1))


def _min_filter(a: np.ndarray, k: int, axis: int) -> np.ndarray:
    """The minimum over a window of 2k+1 pixels along ``axis`` (outside the image does not count).

    van Herk / Gil-Werman: running minima forward and backward within blocks of the window's
    length, so the cost is a few passes over the image whatever the window's size.
    """
    a = np.moveaxis(a, axis, -1)
    n, size = a.shape[-1], 2 * k + 1
    if size >= 2 * n - 1:  # every window covers the whole line
        return np.moveaxis(np.broadcast_to(a.min(axis=-1, keepdims=True), a.shape).copy(), -1, axis)
    blocks = -(-(n + 2 * k) // size)
    padded = np.full(a.shape[:-1] + (blocks * size,), np.inf, a.dtype)
    padded[..., k:k + n] = a
    b = padded.reshape(a.shape[:-1] + (blocks, size))
    forward = np.minimum.accumulate(b, axis=-1).reshape(padded.shape)
    backward = np.minimum.accumulate(b[..., ::-1], axis=-1)[..., ::-1].reshape(padded.shape)
    return np.moveaxis(np.minimum(backward[..., :n], forward[..., size - 1:size - 1 + n]), -1, axis)


def normalise_stroke(cropped: np.ndarray) -> np.ndarray:
    """Thin strokes that are far thicker than MNIST's for the digit's size.

    A small digit drawn with a wide brush becomes a blob once scaled to 20 px; eroding it
    first brings the stroke back to an MNIST-like share of the digit. Thin strokes are left
    alone: the model has seen thin pens. The erosion (a minimum over a (2k+1)-pixel square)
    is done a row and a column at a time, in a few passes whatever k is.
    """
    width = stroke_width(cropped)
    target = STROKE_SHARE * max(cropped.shape)
    k = int((width - target) / 2)  # pixels to take off each side
    if width <= 1.3 * target or k < 1:
        return cropped
    eroded = _min_filter(_min_filter(np.asarray(cropped, dtype=np.float32), k, 1), k, 0)
    if not eroded.max(initial=0.0) > INK_THRESHOLD:  # nothing would be left: keep the drawing as it is
        return cropped
    return eroded


def _shrink_canvas(pixels: np.ndarray) -> np.ndarray:
    """Pixels of more than MAX_CANVAS_PIXELS: averaged over square blocks down to at most that many.

    One pass over the image. 8-bit grey, RGB and RGBA images are averaged by PIL, channel by
    channel as stored (colours are not premultiplied by alpha); other arrays are first scaled
    to [0, 1] as ``to_ink`` would scale them. Anything that is not an image array is returned
    as it is, for ``to_ink`` to refuse.
    """
    a = np.asarray(pixels)
    if a.ndim not in (2, 3) or a.shape[0] * a.shape[1] <= MAX_CANVAS_PIXELS or a.ndim == 3 and a.shape[2] < 1:
        return a
    h, w = a.shape[:2]
    f = max(2, int(np.sqrt(h * w / MAX_CANVAS_PIXELS)))
    while -(-h // f) * -(-w // f) > MAX_CANVAS_PIXELS:
        f += 1
    channels = a.shape[2] if a.ndim == 3 else 1
    oh, ow = -(-h // f), -(-w // f)
    if a.dtype == np.uint8:
        if a.max() <= 1:  # 0s and 1s already in [0, 1]: spread them over 0-255, or the averages would round away
            a = a * np.uint8(255)
        if channels in (1, 3, 4):
            # PIL reads L and CMYK in place, and averages every channel of CMYK alike (RGBA it would premultiply)
            mode = {1: "L", 3: "RGB", 4: "CMYK"}[channels]
            img = Image.frombuffer(mode, (w, h), np.ascontiguousarray(a), "raw", mode, 0, 1)
            return np.asarray(img.reduce(f)).reshape(oh, ow, channels)
        a = a.reshape(h, w, channels)
        return np.dstack([np.asarray(Image.fromarray(np.ascontiguousarray(a[..., c])).reduce(f))
                          for c in range(channels)])
    a = a.reshape(h, w, channels)
    top = float(a.max(initial=0))
    sums = _block_sums(_block_sums(a, f, 0), f, 1)
    counts = np.diff(np.arange(0, h, f), append=h)[:, None, None] * np.diff(np.arange(0, w, f), append=w)[None, :, None]
    means = sums / counts.astype(np.float32)
    if top > 1.0:  # scaled as to_ink scales the whole image, not as it would scale the averages
        means /= np.float32(65535.0 if top > 255 else 255.0)
    return means


def _block_sums(a: np.ndarray, f: int, axis: int) -> np.ndarray:
    """Float32 sums of runs of ``f`` along ``axis`` (0 or 1 of [H, W, C]); the last run may be shorter."""
    n = a.shape[axis]
    whole = n // f * f
    if axis == 0:
        parts = [a[:whole].reshape(n // f, f, *a.shape[1:]).sum(axis=1, dtype=np.float32)]
    else:
        parts = [a[:, :whole].reshape(a.shape[0], n // f, f, a.shape[2]).sum(axis=2, dtype=np.float32)]
    if whole < n:
        parts.append(np.take(a, np.arange(whole, n), axis=axis).sum(axis=axis, keepdims=True, dtype=np.float32))
    return np.concatenate(parts, axis=axis) if len(parts) > 1 else parts[0]


def _shrink(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Float [H, W] -> [h, w], anti-aliased as ``_resize``; PIL's single thread, which stays fast on a busy machine."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(img, dtype=np.float32), "F")
                      .resize((w, h), Image.Resampling.BILINEAR)).clip(0.0, 1.0)


def preprocess(pixels: np.ndarray, background: str = "auto") -> Preprocessed:
    """Canvas pixels (any size, any of the usual colour schemes) -> an MNIST-style 28x28.

    Its cost is bounded whatever the image: see MAX_CANVAS_PIXELS and WORK_SIDE. The ink of
    a canvas larger than MAX_CANVAS_PIXELS (``ink``, ``steps["canvas"]``) is the averaged one.
    """
    ink = to_ink(_shrink_canvas(pixels), background)
    h, w = ink.shape
    mask = ink > INK_THRESHOLD
    count = int(np.count_nonzero(mask))
    if count < max(3, MIN_INK_FRACTION * h * w):
        return Preprocessed(False, "Nothing drawn yet: draw a digit.", ink, reason="empty")
    if count > MAX_FILL * h * w:
        return Preprocessed(False, "The canvas is filled with ink: clear it and draw one digit.", ink, reason="filled")
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    extent = max(bottom - top, right - left)
    if extent < MIN_EXTENT * min(h, w) and min(h, w) >= 56:
        return Preprocessed(False, "That is only a dot: draw a bigger digit.", ink, reason="dot")
    box = ink[top:bottom, left:right]
    cropped = np.where(box > INK_THRESHOLD * 0.5, box, np.float32(0.0))
    ch, cw = cropped.shape
    scale = DIGIT_BOX / max(ch, cw)
    sh, sw = max(1, round(ch * scale)), max(1, round(cw * scale))
    if max(ch, cw) > WORK_SIDE:  # the stroke work on a bounded image, whatever the canvas's size
        shrink = WORK_SIDE / max(ch, cw)
        cropped = _shrink(cropped, max(1, round(ch * shrink)), max(1, round(cw * shrink)))

    cropped = normalise_stroke(cropped)
    scaled = _resize(cropped.astype(np.float32), sh, sw)

    total = scaled.sum()
    if not total > 0:  # nothing left to centre (a drawing of faint fringe only)
        return Preprocessed(False, "Nothing drawn yet: draw a digit.", ink, reason="empty")
    ys, xs = np.indices(scaled.shape)
    cy, cx = (ys * scaled).sum() / total, (xs * scaled).sum() / total  # centre of mass
    # shift so the centre of mass lands on the frame's centre (14, 14 in pixel-centre terms)
    oy, ox = int(round(FRAME / 2 - 0.5 - cy)), int(round(FRAME / 2 - 0.5 - cx))
    image = np.zeros((FRAME, FRAME), np.float32)
    y0, x0 = max(oy, 0), max(ox, 0)
    y1, x1 = min(oy + sh, FRAME), min(ox + sw, FRAME)
    image[y0:y1, x0:x1] = scaled[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    steps = {"canvas": ink, "cropped": cropped, "scaled": scaled, "centred": image}
    return Preprocessed(True, "", ink, cropped, scaled, image, steps)


def to_tensor(images: np.ndarray | list, info: DatasetInfo = DATASETS["mnist"]) -> torch.Tensor:
    """[28, 28] or [B, 28, 28] floats in [0, 1] -> a normalised [B, 1, 28, 28] tensor."""
    t = torch.as_tensor(np.asarray(images, dtype=np.float32))
    if t.ndim == 2:
        t = t[None]
    return ((t - info.mean) / info.std).unsqueeze(1)


@torch.inference_mode()
def predict_proba(model: nn.Module, images: np.ndarray | torch.Tensor, info: DatasetInfo = DATASETS["mnist"]) -> np.ndarray:
    """Ten probabilities per image: [28, 28] -> [10]; [B, 28, 28] -> [B, 10].

    Many images are scored in batches fit for the model's device (``core.data.scoring_batch``).
    """
    single = np.asarray(images).ndim == 2 if not isinstance(images, torch.Tensor) else images.ndim == 2
    x = images if isinstance(images, torch.Tensor) and images.ndim == 4 else to_tensor(images, info)
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        n = scoring_batch(device)
        probs = np.concatenate([F.softmax(model(x[i:i + n].to(device)).float(), dim=1).cpu().numpy()
                                for i in range(0, len(x), n)]) if len(x) else np.zeros((0, 10), np.float32)
    finally:
        model.train(was_training)
    return probs[0] if single else probs


@dataclass
class Prediction:
    ok: bool
    message: str
    digit: int | None
    confidence: float | None
    probabilities: np.ndarray | None
    preprocessed: Preprocessed
    not_a_digit: bool = False  # the drawing is probably not a digit: show the best guess small, not as the answer


def classify(model: nn.Module, pixels: np.ndarray, info: DatasetInfo = DATASETS["mnist"],
             background: str = "auto") -> Prediction:
    """The whole path from canvas pixels to an answer, or "nothing drawn".

    A digit model's answer below ``core.outlier.NOT_A_DIGIT_BELOW`` comes with ``not_a_digit``
    set and a message saying so; the best guess is kept in ``digit`` and ``confidence``.
    """
    pre = preprocess(pixels, background)
    if not pre.ok:
        return Prediction(False, pre.message, None, None, None, pre)
    probs = predict_proba(model, pre.image, info)
    digit = int(probs.argmax())
    if info.name == "mnist":  # a clothing model names clothes: "not a digit" means nothing there
        from core.outlier import MESSAGE, looks_like_digit

        if not looks_like_digit(probs):
            return Prediction(True, f"{MESSAGE} (it looks most like a {digit}, {probs[digit]:.0%})", digit,
                              float(probs[digit]), probs, pre, not_a_digit=True)
    return Prediction(True, "", digit, float(probs[digit]), probs, pre)
