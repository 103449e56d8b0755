import dataclasses
import math
import threading

import pytest
import torch

from core import checkpoint as C
from core import models as M
from core.trainer import (BatchEvent, EndEvent, EpochEvent, StartEvent, TrainConfig, TrainControl, Trainer,
                          available_devices, evaluate)


def small(**kw) -> TrainConfig:
    base = dict(model=M.MLPConfig(), optimizer="sgd", lr=0.05, momentum=0.9, batch_size=64, epochs=1,
                train_subset=6400, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_loss_falls_on_real_mnist_within_a_few_hundred_steps(mnist):
    trainer = Trainer(small(model=M.CNNConfig(), train_subset=19_200), mnist)
    events = list(trainer.run())
    losses = [e.loss for e in events if isinstance(e, BatchEvent)]
    assert len(losses) == 300
    assert sum(losses[:20]) / 20 > 2.0  # chance level is ln(10) = 2.30
    assert sum(losses[-20:]) / 20 < 0.5
    end = events[-1]
    assert isinstance(end, EndEvent) and end.reason == "finished" and end.test_acc > 0.9


def test_events_are_frozen_and_hold_plain_numbers(mnist):
    events = list(Trainer(small(), mnist).run())
    assert isinstance(events[0], StartEvent) and isinstance(events[-1], EndEvent)
    assert sum(isinstance(e, EpochEvent) for e in events) == 1
    for ev in events:
        for value in vars(ev).values():
            assert value is None or isinstance(value, (int, float, str)), (ev, value)
        with pytest.raises(dataclasses.FrozenInstanceError):
            ev.step = 0
    epoch = next(e for e in events if isinstance(e, EpochEvent))
    assert 0 <= epoch.train_acc <= 1 and 0 <= epoch.test_acc <= 1 and epoch.seconds > 0


def test_the_same_seed_gives_the_same_losses(mnist):
    cfg = small(augment=True, train_subset=3200)
    a = [e.loss for e in Trainer(cfg, mnist).run() if isinstance(e, BatchEvent)]
    b = [e.loss for e in Trainer(cfg, mnist).run() if isinstance(e, BatchEvent)]
    c = [e.loss for e in Trainer(small(augment=True, train_subset=3200, seed=1), mnist).run()
         if isinstance(e, BatchEvent)]
    assert a == b
    assert a != c


def test_stop_from_another_thread_ends_the_run_between_batches(mnist):
    trainer = Trainer(small(epochs=5, train_subset=None), mnist)
    seen = []
    for ev in trainer.run():
        seen.append(ev)
        if isinstance(ev, BatchEvent) and ev.step == 10:
            threading.Thread(target=trainer.control.stop).start()
    end = seen[-1]
    assert end.reason == "stopped" and end.epochs == 0
    assert 10 <= end.steps < 100  # it stopped soon after the request, not at the end of an epoch


def test_pause_blocks_training_until_resume(mnist):
    control = TrainControl()
    trainer = Trainer(small(), mnist, control)
    events = trainer.run()
    next(events)  # start
    next(events)  # step 1
    control.pause()
    got: list = []
    worker = threading.Thread(target=lambda: got.append(next(events)))
    worker.start()
    worker.join(timeout=0.5)
    assert worker.is_alive() and not got, "a paused run must not take another step"
    assert trainer.snapshot().step == 1  # pausing publishes the weights
    control.resume()
    worker.join(timeout=10)
    assert not worker.is_alive() and isinstance(got[0], BatchEvent) and got[0].step == 2
    assert list(events)[-1].reason == "finished"


def test_stop_while_paused_ends_the_run(mnist):
    control = TrainControl()
    trainer = Trainer(small(), mnist, control)
    events = trainer.run()
    next(events), next(events)
    control.pause()
    threading.Timer(0.2, control.stop).start()
    rest = list(events)
    assert rest[-1].reason == "stopped" and rest[-1].steps == 1


def test_a_diverging_learning_rate_ends_as_diverged_and_keeps_finite_weights(mnist):
    trainer = Trainer(small(lr=10.0, momentum=0.99, train_subset=None), mnist)
    events = list(trainer.run())
    end = events[-1]
    assert end.reason == "diverged", end
    assert "learning rate is too high" in end.message and "NaN" in end.message
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert end.steps < 900  # it ended when the loss broke, not after the epoch
    loss, acc = evaluate(trainer.model, mnist.test, mnist.info)
    assert math.isfinite(loss)


def test_a_target_accuracy_ends_the_run_early(mnist):
    events = list(Trainer(small(epochs=5, target_acc=0.5), mnist).run())
    assert events[-1].reason == "target reached" and events[-1].epochs == 1


@pytest.mark.parametrize("changes, message", [
    (dict(lr=0.0), "learning rate"),
    (dict(lr=1e6), "learning rate"),
    (dict(lr=float("nan")), "learning rate"),
    (dict(epochs=0), "at least one epoch"),
    (dict(batch_size=70_000, train_subset=None), "larger than the 60000 training samples"),
    (dict(batch_size=0), "batch size"),
    (dict(optimizer="lbfgs"), "unknown optimizer"),
    (dict(nesterov=True, optimizer="adam"), "Nesterov"),
])
def test_bad_settings_are_refused_with_a_clear_message(mnist, changes, message):
    with pytest.raises(ValueError, match=message):
        Trainer(small(**changes), mnist)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop"])
@pytest.mark.parametrize("schedule", ["constant", "onecycle", "cosine"])
def test_every_optimizer_and_schedule_trains(mnist, optimizer, schedule):
    lr = {"sgd": 0.05, "adam": 2e-3, "adamw": 2e-3, "rmsprop": 1e-3}[optimizer]
    cfg = small(optimizer=optimizer, schedule=schedule, lr=lr, momentum=0.9 if optimizer == "sgd" else 0.0,
                nesterov=optimizer == "sgd", weight_decay=1e-4, train_subset=3200)
    events = list(Trainer(cfg, mnist).run())
    lrs = [e.lr for e in events if isinstance(e, BatchEvent)]
    assert events[-1].reason == "finished" and events[-1].test_acc > 0.7
    if schedule == "constant":
        assert lrs[0] == lrs[-1] == lr
    else:
        assert lrs[-1] < lr / 10  # annealed by the end


def test_a_snapshot_taken_during_training_is_consistent_and_usable(mnist):
    trainer = Trainer(small(model=M.CNNConfig(), train_subset=None, epochs=1), mnist)
    trainer.snapshot_every_s = 0.0  # publish at every logged batch
    snaps, done = [], threading.Event()

    def reader():  # another thread, as the dashboard's Draw page is
        while not done.is_set():
            snap = trainer.snapshot()
            if snap is not None and (not snaps or snap.step != snaps[-1].step):
                snaps.append(snap)
            done.wait(0.005)

    t = threading.Thread(target=reader)
    t.start()
    for ev in trainer.run():
        if isinstance(ev, BatchEvent) and ev.step == 150:
            trainer.control.stop()
    done.set()
    t.join()
    steps = [s.step for s in snaps]
    assert len(steps) > 5 and steps == sorted(steps) and steps[-1] >= 140
    _, acc = evaluate(snaps[-1].build(), mnist.test.subset(2000), mnist.info)
    assert acc > 0.5  # weights from mid-training predict far better than chance
    # a snapshot is a copy on the CPU, not a view of the weights being trained
    assert snaps[-1].state_dict["fc3.weight"].data_ptr() != trainer.model.fc3.weight.data_ptr()
    assert not torch.equal(snaps[0].state_dict["fc3.weight"], snaps[-1].state_dict["fc3.weight"])


def test_without_a_gpu_auto_trains_on_the_cpu_and_a_missing_gpu_is_refused_by_name(mnist, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert available_devices() == ["cpu"]
    trainer = Trainer(small(device="auto"), mnist)
    assert trainer.train_split.images.device.type == "cpu" == trainer.test_split.images.device.type
    assert next(trainer.model.parameters()).device.type == "cpu"
    events = list(trainer.run())
    assert events[0].device == "cpu" and events[-1].reason == "finished"
    with pytest.raises(ValueError, match="no CUDA GPU is available on this machine; use device 'auto' or 'cpu'"):
        Trainer(small(device="cuda"), mnist)
    with pytest.raises(ValueError, match="MPS is not available on this machine"):
        Trainer(small(device="mps"), mnist)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_with_a_gpu_auto_puts_the_data_and_the_model_on_it(mnist):
    trainer = Trainer(small(device="auto"), mnist)
    assert trainer.train_split.images.device.type == "cuda" == trainer.test_split.images.device.type
    assert next(trainer.model.parameters()).device.type == "cuda"
    assert list(trainer.run())[-1].reason == "finished"


def test_out_of_memory_ends_the_run_with_a_message_and_the_process_goes_on(mnist, monkeypatch):
    trainer = Trainer(small(), mnist)
    calls = {"n": 0}
    real_forward = trainer.model.forward

    def forward(x):
        calls["n"] += 1
        if calls["n"] == 5:  # what the CPU allocator raises when a batch does not fit
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 68719476736 bytes")
        return real_forward(x)

    monkeypatch.setattr(trainer.model, "forward", forward)
    end = list(trainer.run())[-1]
    assert end.reason == "failed" and "out of memory" in end.message and "smaller batch" in end.message
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert list(Trainer(small(), mnist).run())[-1].reason == "finished"  # the next run is unaffected


def test_other_errors_are_not_mistaken_for_out_of_memory(mnist, monkeypatch):
    trainer = Trainer(small(), mnist)
    monkeypatch.setattr(trainer.model, "forward", lambda x: (_ for _ in ()).throw(RuntimeError("shape mismatch")))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        list(trainer.run())


def test_a_stopped_run_reports_the_accuracy_of_the_weights_it_keeps(mnist):
    trainer = Trainer(small(epochs=3, train_subset=6400), mnist)
    for ev in trainer.run():
        if isinstance(ev, BatchEvent) and ev.step == 150:  # half-way through epoch 2
            trainer.control.stop()
    end = trainer.history[-1]
    assert end.reason == "stopped" and end.epochs == 1
    assert end.test_acc == pytest.approx(evaluate(trainer.model, mnist.test, mnist.info)[1])


def test_a_seeded_run_repeats_exactly_while_another_thread_builds_models_to_show(mnist):
    cfg = small(model=M.MLPConfig(hidden=(64,), dropout=0.25), augment=True, train_subset=1600)

    def once() -> tuple[list[float], dict]:
        trainer = Trainer(cfg, mnist)
        return [e.loss for e in trainer.run() if isinstance(e, BatchEvent)], trainer.model.state_dict()

    quiet_losses, quiet_weights = once()
    snap = Trainer(cfg, mnist).snapshot()
    ckpt = C.from_model(snap.build(), cfg.model)
    done, builds = threading.Event(), [0]

    def sidebar():  # what the pages do while a run trains: build models to show and predict with, count weights
        while not done.is_set():
            ckpt.build(), snap.build(), M.count_parameters(M.CNNConfig(dropout=0.5))
            builds[0] += 1

    thread = threading.Thread(target=sidebar)
    thread.start()
    try:
        losses, weights = once()
    finally:
        done.set()
        thread.join()
    assert builds[0] > 10
    assert losses == quiet_losses
    assert all(torch.equal(weights[k], quiet_weights[k]) for k in quiet_weights)


def test_a_runs_initial_weights_come_from_its_seed_alone(mnist):
    torch.manual_seed(123)
    a = Trainer(small(seed=7), mnist).model.state_dict()
    torch.manual_seed(456)
    b = Trainer(small(seed=7), mnist).model.state_dict()
    c = Trainer(small(seed=8), mnist).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["fc1.weight"], c["fc1.weight"])
