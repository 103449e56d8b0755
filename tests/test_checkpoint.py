import io
import os
import pickle
import zipfile

import pytest
import torch

from core import checkpoint as C
from core import models as M


def make(cfg=M.CNNConfig()) -> C.Checkpoint:
    torch.manual_seed(0)
    model = M.build_model(cfg)
    return C.from_model(model, cfg, train_config={"lr": 0.01}, metrics={"test_acc": 0.5}, name="test")


def test_a_checkpoint_round_trips(tmp_path):
    ckpt = make(M.MLPConfig(hidden=(32, 16), batch_norm=True))
    path = C.save(ckpt, tmp_path / "sub" / "m.pt")
    back = C.load(path)
    assert back.model_config == ckpt.model_config and back.dataset == "mnist"
    assert back.metrics == {"test_acc": 0.5} and back.train_config == {"lr": 0.01} and back.name == "test"
    assert back.created.endswith("+00:00")
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(ckpt.build()(x), back.build()(x))
    assert not list(tmp_path.glob("sub/.*.tmp"))  # no temporary file left behind


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    payload = C.to_payload(make())
    payload["metrics"] = Evil(marker)
    path = tmp_path / "evil.pt"
    torch.save(payload, path)
    # prove the file really would run code with a plain unpickler
    with pytest.raises(C.CheckpointError, match="refused"):
        C.load(path)
    assert not marker.exists()
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(Evil(marker)))
    with pytest.raises(C.CheckpointError):
        C.load(raw)
    assert not marker.exists()
    pickle.loads(raw.read_bytes())  # the control: an ordinary unpickler does run it
    assert marker.exists()


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"not a checkpoint at all", "not a readable PyTorch file"),
])
def test_garbage_files_are_refused(tmp_path, content, message):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(C.CheckpointError, match=message):
        C.load(path)


def test_a_truncated_checkpoint_is_refused(tmp_path):
    data = C.to_bytes(make())
    with pytest.raises(C.CheckpointError, match="corrupt or truncated"):
        C.load_bytes(data[: len(data) // 2])


def test_another_programs_files_are_refused():
    buf = io.BytesIO()
    torch.save(M.SeedCNN().state_dict(), buf)
    with pytest.raises(C.CheckpointError, match="bare state dict"):
        C.load_bytes(buf.getvalue())
    buf = io.BytesIO()
    torch.save({"epoch": 3, "optimizer": {}}, buf)
    with pytest.raises(C.CheckpointError, match="not a Digit Lab checkpoint"):
        C.load_bytes(buf.getvalue())


def test_weights_for_a_different_architecture_are_refused():
    payload = C.to_payload(make(M.CNNConfig()))
    payload["model_config"] = M.config_to_dict(M.MLPConfig())
    buf = io.BytesIO()
    torch.save(payload, buf)
    with pytest.raises(C.CheckpointError, match="do not fit its model"):
        C.load_bytes(buf.getvalue())


def test_a_future_format_version_asks_for_an_update():
    payload = C.to_payload(make())
    payload["version"] = C.VERSION + 1
    buf = io.BytesIO()
    torch.save(payload, buf)
    with pytest.raises(C.CheckpointError, match="newer Digit Lab"):
        C.load_bytes(buf.getvalue())


@pytest.mark.parametrize("cfg", [M.CNNConfig(), M.MLPConfig(), M.CNNConfig(channels=(8, 16), batch_norm=True, dropout=0.3)])
def test_the_torchscript_export_predicts_as_the_model(tmp_path, cfg):
    ckpt = make(cfg)
    C.export_torchscript(ckpt, tmp_path / "m.ts")
    loaded = torch.jit.load(str(tmp_path / "m.ts"))
    pixels = torch.rand(32, 1, 28, 28)  # the export takes pixels in [0, 1] and normalises them itself
    info = C.DATASETS[ckpt.dataset]
    with torch.inference_mode():
        torch.testing.assert_close(loaded(pixels), ckpt.build()((pixels - info.mean) / info.std), atol=1e-5, rtol=1e-4)


def test_a_process_killed_while_saving_leaves_the_last_good_checkpoint(tmp_path):
    """A real SIGKILL of a child process in the middle of writing a large checkpoint."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    target = tmp_path / "model.pt"
    good = make(M.CNNConfig())
    C.save(good, target)
    root = Path(__file__).resolve().parent.parent
    writer = (
        "import sys; sys.path.insert(0, %r)\n"
        "from core import checkpoint as C, models as M\n"
        "cfg = M.MLPConfig(hidden=(4096, 4096, 1024))\n"  # about 80 MB: a write takes a while
        "ck = C.from_model(M.build_model(cfg), cfg)\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    C.save(ck, %r)\n" % (str(root), str(target))
    )
    child = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".model.pt.*.tmp")):  # a write is under way
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.001)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    loaded = C.load(target)  # either the first good file or a complete later one: never a torn file
    assert loaded.model_config in (M.CNNConfig(), M.MLPConfig(hidden=(4096, 4096, 1024)))
    assert list(tmp_path.glob(".model.pt.*.tmp")), "the kill should have interrupted a write"


def saved(payload: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def test_a_small_file_describing_a_huge_model_is_refused_before_building_it(monkeypatch):
    payload = C.to_payload(make(M.MLPConfig()))
    payload["model_config"] = M.config_to_dict(M.MLPConfig(hidden=(4096,) * 8))  # 120 M weights, none given
    payload["state_dict"] = {}
    data = saved(payload)
    assert len(data) < 2_000
    built_on = []
    real_init = M.MLP.__init__

    def init(self, cfg):
        built_on.append(str(torch.get_default_device()))
        real_init(self, cfg)

    monkeypatch.setattr(M.MLP, "__init__", init)
    with pytest.raises(C.CheckpointError, match=r"describes a model with [\d,]+ weights"):
        C.load_bytes(data)
    assert built_on == ["meta"]  # sized without allocating it
    payload["model_config"] = M.config_to_dict(M.MLPConfig(hidden=(16,) * 9))
    with pytest.raises(C.CheckpointError, match="at most 8 hidden layers"):
        C.load_bytes(saved(payload))


def test_weights_of_the_wrong_shape_are_named():
    payload = C.to_payload(make(M.MLPConfig()))
    payload["state_dict"]["fc1.weight"] = torch.zeros(3, 3)
    with pytest.raises(C.CheckpointError, match=r"fc1.weight is shape \(3, 3\), expected \(128, 784\)"):
        C.load_bytes(saved(payload))


def test_a_checkpoint_with_compressed_entries_is_refused_before_unpacking():
    original = saved(C.to_payload(make()))
    packed = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(original)) as src, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    with pytest.raises(C.CheckpointError, match="compressed entries"):
        C.load_bytes(packed.getvalue())


def test_a_checkpoints_name_and_date_are_one_short_printable_line():
    payload = C.to_payload(make())
    payload["name"] = "line one\nline two\x1b[31m" + "x" * 500
    payload["created"] = "[click](http://evil.example)\n" * 50
    ck = C.load_bytes(saved(payload))
    assert "\n" not in ck.name and "\x1b" not in ck.name and len(ck.name) == C.MAX_TEXT
    assert "\n" not in ck.created and len(ck.created) <= C.MAX_TEXT


def test_accuracies_that_are_not_fractions_are_dropped():
    payload = C.to_payload(make())
    payload["metrics"] = {"test_acc": True, "drawn_acc": 7.5, "train_acc": 0.5, "train_seconds": 12.0}
    assert C.load_bytes(saved(payload)).metrics == {"train_acc": 0.5, "train_seconds": 12.0}


def test_training_settings_that_are_not_a_table_are_refused_and_none_reads_as_empty():
    payload = C.to_payload(make())
    payload["train_config"] = ["lr", 0.1]
    with pytest.raises(C.CheckpointError, match="training settings are not a table"):
        C.load_bytes(saved(payload))
    payload["train_config"] = None
    assert C.load_bytes(saved(payload)).train_config == {}


def test_a_checkpoint_is_titled_by_its_name_or_else_its_model():
    ckpt = make()
    assert ckpt.title == "test"
    ckpt.name = ""
    assert ckpt.title == ckpt.description == M.describe(ckpt.model_config)


def test_a_number_is_never_a_bool_and_an_accuracy_is_a_fraction():
    from core.values import is_finite, is_fraction, is_number

    assert is_number(3) and is_number(0.5) and not is_number(True) and not is_number("1")
    assert is_finite(10**400) and not is_finite(float("nan")) and not is_finite(float("inf"))
    assert is_fraction(1) and is_fraction(0.0) and not is_fraction(float("nan")) and not is_fraction(False)
