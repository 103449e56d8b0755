"""The class set on the Draw and Class set pages, and projector mode, through Streamlit's AppTest."""

from __future__ import annotations

import numpy as np
import torch
from streamlit.testing.v1 import AppTest

from core import checkpoint, classset
from core.inference import classify
from core.models import MLPConfig, build_model
from dashboard import state
from dashboard.widgets import PROJECTOR_CSS

from tests.apptest import app, drawing


def test_draw_adds_a_drawing_with_the_label_its_author_picks(classset_folder):
    at = app("views/draw.py")
    assert at.button(key="draw.add").disabled  # nothing drawn yet
    at.session_state[state.SESSION].last_drawing = drawing(4)
    at.run()
    assert at.button(key="draw.add").disabled  # drawn, but which digit is it?
    at.button_group(key="draw.true_label").set_value(9).run()  # its author says 9, whatever the model thinks
    at.button(key="draw.add").click().run()
    assert not at.exception
    assert [s.value for s in at.success] == ["Added a 9 to the class set (1 drawing)."]
    stored = classset.ClassSet().list()
    assert [d.label for d in stored] == [9] and stored[0].path.parent == classset_folder
    sess = at.session_state[state.SESSION]
    assert sess.last_drawing is None and at.button_group(key="draw.true_label").value is None  # ready for the next


def test_the_class_set_page_scores_as_computed_independently_and_shows_the_mistakes():
    store = classset.ClassSet()
    digits = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 8]
    for i, d in enumerate(digits):
        store.add(drawing(d, slant=0.05 + 0.02 * i), d, background="dark")
    store.add(drawing(1, slant=-0.1), 7, background="dark")  # a wrong label: the model must "fail" on it
    at = app("views/classset.py")
    assert not at.exception, at.exception
    model = state.bundled_checkpoint().build()
    expected = [classify(model, store.image(d), background="dark").digit == d.label for d in store.list()]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Accuracy on our drawings"] == f"{np.mean(expected):.1%}"
    assert metrics["Right"] == f"{sum(expected)} of {len(expected)}"
    assert any(h.value == f"Its mistakes ({len(expected) - sum(expected)})" for h in at.subheader)
    assert any("drew 7, said 1" in im.proto.imgs[0].caption for im in at.get("image"))


def test_the_class_set_page_scores_any_saved_model_and_refuses_a_clothing_model(tmp_path, monkeypatch):
    store = classset.ClassSet()
    for d in (1, 2, 3):
        store.add(drawing(d), d, background="dark")
    torch.manual_seed(0)
    untrained = checkpoint.from_model(build_model(MLPConfig()), MLPConfig(), name="untrained MLP")
    at = app("views/classset.py")
    sess = at.session_state[state.SESSION]
    sess.use_checkpoint(untrained, "uploaded")
    at.run()
    choice = at.selectbox(key="classset.model")
    assert choice.value == "current"
    acc = {m.label: m.value for m in at.metric}["Accuracy on our drawings"]
    want = classset.score(untrained.build(), store).accuracy
    assert acc == f"{want:.1%}"
    choice.set_value("bundled").run()
    assert {m.label: m.value for m in at.metric}["Accuracy on our drawings"] == "100.0%"
    fashion = checkpoint.from_model(build_model(MLPConfig()), MLPConfig(), dataset="fashion-mnist", name="clothes")
    sess.use_checkpoint(fashion, "uploaded")
    at.selectbox(key="classset.model").set_value("current").run()
    assert any("trained on Fashion-MNIST" in w.value for w in at.warning)
    assert not at.exception


def test_an_empty_class_set_says_how_to_fill_it():
    at = app("views/classset.py")
    assert any("No drawings yet" in i.value for i in at.info)
    export = [e for e in at.get("download_button") if e.proto.label == "Download the class set (.zip)"]
    assert len(export) == 1 and export[0].proto.disabled


def test_projector_mode_is_kept_across_pages():
    at = app("views/draw.py")
    assert not any(PROJECTOR_CSS in m.value for m in at.markdown)
    at.toggle(key=state.PROJECTOR).set_value(True).run()
    for page in ("views/train.py", "views/classset.py", "views/evaluate.py", "views/draw.py"):
        at.switch_page(page).run()
        assert not at.exception, at.exception
        assert at.toggle(key=state.PROJECTOR).value is True, page
        assert any(PROJECTOR_CSS in m.value for m in at.markdown), page
    at.toggle(key=state.PROJECTOR).set_value(False).run()
    assert not any(PROJECTOR_CSS in m.value for m in at.markdown)


def test_projector_mode_draws_charts_with_large_type_and_thick_lines():
    from dashboard import charts

    at = app("views/train.py")  # projector mode off
    normal = charts.loss_figure([1, 2, 3], [2.3, 2.0, 1.5])
    at.session_state[state.PROJECTOR] = True
    big = _in_session(at, lambda: charts.loss_figure([1, 2, 3], [2.3, 2.0, 1.5]))
    assert big.layout.font.size > normal.layout.font.size
    assert big.data[1].line.width >= 2 * normal.data[1].line.width


def _in_session(at: AppTest, build):
    """Run ``build`` with ``st.session_state`` reading the AppTest session's state."""
    import streamlit as st

    old = dict(st.session_state)
    try:
        st.session_state[state.PROJECTOR] = at.session_state[state.PROJECTOR]
        return build()
    finally:
        st.session_state.clear()
        st.session_state.update(old)


def test_the_train_page_shows_a_batch_with_class_names_and_what_augmentation_makes_of_it():
    from core.data import DATASETS

    at = app("views/train.py")
    at.radio(key="train.dataset").set_value("Fashion-MNIST").run()
    shown = at.get("image")
    assert len(shown) == 1
    names = [im.caption for im in shown[0].proto.imgs]
    assert len(names) == 16 and set(names) <= set(DATASETS["fashion-mnist"].classes)
    at.toggle(key="train.augment").set_value(True).run()
    plain, warped = at.get("image")
    assert [im.caption for im in warped.proto.imgs] == [im.caption for im in plain.proto.imgs]  # same images
    assert [im.url for im in warped.proto.imgs] != [im.url for im in plain.proto.imgs]  # distorted
    before = [im.url for im in plain.proto.imgs]
    at.button(key="train.preview_next").click().run()
    assert [im.url for im in at.get("image")[0].proto.imgs] != before  # another batch
    assert not at.exception
