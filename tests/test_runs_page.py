"""The Runs page: Compare starts with the best finished runs, keeps a renamed run, and the rename box
always shows the run picked (never the name of the one picked before)."""

from __future__ import annotations

from core import checkpoint, paths
from core.runs import RunStore
from core.trainer import EndEvent, EpochEvent
from dashboard import state
from tests.apptest import app


def saved(store: RunStore, name: str, reason: str, acc: float):
    ckpt = checkpoint.load(paths.BUNDLED_MODEL)
    ckpt.metrics = {"test_acc": acc}
    epochs = [EpochEvent(1, 0.5, acc, 0.4, acc, 3.0, 3.0)] if reason != "diverged" else []
    end = EndEvent(reason, reason, len(epochs), 100, 3.0, 2000.0, acc, 0.4)
    return store.save(name, ckpt, [], epochs, end, author="Ana")


def test_compare_starts_with_the_best_finished_runs_and_keeps_a_renamed_one(runs_folder):
    store = RunStore()
    good = saved(store, "good", "finished", 0.97)
    best = saved(store, "best", "finished", 0.99)
    saved(store, "blew up", "diverged", 0.11)  # the newest two are not the ones worth comparing
    saved(store, "stopped early", "stopped", 0.60)
    at = app("views/runs.py")
    at.session_state[state.STUDENT] = "Ana"  # the name in the side panel: Ana's own runs are hers to rename
    at.run()
    assert not at.exception, at.exception
    compare = at.multiselect(key="runs.compare")
    assert compare.value == [best.id, good.id]
    # rename the best run: it stays in Compare
    at.selectbox(key="runs.pick").set_value(best.id).run()
    assert at.text_input(key="runs.new_name").value == "best"
    at.text_input(key="runs.new_name").set_value("our best")
    at.button[[b.label for b in at.button].index("Rename")].click().run()
    assert any(r.name == "our best" for r in store.list())
    assert at.multiselect(key="runs.compare").value == [best.id, good.id]
    # pick another run: the box shows its name, so Rename cannot rename the wrong run
    at.selectbox(key="runs.pick").set_value(good.id).run()
    assert at.text_input(key="runs.new_name").value == "good"
