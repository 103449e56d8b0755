"""Train from the command line: ``python -m core train --model seed-cnn --epochs 3 --save my.pt``.

The same ``Trainer`` as the dashboard, headless, with a progress bar on stderr. ``--json``
makes the last line of stdout a JSON object of the final metrics. With ``DIGITLAB_RAY_ADDRESS`` set
the run trains on that Ray cluster instead of in this process. Ctrl-C stops the run between two
batches: its end is printed and ``--save`` still writes its model (a second Ctrl-C quits at once).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import replace

from core import checkpoint, models, presets
from core.cli import fail
from core.data import DATASETS, DataUnavailableError, load_dataset
from core.executors import RAY_ADDRESS_ENV, ExecutorUnavailable
from core.trainer import (DEVICES, OPTIMIZERS, SCHEDULES, BatchEvent, EndEvent, EpochEvent, StartEvent,
                          TrainConfig, Trainer)


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.replace("-", ",").split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(presets.TRAIN_PRESETS),
                   help="start from a tuned preset; other flags override it")
    p.add_argument("--dataset", choices=sorted(DATASETS))
    p.add_argument("--model", help="one of: " + ", ".join(models.REGISTRY))
    p.add_argument("--hidden", type=_ints, help="MLP hidden widths, e.g. 256,128")
    p.add_argument("--channels", type=_ints, help="CNN conv channels, e.g. 16,32")
    p.add_argument("--fc", type=_ints, help="CNN fully connected widths, e.g. 120,84")
    p.add_argument("--dropout", type=float)
    p.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--lr", type=float, help="learning rate (the peak one for --schedule onecycle)")
    p.add_argument("--momentum", type=float)
    p.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random rotation, shift, scale, shear and stroke thickening per sample")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=DEVICES)
    p.add_argument("--target-acc", type=float, help="stop when the test accuracy reaches this, e.g. 0.99")
    p.add_argument("--subset", type=int, help="train on the first N training samples only")
    p.add_argument("--save", metavar="PATH", help="write a checkpoint here when done")
    p.add_argument("--name", default="", help="a name stored in the checkpoint")
    p.add_argument("--pen-eval", "--drawn-eval", dest="pen_eval", action=argparse.BooleanOptionalAction, default=True,
                   help="also score the pen-written digits drawn on the canvas (MNIST models only; 20 s the first time)")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON on the last line")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    cfg = presets.TRAIN_PRESETS[args.preset] if args.preset else TrainConfig()
    if args.model:
        cfg = replace(cfg, model=models.resolve(args.model))
    model_changes = {k: getattr(args, k) for k in ("hidden", "channels", "fc", "dropout", "batch_norm")
                     if getattr(args, k) is not None}
    if model_changes:
        allowed = {f for f in type(cfg.model).__dataclass_fields__}
        bad = set(model_changes) - allowed
        if bad:
            raise ValueError(f"--{sorted(bad)[0].replace('_', '-')} does not apply to a {cfg.model.kind.upper()}")
        cfg = replace(cfg, model=replace(cfg.model, **model_changes))
    mapping = {"dataset": "dataset", "optimizer": "optimizer", "lr": "lr", "momentum": "momentum",
               "nesterov": "nesterov", "weight_decay": "weight_decay", "batch_size": "batch_size",
               "epochs": "epochs", "schedule": "schedule", "augment": "augment", "seed": "seed",
               "device": "device", "target_acc": "target_acc", "subset": "train_subset"}
    changes = {field: getattr(args, arg) for arg, field in mapping.items() if getattr(args, arg) is not None}
    return replace(cfg, **changes)


class ProgressBar:
    def __init__(self, stream=sys.stderr, enabled: bool = True):
        self.stream, self.enabled = stream, enabled and stream.isatty()
        self.total, self.t0, self.last = 1, time.perf_counter(), 0.0

    def start(self, ev: StartEvent) -> None:
        self.total, self.t0 = ev.total_steps, time.perf_counter()

    def batch(self, ev: BatchEvent) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self.last < 0.1:
            return
        self.last = now
        frac = ev.step / self.total
        bar = "#" * int(30 * frac)
        eta = (now - self.t0) / max(frac, 1e-9) * (1 - frac)
        self.stream.write(f"\r[{bar:<30}] {frac:5.1%} epoch {ev.epoch} loss {ev.loss:.4f} "
                          f"{ev.samples_per_s:,.0f} samples/s ETA {eta:4.0f}s ")
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 100 + "\r")


class Printer:
    """The run's events as lines on stderr and a progress bar."""

    def __init__(self, quiet: bool):
        self.bar = ProgressBar(enabled=not quiet)
        self.end: EndEvent | None = None

    def __call__(self, ev) -> None:
        log = sys.stderr
        if isinstance(ev, StartEvent):
            self.bar.start(ev)
            print(f"training {ev.model} ({ev.parameters:,} parameters) on {ev.dataset} "
                  f"({ev.train_samples:,} samples) on {ev.device}: {ev.total_steps:,} steps", file=log)
        elif isinstance(ev, BatchEvent):
            self.bar.batch(ev)
        elif isinstance(ev, EpochEvent):
            self.bar.clear()
            print(f"epoch {ev.epoch}: train loss {ev.train_loss:.4f} acc {ev.train_acc:.2%} | "
                  f"test loss {ev.test_loss:.4f} acc {ev.test_acc:.2%} | {ev.seconds:.1f}s", file=log, flush=True)
        elif isinstance(ev, EndEvent):
            self.bar.clear()
            self.end = ev
            print(f"{ev.reason}: {ev.message}", file=log, flush=True)


class Interrupt:
    """Ctrl-C stops the run the ordinary way (between batches, its end reported and saved); a second quits."""

    def __init__(self, stop):
        self.stop, self.asked = stop, False

    def __enter__(self):
        self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._old)

    def _handle(self, signum, frame):
        if self.asked:
            raise KeyboardInterrupt
        self.asked = True
        print("\nstopping after this batch (Ctrl-C again to quit at once)", file=sys.stderr, flush=True)
        self.stop()


def train_here(trainer: Trainer, show: Printer):
    """In this process; returns (the trained model, whether Ctrl-C stopped it)."""
    with Interrupt(trainer.control.stop) as interrupt:
        for ev in trainer.run():
            show(ev)
    return trainer.model, interrupt.asked


def train_on_ray(cfg: TrainConfig, name: str, executor, show: Printer):
    """On the Ray cluster of DIGITLAB_RAY_ADDRESS; returns (the model it sent back or None, whether Ctrl-C stopped it)."""
    import threading

    from core.jobs import SlotPool, TrainingRun

    run = TrainingRun(cfg, name=name, executor=executor, slots=SlotPool(1)).start()
    asked, tick = threading.Event(), threading.Event()
    seen_batches, seen_epochs, started = 0, 0, False
    with Interrupt(asked.set) as interrupt:  # the handler only sets a flag: run.stop() takes a lock
        while True:
            done = run.done
            view = run.view(since_batch=seen_batches)
            if view.start is not None and not started:
                show(view.start)
                started = True
            for ev in view.batches:
                show(ev)
            seen_batches += len(view.batches)
            for ev in view.epochs[seen_epochs:]:
                show(ev)
            seen_epochs = len(view.epochs)
            if done:
                if view.end is not None:
                    show(view.end)
                break
            if asked.is_set() and view.state != "stopping":
                run.stop()
            tick.wait(0.2)
    model = run.result.build() if run.result is not None else None
    return model, interrupt.asked


def _local_training(cfg: TrainConfig):
    """A function that trains ``cfg`` in this process: show -> (model, whether Ctrl-C stopped it)."""
    trainer = Trainer(cfg, load_dataset(cfg.dataset))
    return lambda show: train_here(trainer, show)


def _ray_training(cfg: TrainConfig, name: str, address: str):
    """The same on the Ray cluster at ``address``; ExecutorUnavailable when it cannot be reached."""
    from core.rayrun import RayExecutor

    cfg.validate(cfg.train_subset or 60_000)  # the rest is checked where it trains
    executor = RayExecutor(address)
    return lambda show: train_on_ray(cfg, name, executor, show)


def _metrics(end: EndEvent, executor: str) -> dict:
    return {
        "reason": end.reason,
        "test_acc": end.test_acc,
        "train_seconds": round(end.train_seconds, 3),
        "epochs": end.epochs,
        "steps": end.steps,
        "samples_per_second": round(end.samples_per_s, 1),
        "executor": executor,
    }


def _add_pen_score(metrics: dict, model) -> None:
    """The pen-written digits' accuracy into ``metrics``, printed; a note instead when they are not there."""
    from core import pendigits

    log = sys.stderr
    try:
        metrics.update(pendigits.pen_accuracy(model))
        print(f"accuracy on the {pendigits.SET_NAME}: {metrics['pen_acc']:.2%} "
              f"(worst: {metrics['pen_worst']} {metrics['pen_worst_acc']:.2%})", file=log)
    except pendigits.PenDigitsUnavailable as err:
        print(f"no pen-written score: {err}", file=log)


def _save(args: argparse.Namespace, cfg: TrainConfig, model, end: EndEvent, metrics: dict) -> None:
    if model is None or end.reason == "failed":
        print(f"nothing saved: the run {end.reason} without a model", file=sys.stderr)
        return
    ckpt = checkpoint.from_model(model, cfg.model, dataset=cfg.dataset, train_config=cfg.to_dict(),
                                 metrics=metrics, name=args.name)
    print(f"saved {checkpoint.save(ckpt, args.save)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    address = os.environ.get(RAY_ADDRESS_ENV, "").strip()
    try:
        cfg = config_from_args(args)
        train = _ray_training(cfg, args.name, address) if address else _local_training(cfg)
    except (ValueError, DataUnavailableError, ExecutorUnavailable) as err:
        return fail(err)
    show = Printer(args.quiet)
    try:
        model, interrupted = train(show)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    end = show.end
    if end is None:
        print("failed: the run ended without a result", file=sys.stderr)
        return 1
    metrics = _metrics(end, "ray" if address else "local")
    if args.pen_eval and cfg.dataset == "mnist" and end.reason != "failed" and model is not None and end.steps > 0:
        _add_pen_score(metrics, model)
    if args.save:
        _save(args, cfg, model, end, metrics)
    if args.json:
        print(json.dumps(metrics), flush=True)
    if interrupted:
        return 130
    return 0 if end.reason != "failed" else 1
