"""Train from the command line: ``python -m core.train --model seed-cnn --epochs 3 --save my.pt``.

The same ``Trainer`` as the dashboard, headless, with a progress bar on stderr. ``--json``
makes the last line of stdout a JSON object of the final metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

from core import checkpoint, models, presets
from core.data import DATASETS, DataUnavailableError, load_dataset
from core.trainer import (DEVICES, OPTIMIZERS, SCHEDULES, BatchEvent, EndEvent, EpochEvent, StartEvent,
                          TrainConfig, Trainer)


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.replace("-", ",").split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core.train", description=__doc__,
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        dataset = load_dataset(cfg.dataset)
        trainer = Trainer(cfg, dataset)
    except (ValueError, DataUnavailableError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    log = sys.stderr
    bar = ProgressBar(enabled=not args.quiet)
    end: EndEvent | None = None
    try:
        for ev in trainer.run():
            if isinstance(ev, StartEvent):
                bar.start(ev)
                print(f"training {ev.model} ({ev.parameters:,} parameters) on {ev.dataset} "
                      f"({ev.train_samples:,} samples) on {ev.device}: {ev.total_steps:,} steps", file=log)
            elif isinstance(ev, BatchEvent):
                bar.batch(ev)
            elif isinstance(ev, EpochEvent):
                bar.clear()
                print(f"epoch {ev.epoch}: train loss {ev.train_loss:.4f} acc {ev.train_acc:.2%} | "
                      f"test loss {ev.test_loss:.4f} acc {ev.test_acc:.2%} | {ev.seconds:.1f}s", file=log)
            elif isinstance(ev, EndEvent):
                bar.clear()
                end = ev
                print(f"{ev.reason}: {ev.message}", file=log)
    except KeyboardInterrupt:
        trainer.control.stop()
        print("interrupted", file=log)
        return 130
    metrics = {
        "reason": end.reason,
        "test_acc": end.test_acc,
        "train_seconds": round(end.train_seconds, 3),
        "epochs": end.epochs,
        "steps": end.steps,
        "samples_per_second": round(end.samples_per_s, 1),
    }
    if args.pen_eval and cfg.dataset == "mnist" and end.reason != "failed":
        from core import pendigits

        try:
            metrics.update(pendigits.pen_accuracy(trainer.model))
            print(f"accuracy on the {pendigits.SET_NAME}: {metrics['pen_acc']:.2%} "
                  f"(worst: {metrics['pen_worst']} {metrics['pen_worst_acc']:.2%})", file=log)
        except pendigits.PenDigitsUnavailable as err:
            print(f"no pen-written score: {err}", file=log)
    if args.save:
        ckpt = checkpoint.from_model(trainer.model, cfg.model, dataset=cfg.dataset, train_config=cfg.to_dict(),
                                     metrics=metrics, name=args.name)
        path = checkpoint.save(ckpt, args.save)
        print(f"saved {path}", file=log)
    if args.json:
        print(json.dumps(metrics))
    return 0 if end.reason != "failed" else 1


if __name__ == "__main__":
    sys.exit(main())
