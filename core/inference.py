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

from core.data import DATASETS, DatasetInfo

INK_THRESHOLD = 0.2  # ink below this (after background removal) is anti-aliasing fringe or noise
MIN_INK_FRACTION = 0.0005  # fewer ink pixels than this share of the canvas: nothing drawn
MIN_EXTENT = 0.12  # ink whose bounding box spans less than this share of the canvas is a dot, not a digit
MAX_FILL = 0.85  # more ink than this share of the canvas: the canvas is filled, not drawn on
DIGIT_BOX = 20  # MNIST's longer side of the digit, in pixels
STROKE_SHARE = 0.14  # MNIST's typical stroke width as a share of the digit's longer side (about 2.8 of 20 px)
FRAME = 28


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
    """
    if background not in ("auto", "dark", "light"):
        raise ValueError("background must be 'auto', 'dark' or 'light'")
    a = np.asarray(pixels)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"expected an image array of shape [H, W] or [H, W, C], got {a.shape}")
    a = a.astype(np.float32)
    if a.max(initial=0) > 1.0:
        a = a / (65535.0 if a.max() > 255 else 255.0)
    channels = a.shape[2]
    if channels in (2, 4):
        alpha = a[..., -1]
        colour = a[..., :-1]
    else:
        alpha = np.ones(a.shape[:2], np.float32)
        colour = a
    grey = colour.mean(axis=2) if colour.shape[2] > 1 else colour[..., 0]

    border = np.concatenate([alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]])
    if background == "auto" and np.median(border) < 0.5:
        # transparent background: the strokes are wherever there is paint
        return np.clip(alpha, 0.0, 1.0)
    # opaque: composite over the border's colour, then measure distance from the background
    border_grey = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    bg = {"dark": 0.0, "light": 1.0}.get(background, float(np.median(border_grey)))
    composited = grey * alpha + bg * (1.0 - alpha)
    if bg >= 0.5:  # dark ink on a light background
        ink = (bg - composited) / max(bg, 1e-6)
    else:  # light ink on a dark background
        ink = (composited - bg) / max(1.0 - bg, 1e-6)
    return np.clip(ink, 0.0, 1.0).astype(np.float32)


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(img))[None, None]
    out = F.interpolate(t, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return out[0, 0].clamp_(0.0, 1.0).numpy()


def stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width of binary-ish ink, from its area and outline: w ~ 2 * area / perimeter."""
    m = ink > 0.5
    area = m.sum()
    if area == 0:
        return 0.0
    padded = np.pad(m, 1)
    edges = (padded[1:, :] != padded[:-1, :]).sum() + (padded[:, 1:] != padded[:, :-1]).sum()
    return float(2.0 * area / max(edges, 1))


def normalise_stroke(cropped: np.ndarray) -> np.ndarray:
    """Thin strokes that are far thicker than MNIST's for the digit's size.

    A small digit drawn with a wide brush becomes a blob once scaled to 20 px; eroding it
    first brings the stroke back to an MNIST-like share of the digit. Thin strokes are left
    alone: the model has seen thin pens.
    """
    width = stroke_width(cropped)
    target = STROKE_SHARE * max(cropped.shape)
    k = int((width - target) / 2)  # pixels to take off each side
    if width <= 1.3 * target or k < 1:
        return cropped
    t = torch.from_numpy(np.ascontiguousarray(cropped, dtype=np.float32))[None, None]
    eroded = -F.max_pool2d(-t, 2 * k + 1, stride=1, padding=k)
    return eroded[0, 0].numpy()


def preprocess(pixels: np.ndarray, background: str = "auto") -> Preprocessed:
    """Canvas pixels (any size, any of the usual colour schemes) -> an MNIST-style 28x28."""
    ink = to_ink(pixels, background)
    h, w = ink.shape
    mask = ink > INK_THRESHOLD
    count = int(mask.sum())
    if count < max(3, MIN_INK_FRACTION * h * w):
        return Preprocessed(False, "Nothing drawn yet: draw a digit.", ink, reason="empty")
    if count > MAX_FILL * h * w:
        return Preprocessed(False, "The canvas is filled with ink: clear it and draw one digit.", ink, reason="filled")
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    extent = max(bottom - top, right - left)
    if extent < MIN_EXTENT * min(h, w) and min(h, w) >= 56:
        return Preprocessed(False, "That is only a dot: draw a bigger digit.", ink, reason="dot")
    cropped = np.where(ink[top:bottom, left:right] > INK_THRESHOLD * 0.5, ink[top:bottom, left:right], 0.0)

    cropped = normalise_stroke(cropped)
    ch, cw = cropped.shape
    scale = DIGIT_BOX / max(ch, cw)
    sh, sw = max(1, round(ch * scale)), max(1, round(cw * scale))
    scaled = _resize(cropped.astype(np.float32), sh, sw)

    total = scaled.sum()
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
    """Ten probabilities per image: [28, 28] -> [10]; [B, 28, 28] -> [B, 10]."""
    single = np.asarray(images).ndim == 2 if not isinstance(images, torch.Tensor) else images.ndim == 2
    x = images if isinstance(images, torch.Tensor) and images.ndim == 4 else to_tensor(images, info)
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        probs = F.softmax(model(x.to(device)).float(), dim=1).cpu().numpy()
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
    """The whole path from canvas pixels to an answer, or "nothing drawn"."""
    pre = preprocess(pixels, background)
    if not pre.ok:
        return Prediction(False, pre.message, None, None, None, pre)
    probs = predict_proba(model, pre.image, info)
    digit = int(probs.argmax())
    return Prediction(True, "", digit, float(probs[digit]), probs, pre)
