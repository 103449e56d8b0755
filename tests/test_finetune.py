"""Fine-tuning on the class set: it learns a style MNIST lacks, and refuses what it cannot do well."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import checkpoint, paths
from core import finetune as FT
from core import pendigits as P
from core.classset import ClassSet
from core.models import CNNConfig, build_model
from core.runs import RunStore

ROOT = Path(__file__).resolve().parent.parent


def underlined(sample: P.Sample, rng: np.random.Generator) -> np.ndarray:
    """A class whose habit MNIST never saw: every digit underlined with a bar."""
    pts = np.concatenate(sample.strokes)
    lo, hi = pts.min(0), pts.max(0)
    y = hi[1] + 0.25 * (hi[1] - lo[1])
    bar = np.array([[lo[0] - 0.3 * (hi[0] - lo[0]) - 20, y], [hi[0] + 0.3 * (hi[0] - lo[0]) + 20, y]], np.float32)
    return P.random_canvas(list(sample.strokes) + [bar], rng)


def make_set(root, samples, rng, draw=underlined, labels=None) -> ClassSet:
    store = ClassSet(root)
    for i, s in enumerate(samples):
        store.add(draw(s, rng), s.digit if labels is None else labels[i], background="dark")
    return store


@pytest.fixture(scope="module")
def bundled():
    return checkpoint.load(paths.BUNDLED_MODEL)


def test_fine_tuning_learns_a_style_mnist_lacks_and_keeps_mnist(tmp_path, bundled):
    rng = np.random.default_rng(0)
    samples = P.load(writers=P.REPORT_WRITERS[:6])  # 120 digits, six writers
    store = make_set(tmp_path / "set", samples, rng)
    seen = []
    FT._MNIST_SCORES.clear()  # as on a fresh server
    result = FT.finetune(bundled, store, progress=seen.append)
    learnt = [p for p in seen if not p.checking]
    assert [p.step for p in learnt] == list(range(1, FT.STEPS + 1)) and learnt[-1].total == FT.STEPS
    checks = [p.checking for p in seen if p.checking]  # the long checks report their progress too
    assert checks[0] == "MNIST's test set, before" and checks[-1] == "MNIST's test set, after"
    assert seen[-1].step == seen[-1].total == 10_000 and seen.index(learnt[0]) > checks.count(checks[0]) - 1
    assert result.held_out >= 25 and result.trained_on + result.held_out == len(store)
    assert result.holdout_before < 0.9  # the underline throws the bundled model
    assert result.holdout_after >= result.holdout_before + 0.1
    assert result.mnist_after >= result.mnist_before - FT.MAX_MNIST_DROP
    record = FT.save_run(result, author="Ana")
    assert RunStore().list()[0].id == record.id and RunStore().list()[0].author == "Ana"  # filed under who asked
    again = record.checkpoint()
    assert again.metrics["classset_holdout_after_acc"] == pytest.approx(result.holdout_after)
    assert "pen_acc" not in again.metrics  # measured on other weights


def test_a_model_already_scored_on_mnist_is_not_scored_again_and_its_fine_tune_starts_known(tmp_path, bundled):
    rng = np.random.default_rng(1)
    store = make_set(tmp_path / "set", P.load(writers=P.REPORT_WRITERS[:2]), rng)
    FT._MNIST_SCORES.clear()
    first = FT.finetune(bundled, store, steps=5)
    seen = []
    again = FT.finetune(checkpoint.load(paths.BUNDLED_MODEL), store, steps=5, progress=seen.append)  # read afresh
    assert again.mnist_before == first.mnist_before == pytest.approx(bundled.metrics["test_acc"], abs=1e-4)
    assert not [p for p in seen if p.checking == "MNIST's test set, before"]  # remembered, by its weights
    assert FT.weights_key(first.checkpoint) != FT.weights_key(bundled)
    assert FT._MNIST_SCORES[FT.weights_key(first.checkpoint)] == first.mnist_after  # fine-tuning it again: known


@pytest.mark.parametrize("count, digits, message", [
    (0, None, "The class set is empty"),
    (8, None, "at least 20 drawings"),
    (25, [7], "Every drawing in the class set is a 7"),
])
def test_too_little_to_learn_from_says_what_it_needs(tmp_path, bundled, count, digits, message):
    rng = np.random.default_rng(1)
    samples = [s for s in P.load(writers=P.REPORT_WRITERS) if digits is None or s.digit in digits][:count]
    store = make_set(tmp_path / "set", samples, rng)
    before = sorted(p.name for p in store.root.glob("*.png")) if store.root.exists() else []
    with pytest.raises(FT.FinetuneError, match=message):
        FT.finetune(bundled, store)
    assert (sorted(p.name for p in store.root.glob("*.png")) if store.root.exists() else []) == before
    assert RunStore().list() == []


def test_a_fashion_model_is_refused(tmp_path):
    fashion = checkpoint.from_model(build_model(CNNConfig()), CNNConfig(), dataset="fashion-mnist", name="clothes")
    store = make_set(tmp_path / "set", P.load(writers=P.REPORT_WRITERS[:2]), np.random.default_rng(2))
    with pytest.raises(FT.FinetuneError, match="Fashion-MNIST"):
        FT.finetune(fashion, store)


def test_mislabelled_drawings_are_named_for_checking(tmp_path, bundled):
    rng = np.random.default_rng(3)
    samples = P.load(writers=P.REPORT_WRITERS[6:8])  # 40 digits
    labels = [s.digit for s in samples]
    wrong = [i for i, s in enumerate(samples) if s.digit in (0, 3)]
    for i in wrong:
        labels[i] = 8 if samples[i].digit == 3 else 6
    store = make_set(tmp_path / "set", samples, rng, draw=lambda s, r: P.draw(s, P.Condition(16, 0.7, "centre")),
                     labels=labels)
    ids = {d.id for d in store.list() if any(d.path.name.startswith(f"{lab}-") for lab in (6, 8))}
    try:
        result = FT.finetune(bundled, store)
    except FT.FinetuneError as err:  # it did not help: nothing kept, and the message says to check labels
        assert "Check the labels" in str(err) and RunStore().list() == []
        return
    mislabelled = {d.id for d in store.list()} & ids
    assert len(set(result.suspects) & mislabelled) >= len(wrong) - 1


def test_the_command_line_refuses_a_tiny_set_with_the_reason(tmp_path):
    store = make_set(tmp_path / "set", P.load(writers=P.REPORT_WRITERS[:1])[:5], np.random.default_rng(4))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "core", "finetune", "--folder", str(store.root)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "at least 20 drawings" in out.stderr and "Traceback" not in out.stderr


def test_the_class_set_page_waits_its_turn_then_fine_tunes_shows_before_and_after_and_the_new_model_answers(
        tmp_path, monkeypatch):
    import threading

    from tests.apptest import app, session

    store = make_set(None, P.load(writers=P.REPORT_WRITERS[:3]), np.random.default_rng(5))
    at = app("views/classset.py")
    before = session(at).current
    pool = FT.SlotPool(1)
    monkeypatch.setattr(FT, "TURNS", pool)
    # seconds of training, slower on a busy machine
    page = threading.Thread(target=lambda: at.button(key="classset.finetune").click().run(timeout=240))
    with FT.turn(pool=pool):  # a classmate's fine-tune holds the server's only turn
        page.start()
        with pool._cond:
            assert pool._cond.wait_for(lambda: pool.lineup()[1], timeout=120)  # the page waits in line...
        assert page.is_alive() and len(RunStore().list()) == 0
    page.join(300)  # ...and fine-tunes once the turn is free
    assert not page.is_alive() and pool.lineup() == ([], [])
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    labels = [m.label for m in at.metric]
    assert any(lab.startswith("Held-out drawings") for lab in labels) and "MNIST's test set" in labels
    assert "it now answers on Draw" in at.success[0].value
    sess = session(at)
    assert sess.current is not before and sess.current_source.startswith("run ")
    assert RunStore().list()[0].name == sess.current.name and len(store) == 60


def test_the_class_set_page_says_what_fine_tuning_needs_on_a_tiny_set():
    from tests.apptest import app, session

    make_set(None, P.load(writers=P.REPORT_WRITERS[:1])[:6], np.random.default_rng(6))
    at = app("views/classset.py")
    assert at.button(key="classset.finetune").disabled
    assert any("at least 20 drawings" in i.value for i in at.info)
    assert session(at).current_source == "bundled"


def test_fine_tunes_take_turns_and_the_waiting_one_hears_its_place_in_line():
    import threading

    pool = FT.SlotPool(1)
    holding, release, told, started = threading.Event(), threading.Event(), threading.Event(), threading.Event()
    places = []

    def first():
        with FT.turn(pool=pool):
            holding.set()
            release.wait(30)

    def waiting(place):
        places.append(place)
        told.set()

    def second():
        with FT.turn(waiting, pool=pool):
            started.set()

    a = threading.Thread(target=first)
    a.start()
    assert holding.wait(30)
    b = threading.Thread(target=second)
    b.start()
    assert told.wait(30)  # told it is next while the first one still fine-tunes
    assert set(places) == {1} and not started.is_set() and len(pool.lineup()[1]) == 1
    release.set()
    assert started.wait(30)
    a.join(30), b.join(30)
    assert set(places) == {1} and pool.lineup() == ([], [])


def test_leaving_the_line_gives_the_place_up():
    pool = FT.SlotPool(1)
    with FT.turn(pool=pool):

        def leave(place):
            raise KeyboardInterrupt  # what a closed page does to the script waiting

        with pytest.raises(KeyboardInterrupt):
            with FT.turn(leave, pool=pool):
                pass
        assert pool.lineup()[1] == []
    assert pool.lineup() == ([], [])


def test_a_page_waiting_its_turn_can_tell_it_was_closed_or_rerun():
    """The wait draws nothing while its place stays the same, so it asks Streamlit itself, as an st call would."""
    from streamlit.testing.v1 import AppTest

    def page():
        import streamlit as st

        from dashboard import widgets

        st.write(getattr(widgets.script_yield_check(), "__name__", "a no-op"))

    at = AppTest.from_function(page).run(timeout=30)
    assert not at.exception and at.markdown[0].value == "_maybe_handle_execution_control_request"
