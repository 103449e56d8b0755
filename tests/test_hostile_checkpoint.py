"""Hostile checkpoints: each is refused with its reason, in bounded memory and time, never with a traceback.

The files are built byte by byte by ``bench.hostile`` (the benchmark reports the same figures).
Memory and time are measured in a fresh Python process, whose address space is capped so that a
loader that regressed fails there instead of exhausting this machine.
"""

import io
import os
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

from bench import hostile as H
from core import checkpoint as C
from core import models as M

ROOT = Path(__file__).resolve().parent.parent
PEAK_MB = 300  # above what the process held just before loading; a refused file needs a few MB
SECONDS = 10  # each load; they take well under a second

REFUSED = {
    "bytearray 3 GB in name": r"refused: it asks for builtins\.bytearray",
    "bytearray 3 GB under an extra key": r"refused: it asks for builtins\.bytearray",
    "bytearray 2**62": r"refused: it asks for builtins\.bytearray",
    "list 200,000 deep in metrics": r"refused: its pickle has more than 100,000 steps",
    "list 200,000 deep in name": r"refused: its pickle has more than 100,000 steps",
    "20 MB of nested dicts": r"refused: its pickle is 20\.\d MB; a checkpoint's is a few KB",
    "300,000 items in 600 KB": r"refused: its pickle has more than 100,000 steps",
    "one tuple shared 20,000 times": r"refused: its payload has more than 100,000 values",
    "a list holding itself": r"refused: its pickle puts the same list in two places",
    "nested tensor weight": r"refused: it asks for torch\._utils\._rebuild_nested_tensor",
    "NaN weight": r"weight fc3\.bias holds NaN values",
    "infinite weight": r"weight fc3\.bias holds infinite values",
    "complex weight": r"weight fc3\.bias holds complex numbers \(complex64\); the model's fc3\.bias is float32",
    "integer weight": r"weight fc3\.bias holds integer numbers \(int64\); the model's fc3\.bias is float32",
    "storage larger than its record": r"declares 4,000,000,000 bytes of storage, but its record data/\d+ holds 40",
    "1e9-element view of one value": r"refused: a tensor in it is not stored contiguously",
    "code in metrics": r"refused: it asks for os\.system",
    "two data.pkl entries": r"refused: its archive names the same entry twice",
    "1.5 million zip entries": r"refused: its archive lists about 1,500,000 entries; a checkpoint has at most 1,000",
    "lists 40 deep in settings": r"refused: its payload nests more than 32 levels deep",
}
LOADED = ["99,000 numbers (within every cap)", "valid (control)"]


def test_every_hostile_file_has_an_expected_outcome():
    assert set(REFUSED) | set(LOADED) == set(H.FILES)


@pytest.fixture(scope="module")
def measured() -> dict:
    return {row["name"]: row for row in H.measure(list(H.FILES), timeout=600)}


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_hostile_file_is_refused_with_its_reason_in_bounded_memory_and_time(measured, name):
    row = measured[name]
    assert row["outcome"] == "refused", row  # a CheckpointError: not MemoryError, RecursionError, RuntimeError...
    import re

    assert re.search(REFUSED[name], row["message"]), row["message"]
    assert "\n" not in row["message"] and len(row["message"]) < 400
    assert row["peak_mb"] < PEAK_MB, row
    assert row["seconds"] < SECONDS, row


@pytest.mark.parametrize("name", LOADED)
def test_files_within_every_cap_still_load(measured, name):
    row = measured[name]
    assert row["outcome"] == "loaded", row
    assert row["peak_mb"] < PEAK_MB and row["seconds"] < SECONDS, row


def test_the_hand_built_control_is_a_real_checkpoint():
    """The builders write what torch.save writes: their valid file loads and runs as its weights say."""
    ck = C.load_bytes(H.valid())
    assert ck.model_config == M.MLPConfig() and ck.name == "hand-built" and ck.metrics == {"test_acc": 0.5}
    assert all(torch.equal(v, torch.full_like(v, 0.01)) for v in ck.state_dict.values())
    x = torch.rand(2, 1, 28, 28)
    out = ck.build()(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    # and PyTorch's own loader reads the same file the same way
    raw = torch.load(io.BytesIO(H.valid()), weights_only=True)
    assert raw["state_dict"].keys() == ck.state_dict.keys()


def test_the_same_files_reach_pytorch_unrefused_without_the_inspection():
    """The control for the hostile bytes: PyTorch's weights_only loader alone lets the bytearray through."""
    data = H.checkpoint(H.payload(notes=H.bytearray_call(1000)))
    blob = torch.load(io.BytesIO(data), weights_only=True)
    assert isinstance(blob["notes"], bytearray) and len(blob["notes"]) == 1000
    with pytest.raises(C.CheckpointError, match=r"builtins\.bytearray"):
        C.load_bytes(data)


# ----------------------------------------------------------------------------- paths that are not files

def _run(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run code in a fresh Python; a hang fails the test after ``timeout`` instead of stalling the suite."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def _load_in_child(path: Path) -> str:
    proc = _run(f"""
        import re, resource
        from core import checkpoint as C
        # a loader that regressed and read /dev/zero fails here instead of filling this machine's memory
        size = int(re.search(r"VmSize:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size + (2 << 30), resource.RLIM_INFINITY))
        try:
            C.load({str(path)!r})
        except C.CheckpointError as err:
            print("refused:", err)
        else:
            print("loaded")
    """)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_a_fifo_as_checkpoint_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    out = _load_in_child(fifo)
    assert out.startswith("refused:") and "not a regular file" in out


def test_dev_zero_as_checkpoint_is_refused_without_reading(tmp_path):
    out = _load_in_child(Path("/dev/zero"))
    assert out.startswith("refused:") and "not a regular file" in out


def test_a_run_folders_model_linked_to_dev_zero_is_refused(tmp_path):
    run = tmp_path / "runs" / "20260101-000000-abcd"  # no run.json: only the model file
    run.mkdir(parents=True)
    (run / "model.pt").symlink_to("/dev/zero")
    out = _load_in_child(run / "model.pt")
    assert out.startswith("refused:") and "not a regular file" in out


def test_the_command_line_reports_a_fifo_and_exits(tmp_path):
    fifo = tmp_path / "m.pt"
    os.mkfifo(fifo)
    proc = subprocess.run([sys.executable, "-m", "core", "predict", "--checkpoint", str(fifo), "x.png"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 2 and "not a regular file" in proc.stderr and "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- the inspection's rules, in process

def _archive_with(pkl: bytes) -> bytes:
    return H.archive(pkl, {})


@pytest.mark.parametrize("pkl, message", [
    (b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00}\x94.", r"protocol 4; torch\.save writes protocol 2"),
    (b"\x80\x02(cos\nsystem\nX\x04\x00\x00\x00trueo.", r"asks for os\.system"),
    (b"}.", r"does not start as torch\.save starts one"),
    (b"\x80\x02(X\x01\x00\x00\x00ai__main__\nEvil\n.", r"INST instruction"),
    (b"\x80\x02X\x02\x00\x00\x00osX\x06\x00\x00\x00system\x93.", r"STACK_GLOBAL instruction"),
    (b"\x80\x02]q\x00}h\x00s.", r"uses a container as a dict key|puts the same list"),
    (b"\x80\x02}(]K\x01u.", r"container as a dict key"),
    (b"\x80\x02\x8b\x09\x00\x00\x00" + b"\xff" * 9 + b".", r"LONG4 instruction"),
    (b"\x80\x02\x8a\x09" + b"\x01" * 9 + b".", r"integer of more than 64 bits"),
    (b"\x80\x02h\x05.", r"refers to a value it never stored"),
    (b"\x80\x02}N.", r"does not end as a single value"),
    (b"\x80\x02}", r"corrupt or truncated"),
    (b"\x80\x02X" + struct.pack("<I", 70_000) + b"a" * 70_000 + b".", r"string of 70,000 characters"),
])
def test_pickles_that_torch_save_never_writes_are_refused_before_unpickling(pkl, message):
    with pytest.raises(C.CheckpointError, match=message):
        C.load_bytes(_archive_with(pkl))


def test_a_tensor_claiming_more_values_than_its_storage_is_refused():
    state = H.weights()
    state["fc3.bias"] = H.Tensor("FloatStorage", (1_000_000_000,), struct.pack("<f", 0.0), numel=1)
    with pytest.raises(C.CheckpointError, match=r"claims 1,000,000,000 values but its storage holds 1"):
        C.load_bytes(H.checkpoint(H.payload(state_dict=state)))


def test_two_tensors_on_one_storage_are_refused():
    pkl, records = H.pickled(H.payload())
    pkl = pkl.replace(H.text("5"), H.text("4"))  # fc3.bias now points at fc3.weight's record
    with pytest.raises(C.CheckpointError, match=r"share one storage|declares \d[\d,]* bytes"):
        C.load_bytes(H.archive(pkl, records))


def test_an_archive_whose_readers_could_disagree_is_refused():
    good = H.valid()
    with zipfile.ZipFile(io.BytesIO(good)) as z:
        names = z.namelist()
    assert "archive/data.pkl" in names
    outside = H.archive(*H.pickled(H.payload()), extra=[("other/data.pkl", b"x")])
    with pytest.raises(C.CheckpointError, match="one folder holding every entry"):
        C.load_bytes(outside)


@pytest.mark.parametrize("field, value, message", [
    ("name", 5, r"name is an int, not text"),
    ("created", ["2026"], r"date is a list, not text"),
    ("dataset", ["mnist"], r"unknown data set \['mnist'\]"),
])
def test_metadata_of_the_wrong_type_is_named(field, value, message):
    with pytest.raises(C.CheckpointError, match=message):
        C.load_bytes(H.checkpoint(H.payload(**{field: value})))


def test_an_extra_weight_is_named():
    state = H.weights()
    state["fc9.weight"] = H.Tensor("FloatStorage", (2,), struct.pack("<ff", 0, 0))
    with pytest.raises(C.CheckpointError, match=r"it also has fc9\.weight, which the model does not"):
        C.load_bytes(H.checkpoint(H.payload(state_dict=state)))


def test_a_load_error_keeps_its_whole_reason(monkeypatch):
    def refuse(self, state, strict=True, assign=False):
        raise RuntimeError("Error(s) in loading state_dict for SeedMLP:\n\tsize mismatch for fc1.weight: copying "
                           "a param with shape [1] from checkpoint, the shape in current model is [128, 784].")

    monkeypatch.setattr(torch.nn.Module, "load_state_dict", refuse)
    with pytest.raises(C.CheckpointError) as err:
        C.load_bytes(H.valid())
    assert "size mismatch for fc1.weight" in str(err.value) and "[128, 784]" in str(err.value)
    assert "\n" not in str(err.value) and "\t" not in str(err.value)


def test_batch_norms_integer_counter_is_accepted_and_a_float_one_refused():
    cfg = M.MLPConfig(hidden=(32, 16), batch_norm=True, dropout=0.3)
    model = M.build_model(cfg).train()
    model(torch.randn(8, 1, 28, 28))
    ck = C.from_model(model, cfg)
    back = C.load_bytes(C.to_bytes(ck))
    assert back.state_dict["net.2.num_batches_tracked"].dtype == torch.int64
    assert int(back.state_dict["net.2.num_batches_tracked"]) == 1
    payload = C.to_payload(ck)
    payload["state_dict"]["net.2.num_batches_tracked"] = torch.tensor(1.0)
    buf = io.BytesIO()
    torch.save(payload, buf)
    with pytest.raises(C.CheckpointError, match=r"num_batches_tracked holds floating-point numbers \(float32\); "
                                                r"the model's net\.2\.num_batches_tracked is int64"):
        C.load_bytes(buf.getvalue())


# ----------------------------------------------------------------------------- real checkpoints still load

def test_the_bundled_checkpoint_loads_and_predicts_as_its_weights():
    from core import paths

    ck = C.load(paths.BUNDLED_MODEL)
    raw = torch.load(paths.BUNDLED_MODEL, weights_only=True)
    reference = M.build_model(M.config_from_dict(raw["model_config"]))
    reference.load_state_dict(raw["state_dict"])
    x = torch.rand(16, 1, 28, 28)
    with torch.inference_mode():
        assert torch.equal(ck.build()(x), reference.eval()(x))


KINDS = [*M.REGISTRY.values(), M.MLPConfig(hidden=(32, 16), batch_norm=True, dropout=0.3),
         M.MLPConfig(hidden=(16,) * M.MAX_LAYERS, batch_norm=True),
         M.CNNConfig(channels=(4, 8), fc=(8,) * M.MAX_LAYERS, batch_norm=True, dropout=0.1)]


@pytest.mark.parametrize("cfg", KINDS, ids=[M.describe(c) for c in KINDS])
def test_a_fresh_checkpoint_of_every_model_kind_loads_and_predicts_identically(tmp_path, cfg):
    torch.manual_seed(0)
    model = M.build_model(cfg).train()
    model(torch.randn(8, 1, 28, 28))  # batch norm's running statistics and counter move off their defaults
    ck = C.from_model(model, cfg, train_config={"lr": 0.01, "model": M.config_to_dict(cfg), "seed": 2 ** 40},
                      metrics={"test_acc": 0.9, "train_seconds": 1.5}, name="every kind")
    back = C.load(C.save(ck, tmp_path / "m.pt"))
    assert back.model_config == cfg and back.train_config["seed"] == 2 ** 40
    x = torch.rand(8, 1, 28, 28)
    with torch.inference_mode():
        assert torch.equal(ck.build()(x), back.build()(x))
