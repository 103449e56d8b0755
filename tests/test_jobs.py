"""Training runs in worker processes: slots, queueing, a worker that dies, seeds, owners, idle runs."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import torch

from core import models as M
from core.jobs import SlotPool, TrainingRun
from core.trainer import BatchEvent, TrainConfig, Trainer


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


# ----------------------------------------------------------------------------- worker processes

def test_a_worker_killed_mid_run_fails_that_run_only_and_the_next_run_starts(mnist):
    pool = SlotPool(2)
    victim = TrainingRun(cfg(epochs=200, train_subset=None), slots=pool).start()
    other = TrainingRun(cfg(epochs=200, train_subset=None), slots=pool).start()
    assert wait_for(lambda: len(victim.view().batches) > 5 and len(other.view().batches) > 5)
    pid = victim.pid
    assert pid is not None and pid != os.getpid()
    os.kill(pid, signal.SIGKILL)  # as the kernel's out-of-memory killer would
    assert victim.join(timeout=30)
    end = victim.view().end
    assert end.reason == "failed" and end.message.startswith("failed: the training process died (SIGKILL")
    assert end.steps > 5 and victim.result is None and victim.saved_id is None
    n = len(other.view().batches)
    assert wait_for(lambda: len(other.view().batches) > n + 20)  # the other run trains on
    assert not other.done
    other.stop()
    assert other.join(timeout=30) and other.view().end.reason == "stopped"
    after = TrainingRun(cfg(), slots=pool).start()
    assert after.join(timeout=60) and after.view().end.reason == "finished" and pool.busy == 0


def test_two_seeded_runs_at_once_each_repeat_a_headless_run_while_the_server_builds_models(mnist):
    a_cfg, b_cfg = cfg(model=M.CNNConfig(), seed=3, augment=True), cfg(seed=4, optimizer="adam", lr=1e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))  # as each of two slots' workers: sums in the same order
    try:
        expected = {c: [e.loss for e in Trainer(c, mnist).run() if isinstance(e, BatchEvent)] for c in (a_cfg, b_cfg)}
    finally:
        torch.set_num_threads(threads)
    busy = threading.Event()

    def build_models():  # what the Draw and Train pages do in the server: draw from PyTorch's global RNG
        while not busy.is_set():
            M.build_model(M.CNNConfig())
            torch.rand(100)

    builder = threading.Thread(target=build_models, daemon=True)
    builder.start()
    try:
        runs = {c: TrainingRun(c, slots=SlotPool(2)).start() for c in (a_cfg, b_cfg)}
        for c, run in runs.items():
            assert run.join(timeout=120) and run.view().end.reason == "finished"
            assert [b.loss for b in run.view().batches] == expected[c]
    finally:
        busy.set()
        builder.join()


def test_a_queued_run_knows_its_place_and_when_it_should_start(mnist):
    from core import jobs as S

    pool = SlotPool(1)
    first = TrainingRun(cfg(epochs=200, train_subset=None), slots=pool).start()
    assert wait_for(lambda: len(first.view().batches) >= 20)
    second = TrainingRun(cfg(epochs=2), slots=pool).start()
    third = TrainingRun(cfg(epochs=1), slots=pool).start()
    assert wait_for(lambda: third.queue_position == 2)
    assert second.queue_position == 1 and first.queue_position is None and first.estimated_start_s is None
    # paused, the first run's progress and its training time both stand still, so the estimate can be checked
    # against the same figures without racing the batches still arriving
    first.pause()
    steps: list[int] = []
    assert wait_for(lambda: first.view().state == "paused" and (steps.append(first.status().last_batch.step) or
                                                               len(steps) >= 15 and steps[-1] == steps[-15]))  # 0.3 s
    status = first.status()
    assert status.batches == [] and status.last_batch is not None  # cheap: no batch list copied
    # the first run's remaining time from its own progress and speed
    elapsed = time.perf_counter() - status.started_at - status.paused_for
    left = elapsed / status.last_batch.step * (status.start.total_steps - status.last_batch.step)
    eta2, eta3 = second.estimated_start_s, third.estimated_start_s
    assert eta2 == pytest.approx(left, rel=0.05)
    assert eta3 - eta2 == pytest.approx(S.expected_seconds(second.config), rel=0.3)  # the second run's own length
    assert second.view().estimated_start_s == pytest.approx(eta2, rel=0.2)
    first.stop()
    assert second.join(timeout=60) and third.join(timeout=60)
    assert third.view().end.reason == "finished" and third.estimated_start_s is None
    # a finished run teaches the estimate its speed
    assert S.expected_samples_per_s(third.config) == third.view().end.samples_per_s


def test_the_training_nice_value_applies_to_the_whole_worker(mnist, monkeypatch):
    monkeypatch.setenv("DIGITLAB_TRAINING_NICE", "7")
    server_nice = os.getpriority(os.PRIO_PROCESS, 0)
    run = TrainingRun(cfg(epochs=200, train_subset=None), slots=SlotPool(1)).start()
    assert wait_for(lambda: len(run.view().batches) > 3)
    threads = os.listdir(f"/proc/{run.pid}/task")
    nice = [int(open(f"/proc/{run.pid}/task/{t}/stat").read().rsplit(")", 1)[1].split()[16]) for t in threads]
    run.stop()
    assert run.join(timeout=30)
    assert len(threads) > 1 and set(nice) == {7}  # every thread, PyTorch's pool included
    assert os.getpriority(os.PRIO_PROCESS, 0) == server_nice  # the server itself is untouched


# ----------------------------------------------------------------------------- the registry

def test_runs_belong_to_their_owner_and_are_found_again(mnist, runs_folder):
    from core.live import LiveRuns

    live = LiveRuns(idle_timeout_s=600)
    a1 = live.start("ada", cfg(), name="first")
    assert a1.join(timeout=60)
    a2 = live.start("ada", cfg(epochs=200, train_subset=None))
    b1 = live.start("bo", cfg(epochs=200, train_subset=None))
    assert live.get(a2.id) is a2 and live.get("nope") is None and len({a1.id, a2.id, b1.id}) == 3
    assert live.of("ada") == [a2, a1] and live.of("bo") == [b1] and live.all() == [b1, a2, a1]
    assert live.active("ada") is a2 and live.active("cy") is None
    assert a1.owner == "ada" and a1.saved_id is not None  # saved by the server, as before
    for run in (a2, b1):
        run.stop()
        assert run.join(timeout=60)
    assert live.active("ada") is None and live.of("ada") == [a2, a1]


def test_a_run_nobody_watches_stops_after_the_idle_time_and_a_watched_one_goes_on(mnist):
    from core.live import LiveRuns

    live = LiveRuns(idle_timeout_s=1.5)
    watched = live.start("ada", cfg(epochs=200, train_subset=None))
    unwatched = live.start("bo", cfg(epochs=200, train_subset=None))
    watching = threading.Event()

    def page():  # the sidebar's fragment, once a second
        while not watching.wait(0.5):
            live.watch(watched.id)

    threading.Thread(target=page, daemon=True).start()
    try:
        assert unwatched.join(timeout=60)
        end = unwatched.view().end
        assert end.reason == "stopped" and end.message.startswith("stopped: nobody had this run open for 1.5 seconds")
        assert not watched.done
    finally:
        watching.set()
    assert watched.join(timeout=60) and "nobody had this run open" in watched.view().end.message


def test_the_teacher_key_never_travels_with_a_run(monkeypatch):
    from core import worker

    monkeypatch.setenv("DIGITLAB_TEACHER_KEY", "owl-42")
    monkeypatch.setenv("DIGITLAB_TRAINING_NICE", "3")
    env = worker.digitlab_env()  # what a worker process or a Ray node is given
    assert env["DIGITLAB_TRAINING_NICE"] == "3" and "DIGITLAB_TEACHER_KEY" not in env
