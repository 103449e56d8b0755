"""The Models page through Streamlit's AppTest: downloads, their snippets, and what it says about the model."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import onnxruntime as ort
import pytest
import torch
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from core import checkpoint, export, paths
from core import models as M
from dashboard import state
from tests.apptest import app

KINDS = ("checkpoint", "torchscript", "onnx")


def models_page() -> AppTest:
    return app("views/models.py")


def buttons(at: AppTest) -> dict:
    return {b.proto.id.rsplit("-", 1)[-1].removeprefix("models.download_"): b.proto
            for b in at.get("download_button")}


@pytest.fixture
def clicks(monkeypatch) -> dict:
    """The downloads' deferred callables by file id, as Streamlit registers them (AppTest's runtime is gone
    after each run, and with it the registry that a click would call)."""
    seen = {}
    real = MediaFileManager.add_deferred

    def spy(self, data_callable, mimetype, coordinates, file_name=None, **kwargs):
        file_id = real(self, data_callable, mimetype, coordinates, file_name=file_name, **kwargs)
        seen[file_id] = Download(file_name, data_callable)
        return file_id

    monkeypatch.setattr(MediaFileManager, "add_deferred", spy)
    return seen


@dataclass
class Download:
    file_name: str
    data: Callable[[], bytes]


def test_the_page_offers_three_downloads_each_with_its_snippet():
    at = models_page()
    sess = at.session_state[state.SESSION]
    assert [t.value for t in at.title] == ["Models in and out"]
    assert [t.label for t in at.tabs] == ["Checkpoint", "TorchScript", "ONNX"]
    protos = buttons(at)
    assert set(protos) == set(KINDS)
    assert all(p.deferred_file_id and not p.url for p in protos.values())  # nothing is built before a click
    assert "models.exports" not in sess._built or not sess._built["models.exports"][1]
    assert [c.value for c in at.code] == [export.snippets(sess.current)[k].strip() for k in KINDS]
    bundled = checkpoint.load(paths.BUNDLED_MODEL)
    assert {m.label: m.value for m in at.metric}["Test accuracy"] == f"{bundled.metrics['test_acc']:.2%}"
    assert any(f"**{bundled.name}** (bundled)" in m.value for m in at.markdown)
    assert at.get("file_uploader")[0].label == "Upload a checkpoint"


def test_a_click_builds_each_file_once_and_it_is_the_current_model(clicks):
    at = models_page()
    sess = at.session_state[state.SESSION]
    downloads = {k: clicks[p.deferred_file_id] for k, p in buttons(at).items()}
    assert {k: d.file_name for k, d in downloads.items()} == {
        "checkpoint": "digitlab-canvas-cnn.pt", "torchscript": "digitlab-canvas-cnn.torchscript.pt",
        "onnx": "digitlab-canvas-cnn.onnx"}
    data = {k: d.data() for k, d in downloads.items()}
    assert set(sess._built["models.exports"][1]) == set(KINDS)
    assert sess._built["models.exports"][1]["onnx"] is data["onnx"]
    at.run()  # a rerun registers new callables; they reuse the bytes built for this checkpoint
    assert clicks[buttons(at)["onnx"].deferred_file_id].data() is data["onnx"]  # the second click reuses the first one's bytes
    back = checkpoint.load_bytes(data["checkpoint"])
    assert all(torch.equal(back.state_dict[k], v) for k, v in sess.current.state_dict.items())
    x = torch.rand(8, 1, 28, 28)
    want = export.Deployable.from_checkpoint(sess.current)(x).detach().numpy()
    got_ts = torch.jit.load(io.BytesIO(data["torchscript"]))(x).detach().numpy()
    got_onnx = ort.InferenceSession(data["onnx"], providers=["CPUExecutionProvider"]).run(None, {"pixels": x.numpy()})[0]
    assert abs(got_ts - want).max() < 1e-5 and abs(got_onnx - want).max() < 1e-4


def test_an_uploaded_model_is_named_as_uploaded_and_its_downloads_follow_it(clicks):
    at = models_page()
    sess = at.session_state[state.SESSION]
    cfg = M.MLPConfig(hidden=(16,))
    uploaded = checkpoint.from_model(M.build_model(cfg), cfg, name="*mine* [x](http://example.com)")
    sess.use_checkpoint(uploaded, "uploaded")
    at.run()
    assert not at.exception
    assert any(m.value.startswith("**\\*mine\\* \\[x\\]\\(http\\:\u2060//example\\.com\\)** (uploaded)")
               for m in at.markdown)  # user text, escaped
    assert any(t.value == "*mine* [x](http://example.com) (uploaded)" for t in at.text)  # the sidebar
    download = clicks[buttons(at)["checkpoint"].deferred_file_id]
    assert download.file_name == "digitlab-mine-x-http-example-com.pt"
    back = checkpoint.load_bytes(download.data())
    assert back.model_config == cfg and all(torch.equal(back.state_dict[k], v) for k, v in uploaded.state_dict.items())
    assert "MLP 784-16-10" in at.code[0].value


def test_while_a_run_trains_the_page_says_the_downloads_are_not_the_live_weights():
    from core.jobs import TrainingRun
    from core.trainer import TrainConfig

    at = models_page()
    sess = at.session_state[state.SESSION]
    from core.identity import guest_owner

    owner = guest_owner(at.session_state[state.SESSION_ID])  # this browser session's own run, as a guest's
    sess.run = TrainingRun(TrainConfig(model=M.MLPConfig(), epochs=1), owner=owner)  # waiting, never started
    at.run()
    assert not at.exception
    assert any("not the weights being trained now" in i.value for i in at.info)
