"""The class's own test set: digits the class drew, each with the label its author picked.

MNIST's test set says how a model does on scanned pen strokes; this set says how it does on
the class's own canvases. One folder, ``$DIGITLAB_CLASSSET`` (default ``<DIGITLAB_HOME>/classset/``),
one PNG per drawing:

    classset/7-3f2a9c0d1e4b5a6f.png    8-bit grey, white ink on black, as drawn (not 28x28)

The label is in the file name and the id is a hash of the image's pixels, so the folder needs
no index that could go stale and the same drawing is never stored twice. Many people, in many
processes, can add at once: each file is written to a temporary name first, and the short step
that checks the folder (is this drawing there already, under which label? is the set full?) and
renames the file into place holds an exclusive lock on the folder (``flock``), so a drawing is
stored under exactly one label and the set never grows past ``MAX_ITEMS``. Reading (listing,
scoring, exporting) takes no lock. A set travels as one zip: ``images/<id>.png`` plus
``labels.csv`` (``file,label``). File names inside a zip are never used as paths on disk.

Command line: ``python -m core classset {score,export,import,list} [--folder DIR]`` (core.cli.classset).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import inspect
import io
import math
import os
import re
import threading
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

try:
    import fcntl
except ImportError:  # not on Windows: one process at a time there, guarded by a thread lock
    fcntl = None

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from core import checkpoint, identity, paths
from core.data import DATASETS, DatasetInfo
from core.files import FileRefused, read_regular, shown, sync_folder, write_synced_temp
from core.images import MAX_FILE_BYTES, ImageError, load_image_bytes
from core.inference import predict_proba, preprocess, to_ink
from core.values import is_number

MAX_ITEMS = 5000  # a class set holds at most this many drawings
MAX_ZIP_BYTES = 50 * 1024 * 1024
MAX_UNZIPPED_BYTES = 200 * 1024 * 1024  # all members together, as their headers declare
MAX_SIDE = 1000  # a larger image (a photo, a scan) is stored scaled down to fit STORED_SIDE
STORED_SIDE = 560
# An imported image is decoded only within these budgets: an exported drawing is at most MAX_SIDE
# a side (1 MP), and a full set of canvases (280 x 280) is about 400 MP in all.
IMPORT_MAX_PIXELS = 2_000_000  # one image, about 1400 x 1400
IMPORT_TOTAL_PIXELS = 500_000_000  # all the distinct images one zip lists
IMPORT_BATCH = 32  # drawings stored per turn of the lock
_MB = 1024 * 1024
SCORE_BATCH = 1000  # drawings per forward pass: bounded memory whatever the model's width
AUTHOR_CHUNK = "digitlab:author"  # a PNG text chunk: who added the drawing (core.identity), if known
EMPTY_MESSAGE = "the class set is empty: add drawings on the Draw page or import a zip"
NOT_A_ZIP = "not a zip file: a class set is exported as a .zip of PNG images and labels.csv"

_NAME = re.compile(r"^([0-9])-([0-9a-f]{16})\.png$")
_ID = re.compile(r"^[0-9a-f]{16}$")
_THREAD_LOCK = threading.Lock()  # only where fcntl is missing
_DECODER_TAKES_LIMIT = "max_pixels" in inspect.signature(load_image_bytes).parameters


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


def _png(img: np.ndarray, author: str = "") -> bytes:
    """The stored file; its author, if known, in a text chunk (the pixels and so the id are the same)."""
    buf = io.BytesIO()
    info = None
    author = identity.clean_owner(author)
    if author:
        info = PngInfo()
        info.add_itxt(AUTHOR_CHUNK, author)
    Image.fromarray(img).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _author_of(png: bytes) -> str:
    try:
        with Image.open(io.BytesIO(png)) as img:  # the text chunk sits before the pixels: they are not decoded
            text = img.info.get(AUTHOR_CHUNK, "")  # .text would decode the pixels to look after them
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return ""
    return identity.clean_owner(text) if isinstance(text, str) else ""


def _full_message() -> str:
    return f"the class set is full ({MAX_ITEMS} drawings): remove some before adding more"


def _too_large(w: int | None, h: int | None) -> str:
    size = f"{w} x {h} pixels" if w else "too large"
    return (f"{size}; an imported image is at most {IMPORT_MAX_PIXELS:,} pixels (a drawing exported from here "
            f"is at most {MAX_SIDE} x {MAX_SIDE})")


def _member_size(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[int, int] | None:
    """Width and height from the image's header, read without decoding its pixels; None if unreadable
    (the full decode then says why). A decompression bomb too big even to open is (0, 0)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with zf.open(info) as fh, Image.open(fh) as img:  # reads the header, not the pixels
                return img.size
    except Image.DecompressionBombError:
        return (0, 0)
    except (OSError, ValueError, SyntaxError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile):
        return None


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

    def _bytes(self, d: Drawing) -> bytes:
        """A stored file's bytes; FileRefused for anything but a regular file in the folder (a link to
        ``/dev/zero`` or a pipe named like a drawing is refused, never read)."""
        return read_regular(d.path, MAX_FILE_BYTES, "drawing", inside=self.root)

    def image(self, d: Drawing) -> np.ndarray:
        """uint8 [H, W], white ink on black; FileRefused (a ValueError) or OSError if it cannot be read."""
        with Image.open(io.BytesIO(self._bytes(d))) as img:
            return np.asarray(img.convert("L"))

    def author(self, d: Drawing) -> str:
        """Who added it ("" when unknown: added before authors were kept, or unreadable)."""
        try:
            return _author_of(self._bytes(d))
        except (OSError, ValueError):  # removed meanwhile, or not a file
            return ""

    def _check_allowed(self, ids, by: identity.Who | None) -> None:
        """NotAllowed unless ``by`` added every one of these drawings (or is the teacher, or None: the server)."""
        if by is None or by.teacher:
            return
        for d in self.list():
            if d.id in ids:
                identity.require(by, self.author(d))

    # ------------------------------------------------------------------ writing

    @contextlib.contextmanager
    def _locked(self):
        """Exclusive, across processes and threads, for the check-then-rename steps; never held while
        decoding or writing image data. The lock is on the folder itself: no lock file to leave behind."""
        self.root.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            with _THREAD_LOCK:
                yield
            return
        fd = os.open(self.root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # each open() is its own lock holder, so threads exclude too
            yield
        finally:
            os.close(fd)  # releases the lock

    def _stage(self, png: bytes) -> str:
        """Write ``png`` to a temporary file in the folder, synced; its path. Done before taking the lock."""
        return write_synced_temp(self.root, png, prefix=".new-", suffix=".png.tmp")

    def _sync_folder(self) -> None:
        """Make the renames durable."""
        sync_folder(self.root)

    def add(self, pixels: np.ndarray, label: int, background: str = "auto", author: str = "") -> Drawing:
        """Store a canvas as a drawing of ``label``, by ``author`` (kept inside the PNG).

        The same drawing added again returns the stored one; with another label it is relabelled
        (the author picked the wrong digit, then the right one). Two people adding the same drawing
        at once store it once, under the label of whoever came last.
        """
        label = _check_label(label)
        img = _ink_image(pixels, background)
        why = _refusal(img)
        if why:
            raise ClassSetError(why)
        drawing_id = _pixel_id(img)
        existing = self.find(drawing_id)
        if existing is not None and existing.label == label:
            return existing  # nothing to change, no need to wait for the lock
        tmp = None if existing is not None else self._stage(_png(img, author))
        try:
            with self._locked():
                existing = self.find(drawing_id)
                if existing is not None:
                    return existing if existing.label == label else self._move(existing, label)
                if len(self) >= MAX_ITEMS:
                    raise ClassSetError(_full_message())
                if tmp is None:  # it was there a moment ago and has been removed meanwhile
                    tmp = self._stage(_png(img, author))
                path = self.root / f"{label}-{drawing_id}.png"
                os.replace(tmp, path)
                tmp = None
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
        self._sync_folder()
        return Drawing(drawing_id, label, path)

    def _move(self, d: Drawing, label: int) -> Drawing:
        """Give a stored drawing another label; the caller holds the lock."""
        path = self.root / f"{label}-{d.id}.png"
        try:
            os.replace(d.path, path)  # keeps its time, so it keeps its place in the list
        except FileNotFoundError:
            raise ClassSetError(f"no drawing {d.id!r} in the class set: it may have been removed") from None
        return Drawing(d.id, label, path)

    def relabel(self, drawing_id: str, label: int, by: identity.Who | None = None) -> Drawing:
        label = _check_label(label)
        self._check_allowed({drawing_id}, by)
        if self.find(drawing_id) is None:
            raise ClassSetError(f"no drawing {str(drawing_id)[:40]!r} in the class set: it may have been removed")
        with self._locked():
            d = self.find(drawing_id)
            if d is None:
                raise ClassSetError(f"no drawing {drawing_id!r} in the class set: it may have been removed")
            return d if d.label == label else self._move(d, label)

    def remove(self, ids, by: identity.Who | None = None) -> int:
        """How many were removed; unknown ids are ignored. ``by``: the person asking (NotAllowed for a
        drawing someone else added, unless they are the teacher); None for the server itself."""
        wanted = {ids} if isinstance(ids, str) else set(ids)
        self._check_allowed(wanted, by)
        if not any(_NAME.match(n).group(2) in wanted for n in self._names()):
            return 0
        removed = 0
        with self._locked():  # a drawing being relabelled meanwhile is removed under its new name
            for name in self._names():  # one listing, whatever the number of ids
                if _NAME.match(name).group(2) in wanted:
                    try:
                        (self.root / name).unlink()
                        removed += 1
                    except FileNotFoundError:
                        pass
        return removed

    def _store_batch(self, items: list[tuple[str, int, str | None]]) -> list[str]:
        """Store staged drawings ``(id, label, temporary file or None)`` in order, under one turn of the lock.

        For each: "new", "duplicate" (there already, under whatever label it has) or "full". A None
        file means the drawing was seen before: in the folder, or earlier in the same zip.
        """
        outcomes = []
        try:
            with self._locked():
                names = self._names()
                have = {n[2:18] for n in names}
                count = len(names)
                for drawing_id, label, tmp in items:
                    if drawing_id in have or (tmp is None and count < MAX_ITEMS):
                        outcomes.append("duplicate")  # (None: it was there a moment ago, or listed twice)
                    elif count >= MAX_ITEMS:
                        outcomes.append("full")
                    else:
                        os.replace(tmp, self.root / f"{label}-{drawing_id}.png")
                        have.add(drawing_id)
                        count += 1
                        outcomes.append("new")
        finally:
            for (_, _, tmp), outcome in zip(items, outcomes + [None] * len(items)):
                if tmp is not None and outcome != "new":
                    Path(tmp).unlink(missing_ok=True)  # staged but not renamed into place
        self._sync_folder()
        return outcomes

    def clear(self, by: identity.Who | None = None) -> int:
        """Every drawing: the teacher's to do (``by`` None: the server itself)."""
        identity.require_teacher(by)
        return self.remove({d.id for d in self.list()})

    def remove_own(self, by: identity.Who) -> int:
        """Every drawing ``by`` added (as a name, or as a guest in this session)."""
        return self.remove({d.id for d in self.list() if by.owns(self.author(d))}, by)

    # ------------------------------------------------------------------ zip

    def export_zip(self) -> bytes:
        """``images/<id>.png`` + ``labels.csv``, in list order; the same set gives the same bytes."""
        buf, rows = io.BytesIO(), io.StringIO()
        writer = csv.writer(rows, lineterminator="\n")
        written, listed = set(), []
        with zipfile.ZipFile(buf, "w") as zf:
            for d in self.list():
                if d.id in written:  # one name per drawing, even in a folder that holds one under two labels
                    continue
                try:
                    png = self._bytes(d)
                except FileRefused:  # removed by someone else meanwhile, or not a file
                    continue
                written.add(d.id)
                zf.writestr(zipfile.ZipInfo(d.member, (1980, 1, 1, 0, 0, 0)), png)
                listed.append((d.member, d.label, _author_of(png)))
            with_authors = any(identity.is_named(author) for _, _, author in listed)  # a set without any keeps file,label
            writer.writerow(["file", "label", "author"] if with_authors else ["file", "label"])
            for member, label, author in listed:
                writer.writerow([member, label, identity.shown(author) if identity.is_named(author) else ""]
                                if with_authors else [member, label])
            info = zipfile.ZipInfo("labels.csv", (1980, 1, 1, 0, 0, 0))
            zf.writestr(info, rows.getvalue().encode(), compress_type=zipfile.ZIP_DEFLATED)
        return buf.getvalue()

    def import_zip(self, data: bytes, author: str = "") -> ImportReport:
        """Add the drawings of an exported zip (or one made by hand: black-on-white scans are fine).

        Each drawing keeps the author its labels.csv names (an optional third column, ``author``);
        a row without one is filed under ``author``, who imports it.

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
                    raise ClassSetError(f"{shown(info.filename, 120)} would unpack to {info.file_size / _MB:.0f} MB; a file in a "
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
            room = MAX_ITEMS - len(self)  # a first answer; the lock decides when drawings are stored
            if len(rows) > room:
                raise ClassSetError(f"labels.csv lists {len(rows)} drawings but only {room} more fit (a class set "
                                    f"holds at most {MAX_ITEMS}): remove drawings or import a smaller zip")
            return self._import_rows(zf, members, base, rows, author)

    def _import_rows(self, zf, members, base: str, rows, author: str = "") -> ImportReport:
        """Each distinct image is read once, within the pixel budgets; drawings are stored in batches."""
        report = ImportReport(0, 0, [])
        skipped: list[tuple[int, str]] = []  # (row, line): put back in row order at the end
        known: dict[str, str | tuple[str, int]] = {}  # member -> why it was refused, or (id, label first seen)
        refused_ids: dict[str, str] = {}  # drawing id -> why it was not stored ("full")
        sizes = self._member_sizes(zf, members, base, rows)
        batch: list[tuple[int, str, str, int, str | None]] = []  # (row, shown name, id, label, staged file)

        def flush():
            for (row, shown_name, drawing_id, _, _), outcome in zip(batch, self._store_batch(
                    [(drawing_id, label, tmp) for _, _, drawing_id, label, tmp in batch])):
                if outcome == "new":
                    report.added += 1
                elif outcome == "duplicate":
                    report.duplicates += 1
                else:
                    why = refused_ids.setdefault(drawing_id, _full_message())
                    skipped.append((row, f"{shown_name}: {why}"))
            batch.clear()

        try:
            for row, (line, (name, label_text, row_author)) in enumerate(rows):
                shown_name = shown(name or f"labels.csv line {line}", 120)
                if not re.fullmatch(r"[0-9]", label_text):
                    skipped.append((row, f"{shown_name}: label {label_text[:40]!r} is not a digit 0-9 "
                                         "(each row is file,label)"))
                    continue
                member = base + name
                if member not in known:
                    known[member] = self._read_row_image(zf, members, member, sizes.get(member))
                result = known[member]
                if isinstance(result, str):
                    skipped.append((row, f"{shown_name}: {result}"))
                    continue
                drawing_id, img = result
                if img is not None:
                    known[member] = (drawing_id, None)  # the pixels are not kept: the id is enough from now on
                # a member listed again, or a drawing the set has: nothing to write
                tmp = None if img is None or self.find(drawing_id) is not None else \
                    self._stage(_png(img, identity.clean_name(row_author) or author))
                batch.append((row, shown_name, drawing_id, int(label_text), tmp))
                if len(batch) >= IMPORT_BATCH:
                    flush()
            flush()
        finally:
            for _, _, _, _, tmp in batch:  # an error part way: no staged file left behind
                if tmp is not None:
                    Path(tmp).unlink(missing_ok=True)
        report.skipped = [line for _, line in sorted(skipped)]
        return report

    @staticmethod
    def _member_sizes(zf, members, base: str, rows) -> dict[str, tuple[int, int] | None]:
        """Each listed image's size from its header alone, to refuse a zip too big to read before reading it."""
        sizes: dict[str, tuple[int, int] | None] = {}
        total = 0
        for _, (name, label_text, _) in rows:
            info = members.get(base + name)
            if info is None or base + name in sizes or not re.fullmatch(r"[0-9]", label_text):
                continue
            size = sizes[base + name] = _member_size(zf, info)
            if size is not None and 0 < size[0] * size[1] <= IMPORT_MAX_PIXELS:
                total += size[0] * size[1]
        if total > IMPORT_TOTAL_PIXELS:
            raise ClassSetError(f"the zip's images add up to {total / 1e6:,.0f} million pixels; one import reads at "
                                f"most {IMPORT_TOTAL_PIXELS / 1e6:,.0f} million: split it into smaller zips")
        return sizes

    @staticmethod
    def _read_row_image(zf, members, member: str, size) -> str | tuple[str, np.ndarray]:
        """(id, pixels to store) for a zip member, or why it cannot be imported."""
        info = members.get(member)
        if info is None:
            return "not in the zip"
        if size is not None and not 0 < size[0] * size[1] <= IMPORT_MAX_PIXELS:
            return _too_large(*size) if size[0] else _too_large(None, None)
        try:
            data = _read_member(zf, info)
            if _DECODER_TAKES_LIMIT:
                pixels = load_image_bytes(data, shown(member, 120), max_pixels=IMPORT_MAX_PIXELS)
            else:
                pixels = load_image_bytes(data, shown(member, 120))
        except ImageError as err:
            return str(err)
        except (ClassSetError, zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError,
                NotImplementedError) as err:
            return f"cannot be read from the zip (damaged or unsupported): {shown(err, 120)}"
        if pixels.shape[0] * pixels.shape[1] > IMPORT_MAX_PIXELS:  # a header that did not tell the truth
            return _too_large(pixels.shape[1], pixels.shape[0])
        if (pixels.ndim == 2 and pixels.dtype == np.uint8 and max(pixels.shape) <= MAX_SIDE
                and _pixel_id(pixels) == Path(member).stem):
            img = pixels  # exactly as exported: keep it, whatever its border looks like
        else:
            try:
                img = _ink_image(pixels, "auto")
            except ClassSetError as err:
                return str(err)
        why = _refusal(img)
        if why:
            return f"nothing to score: {why}"
        return _pixel_id(img), img

    @staticmethod
    def _read_labels(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> list[tuple[int, tuple[str, str, str]]]:
        """(line number, (file, label text, author)) for each non-empty row; a header row is dropped.
        The author column is optional (empty when missing)."""
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
            if len(cells) == 3:
                rows.append((line, (cells[0], cells[1], cells[2])))
            else:
                rows.append((line, (cells[0], cells[1] if len(cells) == 2 else "", "")))
        return rows


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


def mnist_only(ckpt: checkpoint.Checkpoint, name: str | None = None) -> str | None:
    """Why ``ckpt`` cannot be scored on the class set, or None when it can: the set holds handwritten digits,
    so only a model trained on MNIST reads it. The one wording wherever a model is picked for the set (the
    Class set page, its command line, fine-tuning); ``name`` is how the model is called (default: its title)."""
    if ckpt.dataset == "mnist":
        return None
    trained_on = DATASETS[ckpt.dataset].title if ckpt.dataset in DATASETS else str(ckpt.dataset)
    return (f"“{ckpt.title if name is None else name}” was trained on {trained_on}; the class set holds "
            "handwritten digits. Pick a model trained on MNIST.")


@dataclass(frozen=True)
class ModelScore:
    """One model on the class set: its score, or why there is none."""

    score: Score | None
    problem: str | None  # why there is no score: the model cannot be loaded, or does not read digits
    test_acc: float | None  # its accuracy on MNIST's test set, as its checkpoint says (None when it does not)


def score_model(load: Callable[[], checkpoint.Checkpoint], classset: ClassSet,
                quote: Callable[[str], str] = str) -> ModelScore:
    """The checkpoint ``load()`` gives, scored on ``classset``. A model that cannot be loaded or was not
    trained on MNIST gives a ``problem`` to show instead; ``quote`` writes the model's name into that
    message (a page escapes it for Markdown)."""
    try:
        ckpt = load()
        acc = ckpt.metrics.get("test_acc")
        acc = acc if is_number(acc) else None
        why = mnist_only(ckpt, quote(ckpt.title))
        if why:
            return ModelScore(None, why, acc)
        return ModelScore(score(ckpt.build(), classset), None, acc)
    except (checkpoint.CheckpointError, OSError) as err:
        return ModelScore(None, f"This model could not be loaded: {err}", None)
