"""Training runs in background threads: slots, queueing, owners that go away."""

from __future__ import annotations

import threading

from core import models as M
from core.session import SlotPool, TrainingRun
from core.trainer import TrainConfig


def cfg(**kw) -> TrainConfig:
    base = dict(model=M.MLPConfig(), optimizer="sgd", lr=0.05, batch_size=64, epochs=1, train_subset=3200, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def wait_for(predicate, timeout=60.0) -> bool:
    """Wait on a condition, not a fixed sleep."""
    done = threading.Event()
    deadline = timeout
    while not predicate():
        if deadline <= 0:
            return False
        done.wait(0.02)
        deadline -= 0.02
    return True


def test_a_run_trains_in_the_background_and_leaves_a_checkpoint(mnist):
    run = TrainingRun(cfg(), mnist, slots=SlotPool(1), name="demo").start()
    assert run.join(timeout=60) and run.done
    view = run.view()
    assert view.end.reason == "finished" and len(view.batches) == 50 and len(view.epochs) == 1
    assert run.result is not None and run.result.name == "demo" and run.result.metrics["test_acc"] > 0.5
    assert view.start.total_steps == 50
    assert run.view(since_batch=45).batches == view.batches[45:]  # readers copy only what is new


def test_runs_beyond_the_slots_wait_in_line_and_start_when_a_slot_frees(mnist):
    pool = SlotPool(1)
    first = TrainingRun(cfg(epochs=50), mnist, slots=pool).start()
    assert wait_for(lambda: first.view().state == "running")
    second = TrainingRun(cfg(), mnist, slots=pool).start()
    third = TrainingRun(cfg(), mnist, slots=pool).start()
    assert wait_for(lambda: third.view().queue_position == 2)
    assert second.view().state == "queued" and second.view().queue_position == 1
    first.stop()
    assert first.join(timeout=30) and first.view().end.reason == "stopped"
    assert second.join(timeout=60) and second.view().end.reason == "finished"
    assert third.join(timeout=60) and third.view().end.reason == "finished"
    assert pool.busy == 0


def test_a_queued_run_can_be_stopped_before_it_starts(mnist):
    pool = SlotPool(1)
    blocker = TrainingRun(cfg(epochs=50), mnist, slots=pool).start()
    assert wait_for(lambda: blocker.view().state == "running")
    waiting = TrainingRun(cfg(), mnist, slots=pool).start()
    assert wait_for(lambda: waiting.view().queue_position == 1)
    waiting.stop()
    assert waiting.join(timeout=10) and waiting.view().end.reason == "stopped" and waiting.result is None
    blocker.stop()
    assert blocker.join(timeout=30)


def test_pause_and_resume_through_the_run(mnist):
    run = TrainingRun(cfg(epochs=50), mnist, slots=SlotPool(1)).start()
    assert wait_for(lambda: len(run.view().batches) > 3)
    run.pause()
    assert wait_for(lambda: run.view().state == "paused")
    n = len(run.view().batches)
    assert not wait_for(lambda: len(run.view().batches) > n + 1, timeout=0.5)  # at most the batch in flight
    run.resume()
    assert wait_for(lambda: len(run.view().batches) > n + 5)
    run.stop()
    assert run.join(timeout=30) and run.view().paused_for > 0.4


def test_bad_settings_end_the_run_with_the_reason(mnist):
    run = TrainingRun(cfg(batch_size=10_000), mnist, slots=SlotPool(1)).start()
    assert run.join(timeout=30)
    assert run.view().end.reason == "failed" and "larger than the 3200 training samples" in run.view().error


def test_the_run_keeps_itself_on_disk_even_with_no_page_watching(mnist, tmp_path):
    from core.runs import RunStore

    store = RunStore(tmp_path / "runs")
    run = TrainingRun(cfg(), mnist, slots=SlotPool(1), store=store, name="unattended").start()
    assert run.join(timeout=60)
    assert run.saved_id is not None and [r.name for r in store.list()] == ["unattended"]


def test_stopping_a_paused_run_stops_its_paused_clock(mnist):
    run = TrainingRun(cfg(epochs=50), mnist, slots=SlotPool(1)).start()
    assert wait_for(lambda: len(run.view().batches) > 3)
    run.pause()
    assert wait_for(lambda: run.view().state == "paused")
    run.stop()
    assert run.join(timeout=30)
    first = run.view().paused_for
    assert not wait_for(lambda: run.view().paused_for > first, timeout=0.3)
