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
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
import re
import secrets
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from core import checkpoint, paths
from core.trainer import BatchEvent, EndEvent, EpochEvent

_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{4}$")
MAX_NAME = 80


@dataclass
class RunRecord:
    id: str
    name: str
    created: str
    settings: dict
    metrics: dict
    reason: str
    folder: Path

    def batches(self) -> list[dict]:
        return _read_csv(self.folder / "batches.csv")

    def epochs(self) -> list[dict]:
        return _read_csv(self.folder / "epochs.csv")

    def checkpoint(self) -> checkpoint.Checkpoint:
        return checkpoint.load(self.folder / "model.pt")


def clean_name(name: str) -> str:
    """A display name: printable, one line, at most MAX_NAME characters."""
    text = "".join(ch for ch in str(name) if ch.isprintable()).strip()
    return text[:MAX_NAME] or "Untitled run"


def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return [{k: float(v) if k not in ("step", "epoch") else int(v) for k, v in row.items()}
                for row in csv.DictReader(fh)]


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

    def _folder(self, run_id: str) -> Path:
        if not _ID.match(run_id):
            raise ValueError(f"not a run id: {run_id!r}")
        return self.root / run_id

    def save(self, name: str, ckpt: checkpoint.Checkpoint, batches: list[BatchEvent], epochs: list[EpochEvent],
             end: EndEvent) -> RunRecord:
        now = _dt.datetime.now(_dt.timezone.utc)
        run_id = now.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
        folder = self._folder(run_id)
        folder.mkdir(parents=True)
        meta = {"id": run_id, "name": clean_name(name), "created": now.replace(microsecond=0).isoformat(),
                "settings": ckpt.train_config, "metrics": ckpt.metrics, "reason": end.reason,
                "message": end.message}
        checkpoint.save(ckpt, folder / "model.pt")
        checkpoint.atomic_write(folder / "batches.csv",
                                _csv_bytes(batches, ["step", "epoch", "loss", "lr", "samples_per_s"]))
        checkpoint.atomic_write(folder / "epochs.csv", _csv_bytes(
            epochs, ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds", "elapsed"]))
        checkpoint.atomic_write(folder / "run.json", json.dumps(meta, indent=2).encode())  # last: marks it complete
        return self.get(run_id)

    def get(self, run_id: str) -> RunRecord:
        folder = self._folder(run_id)
        meta = json.loads((folder / "run.json").read_text())
        return RunRecord(run_id, meta["name"], meta["created"], meta.get("settings", {}), meta.get("metrics", {}),
                         meta.get("reason", ""), folder)

    def list(self) -> list[RunRecord]:
        """Newest first; folders without a complete run.json (a crash mid-save) are skipped."""
        if not self.root.is_dir():
            return []
        out = []
        for folder in sorted(self.root.iterdir(), reverse=True):
            if _ID.match(folder.name) and (folder / "run.json").exists():
                try:
                    out.append(self.get(folder.name))
                except (OSError, ValueError, KeyError):
                    continue
        return out

    def rename(self, run_id: str, name: str) -> RunRecord:
        folder = self._folder(run_id)
        meta = json.loads((folder / "run.json").read_text())
        meta["name"] = clean_name(name)
        checkpoint.atomic_write(folder / "run.json", json.dumps(meta, indent=2).encode())
        return self.get(run_id)

    def delete(self, run_id: str) -> None:
        folder = self._folder(run_id)
        if folder.resolve().parent != self.root.resolve():
            raise ValueError("refusing to delete outside the runs folder")
        shutil.rmtree(folder)
