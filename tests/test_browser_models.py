"""The Models page in a real Chromium against a real Streamlit server: files out, files in."""

from __future__ import annotations

import os
import re

import numpy as np
import onnxruntime as ort
import pytest
import torch
from playwright.sync_api import expect

from core import checkpoint, paths
from core import models as M
from core.inference import predict_proba
from tests.browser import StreamlitServer, any_answer, artifacts_dir, digit_strokes, draw_on

SHOTS = artifacts_dir()
expect.set_options(timeout=30_000)  # a shared 2-core machine: generous, never a speed assertion
UPLOADED_NAME = "Class 4B tiny MLP"


@pytest.fixture(scope="module")
def server(tmp_path_factory, mirror_root):
    srv = StreamlitServer(tmp_path_factory.mktemp("browser-models") / "home")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def images(mnist) -> np.ndarray:
    return mnist.test.images[:128].numpy().astype(np.float32) / 255


def open_models(page, server):
    page.goto(server.url + "/models")
    expect(page.get_by_role("heading", name="Models in and out")).to_be_visible()


def download(page, tab: str, label: str, folder):
    """Click a download button on its tab; the saved file's path."""
    page.get_by_role("tab", name=tab).click()
    with page.expect_download() as info:
        page.get_by_role("button", name=re.compile(label)).click()
    path = folder / info.value.suggested_filename
    info.value.save_as(path)
    return path


def upload(page, path):
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(path))


def sidebar_model(page):
    return page.get_by_test_id("stSidebar").get_by_text(re.compile(r"\((bundled|uploaded|trained|saved run)\)$"))


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_download_the_current_model_in_three_forms_and_use_each_outside_the_app(page, server, images, tmp_path):
    bundled = checkpoint.load(paths.BUNDLED_MODEL)
    want = predict_proba(bundled.build(), images)
    open_models(page, server)
    expect(page.get_by_role("button", name=re.compile("Download the checkpoint"))).to_be_visible()
    page.screenshot(path=SHOTS / "20-models.png")

    path = download(page, "Checkpoint", "Download the checkpoint", tmp_path)
    assert path.name == "digitlab-canvas-cnn.pt"
    np.testing.assert_array_equal(predict_proba(checkpoint.load(path).build(), images), want)

    path = download(page, "TorchScript", "Download TorchScript", tmp_path)
    assert path.name == "digitlab-canvas-cnn.torchscript.pt"
    with torch.inference_mode():
        logits = torch.jit.load(str(path))(torch.from_numpy(images).unsqueeze(1)).numpy()
    assert (logits.argmax(1) == want.argmax(1)).all()
    np.testing.assert_allclose(softmax(logits), want, atol=1e-4)

    path = download(page, "ONNX", "Download ONNX", tmp_path)
    assert path.name == "digitlab-canvas-cnn.onnx"
    logits = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"pixels": images[:, None]})[0]
    assert (logits.argmax(1) == want.argmax(1)).all()
    np.testing.assert_allclose(softmax(logits), want, atol=1e-4)
    expect(page.get_by_text("import onnxruntime as ort")).to_be_visible()  # the snippet beside the button


class Hostile:
    """Unpickling this would run a shell command: a file that must never get that far."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def same_weights(a: checkpoint.Checkpoint, b: checkpoint.Checkpoint) -> bool:
    return a.model_config == b.model_config and all(torch.equal(a.state_dict[k], v) for k, v in b.state_dict.items())


def test_upload_a_checkpoint_and_refuse_everything_else(page, server, tmp_path, images):
    cfg = M.MLPConfig(hidden=(24,))
    torch.manual_seed(4)
    mine = checkpoint.from_model(M.build_model(cfg), cfg, name=UPLOADED_NAME)
    good = checkpoint.save(mine, tmp_path / "class-4b.pt")
    open_models(page, server)
    expect(sidebar_model(page)).to_have_text("Canvas CNN (bundled)")
    exported = download(page, "TorchScript", "Download TorchScript", tmp_path)  # of the bundled model, for later

    upload(page, good)
    expect(page.get_by_text(f"“{UPLOADED_NAME}” now answers on the Draw page.")).to_be_visible()
    expect(sidebar_model(page)).to_have_text(f"{UPLOADED_NAME} (uploaded)")  # at once, not one rerun later
    expect(page.get_by_text(f"{UPLOADED_NAME} (uploaded) · MLP 784-24-10")).to_be_visible()
    page.screenshot(path=SHOTS / "21-models-uploaded.png")
    back = download(page, "Checkpoint", "Download the checkpoint", tmp_path)
    assert back.name == "digitlab-class-4b-tiny-mlp.pt"
    assert same_weights(checkpoint.load(back), mine)
    # the model now current in the app predicts as the original on real test images
    np.testing.assert_array_equal(predict_proba(checkpoint.load(back).build(), images),
                                  predict_proba(mine.build(), images))

    marker = tmp_path / "pwned"
    torch.save(Hostile(marker), tmp_path / "evil.pt")
    (tmp_path / "broken.pt").write_bytes(checkpoint.to_bytes(mine)[:4000])
    refusals = [
        (tmp_path / "broken.pt", r"“broken\.pt” is not a readable PyTorch file \(it may be corrupt or truncated\)"),
        (tmp_path / "evil.pt", r"“evil\.pt” was refused: it asks for posix\.system, which a checkpoint never needs"),
        (exported, r"“digitlab-canvas-cnn\.torchscript\.pt” is a TorchScript export: .* Upload the "
                   r"checkpoint \(\.pt\) instead\."),
    ]
    for path, message in refusals:
        upload(page, path)
        error = page.get_by_test_id("stAlertContentError")
        expect(error).to_have_text(re.compile(message + r".* The current model stays\.$"))
        expect(sidebar_model(page)).to_have_text(f"{UPLOADED_NAME} (uploaded)")
    error.scroll_into_view_if_needed()
    page.screenshot(path=SHOTS / "22-models-refused.png")
    assert not marker.exists(), "the hostile pickle ran code"
    again = download(page, "Checkpoint", "Download the checkpoint", tmp_path)
    assert same_weights(checkpoint.load(again), mine)  # the current model did not change

    page.get_by_role("link", name="Draw").first.click()
    canvas = page.locator("canvas").last
    expect(canvas).to_be_visible()
    draw_on(page, canvas, digit_strokes(3))
    expect(any_answer(page)).to_have_count(1)  # an untrained model: any answer
    expect(page.get_by_text(f"Answered by {UPLOADED_NAME} (uploaded)", exact=False)).to_be_visible()
