"""Every finished or stopped training run, kept on disk and readable outside the app.

Layout, one folder per run under ``$DIGITLAB_RUNS`` (default ``<DIGITLAB_HOME>/runs/``):

    runs/20261127-101530-3f2a/
        run.json     name, created, settings, final metrics, how it ended
        batches.csv  step,epoch,loss,lr,samples_per_s       (one row per logged batch)
        epochs.csv   epoch,train_loss,train_acc,test_loss,test_acc,seconds,elapsed
        model.pt     a Digit Lab checkpoint (core.checkpoint)

A notebook needs nothing from this project to read them:
``pandas.read_csv("runs/<id>/epochs.csv")``. Folder names are made here, never from user
text: a run's name lives inside ``run.json``, so no name can place a file elsewhere.

A folder someone else put there (or damaged) cannot break the list: each file is read only if it
is a regular file inside its run's folder and under a size cap, and a run whose ``run.json`` is not
what this module writes is left out of ``RunStore.list()`` and named in ``RunStore.skipped``.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
import os
import re
import secrets
import shutil
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

from core import checkpoint, identity, paths
from core.files import FileRefused, read_regular
from core.trainer import BatchEvent, EndEvent, EpochEvent
from core.values import is_number

_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{4}$")
MAX_NAME = 80
MAX_RUN_JSON = 64 * 1024  # a run.json this module writes is about 2 KB
MAX_CSV_BYTES = 32 * 1024 * 1024  # batches.csv of 30 epochs at batch size 8 is about 12 MB
_NUMBERS = ("test_acc", "test_loss", "epochs", "steps", "train_seconds", "samples_per_second", "drawn_acc")
_SHOWN_SETTINGS = ("optimizer", "lr", "batch_size")  # the columns of the Runs page's table


class RunError(ValueError):
    """A run folder, or one of its files, is not what this module writes; the message says which and why."""


class SkippedRun(NamedTuple):
    """A run folder ``RunStore.list()`` left out, and why."""

    folder: str
    reason: str

    def __str__(self) -> str:
        return f"{self.folder}: {self.reason}"


@dataclass
class RunRecord:
    id: str
    name: str
    created: str
    settings: dict
    metrics: dict
    reason: str
    folder: Path
    author: str = ""  # who started it (core.identity); "" for a run saved before authors were kept

    def batches(self) -> list[dict]:
        """One dict per logged batch; [] when the file is missing; RunError when it is damaged."""
        return _read_csv(self.folder, "batches.csv")

    def epochs(self) -> list[dict]:
        return _read_csv(self.folder, "epochs.csv")

    def checkpoint(self) -> checkpoint.Checkpoint:
        """The run's model; CheckpointError when model.pt is missing, damaged, not a file or points elsewhere."""
        path = self.folder / "model.pt"
        try:
            data = read_regular(path, checkpoint.MAX_BYTES, "the run's model.pt", inside=self.folder)
        except FileRefused as err:
            raise checkpoint.CheckpointError(str(err)) from None
        return checkpoint.load_bytes(data, str(path))


def clean_name(name: str) -> str:
    """A display name: printable, one line, at most MAX_NAME characters."""
    text = "".join(ch for ch in str(name) if ch.isprintable()).strip()
    return text[:MAX_NAME] or "Untitled run"


def _read_csv(folder: Path, name: str) -> list[dict]:
    """A run's CSV file as numbers: ``step`` and ``epoch`` whole, every other column a float."""
    path = folder / name
    if not os.path.lexists(path):
        return []
    try:
        text = read_regular(path, MAX_CSV_BYTES, name, inside=folder).decode("utf-8")
    except FileRefused as err:
        raise RunError(str(err)) from None
    except UnicodeDecodeError:
        raise RunError(f"{path} is not UTF-8 text; refused") from None
    rows = []
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        for row in reader:
            out = {}
            for key, value in row.items():
                if key is None or value is None:
                    raise RunError(f"{path}, line {reader.line_num}: the number of values differs from the "
                                   f"{len(reader.fieldnames)} columns its header names")
                try:
                    out[key] = int(value) if key in ("step", "epoch") else float(value)
                except ValueError:
                    kind = "a whole number" if key in ("step", "epoch") else "a number"
                    raise RunError(f"{path}, line {reader.line_num}: {key} = {value[:40]!r} is not {kind}") from None
            rows.append(out)
    except csv.Error as err:
        raise RunError(f"{path} is not valid CSV: {err}") from None
    return rows


def _number(value) -> bool:
    return value is None or is_number(value)


def _scalar(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


# run.json's path -> (its file's identity when it was read, its text once checked). The Runs and Results pages
# list every run every few seconds for every viewer; a run.json that is still the same file, unchanged, is
# then parsed from here instead of opened, resolved and checked again. save() and rename() replace the file
# (a new inode), so a changed run.json never matches; a link or anything else not a regular file is never kept.
# A file changed within the last _SETTLED_NS is not kept either: file times tick coarsely, and a file edited in
# place twice within one tick at the same size would look unchanged (git's "racy" index entries, the same fix).
_CHECKED: dict[str, tuple[tuple, bytes]] = {}
_CHECKED_MAX = 4096  # run.json files remembered; past that the memory is emptied and refilled
_SETTLED_NS = 2_000_000_000


def _identity(path: Path) -> tuple | None:
    """What tells one version of a regular file from another without reading it; None for anything else, and
    for a file changed too recently to tell."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < _SETTLED_NS:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _meta(folder: Path) -> dict:
    """run.json, checked to be what ``save`` writes; RunError saying what is wrong otherwise."""
    path = folder / "run.json"
    seen = _identity(path)  # taken before reading: a file replaced meanwhile is read again next time
    kept = _CHECKED.get(str(path))
    if seen is not None and kept is not None and kept[0] == seen:
        return json.loads(kept[1])  # a fresh dict each time: callers may change theirs
    try:
        raw = read_regular(path, MAX_RUN_JSON, "run.json", inside=folder)
    except FileRefused as err:
        raise RunError(str(err)) from None
    meta = _checked(raw)
    if seen is not None:
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.clear()
        _CHECKED[str(path)] = (seen, raw)
    return meta


def _checked(raw: bytes) -> dict:
    """run.json's bytes as the dict ``save`` wrote; RunError saying what is wrong otherwise."""
    try:
        meta = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise RunError("run.json is not UTF-8 text") from None
    except RecursionError:
        raise RunError("run.json is nested too deeply to be a run's description") from None
    except ValueError as err:
        raise RunError(f"run.json is not valid JSON ({str(err)[:80]})") from None
    if not isinstance(meta, dict):
        raise RunError(f"run.json holds a JSON {type(meta).__name__}, not an object with the run's name and settings")
    if "name" not in meta or "created" not in meta:
        raise RunError(f"run.json has no {'name' if 'name' not in meta else 'created'!r}")
    for key, kind, ok in (("name", "text", isinstance(meta["name"], str)),
                          ("created", "text", isinstance(meta["created"], str)),
                          ("settings", "an object", isinstance(meta.get("settings", {}), dict)),
                          ("metrics", "an object", isinstance(meta.get("metrics", {}), dict)),
                          ("reason", "text", isinstance(meta.get("reason", ""), str))):
        if not ok:
            raise RunError(f"run.json's {key!r} is a {type(meta[key]).__name__}; it must be {kind}")
    metrics, settings = meta.get("metrics", {}), meta.get("settings", {})
    for key, value in metrics.items():
        if not _scalar(value) or (key in _NUMBERS and not _number(value)):
            raise RunError(f"run.json's metric {str(key)[:40]!r} is a {type(value).__name__}; it must be a number")
        if isinstance(value, float) and not math.isfinite(value) and key.endswith("_acc"):
            raise RunError(f"run.json's metric {key!r} is not a finite number")
    for key in _SHOWN_SETTINGS:
        if not _scalar(settings.get(key)):
            raise RunError(f"run.json's setting {key!r} is a {type(settings[key]).__name__}; it must be a plain value")
    return meta


def _csv_bytes(rows: list, fields: list[str]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        d = asdict(row)
        writer.writerow({k: d[k] for k in fields})
    return buf.getvalue().encode()


class RunStore:
    def __init__(self, root: Path | None = None):
        default = os.environ.get("DIGITLAB_RUNS") or paths.home() / "runs"
        self.root = Path(root) if root is not None else Path(default)
        self.skipped: list[SkippedRun] = []  # what the last list() left out, and why

    def _folder(self, run_id: str) -> Path:
        if not isinstance(run_id, str) or not _ID.match(run_id):
            raise RunError(f"not a run id: {str(run_id)[:40]!r}")
        return self.root / run_id

    def save(self, name: str, ckpt: checkpoint.Checkpoint, batches: list[BatchEvent], epochs: list[EpochEvent],
             end: EndEvent, author: str = "") -> RunRecord:
        now = _dt.datetime.now(_dt.timezone.utc)
        run_id = now.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
        folder = self._folder(run_id)
        folder.mkdir(parents=True)
        meta = {"id": run_id, "name": clean_name(name), "created": now.replace(microsecond=0).isoformat(),
                "settings": ckpt.train_config, "metrics": ckpt.metrics, "reason": end.reason,
                "message": end.message, "author": identity.clean_owner(author)}
        checkpoint.save(ckpt, folder / "model.pt")
        checkpoint.atomic_write(folder / "batches.csv",
                                _csv_bytes(batches, ["step", "epoch", "loss", "lr", "samples_per_s"]))
        checkpoint.atomic_write(folder / "epochs.csv", _csv_bytes(
            epochs, ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds", "elapsed"]))
        checkpoint.atomic_write(folder / "run.json", json.dumps(meta, indent=2).encode())  # last: marks it complete
        return self.get(run_id)

    def get(self, run_id: str) -> RunRecord:
        """One run; RunError (naming the folder) when its run.json is missing, damaged or not a run's."""
        folder = self._folder(run_id)
        if folder.is_symlink():
            raise RunError(f"run {run_id}: the folder is a link to elsewhere; refused")
        try:
            meta = _meta(folder)
        except RunError as err:
            raise RunError(f"run {run_id}: {err}") from None
        author = meta.get("author")
        return RunRecord(run_id, clean_name(meta["name"]), meta["created"][:40], meta.get("settings", {}),
                         meta.get("metrics", {}), meta.get("reason", "")[:40], folder,
                         identity.clean_owner(author) if isinstance(author, str) else "")

    def list(self) -> list[RunRecord]:
        """Newest first. A folder without run.json (a crash mid-save) is passed over; one whose run.json
        or folder is damaged or hostile is left out and named, with the reason, in ``self.skipped``."""
        self.skipped = []
        try:
            names = sorted((n for n in os.listdir(self.root) if _ID.match(n)), reverse=True)
        except (FileNotFoundError, NotADirectoryError):
            return []
        out = []
        for name in names:
            folder = self.root / name
            if not folder.is_symlink() and not os.path.lexists(folder / "run.json"):
                continue  # not a run folder yet: save() writes run.json last
            try:
                out.append(self.get(name))
            except RunError as err:
                self.skipped.append(SkippedRun(name, str(err).removeprefix(f"run {name}: ")))
            except OSError as err:
                self.skipped.append(SkippedRun(name, f"cannot be read: {err.strerror}"))
        return out

    def skipped_note(self, limit: int = 3) -> str:
        """One plain line about the folders the last list() left out ("" when none), for a page or a log."""
        if not self.skipped:
            return ""
        more = len(self.skipped) - limit
        listed = "; ".join(str(s) for s in self.skipped[:limit]) + (f"; and {more} more" if more > 0 else "")
        return (f"{len(self.skipped)} run folder{'s' if len(self.skipped) > 1 else ''} in {self.root} could not be "
                f"read and {'are' if len(self.skipped) > 1 else 'is'} not listed: {listed}")

    def rename(self, run_id: str, name: str, by: identity.Who | None = None) -> RunRecord:
        """``by``: the person asking (core.identity.NotAllowed unless it is theirs or they are the teacher);
        None for the server itself (the command line)."""
        folder = self._folder(run_id)
        try:
            meta = _meta(folder)
        except RunError as err:
            raise RunError(f"run {run_id}: {err}") from None
        author = meta.get("author")
        identity.require(by, identity.clean_owner(author) if isinstance(author, str) else "")
        meta["name"] = clean_name(name)
        checkpoint.atomic_write(folder / "run.json", json.dumps(meta, indent=2).encode())
        return self.get(run_id)

    def delete(self, run_id: str, by: identity.Who | None = None) -> None:
        folder = self._folder(run_id)
        if by is not None and not by.teacher:  # the teacher may also delete a run whose run.json is damaged
            identity.require(by, self.get(run_id).author)
        if folder.resolve().parent != self.root.resolve():
            raise ValueError("refusing to delete outside the runs folder")
        shutil.rmtree(folder)
