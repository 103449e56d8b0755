"""The class's own test set: digits the class drew, each with the label its author picked.

MNIST's test set says how a model does on scanned pen strokes; this set says how it does on
the class's own canvases. One folder, ``$DIGITLAB_CLASSSET`` (default ``<DIGITLAB_HOME>/classset/``),
one PNG per drawing:

    classset/7-3f2a9c0d1e4b5a6f.png    8-bit grey, white ink on black, as drawn (not 28x28)

The label is in the file name and the id is a hash of the image's pixels, so the folder needs
no index that could go stale, the same drawing is never stored twice, and many people can add
at once (each file is written atomically). A set travels as one zip: ``images/<id>.png`` plus
``labels.csv`` (``file,label``). File names inside a zip are never used as paths on disk.

Command line: ``python -m core.classset {score,export,import,list} [--folder DIR]``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core import checkpoint, paths
from core.data import DATASETS, DatasetInfo
from core.images import MAX_FILE_BYTES, ImageError, load_image_bytes
from core.inference import predict_proba, preprocess, to_ink

MAX_ITEMS = 5000  # a class set holds at most this many drawings
MAX_ZIP_BYTES = 50 * 1024 * 1024
MAX_UNZIPPED_BYTES = 200 * 1024 * 1024  # all members together, as their headers declare
MAX_SIDE = 1000  # a larger image (a photo, a scan) is stored scaled down to fit STORED_SIDE
STORED_SIDE = 560
_MB = 1024 * 1024
SCORE_BATCH = 1000  # drawings per forward pass: bounded memory whatever the model's width
EMPTY_MESSAGE = "the class set is empty: add drawings on the Draw page or import a zip"
NOT_A_ZIP = "not a zip file: a class set is exported as a .zip of PNG images and labels.csv"

_NAME = re.compile(r"^([0-9])-([0-9a-f]{16})\.png$")
_ID = re.compile(r"^[0-9a-f]{16}$")


class ClassSetError(ValueError):
    """A drawing or a zip the class set cannot take; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class Drawing:
    id: str  # hash of the stored image's pixels, 16 hex chars
    label: int  # 0..9, the digit its author picked
    path: Path

    @property
    def member(self) -> str:
        """Its name inside an exported zip."""
        return f"images/{self.id}.png"


@dataclass
class ImportReport:
    added: int
    duplicates: int  # already in the set (its label there is kept)
    skipped: list[str]  # one line per refused row: "<member>: <why>"


def _check_label(label) -> int:
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)) or not 0 <= label <= 9:
        raise ClassSetError(f"the label must be a digit 0-9, got {label!r}")
    return int(label)


def _pixel_id(img: np.ndarray) -> str:
    """Hash of the pixels, not of the PNG bytes: stable across PNG encoders."""
    h, w = img.shape
    return hashlib.sha256(f"{h}x{w}:".encode() + np.ascontiguousarray(img).tobytes()).hexdigest()[:16]


def _ink_image(pixels: np.ndarray, background: str) -> np.ndarray:
    """Canvas pixels -> what is stored: uint8 white ink on black, at most MAX_SIDE px a side."""
    try:
        ink = np.rint(to_ink(pixels, background) * 255).astype(np.uint8)
    except ValueError as err:
        raise ClassSetError(f"not a drawing: {err}") from None
    h, w = ink.shape
    if max(h, w) > MAX_SIDE:
        scale = STORED_SIDE / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        ink = np.asarray(Image.fromarray(ink).resize(size, Image.Resampling.BOX))
    return ink


def _refusal(img: np.ndarray) -> str:
    """Why a stored image would not score ("" when it would): the same test ``score`` applies."""
    pre = preprocess(img, background="dark")
    return "" if pre.ok else pre.message


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """Read at most its declared size (already checked): a header that lies cannot blow memory."""
    with zf.open(info) as fh:
        data = fh.read(info.file_size + 1)
    if len(data) > info.file_size:
        raise ClassSetError(f"{info.filename} holds more than its declared size")
    return data


class ClassSet:
    def __init__(self, root: str | Path | None = None):
        default = os.environ.get("DIGITLAB_CLASSSET") or paths.home() / "classset"
        self.root = Path(root if root is not None else default).expanduser()

    # ------------------------------------------------------------------ reading

    def _names(self) -> list[str]:
        try:
            return [n for n in os.listdir(self.root) if _NAME.match(n)]
        except FileNotFoundError:
            return []

    def _drawing(self, name: str) -> Drawing:
        label, drawing_id = _NAME.match(name).groups()
        return Drawing(drawing_id, int(label), self.root / name)

    def list(self) -> list[Drawing]:
        """Oldest first (modification time, then name)."""
        keyed = []
        for name in self._names():
            try:
                keyed.append((os.stat(self.root / name).st_mtime_ns, name))
            except FileNotFoundError:  # removed by someone else meanwhile
                continue
        return [self._drawing(name) for _, name in sorted(keyed)]

    def __len__(self) -> int:
        return len(self._names())

    def counts(self) -> list[int]:
        out = [0] * 10
        for name in self._names():
            out[int(name[0])] += 1
        return out

    def find(self, drawing_id: str) -> Drawing | None:
        if not isinstance(drawing_id, str) or not _ID.match(drawing_id):
            return None
        for label in range(10):
            if (self.root / f"{label}-{drawing_id}.png").exists():
                return self._drawing(f"{label}-{drawing_id}.png")
        return None

    def image(self, d: Drawing) -> np.ndarray:
        """uint8 [H, W], white ink on black."""
        with Image.open(d.path) as img:
            return np.asarray(img.convert("L"))

    # ------------------------------------------------------------------ writing

    def _store(self, img: np.ndarray, label: int, drawing_id: str | None = None) -> tuple[Drawing, bool]:
        """Write ``img`` unless it is there already; (drawing, whether it is new)."""
        if drawing_id is None:
            drawing_id = _pixel_id(img)
            existing = self.find(drawing_id)
            if existing is not None:
                return existing, False
        path = self.root / f"{label}-{drawing_id}.png"
        checkpoint.atomic_write(path, _png(img))
        return Drawing(drawing_id, label, path), True

    def add(self, pixels: np.ndarray, label: int, background: str = "auto") -> Drawing:
        """Store a canvas as a drawing of ``label``.

        The same drawing added again returns the stored one; with another label it is relabelled
        (the author picked the wrong digit, then the right one).
        """
        label = _check_label(label)
        img = _ink_image(pixels, background)
        why = _refusal(img)
        if why:
            raise ClassSetError(why)
        drawing_id = _pixel_id(img)
        existing = self.find(drawing_id)
        if existing is not None:
            return existing if existing.label == label else self.relabel(existing.id, label)
        if len(self) >= MAX_ITEMS:
            raise ClassSetError(f"the class set is full ({MAX_ITEMS} drawings): remove some before adding more")
        return self._store(img, label, drawing_id)[0]

    def relabel(self, drawing_id: str, label: int) -> Drawing:
        label = _check_label(label)
        d = self.find(drawing_id)
        if d is None:
            raise ClassSetError(f"no drawing {drawing_id!r} in the class set: it may have been removed")
        if d.label == label:
            return d
        path = self.root / f"{label}-{d.id}.png"
        try:
            os.replace(d.path, path)  # keeps its time, so it keeps its place in the list
        except FileNotFoundError:
            raise ClassSetError(f"no drawing {drawing_id!r} in the class set: it may have been removed") from None
        return Drawing(d.id, label, path)

    def remove(self, ids) -> int:
        """How many were removed; unknown ids are ignored."""
        wanted = {ids} if isinstance(ids, str) else set(ids)
        removed = 0
        for name in self._names():  # one listing, whatever the number of ids
            if _NAME.match(name).group(2) in wanted:
                (self.root / name).unlink(missing_ok=True)
                removed += 1
        return removed

    def clear(self) -> int:
        return self.remove({d.id for d in self.list()})

    # ------------------------------------------------------------------ zip

    def export_zip(self) -> bytes:
        """``images/<id>.png`` + ``labels.csv``, in list order; the same set gives the same bytes."""
        buf, rows = io.BytesIO(), io.StringIO()
        writer = csv.writer(rows, lineterminator="\n")
        writer.writerow(["file", "label"])
        with zipfile.ZipFile(buf, "w") as zf:
            for d in self.list():
                try:
                    png = d.path.read_bytes()
                except FileNotFoundError:  # removed by someone else meanwhile
                    continue
                zf.writestr(zipfile.ZipInfo(d.member, (1980, 1, 1, 0, 0, 0)), png)
                writer.writerow([d.member, d.label])
            info = zipfile.ZipInfo("labels.csv", (1980, 1, 1, 0, 0, 0))
            zf.writestr(info, rows.getvalue().encode(), compress_type=zipfile.ZIP_DEFLATED)
        return buf.getvalue()

    def import_zip(self, data: bytes) -> ImportReport:
        """Add the drawings of an exported zip (or one made by hand: black-on-white scans are fine).

        Whole-zip problems raise ClassSetError; a bad row is skipped with its reason.
        """
        if len(data) > MAX_ZIP_BYTES:
            raise ClassSetError(f"the zip is {len(data) / _MB:.0f} MB; a class set zip is at most "
                                f"{MAX_ZIP_BYTES / _MB:.0f} MB: split it into smaller zips")
        # every member costs memory before anything can be checked: count their headers first
        if data.count(b"PK\x01\x02") > 2 * MAX_ITEMS + 10:
            raise ClassSetError(f"the zip holds too many files; a class set has at most {MAX_ITEMS} drawings")
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
            infos = zf.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError):
            raise ClassSetError(NOT_A_ZIP) from None
        with zf:
            for info in infos:
                if info.file_size > MAX_FILE_BYTES:
                    raise ClassSetError(f"{info.filename} would unpack to {info.file_size / _MB:.0f} MB; a file in a "
                                        f"class set zip is at most {MAX_FILE_BYTES / _MB:.0f} MB")
            if sum(i.file_size for i in infos) > MAX_UNZIPPED_BYTES:
                raise ClassSetError(f"the zip would unpack to more than {MAX_UNZIPPED_BYTES / _MB:.0f} MB; "
                                    "a class set is far smaller")
            members = {i.filename: i for i in infos if not i.is_dir()}
            csv_names = [n for n in members if n.rsplit("/", 1)[-1] == "labels.csv" and not n.startswith("__MACOSX/")]
            if not csv_names:
                raise ClassSetError("the zip has no labels.csv: a class set zip lists its images in labels.csv "
                                    "with the columns file,label")
            csv_name = min(csv_names, key=lambda n: (n.count("/"), n))
            base = csv_name[: -len("labels.csv")]  # a zipped folder keeps its files beside labels.csv
            rows = self._read_labels(zf, members[csv_name])
            room = MAX_ITEMS - len(self)
            if len(rows) > room:
                raise ClassSetError(f"labels.csv lists {len(rows)} drawings but only {room} more fit (a class set "
                                    f"holds at most {MAX_ITEMS}): remove drawings or import a smaller zip")
            report = ImportReport(0, 0, [])
            for line, (name, label_text) in rows:
                why = self._import_row(zf, members, base + name, label_text, report)
                if why:
                    report.skipped.append(f"{name or f'labels.csv line {line}'}: {why}")
        return report

    @staticmethod
    def _read_labels(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> list[tuple[int, tuple[str, str]]]:
        """(line number, (file, label text)) for each non-empty row; a header row is dropped."""
        try:
            text = _read_member(zf, info).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ClassSetError("labels.csv is not UTF-8 text: save it as CSV (UTF-8)") from None
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError, NotImplementedError) as err:
            raise ClassSetError(f"labels.csv cannot be read from the zip: {err}") from None
        try:
            parsed = list(csv.reader(io.StringIO(text)))
        except csv.Error as err:
            raise ClassSetError(f"labels.csv is not valid CSV: {err}") from None
        rows = []
        for line, row in enumerate(parsed, 1):
            cells = [c.strip() for c in row]
            while len(cells) > 2 and not cells[-1]:
                cells.pop()  # spreadsheets add empty columns at the end: "a.png,3,"
            if not any(cells):
                continue
            if line == 1 and len(cells) >= 2 and cells[1].lower() == "label":
                continue  # the header: "file,label" or any first column name
            rows.append((line, (cells[0], cells[1] if len(cells) == 2 else "")))
        return rows

    def _import_row(self, zf, members, name: str, label_text: str, report: ImportReport) -> str:
        """Import one row into ``report``; the reason it was refused, or ""."""
        if not re.fullmatch(r"[0-9]", label_text):
            return f"label {label_text!r} is not a digit 0-9 (each row is file,label)"
        info = members.get(name)
        if info is None:
            return "not in the zip"
        try:
            pixels = load_image_bytes(_read_member(zf, info))
        except ImageError as err:
            return str(err)
        except (ClassSetError, zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError,
                NotImplementedError) as err:
            return f"cannot be read from the zip (damaged or unsupported): {err}"
        if (pixels.ndim == 2 and pixels.dtype == np.uint8 and max(pixels.shape) <= MAX_SIDE
                and _pixel_id(pixels) == Path(name).stem):
            img = pixels  # exactly as exported: keep it, whatever its border looks like
        else:
            img = _ink_image(pixels, "auto")
        why = _refusal(img)
        if why:
            return f"nothing to score: {why}"
        _, new = self._store(img, int(label_text))
        if new:
            report.added += 1
        else:
            report.duplicates += 1
        return ""


# ---------------------------------------------------------------------- scoring

@dataclass
class Score:
    drawings: list[Drawing]
    labels: np.ndarray  # int64 [N]
    predictions: np.ndarray  # int64 [N]; -1 where a drawing could not be read
    confidences: np.ndarray  # float32 [N], probability of the predicted class
    probabilities: np.ndarray  # float32 [N, 10]
    accuracy: float  # nan when N == 0

    def mistakes(self) -> list[int]:
        """Indices into ``drawings``, most confident mistakes first: the ones most worth a look."""
        wrong = np.flatnonzero(self.predictions != self.labels)
        return [int(i) for i in wrong[np.argsort(-self.confidences[wrong], kind="stable")]]

    def per_class(self) -> np.ndarray:
        """Accuracy per label (float64 [10]), nan where a label has no drawings."""
        out = np.full(10, np.nan)
        for label in range(10):
            mask = self.labels == label
            if mask.any():
                out[label] = float((self.predictions[mask] == label).mean())
        return out


def score(model: torch.nn.Module, classset: ClassSet, info: DatasetInfo = DATASETS["mnist"]) -> Score:
    """Every drawing through the canvas pipeline, then the model on all of them in a few big batches."""
    drawings = classset.list()
    n = len(drawings)
    labels = np.array([d.label for d in drawings], np.int64)
    probabilities = np.zeros((n, 10), np.float32)
    readable, images = [], []
    for i, d in enumerate(drawings):
        try:
            pre = preprocess(classset.image(d), background="dark")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):  # removed or damaged meanwhile
            continue
        if pre.ok:
            readable.append(i)
            images.append(pre.image)
    for start in range(0, len(images), SCORE_BATCH):
        batch = np.stack(images[start:start + SCORE_BATCH])
        probabilities[readable[start:start + SCORE_BATCH]] = predict_proba(model, batch, info)
    predictions = np.full(n, -1, np.int64)
    confidences = np.zeros(n, np.float32)
    if readable:
        predictions[readable] = probabilities[readable].argmax(1)
        confidences[readable] = probabilities[readable].max(1)
    accuracy = float((predictions == labels).mean()) if n else math.nan
    return Score(drawings, labels, predictions, confidences, probabilities, accuracy)


# ---------------------------------------------------------------------- command line

def _score_cli(args) -> int:
    try:
        ckpt = checkpoint.load(args.checkpoint)
    except checkpoint.CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if ckpt.dataset != "mnist":
        print(f"error: {args.checkpoint} was trained on {DATASETS[ckpt.dataset].title}; the class set holds "
              "handwritten digits: pick a model trained on MNIST", file=sys.stderr)
        return 2
    classset = ClassSet(args.folder)
    if len(classset) == 0:
        print(EMPTY_MESSAGE, file=sys.stderr)
        return 1
    result = score(ckpt.build(), classset, DATASETS["mnist"])
    right = int((result.predictions == result.labels).sum())
    wrong = [result.drawings[i] for i in result.mistakes()]
    if args.json:
        print(json.dumps({
            "accuracy": result.accuracy, "n": len(result.drawings), "right": right,
            "per_class": [None if math.isnan(a) else a for a in result.per_class().tolist()],
            "mistakes": [{"file": d.member, "label": d.label, "prediction": int(result.predictions[i]),
                          "confidence": round(float(result.confidences[i]), 4)}
                         for i, d in zip(result.mistakes(), wrong)],
        }))
        return 0
    print(f"accuracy {100 * result.accuracy:.2f} % on {len(result.drawings)} drawings ({right} right)")
    for i, d in zip(result.mistakes(), wrong):
        predicted = result.predictions[i] if result.predictions[i] >= 0 else "-"
        print(f"{d.member}\ttrue {d.label}\tpredicted {predicted}\t{result.confidences[i]:.2f}")
    return 0


def _import_cli(args) -> int:
    path = Path(args.zip)
    try:
        if path.stat().st_size > MAX_ZIP_BYTES:
            raise ClassSetError(f"{path} is {path.stat().st_size / _MB:.0f} MB; a class set zip is at most "
                                f"{MAX_ZIP_BYTES / _MB:.0f} MB")
        report = ClassSet(args.folder).import_zip(path.read_bytes())
    except OSError as err:
        print(f"error: cannot read {path}: {err.strerror}", file=sys.stderr)
        return 2
    except ClassSetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"added {report.added}, already there {report.duplicates}, skipped {len(report.skipped)}")
    for line in report.skipped:
        print(f"skipped {line}")
    return 1 if report.added == 0 and report.skipped else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.classset", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    folder = argparse.ArgumentParser(add_help=False)
    folder.add_argument("--folder", default=None, help="default: $DIGITLAB_CLASSSET or <DIGITLAB_HOME>/classset")
    s = sub.add_parser("score", parents=[folder], help="score a model on the class set")
    s.add_argument("--checkpoint", default=str(paths.BUNDLED_MODEL), help="default: the bundled model")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    sub.add_parser("export", parents=[folder], help="write the class set as a zip").add_argument("zip", metavar="OUT.zip")
    sub.add_parser("import", parents=[folder], help="add the drawings of a zip").add_argument("zip", metavar="IN.zip")
    sub.add_parser("list", parents=[folder], help="count the drawings per digit")
    args = p.parse_args(argv)

    if args.command == "score":
        return _score_cli(args)
    if args.command == "import":
        return _import_cli(args)
    classset = ClassSet(args.folder)
    if args.command == "export":
        checkpoint.atomic_write(args.zip, classset.export_zip())
        print(f"exported {len(classset)} drawings to {args.zip}")
        return 0
    for digit, count in enumerate(classset.counts()):
        print(f"{digit}\t{count}")
    print(f"total\t{len(classset)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
