"""Synthetic digits drawn as on a canvas: strokes for the tests and for the browser test's mouse.

This set's figure is not shown as "drawn digits" anywhere: every digit here comes from two
templates per digit, so it flatters a model (the seed CNN: 98.6 % here, 96.0 % on real writers).
What people's handwriting does is measured on pen-written digits (core.pendigits).

MNIST's digits are scanned pen strokes, thin and centred. On a canvas people draw with a
mouse or a finger: thick, smooth, off-centre, of any size and slant. This module writes
each digit as one or more strokes (polylines in a unit box, x right and y down), renders
them as thick round-capped mouse strokes at random sizes, positions, slants and stroke
widths, and scores a model on the result through the same preprocessing as the canvas.

The same strokes drive the browser test's mouse, so the test draws what this set measures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

Stroke = list[tuple[float, float]]


def _arc(cx, cy, rx, ry, start_deg, end_deg, step=8.0) -> Stroke:
    n = max(2, int(abs(end_deg - start_deg) / step) + 1)
    return [(cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
            for a in np.linspace(start_deg, end_deg, n)]


# Angles: 0 deg points right, 90 deg points down (y grows downwards).
TEMPLATES: dict[int, list[list[Stroke]]] = {
    0: [[_arc(0.5, 0.5, 0.3, 0.45, -90, 270)],
        [_arc(0.5, 0.5, 0.26, 0.46, -100, 265)]],
    1: [[[(0.5, 0.05), (0.5, 0.95)]],
        [[(0.32, 0.22), (0.52, 0.05), (0.52, 0.95)]]],
    2: [[_arc(0.5, 0.3, 0.27, 0.25, 190, 360) + [(0.7, 0.52), (0.2, 0.95), (0.82, 0.95)]],
        [_arc(0.48, 0.32, 0.28, 0.27, 200, 380) + [(0.2, 0.93), (0.85, 0.9)]]],
    3: [[_arc(0.48, 0.27, 0.25, 0.22, 200, 450) + _arc(0.48, 0.72, 0.28, 0.23, -90, 160)],
        [_arc(0.5, 0.26, 0.24, 0.21, 210, 440) + _arc(0.5, 0.71, 0.26, 0.24, -80, 150)]],
    4: [[[(0.62, 0.05), (0.15, 0.65), (0.85, 0.65)], [(0.62, 0.3), (0.62, 0.95)]],
        [[(0.22, 0.05), (0.22, 0.55), (0.82, 0.55)], [(0.7, 0.05), (0.7, 0.95)]]],
    5: [[[(0.78, 0.05), (0.3, 0.05), (0.26, 0.45)] + _arc(0.5, 0.67, 0.28, 0.28, -150, 150)],
        [[(0.28, 0.05), (0.25, 0.45)] + _arc(0.5, 0.68, 0.27, 0.27, -150, 145), [(0.28, 0.05), (0.8, 0.05)]]],
    6: [[[(0.72, 0.05), (0.5, 0.18), (0.34, 0.4)] + _arc(0.5, 0.72, 0.23, 0.23, 180, 540)],
        [_arc(0.9, 0.6, 0.62, 0.55, 235, 180, step=5) + _arc(0.5, 0.74, 0.22, 0.21, 180, 530)]],
    7: [[[(0.18, 0.06), (0.82, 0.06), (0.42, 0.95)]],
        [[(0.18, 0.08), (0.82, 0.06), (0.45, 0.95)], [(0.35, 0.5), (0.75, 0.5)]]],
    8: [[_arc(0.5, 0.27, 0.21, 0.21, 90, 450) + _arc(0.5, 0.7, 0.26, 0.25, -90, 270)],
        [_arc(0.5, 0.28, 0.2, 0.22, 60, 420) + _arc(0.5, 0.71, 0.25, 0.24, 270, -90)]],
    9: [[_arc(0.47, 0.3, 0.24, 0.24, 0, 360) + [(0.71, 0.3), (0.66, 0.95)]],
        [_arc(0.5, 0.3, 0.25, 0.23, 20, 370) + [(0.74, 0.35), (0.72, 0.95)]]],
}


@dataclass(frozen=True)
class Style:
    """How one drawing is placed on the canvas."""

    height: float  # digit height as a share of the canvas side
    aspect: float  # width / height of the digit's box
    cx: float  # centre, as shares of the canvas side
    cy: float
    slant: float  # horizontal shear (x += slant * (0.5 - y))
    rotate_deg: float
    stroke: float  # stroke width as a share of the canvas side
    wobble: float  # hand tremor, as a share of the digit's height


def _wobble(stroke: Stroke, rng: np.random.Generator, amount: float) -> Stroke:
    if amount <= 0:
        return stroke
    phase = rng.uniform(0, 2 * math.pi, 2)
    freq = rng.uniform(1.5, 3.5, 2)
    t = np.linspace(0, 1, len(stroke))
    dx = amount * np.sin(2 * math.pi * freq[0] * t + phase[0])
    dy = amount * np.sin(2 * math.pi * freq[1] * t + phase[1])
    return [(x + float(a), y + float(b)) for (x, y), a, b in zip(stroke, dx, dy)]


def _densify(stroke: Stroke, step: float = 0.02) -> Stroke:
    out = [stroke[0]]
    for (x0, y0), (x1, y1) in zip(stroke, stroke[1:]):
        n = max(1, int(math.hypot(x1 - x0, y1 - y0) / step))
        out += [(x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n) for k in range(1, n + 1)]
    return out


def place(strokes: list[Stroke], style: Style, size: int, rng: np.random.Generator | None = None) -> list[Stroke]:
    """Unit-box strokes -> canvas pixel coordinates under ``style``."""
    rng = rng or np.random.default_rng(0)
    h = style.height * size
    w = h * style.aspect
    rot = math.radians(style.rotate_deg)
    out = []
    for s in strokes:
        s = _wobble(_densify(s), rng, style.wobble)
        pts = []
        for x, y in s:
            x = x + style.slant * (0.5 - y)
            px, py = (x - 0.5) * w, (y - 0.5) * h
            rx = px * math.cos(rot) - py * math.sin(rot)
            ry = px * math.sin(rot) + py * math.cos(rot)
            pts.append((style.cx * size + rx, style.cy * size + ry))
        out.append(pts)
    return out


def render(strokes_px: list[Stroke], size: int, width_px: float) -> np.ndarray:
    """Thick round-capped white strokes on black, as a canvas brush draws them. uint8 [size, size]."""
    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    r = width_px / 2
    for pts in strokes_px:
        draw.line(pts, fill=255, width=max(1, round(width_px)), joint="curve")
        for x, y in (pts[0], pts[-1]):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return np.asarray(img)


def random_style(rng: np.random.Generator) -> Style:
    """Sizes, places, slants and brushes as seen on real canvases, the awkward ones included."""
    height = rng.uniform(0.25, 0.9)
    aspect = rng.uniform(0.45, 1.0)
    half_w, half_h = height * aspect / 2 + 0.06, height / 2 + 0.06
    return Style(
        height=height, aspect=aspect,
        cx=rng.uniform(min(half_w, 0.5), max(1 - half_w, 0.5)), cy=rng.uniform(min(half_h, 0.5), max(1 - half_h, 0.5)),
        slant=rng.uniform(-0.45, 0.45), rotate_deg=rng.uniform(-20, 20),
        stroke=rng.uniform(0.035, 0.11), wobble=rng.uniform(0.0, 0.035),
    )


def drawn_digit(digit: int, rng: np.random.Generator, size: int = 280) -> np.ndarray:
    variants = TEMPLATES[digit]
    strokes = variants[int(rng.integers(len(variants)))]
    style = random_style(rng)
    return render(place(strokes, style, size, rng), size, style.stroke * size)


def drawn_set(per_digit: int = 50, seed: int = 1234, size: int = 280) -> tuple[np.ndarray, np.ndarray]:
    """A reproducible evaluation set: uint8 canvases [N, size, size] and labels [N]."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(per_digit):
        for d in range(10):
            images.append(drawn_digit(d, rng, size))
            labels.append(d)
    return np.stack(images), np.array(labels)


def preprocessed_drawn_set(per_digit: int = 50, seed: int = 1234, size: int = 280) -> tuple[np.ndarray, np.ndarray]:
    """The drawn set after the canvas pipeline: float [N, 28, 28] and labels [N]."""
    from core.inference import preprocess

    canvases, labels = drawn_set(per_digit, seed, size)
    images = []
    for c in canvases:
        pre = preprocess(c)
        assert pre.ok, "a rendered digit always has ink"
        images.append(pre.image)
    return np.stack(images), labels


def drawn_accuracy(model, per_digit: int = 50, seed: int = 1234) -> float:
    """Share of the drawn set that ``model`` classifies correctly."""
    from core.inference import predict_proba

    images, labels = preprocessed_drawn_set(per_digit, seed)
    probs = predict_proba(model, images)
    return float((probs.argmax(1) == labels).mean())
