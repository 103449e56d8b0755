"""The class's results: every student's best run, ranked, for the projector.

``best_runs`` reads the saved runs (``core.runs.RunStore``) and keeps, for each author, the most
accurate run that ended well (finished or reached its target) on one data set. Runs without a
name (a guest's, or saved before authors were kept) are counted but not ranked. The teacher can
hide an entry (a rude name, a test of their own): hidden authors are listed in one small JSON
file, ``<DIGITLAB_HOME>/results.json``, written only for the teacher (``core.identity``).

``ClassSetScores`` scores a run's model on the class set once, and again only when the set
changes: the key is the run id and a hash of the set's drawings and labels.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path

from core import checkpoint, identity, paths
from core import models as M
from core.files import FileRefused, read_regular
from core.runs import RunRecord
from core.values import is_finite

ENDED_WELL = ("finished", "target reached")
MAX_HIDDEN_BYTES = 256 * 1024


@dataclass(frozen=True)
class Entry:
    """One student's best run, in plain values."""

    author: str
    run_id: str
    run_name: str
    model: str
    optimizer: str | None
    lr: float | None
    batch_size: int | None
    epochs: int | None
    augment: bool | None
    test_acc: float
    train_seconds: float | None
    created: str
    runs: int  # how many runs of this author ended well (on this data set)


def _number(value) -> float | None:
    return float(value) if is_finite(value) else None


def _model_name(settings: dict) -> str:
    try:
        return M.describe(M.config_from_dict(settings["model"]))
    except (KeyError, TypeError, ValueError, AttributeError):
        return "unknown model"


def best_runs(records: list[RunRecord], dataset: str = "mnist", hidden: set[str] | frozenset = frozenset()
              ) -> tuple[list[Entry], int]:
    """(each named author's best run, most accurate first; how many runs that ended well have no name).

    Ties go to the earlier run: whoever got there first."""
    best: dict[str, tuple[RunRecord, float]] = {}
    counts: dict[str, int] = {}
    unnamed = 0
    for r in sorted(records, key=lambda r: (r.created, r.id)):  # oldest first: a tie keeps the first
        acc = _number(r.metrics.get("test_acc"))
        if r.reason not in ENDED_WELL or acc is None or r.settings.get("dataset", "mnist") != dataset:
            continue
        if r.settings.get("recipe") == "core.finetune":  # a model fine-tuned on the class set, not a run trained
            continue
        if not identity.is_named(r.author):
            unnamed += 1
            continue
        if r.author in hidden:
            continue
        counts[r.author] = counts.get(r.author, 0) + 1
        if r.author not in best or acc > best[r.author][1]:
            best[r.author] = (r, acc)
    entries = []
    for author, (r, acc) in best.items():
        s = r.settings
        epochs = _number(r.metrics.get("epochs"))
        entries.append(Entry(author, r.id, r.name, _model_name(s), s.get("optimizer") if isinstance(
            s.get("optimizer"), str) else None, _number(s.get("lr")), _int(s.get("batch_size")),
            int(epochs) if epochs is not None else _int(s.get("epochs")),
            s.get("augment") if isinstance(s.get("augment"), bool) else None, acc,
            _number(r.metrics.get("train_seconds")), r.created, counts[author]))
    entries.sort(key=lambda e: (-e.test_acc, e.created))
    return entries, unnamed


def _int(value) -> int | None:
    n = _number(value)
    return int(n) if n is not None else None


# ---------------------------------------------------------------------- hidden entries

class HiddenEntries:
    """Authors the teacher took off the results (the runs themselves stay on the Runs page)."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path is not None else paths.home() / "results.json"
        self._lock = threading.Lock()

    def get(self) -> frozenset[str]:
        try:
            data = json.loads(read_regular(self.path, MAX_HIDDEN_BYTES, "results.json").decode("utf-8"))
        except (FileNotFoundError, FileRefused, OSError, UnicodeDecodeError, ValueError, RecursionError):
            return frozenset()  # missing or damaged: nothing hidden (the teacher can hide again)
        hidden = data.get("hidden_authors") if isinstance(data, dict) else None
        return frozenset(a for a in hidden if isinstance(a, str)) if isinstance(hidden, list) else frozenset()

    def set(self, who: identity.Who | None, author: str, hide: bool) -> frozenset[str]:
        identity.require_teacher(who)
        with self._lock:
            hidden = set(self.get())
            (hidden.add if hide else hidden.discard)(author)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            checkpoint.atomic_write(self.path, json.dumps({"hidden_authors": sorted(hidden)}, indent=2).encode())
            return frozenset(hidden)


# ---------------------------------------------------------------------- accuracy on the class set

def classset_signature(drawings) -> str:
    """A hash of the class set's drawings and labels: a scored run is scored again only when this changes."""
    h = hashlib.sha256()
    for d in drawings:
        h.update(f"{d.id}:{d.label};".encode())
    return h.hexdigest()[:16]


class ClassSetScores:
    """Accuracy of each run's model on the class set, computed once per (run id, class set)."""

    def __init__(self, max_entries: int = 2000):
        self._lock = threading.Lock()
        self._done: dict[tuple[str, str], float | None] = {}  # None: the model could not be scored
        self.max_entries = max_entries

    def known(self, run_id: str, signature: str) -> tuple[bool, float | None]:
        with self._lock:
            key = (run_id, signature)
            return (key in self._done, self._done.get(key))

    def score(self, record: RunRecord, classset, signature: str) -> float | None:
        """The accuracy (0-1), or None when the model cannot be read or the set is empty."""
        found, value = self.known(record.id, signature)
        if found:
            return value
        from core import classset as C

        try:
            ckpt = record.checkpoint()
            value = None if ckpt.dataset != "mnist" else C.score(ckpt.build(), classset).accuracy
        except (checkpoint.CheckpointError, OSError, RuntimeError, ValueError):
            value = None
        if value is not None and not math.isfinite(value):
            value = None
        with self._lock:
            if len(self._done) >= self.max_entries:
                self._done.clear()
            self._done[(record.id, signature)] = value
        return value
