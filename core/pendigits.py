"""Digits real people wrote with a pen, drawn on the canvas: the project's test of what matters.

The set is the 800 digits of UJI Pen Characters v2's 40 "trn" writers (UJI-W01..W11 and UPV-W17..W59,
each digit twice;
Prat, Castro, Llorens, Marzal, Vilar, 2008, CC BY 4.0), read from the mirror folder
(``$DIGITLAB_MIRROR/uji-pen-digits/trn-digits.txt``). They are pen trajectories, lifted between
strokes, which is what a canvas records. Each one is drawn here as the canvas draws it (white
round strokes on black, 280 px, a round cap at every point and anti-aliased, as
dashboard/digitcanvas.py draws each pointer move) over a grid of brush widths, sizes and places,
and read through the same preprocessing as a drawing.

The writers are split once, here, alternately in file order (so both institutions are on each
side): ``REPORT_WRITERS`` (20 writers, every second one) are never trained or tuned on, and every
accuracy this project shows is measured on them. The other 20 (``TRAIN_WRITERS``) choose the
bundled model's recipe and its not-a-digit threshold by cross-validation (core.canvasmodel: five
folds of 4 held out; fold 2 holds out ``TUNE_WRITERS`` and trains on ``FIT_WRITERS``), and the
bundled model is then trained on all 20.

``python -m core pendigits [--checkpoint PATH] [--writers report|all|...] [--mistakes sheet.png]``
(core.cli.pendigits) prints accuracy per condition and per digit.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from core.values import is_fraction

SHORT_NAME = "pen-written digits"
SUBDIR, FILENAME = "uji-pen-digits", "trn-digits.txt"
CANVAS = 280

WRITERS = (  # in file order
    "UJI-W01", "UJI-W02", "UJI-W03", "UJI-W04", "UJI-W05", "UJI-W06", "UJI-W07", "UJI-W08", "UJI-W09", "UJI-W10",
    "UJI-W11", "UPV-W17", "UPV-W19", "UPV-W20", "UPV-W22", "UPV-W23", "UPV-W25", "UPV-W26", "UPV-W28", "UPV-W29",
    "UPV-W31", "UPV-W32", "UPV-W34", "UPV-W35", "UPV-W37", "UPV-W38", "UPV-W40", "UPV-W41", "UPV-W43", "UPV-W44",
    "UPV-W46", "UPV-W47", "UPV-W49", "UPV-W50", "UPV-W52", "UPV-W53", "UPV-W55", "UPV-W56", "UPV-W58", "UPV-W59")
REPORT_WRITERS = WRITERS[1::2]  # never trained on, never tuned on: every figure shown comes from these
TUNE_WRITERS = WRITERS[0::2][2::5]  # UJI-W05, UPV-W22, UPV-W37, UPV-W52: thresholds and model choice
FIT_WRITERS = tuple(w for w in WRITERS[0::2] if w not in TUNE_WRITERS)  # may be trained on
TRAIN_WRITERS = WRITERS[0::2]  # fit and tune writers: the bundled model's recipe is chosen on them, then trained on all
REPORT_NAME = "UJI Pen Characters, 20 writers never trained on"
SET_NAME = f"{SHORT_NAME} ({REPORT_NAME})"

WIDTHS = (8, 16, 24, 32, 40)  # brush width in px on a 280 px canvas
SIZES = (0.2, 0.35, 0.5, 0.7, 0.95)  # the ink's longer side, as a share of the canvas side
POSITIONS = ("centre", "top-left", "bottom-right")
MAX_BRUSH_SHARE = 0.3  # a brush wider than this share of the digit's size fills its loops: not in the grid
MARGIN = 0.03  # share of the canvas between the ink and the border, off centre

Stroke = np.ndarray  # float [n, 2]: x, y in tablet units, y down


class PenDigitsUnavailable(RuntimeError):
    """The pen-written digit file is missing or unreadable; the message says where it was looked for."""


@dataclass(frozen=True)
class Sample:
    digit: int
    writer: str  # "UJI-W01", "UPV-W17", ...
    repetition: int
    strokes: tuple  # of Stroke

    @property
    def tag(self) -> str:
        return f"{self.writer}-{self.repetition:02d}"


@dataclass(frozen=True)
class Condition:
    width: int
    size: float
    position: str

    @property
    def label(self) -> str:
        return f"brush {self.width} px, size {self.size:.0%}, {self.position}"


def grid() -> list[Condition]:
    """Every brush width and size pair the grid holds (a brush no wider than MAX_BRUSH_SHARE of the
    digit), each at every place. Sizes of 95 % leave no room to move: centred only."""
    out = []
    for size in SIZES:
        for width in WIDTHS:
            if width > MAX_BRUSH_SHARE * size * CANVAS + 1e-9:
                continue
            for pos in POSITIONS if size < 0.9 else ("centre",):
                out.append(Condition(width, size, pos))
    return out


# ----------------------------------------------------------------------------- reading

def default_path() -> Path:
    mirror = os.environ.get("DIGITLAB_MIRROR")
    if not mirror:
        raise PenDigitsUnavailable(
            "the pen-written digits are read from the mirror folder: set DIGITLAB_MIRROR to the folder that holds "
            f"{SUBDIR}/{FILENAME} (as for MNIST)")
    return Path(mirror).expanduser() / SUBDIR / FILENAME


_WORD = re.compile(r"^WORD\s+(\S+)\s+trn_(\w+?)_(W\d+)-(\d\d)\s*$")
_POINTS = re.compile(r"^POINTS\s+(\d+)\s+#(.*)$")


def parse(text: str) -> list[Sample]:
    """The UJI format: ``WORD <digit> trn_UJI_Wnn-rr``, ``NUMSTROKES k``, then k ``POINTS n # x y ...``."""
    samples: list[Sample] = []
    current: dict | None = None

    def finish():
        if current is not None:
            if len(current["strokes"]) != current["n"]:
                raise ValueError(f"{current['writer']}-{current['rep']:02d}: {current['n']} strokes announced, "
                                 f"{len(current['strokes'])} found")
            samples.append(Sample(current["digit"], current["writer"], current["rep"], tuple(current["strokes"])))

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("//"):
            continue
        if line.startswith("WORD"):
            finish()
            m = _WORD.match(line)
            if not m or not m.group(1).isdigit() or len(m.group(1)) != 1:
                raise ValueError(f"line {lineno}: not a digit sample: {line[:60]!r}")
            current = {"digit": int(m.group(1)), "writer": f"{m.group(2)}-{m.group(3)}", "rep": int(m.group(4)),
                       "n": 0, "strokes": []}
        elif line.startswith("NUMSTROKES"):
            current["n"] = int(line.split()[1])
        elif line.startswith("POINTS"):
            m = _POINTS.match(line)
            n, values = int(m.group(1)), np.array(m.group(2).split(), dtype=np.float32)
            if values.size != 2 * n:
                raise ValueError(f"line {lineno}: {n} points announced, {values.size // 2} found")
            current["strokes"].append(values.reshape(n, 2))
        else:
            raise ValueError(f"line {lineno}: unexpected {line[:40]!r}")
    finish()
    return samples


_CACHE: dict[str, list[Sample]] = {}


def load(path: str | Path | None = None, writers=None) -> list[Sample]:
    """All samples (in file order), or only those of ``writers``."""
    p = Path(path) if path is not None else default_path()
    key = str(p)
    if key not in _CACHE:
        try:
            text = p.read_text(encoding="latin-1")
        except OSError as err:
            raise PenDigitsUnavailable(f"cannot read the pen-written digits at {p}: {err.strerror}. They come with "
                                       f"the data mirror ({SUBDIR}/{FILENAME}); set DIGITLAB_MIRROR to it") from None
        _CACHE[key] = parse(text)
    samples = _CACHE[key]
    if writers is not None:
        keep = set(writers)
        samples = [s for s in samples if s.writer in keep]
    return samples


# ----------------------------------------------------------------------------- drawing

def place(strokes, size: float, width: float, position: str = "centre", canvas: int = CANVAS,
          aspect_jitter: float = 1.0, offset: tuple[float, float] | None = None) -> list[np.ndarray]:
    """Tablet strokes -> canvas pixels: the ink (strokes plus the brush) spans ``size`` of the canvas
    on its longer side, at ``position`` ("centre", "top-left", "bottom-right") or at ``offset``
    (shares of the free room, 0..1 each)."""
    pts = np.concatenate(strokes)
    lo, hi = pts.min(0), pts.max(0)
    span = np.maximum(hi - lo, 1e-6)
    span_scaled = span * np.array([aspect_jitter, 1.0])
    target = max(size * canvas - width, 2.0)
    scale = target / span_scaled.max()
    box = span_scaled * scale + width  # the ink's box in px
    room = np.maximum(canvas - box - 2 * MARGIN * canvas, 0.0)
    if offset is not None:
        frac = np.asarray(offset, dtype=np.float64)
    else:
        frac = {"centre": np.array([0.5, 0.5]), "top-left": np.array([0.0, 0.0]),
                "bottom-right": np.array([1.0, 1.0])}[position]
    corner = MARGIN * canvas + room * frac
    if (box > canvas - 2 * MARGIN * canvas).any():  # too big to keep the margin: centre it
        corner = (canvas - box) / 2
    start = corner + width / 2
    return [((s - lo) * np.array([aspect_jitter, 1.0]) * scale + start) for s in strokes]


SUPERSAMPLE = 4  # strokes are drawn at 4x and averaged down: anti-aliased edges, as a browser canvas draws them


def render(strokes_px, width: float, canvas: int = CANVAS) -> np.ndarray:
    """White round strokes on black, as the canvas brush draws them: round caps and a round joint at
    every point (so a wide brush leaves no seams or spikes where short segments meet), anti-aliased.
    uint8 [canvas, canvas]."""
    ss = SUPERSAMPLE
    img = Image.new("L", (canvas * ss, canvas * ss), 0)
    draw = ImageDraw.Draw(img)
    r = width * ss / 2
    w = max(1, round(width * ss))
    for s in strokes_px:
        pts = [(float(x) * ss, float(y) * ss) for x, y in s]
        if len(pts) > 1:
            draw.line(pts, fill=255, width=w)
        for x, y in pts:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return np.asarray(img.reduce(ss) if ss > 1 else img)


def draw(sample: Sample, cond: Condition, canvas: int = CANVAS) -> np.ndarray:
    scale = canvas / CANVAS
    return render(place(sample.strokes, cond.size, cond.width * scale, cond.position, canvas), cond.width * scale, canvas)


def random_canvas(strokes, rng: np.random.Generator, canvas: int = CANVAS, thick: float = 0.0) -> np.ndarray:
    """One drawing at a random size, place, brush and aspect: for training, never for reporting.

    ``thick``: the share of drawings whose brush comes from the thickest 40 % of the widths allowed
    for their size (0: every width equally likely)."""
    size = float(rng.uniform(0.18, 0.97))
    widest = min(44, max(7, 0.33 * size * canvas))
    if thick:
        lo = 6 if rng.uniform() >= thick else 6 + 0.6 * (widest - 6)
        width = float(rng.uniform(lo, widest))
    else:
        width = float(rng.uniform(6, widest))
    return render(place(strokes, size, width, canvas=canvas, aspect_jitter=float(rng.uniform(0.8, 1.2)),
                        offset=tuple(rng.uniform(0, 1, 2))), width, canvas)


def preprocessed(canvases) -> np.ndarray:
    """Canvases -> the 28x28 images the model reads, float [N, 28, 28]."""
    from core.inference import preprocess

    out = []
    for c in canvases:
        pre = preprocess(c, background="dark")
        if not pre.ok:
            raise ValueError(f"a rendered pen digit was refused: {pre.message}")
        out.append(pre.image)
    return np.stack(out).astype(np.float32)


# ----------------------------------------------------------------------------- evaluation

@dataclass
class Report:
    samples: list[Sample]
    conditions: list[Condition]
    predictions: np.ndarray  # int [samples, conditions]
    confidences: np.ndarray  # float [samples, conditions]
    writers_text: str = ""

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.digit for s in self.samples])

    @property
    def correct(self) -> np.ndarray:
        return self.predictions == self.labels[:, None]

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())

    def by(self, attr: str) -> dict:
        """Accuracy per value of one condition axis ("width", "size" or "position"), over the rest of the grid."""
        out = {}
        for value in dict.fromkeys(getattr(c, attr) for c in self.conditions):
            cols = [i for i, c in enumerate(self.conditions) if getattr(c, attr) == value]
            out[value] = float(self.correct[:, cols].mean())
        return out

    def per_digit(self) -> dict[int, float]:
        return {d: float(self.correct[self.labels == d].mean()) for d in range(10) if (self.labels == d).any()}

    def worst_condition(self) -> tuple[str, float]:
        """The weakest brush width or size of the grid (each over the other axes)."""
        return worst_condition(self.correct, self.conditions)

    def worst_cell(self) -> tuple[Condition, float]:
        accs = self.correct.mean(0)
        i = int(accs.argmin())
        return self.conditions[i], float(accs[i])

    def mistakes(self) -> list[tuple[int, int]]:
        """(sample index, condition index) of every wrong answer."""
        return [tuple(map(int, ij)) for ij in np.argwhere(~self.correct)]

    def summary(self) -> dict:
        worst, worst_acc = self.worst_condition()
        cell, cell_acc = self.worst_cell()
        return {"set": SET_NAME if self.writers_text == "report" else f"{SHORT_NAME} (writers {self.writers_text})",
                "writers": self.writers_text, "samples": len(self.samples), "drawings": int(self.correct.size),
                "accuracy": round(self.accuracy, 6),  # 4 places would print 0.98985 as 98.99 %, rounded twice
                "by_width": {str(k): round(v, 4) for k, v in self.by("width").items()},
                "by_size": {f"{k:.2f}": round(v, 4) for k, v in self.by("size").items()},
                "by_position": {k: round(v, 4) for k, v in self.by("position").items()},
                "per_digit": {str(k): round(v, 4) for k, v in self.per_digit().items()},
                "worst_condition": worst, "worst_condition_acc": round(worst_acc, 4),
                "worst_cell": cell.label, "worst_cell_acc": round(cell_acc, 4)}


def worst_condition(correct: np.ndarray, conditions: list[Condition]) -> tuple[str, float]:
    """The weakest brush width or size of a grid: ``correct`` is bool [samples, conditions]."""
    rows = []
    for attr, name in (("width", "brush {} px"), ("size", "size {:.0%}")):
        for value in dict.fromkeys(getattr(c, attr) for c in conditions):
            cols = [i for i, c in enumerate(conditions) if getattr(c, attr) == value]
            rows.append((name.format(value), float(correct[:, cols].mean())))
    return min(rows, key=lambda r: r[1])


def writers_text(writers) -> str:
    """"report", "all", "fit", "tune", or the writers' tags."""
    ws = set(writers)
    for name, group in (("report", REPORT_WRITERS), ("all", WRITERS), ("fit", FIT_WRITERS), ("tune", TUNE_WRITERS)):
        if ws == set(group):
            return name
    return ",".join(w for w in WRITERS if w in ws)


def render_grid(samples: list[Sample], conditions: list[Condition] | None = None) -> np.ndarray:
    """The model-independent part of an evaluation: float [samples, conditions, 28, 28].

    Values are rounded to float16 precision (invisible at 8 bits a pixel), so a grid kept on disk
    gives exactly the answers of one drawn afresh.
    """
    conditions = conditions or grid()
    images = np.stack([preprocessed([draw(s, c) for c in conditions]) for s in samples])
    return images.astype(np.float16).astype(np.float32)


def _cache_key() -> str:
    import hashlib

    from core import inference

    h = hashlib.sha256()
    for f in (Path(__file__), Path(inference.__file__)):
        h.update(f.read_bytes())
    p = default_path()
    h.update(f"{p.stat().st_size}:{p.stat().st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def report_images() -> np.ndarray:
    """The report writers' whole grid, drawn once and kept in the cache folder (20 s to draw, 30 MB)."""
    from core import paths

    path = paths.home() / "cache" / f"pendigits-{_cache_key()}.npy"
    try:
        return np.load(path).astype(np.float32)
    except (OSError, ValueError):
        pass
    images = render_grid(load(writers=REPORT_WRITERS))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, images.astype(np.float16))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: draw it again next time
    return images


def evaluate(model, samples: list[Sample] | None = None, conditions: list[Condition] | None = None,
             images: np.ndarray | None = None) -> Report:
    """Score ``model`` on every sample under every condition (the report writers by default).

    ``images`` (from ``render_grid``) skips the drawing, for scoring many models on one grid.
    """
    from core.inference import predict_proba

    if samples is None and conditions is None and images is None:
        images = report_images()
    samples = load(writers=REPORT_WRITERS) if samples is None else samples
    conditions = conditions or grid()
    if images is None:
        images = render_grid(samples, conditions)
    flat = images.reshape(-1, 28, 28)
    probs = predict_proba(model, flat).reshape(len(samples), len(conditions), -1)
    return Report(samples, conditions, probs.argmax(-1), probs.max(-1), writers_text({s.writer for s in samples}))


def pen_accuracy(model) -> dict:
    """The figures a checkpoint keeps: ``pen_acc`` (report writers, whole grid) and the worst condition."""
    r = evaluate(model)
    worst, acc = r.worst_condition()
    return {"pen_acc": r.accuracy, "pen_worst_acc": acc, "pen_worst": worst, "pen_writers": r.writers_text}


def figure_text(metrics: dict) -> str | None:
    """How a checkpoint's pen-written figure reads wherever it is shown; None when it has none.

    Only ``pen_acc`` is shown: the project's synthetic stroke set (``drawn_acc`` in older
    checkpoints) flattered every model and is never shown as a drawn-digit figure.
    """
    acc = metrics.get("pen_acc")
    if not is_fraction(acc):
        return None
    return f"pen-written digits {acc:.2%} ({REPORT_NAME}, 8-40 px brushes)"  # two places: 98.98 % is not 99.0 %


def mistake_sheet(report: Report, path: str | Path, limit: int = 120, cell: int = 84) -> Path:
    """A PNG of the mistakes: each drawing small, with its writer, condition and the wrong answer."""
    wrong = report.mistakes()[:limit]
    cols = 10
    rows = max(1, math.ceil(len(wrong) / cols))
    label_h = 26
    sheet = Image.new("L", (cols * cell, rows * (cell + label_h)), 40)
    pen = ImageDraw.Draw(sheet)
    for k, (i, j) in enumerate(wrong):
        s, c = report.samples[i], report.conditions[j]
        img = Image.fromarray(draw(s, c)).resize((cell - 4, cell - 4), Image.Resampling.BOX)
        x, y = (k % cols) * cell, (k // cols) * (cell + label_h)
        sheet.paste(img, (x + 2, y + 2))
        pen.text((x + 3, y + cell), f"{s.digit}->{report.predictions[i, j]} {s.tag}", fill=255)
        pen.text((x + 3, y + cell + 12), f"{c.width}px {c.size:.0%} {c.position[:6]}", fill=200)
    if not wrong:
        pen.text((10, 10), "no mistakes", fill=255)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
