"""TorchScript and ONNX exports predict as the model on real MNIST digits, and the snippets run."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from core import checkpoint, export, paths
from core import models as M
from core.inference import predict_proba, to_tensor

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def images(mnist) -> np.ndarray:
    """256 real test digits as the app sees them: float [256, 28, 28] in [0, 1], white ink on black."""
    return mnist.test.images[:256].numpy().astype(np.float32) / 255


@pytest.fixture(scope="module")
def bundled() -> checkpoint.Checkpoint:
    return checkpoint.load(paths.BUNDLED_MODEL)


@pytest.fixture(scope="module")
def small_mlp(mnist) -> checkpoint.Checkpoint:
    """A non-seed MLP (batch norm, dropout: layers that differ between training and eval), trained briefly."""
    torch.manual_seed(0)
    cfg = M.MLPConfig(hidden=(48,), dropout=0.1, batch_norm=True)
    model = M.build_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = to_tensor(mnist.train.images[:12_800].numpy() / 255.0), mnist.train.labels[:12_800]
    for i in range(0, len(y), 128):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i:i + 128]), y[i:i + 128]).backward()
        opt.step()
    return checkpoint.from_model(model, cfg, name="small MLP")


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def assert_predicts_as_the_app(ckpt, logits: np.ndarray, images: np.ndarray) -> None:
    """The export, fed raw pixels, against the app's own path (normalise, then the model)."""
    want = predict_proba(ckpt.build(), images)
    got = softmax(logits)
    assert got.shape == (len(images), 10)
    assert (got.argmax(1) == want.argmax(1)).all()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("which", ["bundled", "small_mlp"])
def test_the_torchscript_export_predicts_as_the_model_on_mnist(which, request, images):
    ckpt = request.getfixturevalue(which)
    loaded = torch.jit.load(io.BytesIO(export.torchscript_bytes(ckpt)))
    with torch.inference_mode():
        logits = loaded(torch.from_numpy(images).unsqueeze(1)).numpy()
    assert_predicts_as_the_app(ckpt, logits, images)


@pytest.mark.parametrize("which", ["bundled", "small_mlp"])
def test_the_onnx_export_predicts_as_the_model_on_mnist(which, request, images):
    ckpt = request.getfixturevalue(which)
    session = ort.InferenceSession(export.onnx_bytes(ckpt), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name) == ("pixels", "logits")
    assert inp.shape[0] == out.shape[0] == "batch" and inp.shape[1:] == [1, 28, 28]
    logits = session.run(None, {"pixels": images[:, None]})[0]
    assert_predicts_as_the_app(ckpt, logits, images)
    one = session.run(None, {"pixels": images[:1, None]})[0]  # any batch size
    np.testing.assert_allclose(one, logits[:1], atol=1e-5)


def test_the_onnx_file_describes_itself(bundled):
    proto = onnx.load_model_from_string(export.onnx_bytes(bundled))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["classes"]) == [str(d) for d in range(10)]
    assert meta["dataset"] == "mnist" and meta["name"] == "Canvas CNN" and meta["test_accuracy"] == f"{bundled.metrics['test_acc']:.4f}"
    assert "[batch, 1, 28, 28] in [0, 1], white ink on black" in meta["input"]


def test_the_torchscript_file_carries_the_same_description(bundled):
    extra = {"digitlab.json": ""}
    torch.jit.load(io.BytesIO(export.torchscript_bytes(bundled)), _extra_files=extra)
    assert json.loads(extra["digitlab.json"]) == export.metadata(bundled)


def test_an_export_that_does_not_match_the_model_is_refused(bundled, monkeypatch):
    real = torch.jit.load

    def tampered(*args, **kwargs):
        module = real(*args, **kwargs)
        return lambda x: module(x) + 1e-3

    monkeypatch.setattr(torch.jit, "load", tampered)
    with pytest.raises(export.ExportError, match="TorchScript export does not predict the same"):
        export.torchscript_bytes(bundled)


def test_checkpoint_bytes_round_trip_predicts_identically(bundled, small_mlp, images):
    for ckpt in (bundled, small_mlp):
        again = checkpoint.load_bytes(checkpoint.to_bytes(ckpt), source="the upload")
        assert again.model_config == ckpt.model_config and again.name == ckpt.name
        assert np.array_equal(predict_proba(again.build(), images), predict_proba(ckpt.build(), images))


def test_exports_are_recognised_where_a_checkpoint_belongs(bundled):
    assert export.identify(export.torchscript_bytes(bundled)) == "torchscript"
    assert export.identify(export.onnx_bytes(bundled)) == "onnx"
    assert export.identify(checkpoint.to_bytes(bundled)) is None
    assert export.identify(b"PK\x03\x04 not a zip at all") is None
    assert export.identify(os.urandom(4096)) is None


@pytest.mark.parametrize("name, stem", [
    ("bundled seed CNN", "digitlab-bundled-seed-cnn"),
    ("Run 3: wide CNN", "digitlab-run-3-wide-cnn"),
    ("../../etc/passwd", "digitlab-etc-passwd"),
    ("Modèle à Zoë", "digitlab-modele-a-zoe"),
    ("数字", "digitlab-model"),
    ("", "digitlab-seed-mlp"),  # no name: the description
])
def test_file_names_are_safe(name, stem):
    ckpt = checkpoint.Checkpoint(M.MLPConfig(), {}, name=name)
    assert export.file_names(ckpt) == {"checkpoint": f"{stem}.pt", "torchscript": f"{stem}.torchscript.pt",
                                       "onnx": f"{stem}.onnx"}


def test_snippets_carry_the_data_sets_numbers(bundled):
    fashion = checkpoint.Checkpoint(bundled.model_config, bundled.state_dict, dataset="fashion-mnist", name="f")
    code = export.snippets(fashion)
    assert "MEAN, STD = 0.286, 0.353" in code["checkpoint"]
    assert all("'Ankle boot'" in c and "FashionMNIST" in c for c in code.values())
    assert "MEAN, STD = 0.1307, 0.3081" in export.snippets(bundled)["checkpoint"]


def test_each_snippet_runs_on_its_download_and_prints_the_models_answer(bundled, mnist, tmp_path):
    index = int(np.flatnonzero(mnist.test.labels.numpy() == 7)[0])
    digit = mnist.test.images[index].numpy()
    Image.fromarray(digit).save(tmp_path / "digit.png")
    names = export.file_names(bundled)
    (tmp_path / names["checkpoint"]).write_bytes(checkpoint.to_bytes(bundled))
    (tmp_path / names["torchscript"]).write_bytes(export.torchscript_bytes(bundled))
    (tmp_path / names["onnx"]).write_bytes(export.onnx_bytes(bundled))
    probs = predict_proba(bundled.build(), digit / 255.0)
    expected = f"prediction: {int(probs.argmax())} ({probs.max():.1%})"
    assert expected.startswith("prediction: 7 ")
    for kind, code in export.snippets(bundled).items():
        # only the checkpoint snippet may use this repository's code
        env = {**os.environ, "PYTHONPATH": str(ROOT) if kind == "checkpoint" else ""}
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, f"{kind} snippet failed:\n{done.stderr}"
        lines = done.stdout.splitlines()
        assert lines[0] == expected, (kind, done.stdout)
        if kind == "checkpoint":  # the plain-torch reading of the same file
            assert "'model_config'" in lines[1] and "'state_dict'" in lines[1]
            assert lines[2] == str(M.config_to_dict(bundled.model_config))
            first = next(iter(bundled.state_dict.items()))  # the first layer's weights, with their shape
            assert f"'{first[0]}': {tuple(first[1].shape)}" in lines[3]
