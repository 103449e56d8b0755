"""Checkpoints: one file with everything needed to use a trained model, loaded safely.

A checkpoint is a ``torch.save`` of plain data only (dicts, lists, strings, numbers and
tensors). Loading goes through ``torch.load(weights_only=True)``, whose unpickler refuses
every other object, so a hostile file cannot run code. Writes go to a temporary file that
is renamed over the target: a crash mid-write leaves the previous file intact.
"""

from __future__ import annotations

import datetime as _dt
import io
import os
import pickle
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from core import models as M
from core.data import DATASETS

FORMAT = "digitlab-checkpoint"
VERSION = 1
MAX_BYTES = 200 * 1024 * 1024  # far above any model here; refuses absurd uploads before reading them
MAX_PARAMETERS = 20_000_000  # the largest model the Train page builds has about 3 million
MAX_TEXT = 200  # characters of a checkpoint's name or date: shown on pages, so kept short and printable


class CheckpointError(ValueError):
    """The file is not a usable Digit Lab checkpoint; the message says why."""


@dataclass
class Checkpoint:
    model_config: M.ModelConfig
    state_dict: dict
    dataset: str = "mnist"
    train_config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # test_acc, drawn_acc, train_seconds, ...
    created: str = ""  # ISO 8601, UTC
    name: str = ""

    def build(self) -> nn.Module:
        model = M.build_model(self.model_config)
        model.load_state_dict(self.state_dict)
        return model.eval()

    @property
    def description(self) -> str:
        return M.describe(self.model_config)


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def to_payload(ckpt: Checkpoint) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "name": ckpt.name,
        "model_config": M.config_to_dict(ckpt.model_config),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in ckpt.state_dict.items()},
        "dataset": ckpt.dataset,
        "train_config": ckpt.train_config,
        "metrics": ckpt.metrics,
        "created": ckpt.created or now_iso(),
    }


def to_bytes(ckpt: Checkpoint) -> bytes:
    buf = io.BytesIO()
    torch.save(to_payload(ckpt), buf)
    return buf.getvalue()


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is always either the old or the new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a saved file should look like any other
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def save(ckpt: Checkpoint, path: str | Path) -> Path:
    atomic_write(path, to_bytes(ckpt))
    return Path(path)


def from_model(model: nn.Module, model_config: M.ModelConfig, *, dataset: str = "mnist", train_config: dict | None = None,
               metrics: dict | None = None, name: str = "") -> Checkpoint:
    return Checkpoint(model_config, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, dataset,
                      train_config or {}, metrics or {}, now_iso(), name)


def _plain(value, what: str):
    """Check that metadata is plain JSON-like data (no tensors hidden in metrics, say)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, what) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v, what) for k, v in value.items()}
    raise CheckpointError(f"the checkpoint's {what} holds a {type(value).__name__}, not plain data")


def load_bytes(data: bytes, source: str = "the file") -> Checkpoint:
    if len(data) > MAX_BYTES:
        raise CheckpointError(f"{source} is {len(data) / 1e6:.0f} MB; a checkpoint here is at most {MAX_BYTES / 1e6:.0f} MB")
    if len(data) == 0:
        raise CheckpointError(f"{source} is empty")
    if not data.startswith(b"PK\x03\x04"):  # torch.save writes a zip archive
        raise CheckpointError(f"{source} is not a readable PyTorch file: a checkpoint is a zip archive written by "
                              "torch.save, and this file is something else")
    _check_archive(data, source)
    try:
        blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        detail = f" (it asks for {found.group(1)})" if found else ""
        raise CheckpointError(
            f"{source} was refused: it contains objects other than plain data and tensors, which could run code "
            f"when loaded{detail}. Only Digit Lab checkpoints can be loaded."
        ) from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError, KeyError, TypeError,
            AttributeError, IndexError) as err:
        raise CheckpointError(f"{source} is not a readable PyTorch file (it may be corrupt or truncated): "
                              f"{type(err).__name__}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        if isinstance(blob, dict) and blob and all(isinstance(v, torch.Tensor) for v in blob.values()):
            raise CheckpointError(f"{source} is a bare state dict from another program, not a Digit Lab checkpoint: "
                                  "it does not say which model it belongs to")
        raise CheckpointError(f"{source} is a PyTorch file but not a Digit Lab checkpoint")
    version = blob.get("version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{source} has an invalid format version {version!r}")
    if version > VERSION:
        raise CheckpointError(f"{source} was made by a newer Digit Lab (format {version}; this one reads up to "
                              f"{VERSION}). Update Digit Lab to open it.")
    try:
        cfg = M.config_from_dict(blob.get("model_config"))
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{source} has an invalid model description: {err}") from None
    state = blob.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{source} has no valid weights")
    _check_shapes(cfg, state, source)
    model = M.build_model(cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0][:200]
        raise CheckpointError(f"{source}'s weights do not fit its model ({M.describe(cfg)}): {first}") from None
    dataset = blob.get("dataset", "mnist")
    if dataset not in DATASETS:
        raise CheckpointError(f"{source} names an unknown data set {dataset!r}")
    return Checkpoint(cfg, state, dataset, _plain(blob.get("train_config", {}), "training settings"),
                      _metrics(_plain(blob.get("metrics", {}), "metrics")), _text(blob.get("created", "")),
                      _text(blob.get("name", "")))


def _metrics(metrics) -> dict:
    """Accuracies are shown as percentages: keep only those that are real fractions (not true, not 1e9)."""
    if not isinstance(metrics, dict):
        raise CheckpointError("the checkpoint's metrics are not a table of values")

    def fraction(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1

    return {k: v for k, v in metrics.items() if not k.endswith("_acc") or fraction(v)}


def _text(value) -> str:
    """A name or date from a file: one printable line, short."""
    return "".join(ch for ch in str(value) if ch.isprintable())[:MAX_TEXT]


def _check_archive(data: bytes, source: str) -> None:
    """torch.save stores its entries uncompressed: a compressed entry could unpack to any size."""
    try:
        infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return  # torch.load reports it as unreadable
    if any(i.compress_type != zipfile.ZIP_STORED for i in infos) or sum(i.file_size for i in infos) > MAX_BYTES:
        raise CheckpointError(f"{source} is not a file written by torch.save (it holds compressed entries)")


def _check_shapes(cfg: M.ModelConfig, state: dict, source: str) -> None:
    """Compare the weights with the model's shapes on the meta device, before any memory is spent on it."""
    with torch.device("meta"):
        expected = M.build_model(cfg).state_dict()
    size = sum(t.numel() for t in expected.values())
    if size > MAX_PARAMETERS:
        raise CheckpointError(f"{source} describes a model with {size:,} weights; Digit Lab's models have at most "
                              f"{MAX_PARAMETERS:,}")
    for key, want in expected.items():
        got = state.get(key)
        if got is None or tuple(got.shape) != tuple(want.shape):
            found = "missing" if got is None else f"shape {tuple(got.shape)}"
            raise CheckpointError(f"{source}'s weights do not fit its model ({M.describe(cfg)}): {key} is {found}, "
                                  f"expected {tuple(want.shape)}")


def load(path: str | Path) -> Checkpoint:
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror}") from None
    if size > MAX_BYTES:
        raise CheckpointError(f"{path} is too large to be a checkpoint ({size / 1e6:.0f} MB)")
    return load_bytes(path.read_bytes(), str(path))


# ----------------------------------------------------------------------------- TorchScript

def export_torchscript(ckpt: Checkpoint, path: str | Path | None = None) -> bytes:
    """The seed's deployment path: a TorchScript file that runs without this project's code.

    It takes pixels in [0, 1] and does the normalisation itself (``core.export``, which also
    checks that the file predicts as the model).
    """
    from core.export import torchscript_bytes

    data = torchscript_bytes(ckpt)
    if path is not None:
        atomic_write(path, data)
    return data
