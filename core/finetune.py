"""Teach a model the class's handwriting: fine-tune it on the class set, in seconds.

A quarter of the class set (a fixed share of each digit, picked by drawing id) is held out: the
model is scored on it before and after, so the gain is measured on drawings it did not learn
from. MNIST's test set is scored before and after too, so forgetting shows. While it learns from
the class's drawings, each batch also holds MNIST digits (replay), which keeps forgetting small.

The result is a new checkpoint; nothing is changed unless fine-tuning succeeded: it finished,
and the held-out drawings and MNIST's test set are not read worse than before (MNIST may drop by
at most ``MAX_MNIST_DROP``). Too few drawings, one digit only, an empty set or a model that does
not classify digits are each refused with a message saying what is needed.

Command line: ``python -m core.finetune [--checkpoint PATH] [--folder DIR] [--save PATH]``; the
result is also kept as a saved run (``--no-run`` to skip).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from core import checkpoint
from core.classset import ClassSet, ClassSetError
from core.data import DATASETS, Augment, load_dataset, random_affine

MIN_DRAWINGS = 20  # fewer than this: refused, with what to add
MIN_DIGITS = 2  # different digits needed: one digit alone teaches "always answer that digit"
HOLDOUT_SHARE = 0.25
MAX_MNIST_DROP = 0.01
SUSPECT_ABOVE = 0.95  # the model was this sure of another digit: the label may be wrong
STEPS = 150
CLASS_BATCH, REPLAY_BATCH = 32, 64
LR = 1e-3
AUGMENT = Augment(degrees=10.0, translate=0.08, scale=(0.9, 1.1), shear=8.0, thicken=0.2)


class FinetuneError(ValueError):
    """Fine-tuning cannot start or did not help; the message says why and what to do. Nothing was changed.

    When it ran but did not help, ``result`` holds what it measured (its checkpoint is kept by no one)."""

    def __init__(self, message: str, result: "FinetuneResult | None" = None):
        super().__init__(message)
        self.result = result


@dataclass
class Progress:
    step: int
    total: int
    loss: float


@dataclass
class FinetuneResult:
    checkpoint: checkpoint.Checkpoint  # the fine-tuned model (not yet anyone's current model)
    trained_on: int
    held_out: int
    holdout_before: float
    holdout_after: float
    mnist_before: float
    mnist_after: float
    seconds: float
    losses: list[float] = field(default_factory=list)
    suspects: list[str] = field(default_factory=list)  # drawing ids the model read confidently as another digit

    def summary(self) -> str:
        return (f"held-out drawings ({self.held_out}): {self.holdout_before:.1%} -> {self.holdout_after:.1%}; "
                f"MNIST test: {self.mnist_before:.2%} -> {self.mnist_after:.2%}; "
                f"{self.trained_on} drawings learnt in {self.seconds:.1f} s")


def split(ids: list[str], labels: list[int], share: float = HOLDOUT_SHARE) -> tuple[list[int], list[int]]:
    """Indices to learn from and to hold out: per digit, ``share`` of its drawings (at least one when it
    has two or more), picked by a hash of the drawing id, so the split never changes as drawings are added."""
    fit, hold = [], []
    for d in sorted(set(labels)):
        idx = sorted((i for i, y in enumerate(labels) if y == d),
                     key=lambda i: hashlib.sha256(ids[i].encode()).hexdigest())
        k = int(round(share * len(idx))) if len(idx) >= 2 else 0
        k = max(k, 1) if len(idx) >= 2 else 0
        hold += idx[:k]
        fit += idx[k:]
    return sorted(fit), sorted(hold)


def check(ckpt: checkpoint.Checkpoint, labels: list[int]) -> None:
    """Raise FinetuneError when fine-tuning cannot do good: the message says what is needed."""
    if ckpt.dataset != "mnist":
        raise FinetuneError(f"“{ckpt.title}” was trained on {DATASETS[ckpt.dataset].title}; the "
                            "class set holds digits. Pick a model trained on MNIST to fine-tune.")
    if not labels:
        raise FinetuneError("The class set is empty: draw digits on the Draw page and add them to the class set "
                            f"(at least {MIN_DRAWINGS}, of several digits) or import a class set.")
    digits = sorted(set(labels))
    if len(digits) < MIN_DIGITS:
        raise FinetuneError(f"Every drawing in the class set is a {digits[0]}: fine-tuning on one digit would teach "
                            f"the model to answer {digits[0]} to everything. Add drawings of other digits.")
    if len(labels) < MIN_DRAWINGS:
        raise FinetuneError(f"Fine-tuning needs at least {MIN_DRAWINGS} drawings, a few of each digit to learn, so "
                            f"that some can be held out to check it; the class set has {len(labels)}. Add "
                            f"{MIN_DRAWINGS - len(labels)} more.")


def _images(store: ClassSet, drawings) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from core.inference import preprocess

    xs, ys, ids = [], [], []
    for d in drawings:
        try:
            pre = preprocess(store.image(d), background="dark")
        except (OSError, ValueError):  # removed meanwhile, or unreadable: not learnt from
            continue
        if pre.ok:
            xs.append(pre.image)
            ys.append(d.label)
            ids.append(d.id)
    return (np.stack(xs).astype(np.float32) if xs else np.zeros((0, 28, 28), np.float32)), np.array(ys, np.int64), ids


def _accuracy(model, x: torch.Tensor, y: torch.Tensor) -> float:
    if len(y) == 0:
        return float("nan")
    model.eval()
    with torch.inference_mode():
        return float((model(x).argmax(1) == y).float().mean())


def finetune(ckpt: checkpoint.Checkpoint, store: ClassSet | None = None, *, steps: int = STEPS, seed: int = 0,
             progress: Callable[[Progress], None] | None = None) -> FinetuneResult:
    """Fine-tune ``ckpt``'s model on the class set; raises FinetuneError (nothing changed) when it cannot help."""
    store = store if store is not None else ClassSet()
    drawings = store.list()
    check(ckpt, [d.label for d in drawings])
    x_np, y_np, ids = _images(store, drawings)
    check(ckpt, list(map(int, y_np)))
    fit, hold = split(ids, list(map(int, y_np)))
    info = DATASETS["mnist"]
    norm = lambda x: (x - info.mean) / info.std  # noqa: E731
    x_all = torch.from_numpy(x_np).unsqueeze(1)
    y_all = torch.from_numpy(y_np)
    xf, yf = x_all[fit], y_all[fit]
    xh, yh = norm(x_all[hold]), y_all[hold]
    mnist = load_dataset("mnist")
    xt = mnist.test.images.unsqueeze(1).float().div_(255.0)
    xt, yt = norm(xt), mnist.test.labels

    t0 = time.perf_counter()
    model = ckpt.build()
    before_hold, before_mnist = _accuracy(model, xh, yh), _accuracy(model, xt, yt)
    with torch.inference_mode():  # a drawing the model was sure is another digit: perhaps mislabelled
        conf, pred = F.softmax(model(norm(x_all)), 1).max(1)
    suspects = [ids[i] for i in range(len(ids)) if pred[i] != y_all[i] and conf[i] > SUSPECT_ABOVE]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    losses = []
    for step in range(1, steps + 1):
        model.train()
        ci = torch.randint(len(xf), (CLASS_BATCH,), generator=gen)
        ri = torch.randint(len(mnist.train), (REPLAY_BATCH,), generator=gen)
        xb = torch.cat([xf[ci], mnist.train.images[ri].unsqueeze(1).float().div_(255.0)])
        xb = norm(random_affine(xb, AUGMENT, gen))
        loss = F.cross_entropy(model(xb), torch.cat([yf[ci], mnist.train.labels[ri]]))
        if not torch.isfinite(loss):
            raise FinetuneError("Fine-tuning diverged (the loss is not a number); the current model is unchanged.")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if progress is not None:
            progress(Progress(step, steps, losses[-1]))
    model.eval()
    after_hold, after_mnist = _accuracy(model, xh, yh), _accuracy(model, xt, yt)
    seconds = time.perf_counter() - t0
    metrics = dict(ckpt.metrics)
    for stale in ("pen_acc", "pen_worst_acc", "pen_worst", "drawn_acc"):
        metrics.pop(stale, None)  # measured on the old weights
    metrics.update({"test_acc": after_mnist, "classset_holdout_before_acc": before_hold,
                    "classset_holdout_after_acc": after_hold, "train_seconds": round(seconds, 2),
                    "epochs": 1, "steps": steps})
    train_config = {"recipe": "core.finetune", "base": ckpt.title, "steps": steps,
                    "seed": seed, "lr": LR, "drawings": len(fit), "held_out": len(hold)}
    base = ckpt.title
    new = checkpoint.from_model(model, ckpt.model_config, dataset="mnist", train_config=train_config,
                                metrics=metrics, name=f"{base}, fine-tuned on our drawings"[:120])
    result = FinetuneResult(new, len(fit), len(hold), before_hold, after_hold, before_mnist, after_mnist, seconds,
                            losses, suspects)
    if after_hold < before_hold:
        raise FinetuneError(f"Fine-tuning made the held-out drawings worse ({before_hold:.1%} -> {after_hold:.1%}), "
                            f"so it was not kept; the current model is unchanged. Check the labels"
                            + (f": {len(suspects)} drawings still read confidently as another digit"
                               if suspects else "") + ".", result)
    if after_mnist < before_mnist - MAX_MNIST_DROP:
        raise FinetuneError(f"Fine-tuning made MNIST's test set worse ({before_mnist:.2%} -> {after_mnist:.2%}), so "
                            "it was not kept; the current model is unchanged. Add drawings of more digits.", result)
    return result


def save_run(result: FinetuneResult, name: str | None = None, author: str = ""):
    """Keep the result as a saved run (core.runs.RunStore), like any trained model, filed under ``author``; its record."""
    from core.runs import RunStore
    from core.trainer import BatchEvent, EndEvent, EpochEvent

    every = max(1, len(result.losses) // 50)
    batches = [BatchEvent(i + 1, 1, result.losses[i], LR, 0.0) for i in range(0, len(result.losses), every)]
    mean_loss = float(np.mean(result.losses)) if result.losses else 0.0
    epochs = [EpochEvent(1, mean_loss, float("nan"), float("nan"), result.mnist_after, result.seconds, result.seconds)]
    end = EndEvent("finished", result.summary(), 1, len(result.losses), result.seconds, 0.0, result.mnist_after, None)
    return RunStore().save(name or result.checkpoint.name, result.checkpoint, batches, epochs, end, author=author)


def main(argv: list[str] | None = None) -> int:
    from core import paths

    p = argparse.ArgumentParser(prog="python -m core.finetune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(paths.BUNDLED_MODEL), help="the model to start from (default: bundled)")
    p.add_argument("--folder", help="the class set folder (default: $DIGITLAB_CLASSSET or <home>/classset)")
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--save", metavar="PATH", help="also write the fine-tuned checkpoint here")
    p.add_argument("--run", action=argparse.BooleanOptionalAction, default=True, help="keep it as a saved run")
    args = p.parse_args(argv)
    if not 1 <= args.steps <= 10_000:
        print("error: --steps must be between 1 and 10000", file=sys.stderr)
        return 2
    try:
        ckpt = checkpoint.load(args.checkpoint)
        result = finetune(ckpt, ClassSet(args.folder), steps=args.steps)
    except (checkpoint.CheckpointError, FinetuneError, ClassSetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.summary())
    if result.suspects:
        print(f"check the labels of {len(result.suspects)} drawings the model was sure were another digit: "
              + ", ".join(result.suspects[:10]))
    if args.save:
        print(f"saved {checkpoint.save(result.checkpoint, args.save)}")
    if args.run:
        print(f"saved run {save_run(result).id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
