"""Nothing on the pages misleads: a diverged run never answers unasked, the way back to the bundled
model is one click, a divergence shows on the live chart, each number has one meaning everywhere,
and a drawing that is not a digit is called that."""

from __future__ import annotations

import time

import pytest

from core import checkpoint, paths
from core import lessons as L
from core.jobs import TrainingRun
from core.runs import RunStore
from core.trainer import BatchEvent, TrainConfig, Trainer
from core import models as M
from dashboard import charts, state, widgets
from tests.apptest import app, drawing, session


def lesson_run(lesson_id: str, index: int):
    lesson = next(x for x in L.load_lessons(L.lessons_file()) if x.id == lesson_id)
    return lesson.runs[index]


LR10 = "lr-too-high"


def test_the_lr_10_lesson_diverges_and_its_model_is_not_adopted(mnist):
    run = TrainingRun(lesson_run(LR10, 0).config, dataset=mnist).start()
    assert run.join(timeout=120)
    assert run.view().end.reason == "diverged" and run.result is not None  # kept, for the Runs page
    at = app("views/train.py")
    sess = session(at)
    sess.run = run
    at.run()
    assert sess.current_source == "bundled" and sess.current is state.bundled_checkpoint()
    assert any("The run diverged" in e.value for e in at.error)
    assert any("does **not** answer on the Draw page" in c.value for c in at.caption)
    assert not [b for b in at.button if b.key == "sidebar.bundled"]  # nothing to go back from


@pytest.mark.parametrize("page, key", [("views/draw.py", "draw.bundled"), ("views/evaluate.py", "eval.bundled"),
                                       ("views/models.py", "models.bundled"), ("views/draw.py", "sidebar.bundled")])
def test_every_page_showing_the_model_offers_one_click_back_to_the_bundled_one(page, key, mnist):
    at = app(page)
    sess = session(at)
    other = checkpoint.load(paths.BUNDLED_MODEL)  # a copy: the app cannot tell it from any other model
    other.name = "a model of ours"
    sess.use_checkpoint(other, "uploaded")
    if page.endswith("draw.py"):
        sess.last_drawing = drawing(4)
    at.run()
    assert not at.exception, at.exception
    at.button(key=key).click().run()
    assert sess.current_source == "bundled" and sess.current is state.bundled_checkpoint()
    assert not [b for b in at.button if b.key == key]  # gone once the bundled model answers again


def lr10_losses() -> list[float]:
    cfg = lesson_run(LR10, 0).config
    return [ev.loss for ev in Trainer(cfg).run() if isinstance(ev, BatchEvent)]


def test_the_live_loss_chart_shows_a_divergence_with_every_value_kept(mirror_root):
    losses = lr10_losses()
    assert max(losses) > 1000 * losses[0], "the lr-10 lesson should blow up before it turns NaN"
    fig = charts.loss_figure(list(range(1, len(losses) + 1)), losses, total_steps=938)
    raw = fig.data[0]
    assert list(raw.y) == losses  # nothing clipped or dropped
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.range is None  # the axis follows the values
    assert "blew up" in fig.layout.title.text
    calm = charts.loss_figure([1, 2, 3], [2.3, 1.2, 0.6], total_steps=938)
    assert calm.layout.yaxis.type != "log" and calm.layout.yaxis.range is None


def test_a_long_run_name_is_cut_in_a_legend_and_named_whole_on_hover():
    long = "lr 10 (far too high) (A learning rate <b>far</b> too high)"
    short = charts.legend_name(long)
    assert len(short) == charts.LEGEND_CHARS and short.endswith("…")
    assert short.startswith("lr 10 (far too high) (A") and "<" not in charts.legend_name("a <b> c")
    assert charts.legend_name("Run 1: seed MLP") == "Run 1: seed MLP"  # a short name as it is
    hover = charts.hover_name(long, "step %{x}", "loss %{y:.3f}")
    assert "&lt;b&gt;far&lt;/b&gt; too high)<br>step %{x}, loss %{y:.3f}" in hover  # whole, escaped


def test_a_drawing_that_is_not_a_digit_is_called_that(monkeypatch):
    import core.inference as inference

    real = inference.classify

    def doubtful(*args, **kwargs):
        result = real(*args, **kwargs)
        if result.ok:
            result.not_a_digit = True
        return result

    monkeypatch.setattr(inference, "classify", doubtful)
    at = app("views/draw.py")
    session(at).last_drawing = drawing(3)
    at.run()
    assert any(m.value == "### This does not look like a digit" for m in at.markdown)
    assert not [m for m in at.markdown if m.value.startswith("## Prediction")]  # no confident digit
    assert any(c.value.startswith("Best guess, small on purpose: 3") for c in at.caption)
    assert not any("**3: " in str(b.proto) for b in at.get("progress"))  # no bar picked out as the answer


def test_samples_per_second_accuracy_and_time_mean_the_same_on_tiles_summary_and_runs_table(mnist):
    """A run paused for a second and stopped mid-epoch: the Train page's tiles, its summary, its epoch
    table and the Runs table all show the same samples/s, test accuracy and time, pauses left out."""
    cfg = TrainConfig(model=M.MLPConfig(), batch_size=64, epochs=3, train_subset=6000)
    run = TrainingRun(cfg, dataset=mnist, store=RunStore(), name="paused and stopped")
    started = time.perf_counter()
    run.start()
    # pause once some batches have trained, hold the pause for a real second, resume, stop in epoch 2
    deadline = 120
    t0 = time.monotonic()
    while len(run.view().batches) < 20:
        assert time.monotonic() - t0 < deadline
        run.join(0.01)
    run.pause()
    last = run.view().batches[-1]
    before, before_step = last.samples_per_s, last.step
    run.join(1.0)  # paused: the second that must not count
    run.resume()
    while not run.view().epochs or len(run.view().batches) < 94 + 20:
        assert time.monotonic() - t0 < deadline
        run.join(0.01)
    run.stop()
    assert run.join(timeout=120)
    view = run.view()
    end = view.end
    assert end.reason == "stopped" and end.steps > 94
    after = next(b for b in view.batches if b.step > before_step + 1)  # trained after the pause
    assert after.samples_per_s > 0.5 * before, "a pause must not drag samples/s down"
    wall = time.perf_counter() - started
    assert end.train_seconds <= wall - 0.9  # the paused second is not in the run's time
    assert sum(e.seconds for e in view.epochs) <= end.train_seconds + 0.05

    at = app("views/train.py")
    sess = session(at)
    sess.run = run
    at.run()
    tiles = {m.label: m.value for m in at.metric}
    rate, acc, secs = f"{end.samples_per_s:,.0f}", f"{end.test_acc:.2%}", widgets.format_seconds(end.train_seconds)
    assert tiles["Samples/s"] == rate and tiles["Test accuracy"] == acc and tiles["Time"] == secs
    summary = next(w.value for w in at.warning if "Run stopped" in w.value)
    assert f"({rate} samples/s)" in summary and acc in summary and f"in {secs}" in summary
    epoch_table = at.dataframe[0].value
    assert epoch_table["test acc"].iloc[-1] == acc  # the weights kept, as the summary says

    at.switch_page("views/runs.py")
    at.run()
    row = at.dataframe[0].value.iloc[0]
    assert row["name"] == "paused and stopped"
    assert f"{row['test acc']:.2%}" == acc and row["time"] == secs and f"{row['samples/s']:,.0f}" == rate
