"""The Models page through Streamlit's AppTest: its downloads, their snippets, and what it says about the model.

What the downloaded files hold, and their names, is checked in a real browser (tests/test_browser_models.py):
AppTest's runtime ends with each run, and a click on a download button reaches nothing after that.
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core import checkpoint, export, paths
from core import models as M
from dashboard import state, widgets
from tests.apptest import app

KINDS = ("checkpoint", "torchscript", "onnx")


def models_page() -> AppTest:
    return app("views/models.py")


def buttons(at: AppTest) -> dict:
    return {b.proto.id.rsplit("-", 1)[-1].removeprefix("models.download_"): b for b in at.download_button}


@pytest.fixture
def made(monkeypatch) -> list:
    """Every file the page's builders make, by kind, in order."""
    made = []
    for module, name, kind in [(checkpoint, "to_bytes", "checkpoint"), (export, "torchscript_bytes", "torchscript"),
                               (export, "onnx_bytes", "onnx")]:
        def counted(ckpt, real=getattr(module, name), kind=kind):
            made.append(kind)
            return real(ckpt)

        monkeypatch.setattr(module, name, counted)
    return made


def test_the_page_offers_three_downloads_each_with_its_snippet_and_builds_none_of_them(made):
    at = models_page()
    sess = at.session_state[state.SESSION]
    assert [t.value for t in at.title] == ["Models in and out"]
    assert [t.label for t in at.tabs] == ["Checkpoint", "TorchScript", "ONNX"]
    shown = buttons(at)
    assert list(shown) == list(KINDS)
    assert [b.label for b in shown.values()] == ["Download the checkpoint", "Download TorchScript", "Download ONNX"]
    assert all(b.proto.deferred_file_id and not b.proto.url for b in shown.values())  # made when clicked
    at.run()
    assert made == []  # drawing the page, twice, made no file: only a click does
    assert [c.value for c in at.code] == [export.snippets(sess.current)[k].strip() for k in KINDS]
    bundled = checkpoint.load(paths.BUNDLED_MODEL)
    assert {m.label: m.value for m in at.metric}["Test accuracy"] == f"{bundled.metrics['test_acc']:.2%}"
    assert any(f"**{bundled.name}** (bundled)" in m.value for m in at.markdown)
    assert at.get("file_uploader")[0].label == "Upload a checkpoint"


def test_a_download_is_made_at_the_first_click_and_kept_for_the_next():
    store, made = {}, []

    def make() -> bytes:
        made.append(1)
        return bytes(8)

    first = widgets.made_once(store, "onnx", make)
    assert made == []  # handing the button its data makes nothing
    data = first()
    again = widgets.made_once(store, "onnx", make)  # the button of the next rerun, for the same model
    assert again() is data and first() is data and made == [1]
    assert widgets.made_once({}, "onnx", make)() == data and made == [1, 1]  # another model's store: made anew


def test_an_uploaded_model_is_named_as_uploaded_and_its_snippets_follow_it(made):
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
    assert "MLP 784-16-10" in at.code[0].value
    assert made == []


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
