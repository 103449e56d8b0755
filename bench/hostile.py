"""Hostile checkpoints, built byte by byte, and a way to measure what loading each one costs.

Each function in ``FILES`` returns the bytes of one file an attacker could upload to the Models
page or pass to ``python -m core predict --checkpoint``. The pickles are written opcode by opcode
(protocol 2, as ``torch.save`` writes them) and stored in a zip laid out as ``torch.save`` lays
it out, so nothing here depends on PyTorch agreeing to write them. ``valid()`` builds a correct
checkpoint the same way: the control that shows each refusal is about the hostile part.

``measure(names)`` loads each file with ``core.checkpoint.load_bytes`` in a fresh Python process
and reports the outcome, the message, the seconds and the peak memory above what the process
held just before loading::

    python -m bench.hostile            # a table of every file
    python -m bench.hostile --json

The tests (tests/test_hostile_checkpoint.py) use the same builders and the same measurement.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# ----------------------------------------------------------------------------- a protocol-2 pickle writer

MARK, STOP, TUPLE, EMPTY_TUPLE, EMPTY_LIST, EMPTY_DICT = b"(", b".", b"t", b")", b"]", b"}"
APPEND, APPENDS, SETITEMS, REDUCE, BINPERSID, NONE = b"a", b"e", b"u", b"R", b"Q", b"N"
NEWTRUE, NEWFALSE, TUPLE1 = b"\x88", b"\x89", b"\x85"


class Raw(bytes):
    """Opcodes put into the pickle as they are, where a value would go."""


class Tensor:
    """A tensor as torch.save writes it: a storage record in the archive and a rebuild call."""

    def __init__(self, storage: str, shape: tuple, data: bytes, *, numel: int | None = None,
                 stride: tuple | None = None):
        self.storage, self.shape, self.data = storage, tuple(shape), data
        self.numel = math.prod(self.shape) if numel is None else numel
        self.stride = stride if stride is not None else contiguous(self.shape)


def contiguous(shape: tuple) -> tuple:
    out, step = [], 1
    for n in reversed(shape):
        out.append(step)
        step *= n
    return tuple(reversed(out))


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def integer(n: int) -> bytes:
    if -(2 ** 31) <= n < 2 ** 31:
        return b"J" + struct.pack("<i", n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw  # LONG1


def text(s: str) -> bytes:
    raw = s.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(raw)) + raw  # BINUNICODE


def _write(value, out: list, records: dict) -> None:
    if isinstance(value, Raw):
        out.append(bytes(value))
    elif value is None:
        out.append(NONE)
    elif value is True or value is False:
        out.append(NEWTRUE if value else NEWFALSE)
    elif isinstance(value, int):
        out.append(integer(value))
    elif isinstance(value, float):
        out.append(b"G" + struct.pack(">d", value))
    elif isinstance(value, str):
        out.append(text(value))
    elif isinstance(value, dict):
        out.append(EMPTY_DICT)
        if value:
            out.append(MARK)
            for k, v in value.items():
                _write(k, out, records)
                _write(v, out, records)
            out.append(SETITEMS)
    elif isinstance(value, list):
        out.append(EMPTY_LIST)
        if value:
            out.append(MARK)
            for v in value:
                _write(v, out, records)
            out.append(APPENDS)
    elif isinstance(value, tuple):
        if not value:
            out.append(EMPTY_TUPLE)
        else:
            out.append(MARK)
            for v in value:
                _write(v, out, records)
            out.append(TUPLE)
    elif isinstance(value, Tensor):
        key = str(len(records))
        records[f"data/{key}"] = value.data
        out.append(glob("torch._utils", "_rebuild_tensor_v2") + MARK)
        out.append(MARK + text("storage") + glob("torch", value.storage) + text(key) + text("cpu")
                   + integer(value.numel) + TUPLE + BINPERSID)
        _write(0, out, records)
        _write(value.shape, out, records)
        _write(value.stride, out, records)
        out.append(NEWFALSE + glob("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE + TUPLE + REDUCE)
    else:
        raise TypeError(f"cannot write {type(value).__name__}")


def pickled(value) -> tuple[bytes, dict[str, bytes]]:
    """The protocol-2 pickle of ``value`` and the storage records its tensors refer to."""
    out: list[bytes] = [b"\x80\x02"]
    records: dict[str, bytes] = {}
    _write(value, out, records)
    out.append(STOP)
    return b"".join(out), records


def archive(pkl: bytes, records: dict[str, bytes] | None = None, *, extra: list[tuple[str, bytes]] = ()) -> bytes:
    """A zip laid out as torch.save writes it: ``archive/`` holding data.pkl, data/N, version..., all stored."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/.format_version", b"1")
        z.writestr("archive/.storage_alignment", b"64")
        z.writestr("archive/byteorder", b"little")
        for name, data in (records or {}).items():
            z.writestr(f"archive/{name}", data)
        z.writestr("archive/version", b"3\n")
        for name, data in extra:
            z.writestr(name, data)
    return buf.getvalue()


def checkpoint(value) -> bytes:
    return archive(*pickled(value))


# ----------------------------------------------------------------------------- a valid payload to spoil

def _floats(n: int, value: float = 0.01) -> bytes:
    return struct.pack("<f", value) * n


SEED_MLP = (("fc1", 784, 128), ("fc2", 128, 64), ("fc3", 64, 10))


def weights(dtype_of=None) -> dict:
    """The seed MLP's weights (small constants), as ``Tensor``s."""
    state = {}
    for name, fan_in, fan_out in SEED_MLP:
        state[f"{name}.weight"] = Tensor("FloatStorage", (fan_out, fan_in), _floats(fan_in * fan_out))
        state[f"{name}.bias"] = Tensor("FloatStorage", (fan_out,), _floats(fan_out))
    return state


def payload(**changes) -> dict:
    p = {
        "format": "digitlab-checkpoint", "version": 1, "name": "hand-built",
        "model_config": {"hidden": [128, 64], "dropout": 0.0, "batch_norm": False, "kind": "mlp"},
        "state_dict": weights(), "dataset": "mnist", "train_config": {"lr": 0.01, "epochs": 1},
        "metrics": {"test_acc": 0.5}, "created": "2026-01-01T00:00:00+00:00",
    }
    p.update(changes)
    return p


def valid() -> bytes:
    """A correct seed-MLP checkpoint, written by hand: it loads."""
    return checkpoint(payload())


# ----------------------------------------------------------------------------- the hostile files

def bytearray_call(n: int) -> Raw:
    """``builtins.bytearray(n)``: PyTorch's weights_only unpickler allows it and allocates n bytes."""
    return Raw(glob("builtins", "bytearray") + integer(n) + TUPLE1 + REDUCE)


def bytearray_3gb_in_name() -> bytes:
    return checkpoint(payload(name=bytearray_call(3_000_000_000)))


def bytearray_3gb_under_extra_key() -> bytes:
    return checkpoint(payload(notes=bytearray_call(3_000_000_000)))


def bytearray_2_pow_62() -> bytes:
    return checkpoint(payload(name=bytearray_call(2 ** 62)))


def deep_list(depth: int = 200_000) -> Raw:
    """A list nested ``depth`` deep: [[[...]]]. 2 bytes a level, so 200,000 levels is 400 KB."""
    return Raw(EMPTY_LIST * depth + APPEND * (depth - 1))


def deep_list_in_metrics() -> bytes:
    return checkpoint(payload(metrics={"test_acc": 0.5, "history": deep_list()}))


def deep_list_in_name() -> bytes:
    return checkpoint(payload(name=deep_list()))


def nested_dicts_20mb() -> bytes:
    """A 20 MB pickle: a dict of 1.45 million small dicts, under the training settings."""
    entry_count = 1_450_000
    body = b"".join(text(f"k{i:07d}") + EMPTY_DICT for i in range(entry_count))
    return checkpoint(payload(train_config=Raw(EMPTY_DICT + MARK + body + SETITEMS)))


def too_many_items() -> bytes:
    """A 600 KB pickle within the size cap: 300,000 empty lists under the metrics."""
    n = 300_000
    return checkpoint(payload(metrics=Raw(EMPTY_LIST + MARK + EMPTY_LIST * n + APPENDS)))


def shared_tuple_amplified() -> bytes:
    """One tuple of 1,000 numbers fetched from the memo 20,000 times: 20 million values from 60 KB."""
    tup = MARK + b"K\x01" * 1000 + TUPLE + b"q\x00"  # BININT1 1 ... TUPLE, BINPUT 0
    body = tup + b"h\x00" * 19_999  # BINGET 0
    return checkpoint(payload(train_config=Raw(EMPTY_LIST + MARK + body + APPENDS)))


def list_holding_itself() -> bytes:
    """A list appended to itself through the memo: a cycle that repr and recursive walks never finish."""
    return checkpoint(payload(name=Raw(EMPTY_LIST + b"q\x00" + b"h\x00" + APPEND)))


def nested_tensor_weight() -> bytes:
    """What torch.save writes for a checkpoint whose first weight is a nested tensor."""
    import torch

    data = io.BytesIO()
    blob = {k: v for k, v in payload().items() if k != "state_dict"}
    state = {}
    for name, fan_in, fan_out in SEED_MLP:
        state[f"{name}.weight"] = torch.full((fan_out, fan_in), 0.01)
        state[f"{name}.bias"] = torch.full((fan_out,), 0.01)
    state["fc1.weight"] = torch.nested.as_nested_tensor([torch.zeros(128, 392), torch.zeros(128, 392)])
    blob["state_dict"] = state
    torch.save(blob, data)
    return data.getvalue()


def _one_weight(tensor: Tensor, key: str = "fc3.bias") -> bytes:
    state = weights()
    state[key] = tensor
    return checkpoint(payload(state_dict=state))


def nan_weight() -> bytes:
    return _one_weight(Tensor("FloatStorage", (10,), _floats(9) + struct.pack("<f", float("nan"))))


def inf_weight() -> bytes:
    return _one_weight(Tensor("FloatStorage", (10,), _floats(9) + struct.pack("<f", float("inf"))))


def complex_weight() -> bytes:
    return _one_weight(Tensor("ComplexFloatStorage", (10,), struct.pack("<ff", 0.01, 1.0) * 10))


def int_weight() -> bytes:
    return _one_weight(Tensor("LongStorage", (10,), struct.pack("<q", 1) * 10))


def storage_larger_than_its_record() -> bytes:
    """A storage that declares 1,000,000,000 floats over a 40-byte record."""
    return _one_weight(Tensor("FloatStorage", (10,), _floats(10), numel=1_000_000_000))


def view_of_a_billion_over_one_value() -> bytes:
    """An extra weight that is a 1,000,000,000-element view (stride 0) of a single stored float."""
    state = weights()
    state["extra"] = Tensor("FloatStorage", (1_000_000_000,), _floats(1), numel=1, stride=(0,))
    return checkpoint(payload(state_dict=state))


def code_in_metrics() -> bytes:
    """``os.system("true")`` under the metrics: the classic pickle that runs code."""
    return checkpoint(payload(metrics=Raw(glob("os", "system") + text("true") + TUPLE1 + REDUCE)))


def million_zip_entries(count: int = 1_500_000) -> bytes:
    """A 70 MB zip directory of 1.5 million one-letter entries: a zip reader builds an object for each."""
    entry = struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0) + b"a"
    directory = entry * count
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, len(directory), 4, 0)
    return b"PK\x03\x04" + directory + end


def two_entries_of_one_name() -> bytes:
    """A second data.pkl appended to the archive: two readers could see two different pickles."""
    pkl, records = pickled(payload())
    evil, _ = pickled(payload(name=bytearray_call(3_000_000_000)))
    return archive(pkl, records, extra=[("archive/data.pkl", evil)])


def within_every_cap() -> bytes:
    """The most work the caps allow: 99,000 numbers in the training settings (98,000 steps). It loads."""
    return checkpoint(payload(train_config={"numbers": Raw(EMPTY_LIST + MARK + b"K\x07" * 99_000 + APPENDS)}))


def too_deep(depth: int = 40) -> bytes:
    """Settings nested 40 lists deep: small, but deeper than any walk of a checkpoint should go."""
    return checkpoint(payload(train_config=deep_list(depth)))


FILES = {
    "bytearray 3 GB in name": bytearray_3gb_in_name,
    "bytearray 3 GB under an extra key": bytearray_3gb_under_extra_key,
    "bytearray 2**62": bytearray_2_pow_62,
    "list 200,000 deep in metrics": deep_list_in_metrics,
    "list 200,000 deep in name": deep_list_in_name,
    "20 MB of nested dicts": nested_dicts_20mb,
    "300,000 items in 600 KB": too_many_items,
    "one tuple shared 20,000 times": shared_tuple_amplified,
    "a list holding itself": list_holding_itself,
    "nested tensor weight": nested_tensor_weight,
    "NaN weight": nan_weight,
    "infinite weight": inf_weight,
    "complex weight": complex_weight,
    "integer weight": int_weight,
    "storage larger than its record": storage_larger_than_its_record,
    "1e9-element view of one value": view_of_a_billion_over_one_value,
    "code in metrics": code_in_metrics,
    "two data.pkl entries": two_entries_of_one_name,
    "1.5 million zip entries": million_zip_entries,
    "lists 40 deep in settings": too_deep,
    "99,000 numbers (within every cap)": within_every_cap,
    "valid (control)": valid,
}

# ----------------------------------------------------------------------------- measuring, in a fresh process

_CHILD = r"""
import gc, json, os, re, resource, sys, time
sys.path.insert(0, sys.argv[1])
from bench import hostile
from core import checkpoint as C

def status(key):
    try:
        with open("/proc/self/status") as f:
            return int(re.search(key + r":\s+(\d+)", f.read()).group(1)) * 1024
    except (OSError, AttributeError):
        return None

def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False

C.load_bytes(hostile.valid())  # one-time costs (lazy imports, first tensors) are not the file's
size = status("VmSize")
if size:  # a loader that regresses fails here with MemoryError instead of taking the machine down
    resource.setrlimit(resource.RLIMIT_AS, (size + int(sys.argv[2]), resource.RLIM_INFINITY))
for name in sys.argv[3:]:
    data = hostile.FILES[name]()
    gc.collect()
    exact = reset_peak() and status("VmHWM") is not None
    before = status("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    try:
        C.load_bytes(data, "the file")
        outcome, message = "loaded", ""
    except C.CheckpointError as err:
        outcome, message = "refused", str(err)
    except BaseException as err:
        outcome, message = type(err).__name__, str(err)[:300]
    seconds = time.perf_counter() - start
    peak = status("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"name": name, "bytes": len(data), "outcome": outcome, "message": message,
                      "seconds": round(seconds, 4), "peak_mb": round(max(0, peak - before) / 1e6, 1),
                      "exact_peak": exact}), flush=True)
    del data
"""


def measure(names=None, *, timeout: float = 300, headroom: int = 2 << 30) -> list[dict]:
    """Load each named file in one fresh process; each row: outcome, message, seconds, peak_mb above the baseline.

    The child's address space is capped at what it holds after importing torch plus ``headroom``, so a
    loader that tried to allocate gigabytes fails in the child instead of exhausting the machine. With
    ``/proc/self/clear_refs`` the peak is reset before each file; elsewhere rows report the running peak.
    """
    names = list(FILES) if names is None else list(names)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(ROOT), str(headroom), *names], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if len(rows) != len(names):
        raise RuntimeError(f"the measuring process ended early (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return rows


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = measure()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'file':36} {'size':>10} {'outcome':>8} {'seconds':>8} {'peak MB':>8}  message")
    for r in rows:
        print(f"{r['name']:36} {r['bytes']:>10,} {r['outcome']:>8} {r['seconds']:>8.3f} {r['peak_mb']:>8.1f}  "
              f"{r['message'][:150]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
