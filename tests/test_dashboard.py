"""Every page through Streamlit's AppTest: real scripts, real session state, no browser."""

from __future__ import annotations


import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core import drawn
from dashboard import state
from tests.apptest import app, drawing, session



def start_small_mlp_run() -> AppTest:
    """The Train page with the seed MLP on 2,000 samples, Start pressed."""
    at = app("views/train.py")
    at.radio(key="train.model").set_value("MLP")
    at.number_input(key="train.subset").set_value(2000)
    at.run()
    at.button(key="train.start_button").click().run()
    return at


def navigation_pages(monkeypatch) -> list[str]:
    """The pages the app's navigation offers, as the app makes them (every st.Page it builds), so that a
    page added later is covered without naming it here."""
    made, real = [], st.Page

    def spy(page, *args, **kwargs):
        made.append(page)
        return real(page, *args, **kwargs)

    monkeypatch.setattr(st, "Page", spy)
    app()
    monkeypatch.setattr(st, "Page", real)
    return made


def test_every_page_in_the_navigation_renders_without_exceptions(mirror_root, monkeypatch):
    pages = navigation_pages(monkeypatch)
    assert len(pages) == len(set(pages)) >= 10 and {"views/train.py", "views/draw.py", "views/models.py"} <= set(pages)
    at = app()
    for page in pages:
        at.switch_page(page)
        at.run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert [t.value for t in at.title], f"{page} stopped before its title"
        assert session(at).current_source == "bundled"
    at.switch_page("views/home.py")
    assert any(t.value == "Digit Lab" for t in at.run().title)


def test_draw_page_predicts_the_drawing_and_shows_what_the_model_saw():
    at = app("views/draw.py")
    assert any("Draw a digit on the black canvas" in i.value for i in at.info)
    session(at).last_drawing = drawing(2)
    at.run()
    assert [m.value for m in at.markdown if m.value.startswith("## Prediction")] == ["## Prediction: 2"]
    images = [str(i.proto) for i in at.get("image")]
    assert sum("What the model saw" in i for i in images) == 1
    bars = at.get("progress")  # the ten probabilities, the answer's in bold
    assert len(bars) == 10 and "**2: " in str(bars[2].proto) and abs(sum(b.value for b in bars) - 100) <= 5
    assert any("Answered by" in c.value and "bundled" in c.value for c in at.caption)
    why = [c.value for c in at.caption if c.value.startswith("Why this model:")]  # the bundled one is no tutorial CNN
    assert len(why) == 1 and "three copies of the tutorial's CNN" in why[0] and "Train page" in why[0]


@pytest.mark.parametrize("pixels, message", [
    (np.zeros((280, 280, 4), np.uint8), "Draw a digit on the black canvas"),
    (np.dstack([drawn.render([[(140.0, 140.0), (141.0, 141.0)]], 280, 20)] * 3 + [np.full((280, 280), 255, np.uint8)]),
     "only a dot"),
    (np.full((280, 280, 4), 255, np.uint8), "filled with ink"),
])
def test_draw_page_never_predicts_without_a_digit(pixels, message):
    at = app("views/draw.py")
    session(at).last_drawing = pixels
    at.run()
    assert not [m for m in at.markdown if m.value.startswith("## Prediction")]
    assert any(message in e.value for e in list(at.info) + list(at.warning))


def test_a_short_run_started_with_the_widgets_streams_events_and_becomes_the_current_model(mirror_root):
    at = app("views/train.py")
    at.radio(key="train.model").set_value("MLP")
    at.number_input(key="train.subset").set_value(3000)
    at.slider(key="train.epochs").set_value(2)
    at.run()
    assert not at.exception
    at.button(key="train.start_button").click().run()
    sess = session(at)
    run = sess.run
    assert run is not None and run.config.train_subset == 3000 and run.config.model.kind == "mlp"
    assert run.join(timeout=120), "the run should finish"
    view = run.view()
    assert view.start is not None and len(view.batches) == 2 * 47 and len(view.epochs) == 2
    assert view.end.reason == "finished"
    at.run()
    assert sess.current is run.result and sess.current_source == "trained"
    assert any("Run finished" in s.value for s in at.success)
    assert any(c.value == "Run 1: seed MLP" for c in at.text)  # the sidebar names the model that answers
    at.switch_page("views/draw.py")
    at.run()
    sess.last_drawing = drawing(7)
    at.run()
    assert any("Answered by **Run 1\\: seed MLP**" in c.value for c in at.caption)  # user text, escaped


def test_a_diverging_run_is_explained_in_words_a_student_understands(mirror_root):
    at = app("views/train.py")
    at.radio(key="train.model").set_value("MLP")
    at.selectbox(key="train.optimizer").set_value("SGD")
    at.run()
    at.select_slider(key="train.lr").set_value(10.0)
    at.slider(key="train.momentum").set_value(0.99)
    at.number_input(key="train.subset").set_value(20000)
    at.run()
    at.button(key="train.start_button").click().run()
    assert session(at).run.join(timeout=120)
    at.run()
    errors = [e.value for e in at.error]
    assert any("The run diverged" in e and "learning rate is too high: the loss became NaN" in e for e in errors)


def test_impossible_settings_disable_start_and_say_why():
    at = app("views/train.py")
    at.number_input(key="train.subset").set_value(100)
    at.select_slider(key="train.batch_size").set_value(512)
    at.run()
    assert at.button(key="train.start_button").disabled
    assert any("larger than the 100 training samples" in e.value for e in at.error)


def test_settings_survive_a_page_switch():
    at = app("views/train.py")
    at.slider(key="train.epochs").set_value(7)
    at.run()
    at.switch_page("views/draw.py")
    at.run()
    at.switch_page("views/train.py")
    at.run()
    assert at.slider(key="train.epochs").value == 7


def test_draw_page_look_inside_views_render():
    at = app("views/draw.py")
    session(at).last_drawing = drawing(4)
    at.run()
    at.segmented_control(key="draw.inside").set_value("Steps").run()
    assert any("4. centred in 28×28" in str(i.proto) for i in at.get("image"))
    at.segmented_control(key="draw.inside").set_value("Saliency").run()
    assert not at.exception and any("pushed the score" in str(i.proto) for i in at.get("image"))
    at.selectbox(key="draw.saliency_class").set_value(9).run()
    assert any("“9”" in str(i.proto) for i in at.get("image"))
    at.segmented_control(key="draw.inside").set_value("Inside the network").run()
    assert not at.exception and any("Learned conv1 filters" in m.value for m in at.markdown)


def test_evaluate_page_reports_the_current_model_on_the_test_set(mirror_root):
    at = app("views/evaluate.py")
    metrics = {m.label: m.value for m in at.metric}
    # the same figure computed apart from the page: the bundled model over the whole MNIST test set
    from core import checkpoint, paths
    from core.data import load_dataset
    from core.trainer import evaluate

    mnist = load_dataset("mnist")
    _, acc = evaluate(checkpoint.load(paths.BUNDLED_MODEL).build(), mnist.test, mnist.info)
    assert metrics["Accuracy"] == f"{acc:.2%}" and int(metrics["Mistakes"]) == round((1 - acc) * len(mnist.test))
    assert any("Click a cell" in i.value for i in at.info)
    assert any("most confidently wrong" in s.value for s in at.subheader)


def test_finished_runs_are_kept_listed_and_can_be_reused_renamed_and_deleted(mirror_root, runs_folder):
    at = start_small_mlp_run()
    assert session(at).run.join(timeout=120)
    at.run()  # adopts the run: it becomes current and is saved
    assert len(list(runs_folder.glob("*/run.json"))) == 1
    at.switch_page("views/runs.py")
    at.run()
    assert not at.exception and at.dataframe[0].value["name"].tolist() == ["Run 1: seed MLP"]
    sess = session(at)
    sess.use_checkpoint(state.bundled_checkpoint(), "bundled")
    at.button(key="runs.use").click().run()
    assert sess.current_source.startswith("run ") and sess.current.name == "Run 1: seed MLP"
    assert "Run 1: seed MLP (saved run)" in [t.value for t in at.sidebar.text]  # in the same rerun
    at.text_input(key="runs.new_name").set_value("<b>my</b> ../../run")
    at.button[[b.label for b in at.button].index("Rename")].click().run()
    assert at.dataframe[0].value["name"].tolist() == ["<b>my</b> ../../run"]  # shown as text, stored in run.json
    assert len(list(runs_folder.glob("*/run.json"))) == 1
    at.button(key="runs.delete").click().run()
    assert not list(runs_folder.glob("*/run.json"))
    assert any("No runs yet" in i.value for i in at.info)


def test_inside_an_mlp_shows_its_units(mirror_root):
    from core import checkpoint
    from core import models as M

    at = app("views/draw.py")
    sess = session(at)
    sess.use_checkpoint(checkpoint.from_model(M.build_model(M.MLPConfig()), M.MLPConfig(), name="an MLP"), "trained")
    sess.last_drawing = drawing(4)
    at.run()
    at.segmented_control(key="draw.inside").set_value("Inside the network").run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 1  # all 128 units' activations
    assert sum("unit " in str(i.proto) for i in at.get("image")) == 16


@pytest.fixture
def busy_slots(mnist, monkeypatch):
    """The server's one training slot, taken by another session's long run."""
    from core import models as M
    from core import jobs as S
    from core.trainer import TrainConfig

    pool = S.SlotPool(1)
    monkeypatch.setattr(S, "SLOTS", pool)
    blocker = S.TrainingRun(TrainConfig(model=M.MLPConfig(), epochs=100), mnist, slots=pool).start()
    yield blocker
    blocker.stop()
    blocker.join(timeout=30)


def test_a_run_beyond_the_training_slots_waits_in_line_and_says_so(mirror_root, busy_slots):
    at = start_small_mlp_run()
    run = session(at).run
    assert run.view().state == "queued"
    assert any("1st in line, should start in about" in w.value for w in at.warning)
    busy_slots.stop()
    assert run.join(timeout=120) and run.view().end.reason == "finished"


def test_the_train_page_unlocks_after_a_run_that_ends_without_a_model(mirror_root, busy_slots):
    at = app("views/train.py")
    at.button(key="train.start_button").click().run()
    assert at.button(key="train.start_button").disabled
    at.button(key="train.stop_button").click().run()  # stopped while still waiting in line
    assert session(at).run.join(timeout=30) and session(at).run.result is None
    at.run()
    assert not at.button(key="train.start_button").disabled and not at.exception


def test_a_model_picked_while_a_run_trains_is_not_replaced_when_the_run_ends(mirror_root):
    at = start_small_mlp_run()
    sess = session(at)
    picked = state.bundled_checkpoint()
    sess.use_checkpoint(picked, "uploaded")  # as the Models page does with an upload
    assert sess.run.join(timeout=120)
    at.run()
    assert sess.current is picked and sess.current_source == "uploaded"
    assert sess.saved_run_id  # the run itself is kept
    assert any("picked during the run still answers" in c.value for c in at.caption)


class EndedRun:
    """A run that has ended but that no page has seen end yet: the window before ``adopt_finished_run``."""

    done = True
    saved_id, save_error = "saved-1", None

    def __init__(self, ticket: int, result):
        self.ticket, self.result = ticket, result

    def status(self):
        from types import SimpleNamespace

        return SimpleNamespace(end=SimpleNamespace(reason="finished"))


@pytest.mark.parametrize("pick", [True, False])
def test_a_model_picked_after_a_run_ends_but_before_it_is_adopted_stays(pick):
    from core import checkpoint
    from core import models as M

    def tiny(name):
        return checkpoint.from_model(M.build_model(M.MLPConfig()), M.MLPConfig(), name=name)

    start, trained, picked = tiny("start"), tiny("trained"), tiny("picked")
    sess = state.AppSession(current=start, current_source="bundled")
    sess.run = EndedRun(ticket=7, result=trained)
    if pick:
        sess.use_checkpoint(picked, "uploaded")
    assert sess.adopt_finished_run()
    assert (sess.current, sess.current_source) == ((picked, "uploaded") if pick else (trained, "trained"))
    assert sess.saved_run_id == "saved-1" and not sess.adopt_finished_run()  # adopted once
    sess.use_checkpoint(start, "bundled")  # after the adoption, a pick is an ordinary one
    assert sess.current is start and sess.chosen_during == (7 if pick else None)


def test_the_memo_rebuilds_when_its_dependencies_change_and_compares_objects_by_identity():
    from core import checkpoint
    from core import models as M

    memo, builds = state.Memo(), []

    def build():
        builds.append(1)
        return len(builds)

    ckpt = checkpoint.from_model(M.build_model(M.MLPConfig()), M.MLPConfig(), name="a")
    twin = checkpoint.Checkpoint(**vars(ckpt))  # the same values, another checkpoint
    assert memo.get("k", (ckpt, 3, "x", (1, None)), build) == 1
    assert memo.get("k", (ckpt, 3, "x", (1, None)), build) == 1  # the same: kept
    assert memo.get("k", (twin, 3, "x", (1, None)), build) == 2  # another object, even with equal weights
    assert memo.get("k", (twin, 3, "x", (1, 2)), build) == 3  # a plain value changed
    assert memo.get("other", (twin, 3, "x", (1, 2)), build) == 4  # each key is its own
    memo.drop("k")
    assert "k" not in memo and memo.get("k", (twin, 3, "x", (1, 2)), build) == 5
    memo.clear()
    assert "other" not in memo
