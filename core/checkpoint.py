"""Checkpoints: one file with everything needed to use a trained model, loaded safely.

A checkpoint is a ``torch.save`` of plain data only (dicts, lists, strings, numbers and
tensors). Before anything is unpickled, the archive and its pickle are read as data
(``_inspect``): only the opcodes and globals that ``torch.save`` writes for such a payload are
allowed, with caps on the pickle's size, nesting, item count and strings, and every tensor
must be a contiguous view that fits in its own record of the archive. So a file can neither
run code nor make the loader allocate more than about its own size, and every way a file can
be wrong ends as one ``CheckpointError`` that says why. The pickle is then loaded with
``torch.load(weights_only=True)`` as a second line of defence. ``load`` reads only regular
files (``core.files.read_regular``), so a FIFO or ``/dev/zero`` is refused before a byte is
read. Writes go to a temporary file that is renamed over the target: a crash mid-write leaves
the previous file intact.
"""

from __future__ import annotations

import datetime as _dt
import io
import math
import os
import pickle
import pickletools
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from core import models as M
from core.data import DATASETS
from core.files import FileRefused, read_regular, shown, sync_folder, write_synced_temp
from core.values import is_fraction

FORMAT = "digitlab-checkpoint"
VERSION = 1
MAX_BYTES = 200 * 1024 * 1024  # far above any model here; refuses absurd uploads before reading them
MAX_PARAMETERS = 20_000_000  # the largest model the Train page builds has about 3 million
MAX_TEXT = 200  # characters of a checkpoint's name or date: shown on pages, so kept short and printable
# The pickle inside a checkpoint only describes the payload; the weights are separate records. A real
# one is 1-3 KB (the bundled seed CNN's is 1.7 KB, a 3-layer MLP with batch norm 2.2 KB; the largest
# model the Train page builds, 8 layers with batch norm, about 7 KB). 1 MB is a hundred times that,
# yet unpickles in well under a second and in a few tens of MB even when it is all small items.
MAX_PICKLE_BYTES = 1024 * 1024
MAX_PICKLE_OPS = 100_000  # opcodes; a real checkpoint has 400-1,500
MAX_ITEMS = 100_000  # values in the payload, shared ones counted each time they appear; a real one has 200-800
MAX_DEPTH = 32  # nesting of containers; a real checkpoint nests 4 deep (payload, train_config, model, hidden)
MAX_STRING = 64 * 1024  # bytes of one string; names and settings are short
MAX_RECORDS = 1_000  # entries in the archive; a checkpoint has 6 plus one per tensor (at most about 60)


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
        return M.with_weights(self.model_config, self.state_dict)

    @property
    def description(self) -> str:
        return M.describe(self.model_config)

    @property
    def title(self) -> str:
        """What pages and files call it: its name, or its model's description when it has none."""
        return self.name or self.description


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
    tmp = write_synced_temp(path.parent, data, prefix=f".{path.name}.")
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    sync_folder(path.parent)


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
    """Load a checkpoint from its bytes; any file that is not a usable checkpoint gives one CheckpointError."""
    if len(data) > MAX_BYTES:
        raise CheckpointError(f"{source} is {len(data) / 1e6:.0f} MB; a checkpoint here is at most {MAX_BYTES / 1e6:.0f} MB")
    if len(data) == 0:
        raise CheckpointError(f"{source} is empty")
    if not data.startswith(b"PK\x03\x04"):  # torch.save writes a zip archive
        raise CheckpointError(f"{source} is not a readable PyTorch file: a checkpoint is a zip archive written by "
                              "torch.save, and this file is something else")
    _inspect(data, source)
    try:
        blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # the inspection lets nothing through that this refuses; kept as a second line
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        detail = f" (it asks for {shown(found.group(1), 80)})" if found else ""
        raise CheckpointError(
            f"{source} was refused: it contains objects other than plain data and tensors, which could run code "
            f"when loaded{detail}. Only Digit Lab checkpoints can be loaded."
        ) from None
    except (MemoryError, RecursionError) as err:
        spent = "memory" if isinstance(err, MemoryError) else "stack"
        raise CheckpointError(f"{source} was refused: loading it ran out of {spent}") from None
    except Exception as err:  # torch reports a damaged archive with many exception types
        raise CheckpointError(f"{source} is not a readable PyTorch file (it may be corrupt or truncated): "
                              f"{type(err).__name__}: {_one_line(err, 200)}") from None
    try:
        return _from_blob(blob, source)
    except RecursionError:  # the inspection caps nesting; kept as a second line
        raise CheckpointError(f"{source} was refused: its data nests too deeply") from None


def _from_blob(blob, source: str) -> Checkpoint:
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        if isinstance(blob, dict) and blob and all(isinstance(v, torch.Tensor) for v in blob.values()):
            raise CheckpointError(f"{source} is a bare state dict from another program, not a Digit Lab checkpoint: "
                                  "it does not say which model it belongs to")
        raise CheckpointError(f"{source} is a PyTorch file but not a Digit Lab checkpoint")
    version = blob.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{source} has an invalid format version {shown(repr(version), 40)}")
    if version > VERSION:
        raise CheckpointError(f"{source} was made by a newer Digit Lab (format {version}; this one reads up to "
                              f"{VERSION}). Update Digit Lab to open it.")
    try:
        cfg = M.config_from_dict(blob.get("model_config"))
    except (ValueError, TypeError, OverflowError) as err:
        raise CheckpointError(f"{source} has an invalid model description: {_one_line(err, 200)}") from None
    state = blob.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(k, str) and type(v) is torch.Tensor for k, v in state.items()):
        raise CheckpointError(f"{source} has no valid weights")
    _check_shapes(cfg, state, source)
    try:  # a second line behind _check_shapes, on the meta device: no memory spent, no random numbers drawn
        M.empty_model(cfg).load_state_dict(state, assign=True)
    except RuntimeError as err:  # the whole reason on one line, not only its "Error(s) in loading..." heading
        lines = str(err).splitlines()
        reason = " ".join(" ".join(lines[1:] or lines).split())
        raise CheckpointError(f"{source}'s weights do not fit its model ({M.describe(cfg)}): "
                              f"{shown(reason, 300)}") from None
    dataset = blob.get("dataset", "mnist")
    if not isinstance(dataset, str) or dataset not in DATASETS:
        raise CheckpointError(f"{source} names an unknown data set {shown(repr(dataset), 60)}")
    return Checkpoint(cfg, state, dataset, _settings(_plain(blob.get("train_config", {}), "training settings")),
                      _metrics(_plain(blob.get("metrics", {}), "metrics")), _text(blob.get("created", ""), "date", source),
                      _text(blob.get("name", ""), "name", source))


def _settings(settings) -> dict:
    """The training settings are a table (a file without any reads as an empty one)."""
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise CheckpointError("the checkpoint's training settings are not a table of values")
    return settings


def _metrics(metrics) -> dict:
    """Accuracies are shown as percentages: keep only those that are real fractions (not true, not 1e9)."""
    if not isinstance(metrics, dict):
        raise CheckpointError("the checkpoint's metrics are not a table of values")
    return {k: v for k, v in metrics.items() if not k.endswith("_acc") or is_fraction(v)}


def _text(value, what: str = "text", source: str = "the file") -> str:
    """A name or date from a file: one printable line, short."""
    if not isinstance(value, str):
        kind = type(value).__name__
        raise CheckpointError(f"{source}'s {what} is {'an' if kind[0] in 'aeiou' else 'a'} {kind}, not text")
    return "".join(ch for ch in value if ch.isprintable())[:MAX_TEXT]


def _check_shapes(cfg: M.ModelConfig, state: dict, source: str) -> None:
    """Compare the weights with the model's shapes on the meta device, before any memory is spent on it."""
    expected = M.empty_model(cfg).state_dict()
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
    extra = sorted(set(state) - set(expected))
    if extra:
        raise CheckpointError(f"{source}'s weights do not fit its model ({M.describe(cfg)}): it also has "
                              f"{shown(', '.join(extra), 200)}, which the model does not")
    for key, want in expected.items():  # float32 weights; batch norm's num_batches_tracked is int64
        got = state[key]
        if got.dtype != want.dtype or got.layout != torch.strided or got.device.type != "cpu":
            kind = "complex" if got.is_complex() else "floating-point" if got.is_floating_point() else "integer"
            raise CheckpointError(f"{source}'s weight {key} holds {kind} numbers ({str(got.dtype).removeprefix('torch.')}); "
                                  f"the model's {key} is {str(want.dtype).removeprefix('torch.')}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            bad = "NaN" if bool(torch.isnan(got).any()) else "infinite"
            raise CheckpointError(f"{source}'s weight {key} holds {bad} values; a trained model's weights are finite")


def load(path: str | Path) -> Checkpoint:
    """Load a checkpoint file; only a regular file of at most ``MAX_BYTES`` is read (never a FIFO or a device)."""
    try:
        data = read_regular(path, MAX_BYTES, "checkpoint")
    except FileRefused as err:
        raise CheckpointError(str(err)) from None
    return load_bytes(data, str(path))


# ----------------------------------------------------------------------------- inspection before unpickling

# What torch.save (pickle protocol 2) writes for dicts, lists, tuples, strings, numbers, None, booleans
# and tensors: found by disassembling the bundled checkpoint and fresh saves of every model kind.
# Nothing here can call anything but the two constructors below, and nothing is unpickled until the
# whole pickle has been walked with pickletools.genops, which only decodes opcodes.
_OPS = frozenset({
    "PROTO", "STOP", "MARK", "EMPTY_DICT", "EMPTY_LIST", "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
    "SETITEM", "SETITEMS", "APPEND", "APPENDS", "BINPUT", "LONG_BINPUT", "BINGET", "LONG_BINGET",
    "BININT", "BININT1", "BININT2", "LONG1", "BINFLOAT", "NONE", "NEWTRUE", "NEWFALSE", "BINUNICODE",
    "GLOBAL", "REDUCE", "BINPERSID",
    "BUILD",  # only to give an OrderedDict its attributes (a module's state_dict keeps ``_metadata`` there)
})
_REBUILD = "torch._utils _rebuild_tensor_v2"
_ODICT = "collections OrderedDict"
_STORAGES = {  # torch.<name>Storage in a storage's persistent id -> the tensor's dtype
    "torch FloatStorage": torch.float32, "torch DoubleStorage": torch.float64, "torch HalfStorage": torch.float16,
    "torch BFloat16Storage": torch.bfloat16, "torch LongStorage": torch.int64, "torch IntStorage": torch.int32,
    "torch ShortStorage": torch.int16, "torch CharStorage": torch.int8, "torch ByteStorage": torch.uint8,
    "torch BoolStorage": torch.bool, "torch ComplexFloatStorage": torch.complex64,
    "torch ComplexDoubleStorage": torch.complex128,
}
_ATOM, _STR, _LIST, _DICT, _TUPLE, _GLOBAL, _STORAGE, _TENSOR = range(8)
_NAMES = {_LIST: "list", _DICT: "dict", _TUPLE: "tuple", _GLOBAL: "class or function", _STORAGE: "storage",
          _TENSOR: "tensor"}


class _Node:
    """A value the pickle would build, as far as the inspection needs to know it."""

    __slots__ = ("kind", "value", "items")

    def __init__(self, kind: int, value=None, items: list | None = None):
        self.kind, self.value, self.items = kind, value, items


class _Refused(Exception):
    """The file is readable but not shaped like a checkpoint (possibly made to harm)."""


class _Damaged(_Refused):
    """The file cannot be read as a zip archive holding a pickle."""


def _inspect(data: bytes, source: str) -> None:
    """Refuse, with the reason, any archive or pickle that is not shaped like a Digit Lab checkpoint."""
    try:
        _inspect_archive(data)
    except _Damaged as err:
        raise CheckpointError(f"{source} is not a readable PyTorch file (it may be corrupt or truncated): {err}") from None
    except _Refused as err:
        raise CheckpointError(f"{source} was refused: {err}. Only Digit Lab checkpoints can be loaded.") from None


def _inspect_archive(data: bytes) -> None:
    # A zip reader builds an object per directory entry, and each entry starts with this signature: counting
    # them bounds what any reader will build (a 70 MB directory of 1.5 million entries costs zipfile 18 s, 0.6 GB).
    entries = data.count(b"PK\x01\x02")
    if entries > MAX_RECORDS:
        raise _Refused(f"its archive lists about {entries:,} entries; a checkpoint has at most {MAX_RECORDS:,}")
    try:
        infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise _Damaged(f"its zip archive cannot be read ({_one_line(err, 120)})") from None
    if any(i.compress_type != zipfile.ZIP_STORED for i in infos):  # torch.save stores entries as they are
        raise _Refused("it is not a file written by torch.save (it holds compressed entries)")
    if len(infos) > MAX_RECORDS:
        raise _Refused(f"its archive has {len(infos):,} entries; a checkpoint has at most {MAX_RECORDS:,}")
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise _Refused("its archive names the same entry twice")
    prefix = names[0].split("/", 1)[0] + "/" if names and "/" in names[0] else None
    if prefix is None or not all(n.startswith(prefix) for n in names):
        raise _Refused("its archive is not laid out as torch.save lays it out (one folder holding every entry)")
    try:  # the reader torch.load itself uses: what it sees must be what was checked here
        reader = torch._C.PyTorchFileReader(io.BytesIO(data))
        records = set(reader.get_all_records())
        if records != {n[len(prefix):] for n in names}:
            raise _Refused("its archive lists different entries to different readers")
        spans = []
        for info in infos:
            name = info.filename[len(prefix):]
            size, offset = reader.get_record_size(name), reader.get_record_offset(name)
            if size != info.file_size or offset < 0 or offset + size > len(data):
                raise _Refused(f"its entry {shown(name, 60)} claims {size:,} bytes that the file does not hold")
            spans.append((offset, offset + size))
        spans.sort()
        if any(a[1] > b[0] for a, b in zip(spans, spans[1:])):
            raise _Refused("its archive's entries overlap")
        if "data.pkl" not in records:
            raise _Refused("its archive has no data.pkl")
        size = reader.get_record_size("data.pkl")
        if size > MAX_PICKLE_BYTES:
            raise _Refused(f"its pickle is {size / 1e6:.1f} MB; a checkpoint's is a few KB "
                           f"(at most {MAX_PICKLE_BYTES / 1e6:.0f} MB is read)")
        pkl = bytes(reader.get_record("data.pkl"))
        sizes = {n[len("data/"):]: reader.get_record_size(n) for n in records if n.startswith("data/")}
    except RuntimeError as err:
        raise _Damaged(f"its archive cannot be read ({_one_line(err, 160)})") from None
    _inspect_pickle(pkl, sizes)


def _inspect_pickle(pkl: bytes, record_sizes: dict[str, int]) -> None:
    """Walk the pickle's opcodes and rebuild its shape (never its objects): allowlisted and bounded."""
    walk = _Walk(len(pkl), record_sizes)
    last = None
    try:
        for ops, (op, arg, pos) in enumerate(pickletools.genops(pkl), 1):
            last = op.name
            _allowed(op.name, ops)
            walk.step(op.name, arg, pos)
    except _Refused:
        raise
    except (ValueError, EOFError, KeyError, IndexError, TypeError, UnicodeDecodeError) as err:
        raise _Damaged(f"its pickle is damaged ({_one_line(err, 120)})") from None
    if last != "STOP":
        raise _Damaged("its pickle is truncated")
    _check_tree(walk.stack[0])


def _allowed(name: str, ops: int) -> None:
    """Refuse the ``ops``-th opcode if it is one too many, not on the list, or not the PROTO a pickle opens with."""
    if ops > MAX_PICKLE_OPS:
        raise _Refused(f"its pickle has more than {MAX_PICKLE_OPS:,} steps; a checkpoint's has about a thousand")
    if name not in _OPS:
        raise _Refused(f"its pickle uses the {name} instruction, which a checkpoint never needs")
    if ops == 1 and name != "PROTO":
        raise _Refused("its pickle does not start as torch.save starts one (protocol 2)")


class _Walk:
    """The pickle machine's stack, marks and memo, holding the shapes of values (``_Node``) instead of objects.

    ``step`` does what one allowed opcode would do to them, refusing what a checkpoint never does.
    """

    def __init__(self, size: int, record_sizes: dict[str, int]):
        self.size, self.record_sizes = size, record_sizes
        self.stack: list[_Node] = []
        self.marks: list[int] = []
        self.memo: dict[int, _Node] = {}
        self.used: set[str] = set()  # storage records already given to a tensor

    def step(self, name: str, arg, pos: int) -> None:
        if name in _ATOM_OPS:
            self.stack.append(self._atom(name, arg))
        else:
            _STEPS[name](self, name, arg, pos)

    def need(self, n: int) -> None:
        _need(self.stack, self.marks, n)

    def pop(self, n: int) -> list[_Node]:
        self.need(n)
        items = self.stack[-n:]
        del self.stack[-n:]
        return items

    def proto(self, name: str, arg, pos: int) -> None:
        if pos != 0 or arg != 2:
            raise _Refused(f"its pickle is protocol {arg}; torch.save writes protocol 2")

    def stop(self, name: str, arg, pos: int) -> None:
        if len(self.stack) != 1 or self.marks or pos != self.size - 1:
            raise _Refused("its pickle does not end as a single value")

    def mark(self, name: str, arg, pos: int) -> None:
        self.marks.append(len(self.stack))

    def empty(self, name: str, arg, pos: int) -> None:
        kinds = {"EMPTY_DICT": _DICT, "EMPTY_LIST": _LIST}
        self.stack.append(_tuple([]) if name == "EMPTY_TUPLE" else _Node(kinds[name], items=[]))

    def make_tuple(self, name: str, arg, pos: int) -> None:
        items = _pop_mark(self.stack, self.marks) if name == "TUPLE" else self.pop(int(name[-1]))
        self.stack.append(_tuple(items))

    def add_items(self, name: str, arg, pos: int) -> None:
        """SETITEM(S) into a dict, APPEND(S) to a list: only string and number keys."""
        if name == "SETITEM":
            self.need(3)
            items = self.pop(2)
        elif name == "APPEND":
            self.need(2)
            items = [self.stack.pop()]
        else:
            items = _pop_mark(self.stack, self.marks)
            self.need(1)
        target = self.stack[-1]
        if target.kind != (_DICT if name.startswith("SET") else _LIST):
            raise _Refused(f"its pickle adds items to a {_NAMES.get(target.kind, 'value')} with {name}")
        if name.startswith("SET"):
            if len(items) % 2:
                raise _Refused("its pickle gives a dict a key without a value")
            if any(k.kind not in (_ATOM, _STR) for k in items[::2]):
                raise _Refused("its pickle uses a container as a dict key")
        target.items.extend(items)

    def put(self, name: str, arg, pos: int) -> None:
        self.need(1)
        self.memo[arg] = self.stack[-1]

    def get(self, name: str, arg, pos: int) -> None:
        node = self.memo.get(arg)
        if node is None:
            raise _Refused("its pickle refers to a value it never stored")
        if not _shareable(node):  # a list or dict in two places: torch.save of a checkpoint never does that
            raise _Refused(f"its pickle puts the same {_NAMES[node.kind]} in two places")
        self.stack.append(node)

    @staticmethod
    def _atom(name: str, arg) -> _Node:
        """A number, None, a boolean or a string: at most 64 bits, at most ``MAX_STRING`` characters."""
        if name in ("BININT", "BININT1", "BININT2", "LONG1") and arg.bit_length() > 64:
            raise _Refused("its pickle holds an integer of more than 64 bits")
        if name == "BINUNICODE":
            if len(arg) > MAX_STRING:
                raise _Refused(f"its pickle holds a string of {len(arg):,} characters")
            return _Node(_STR, arg)
        return _Node(_ATOM, {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}.get(name, arg))

    def global_name(self, name: str, arg, pos: int) -> None:
        if arg != _REBUILD and arg != _ODICT and arg not in _STORAGES:
            raise _Refused(f"it asks for {shown(arg.replace(' ', '.'), 80)}, which a checkpoint never needs "
                           "(it could run code or take memory)")
        self.stack.append(_Node(_GLOBAL, arg))

    def reduce(self, name: str, arg, pos: int) -> None:
        func, args = self.pop(2)
        self.stack.append(_reduce(func, args, self.used))

    def build(self, name: str, arg, pos: int) -> None:
        self.need(2)
        state = self.stack.pop()
        if self.stack[-1].value != _ODICT or self.stack[-1].kind != _DICT or state.kind != _DICT:
            raise _Refused("its pickle sets attributes of an object, which a checkpoint never does")
        self.stack[-1].items.append(state)

    def persistent_id(self, name: str, arg, pos: int) -> None:
        self.need(1)
        self.stack.append(_storage(self.stack.pop(), self.record_sizes))


_ATOM_OPS = frozenset({"BININT", "BININT1", "BININT2", "LONG1", "BINFLOAT", "NONE", "NEWTRUE", "NEWFALSE",
                       "BINUNICODE"})
_STEPS = {
    "PROTO": _Walk.proto, "STOP": _Walk.stop, "MARK": _Walk.mark,
    "EMPTY_DICT": _Walk.empty, "EMPTY_LIST": _Walk.empty, "EMPTY_TUPLE": _Walk.empty,
    "TUPLE": _Walk.make_tuple, "TUPLE1": _Walk.make_tuple, "TUPLE2": _Walk.make_tuple, "TUPLE3": _Walk.make_tuple,
    "SETITEM": _Walk.add_items, "SETITEMS": _Walk.add_items, "APPEND": _Walk.add_items, "APPENDS": _Walk.add_items,
    "BINPUT": _Walk.put, "LONG_BINPUT": _Walk.put, "BINGET": _Walk.get, "LONG_BINGET": _Walk.get,
    "GLOBAL": _Walk.global_name, "REDUCE": _Walk.reduce, "BUILD": _Walk.build, "BINPERSID": _Walk.persistent_id,
}
assert set(_STEPS) | _ATOM_OPS == _OPS  # every allowed opcode has its step, and no other


def _need(stack: list, marks: list, n: int) -> None:
    if len(stack) - (marks[-1] if marks else 0) < n:
        raise _Refused("its pickle is damaged (an instruction finds too few values)")


def _pop_mark(stack: list, marks: list) -> list:
    if not marks:
        raise _Refused("its pickle is damaged (a missing mark)")
    at = marks.pop()
    items = stack[at:]
    del stack[at:]
    return items


def _tuple(items: list) -> _Node:
    """A tuple; its value says whether it holds only strings, numbers and classes (so it may be shared)."""
    return _Node(_TUPLE, all(i.kind in (_ATOM, _STR, _GLOBAL) for i in items), items)


def _shareable(node: _Node) -> bool:
    """Strings, numbers, classes and tuples of them can appear twice; they cannot grow or hold themselves.

    Shared values are counted each time they appear (``_check_tree``), so sharing cannot multiply work.
    """
    return node.kind in (_ATOM, _STR, _GLOBAL) or (node.kind == _TUPLE and node.value is True)


def _ints(node: _Node) -> list[int] | None:
    if node.kind != _TUPLE or len(node.items) > 8:
        return None
    out = [i.value for i in node.items if i.kind == _ATOM and type(i.value) is int]
    return out if len(out) == len(node.items) else None


def _reduce(func: _Node, args: _Node, used: set) -> _Node:
    if func.kind != _GLOBAL or args.kind != _TUPLE:
        raise _Refused("its pickle calls something that is not an allowed constructor")
    if func.value == _ODICT:
        if args.items:
            raise _Refused("its pickle builds an OrderedDict from arguments")
        return _Node(_DICT, _ODICT, items=[])
    if func.value != _REBUILD:
        raise _Refused(f"its pickle calls {shown(func.value.replace(' ', '.'), 60)}")
    a = args.items
    if len(a) != 6 or a[0].kind != _STORAGE:
        raise _Refused("a tensor in it is not an ordinary dense tensor")
    offset = a[1].value if a[1].kind == _ATOM and type(a[1].value) is int else None
    size, stride = _ints(a[2]), _ints(a[3])
    hooks = a[5]
    if (offset is None or size is None or stride is None or a[4].kind != _ATOM or type(a[4].value) is not bool
            or hooks.kind != _DICT or hooks.items):
        raise _Refused("a tensor in it is not an ordinary dense tensor")
    dtype, key, numel = a[0].value
    if key in used:
        raise _Refused("two of its tensors share one storage, which a checkpoint never does")
    used.add(key)
    if any(n < 0 for n in size) or len(stride) != len(size):
        raise _Refused("a tensor in it has a negative or mismatched size")
    want, step = [], 1
    for n in reversed(size):
        want.append(step)
        step *= n
    count = math.prod(size)
    if any(s != w for s, w, n in zip(stride, reversed(want), size) if n != 1):  # a checkpoint's tensors are contiguous
        raise _Refused("a tensor in it is not stored contiguously")
    if offset < 0 or offset + count > numel:
        raise _Refused(f"a tensor in it claims {count:,} values but its storage holds {numel:,}")
    return _Node(_TENSOR, (dtype, tuple(size)))


def _storage(pid: _Node, record_sizes: dict[str, int]) -> _Node:
    p = pid.items if pid.kind == _TUPLE else []
    if (len(p) != 5 or p[0].kind != _STR or p[0].value != "storage" or p[1].kind != _GLOBAL
            or p[1].value not in _STORAGES or p[2].kind != _STR or p[3].kind != _STR or len(p[3].value) > 32
            or p[4].kind != _ATOM or type(p[4].value) is not int or p[4].value < 0):
        raise _Refused("its pickle refers to external data in a way torch.save does not")
    dtype, key, numel = _STORAGES[p[1].value], p[2].value, p[4].value
    record = record_sizes.get(key)
    if record is None:
        raise _Refused(f"a tensor in it refers to data/{shown(key, 40)}, which its archive does not hold")
    if numel * dtype.itemsize != record:
        raise _Refused(f"a tensor in it declares {numel * dtype.itemsize:,} bytes of storage, but its record "
                       f"data/{shown(key, 40)} holds {record:,}")
    return _Node(_STORAGE, (dtype, key, numel))


def _check_tree(root: _Node) -> None:
    """Count every value (shared tuples each time they appear) and the nesting, without recursion."""
    count = 0
    todo = [(root, 0)]
    while todo:
        node, depth = todo.pop()
        count += 1
        if count > MAX_ITEMS:
            raise _Refused(f"its payload has more than {MAX_ITEMS:,} values; a checkpoint's has a few hundred")
        if depth > MAX_DEPTH:
            raise _Refused(f"its payload nests more than {MAX_DEPTH} levels deep; a checkpoint's nests 4")
        if node.kind in (_GLOBAL, _STORAGE):
            raise _Refused(f"its payload holds a bare {_NAMES[node.kind]}, which a checkpoint never does")
        if node.items:
            todo.extend((item, depth + 1) for item in node.items)


def _one_line(err: BaseException | str, limit: int = 300) -> str:
    """An error's whole text on one line, control characters escaped, shortened to about ``limit``."""
    return shown(" ".join(str(err).split()), limit)


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
