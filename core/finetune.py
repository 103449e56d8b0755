"""Teach a model the class's handwriting: fine-tune it on the class set, in seconds.

A quarter of the class set (a fixed share of each digit, picked by drawing id) is held out: the
model is scored on it before and after, so the gain is measured on drawings it did not learn
from. MNIST's test set is scored before and after too, so forgetting shows. While it learns from
the class's drawings, each batch also holds MNIST digits (replay), which keeps forgetting small.

The result is a new checkpoint; nothing is changed unless fine-tuning succeeded: it finished,
and the held-out drawings and MNIST's test set are not read worse than before (MNIST may drop by
at most ``MAX_MNIST_DROP``). Too few drawings, one digit only, an empty set or a model that does
not classify digits are each refused with a message saying what is needed.

Command line: ``python -m core finetune [--checkpoint PATH] [--folder DIR] [--save PATH]``
(core.cli.finetune); the result is also kept as a saved run (``--no-run`` to skip).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from core import checkpoint
from core import models as M
from core.classset import ClassSet, mnist_only
from core.data import DATASETS, Augment, load_dataset, random_affine, scoring_batch
from core.jobs import SlotPool, default_slots

MIN_DRAWINGS = 20  # fewer than this: refused, with what to add
MIN_DIGITS = 2  # different digits needed: one digit alone teaches "always answer that digit"
HOLDOUT_SHARE = 0.25
MAX_MNIST_DROP = 0.01
SUSPECT_ABOVE = 0.95  # the model was this sure of another digit: the label may be wrong
STEPS = 150
CLASS_BATCH, REPLAY_BATCH = 32, 64
LR = 1e-3
AUGMENT = Augment(degrees=10.0, translate=0.08, scale=(0.9, 1.1), shear=8.0, thicken=0.2)


# Fine-tunes at once on this server, as many as training runs (one per two cores); the others wait their turn,
# first come first served. A class pressing the button together gets its results one after another, the first
# within half a minute, instead of all of them at the very end (python -m bench --only pen: three pages, the
# first after 29.5 s and the last after 99.9 s in turns, against 79.2 s and 81.4 s all at once).
TURNS = SlotPool(default_slots())
_tickets = itertools.count(1)


@contextmanager
def turn(waiting: Callable[[int], None] | None = None, pool: SlotPool | None = None):
    """Wait for this server's turn to fine-tune, then hold it until the block ends.

    While waiting, ``waiting(place)`` is called about four times a second with the place in line (1: next);
    an exception raised from it (a page closed or rerun) gives the place up."""
    pool = TURNS if pool is None else pool
    ticket = next(_tickets)

    def cancelled() -> bool:
        place = pool.position(ticket)
        if waiting is not None and place is not None:
            waiting(place)
        return False

    pool.acquire(ticket, cancelled)
    try:
        yield
    finally:
        pool.release(ticket)


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
    checking: str = ""  # while measuring instead of learning, what: step and total then count its images


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
    why = mnist_only(ckpt)
    if why:
        raise FinetuneError(why)
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


REPORT_EVERY = 1024  # images scored between two progress reports


def _accuracy(model, x: torch.Tensor, y: torch.Tensor, progress: Callable[[Progress], None] | None = None,
              what: str = "") -> float:
    if len(y) == 0:
        return float("nan")
    model.eval()
    right, n = 0, scoring_batch(x.device)  # small batches on a CPU: they stay in cache
    with torch.inference_mode():
        for i in range(0, len(y), n):
            right += int((model(x[i:i + n]).argmax(1) == y[i:i + n]).sum())
            done = min(i + n, len(y))
            if progress is not None and (done // REPORT_EVERY > i // REPORT_EVERY or done == len(y)):
                progress(Progress(done, len(y), float("nan"), checking=what))
    return right / len(y)


# A model's MNIST test accuracy, by its weights. A class fine-tunes one model over and over (everyone starts
# from the bundled one), and scoring 10,000 images is a good part of a fine-tune (the bundled model reads each
# drawing nine times), so a model is scored once per server.
_MNIST_SCORES: dict[str, float] = {}
_MNIST_LOCK = threading.Lock()
MAX_REMEMBERED = 64


def weights_key(ckpt: checkpoint.Checkpoint) -> str:
    """A digest of the model's config and every weight: equal only for models that answer alike."""
    h = hashlib.sha256(json.dumps(M.config_to_dict(ckpt.model_config), sort_keys=True).encode())
    for name in sorted(ckpt.state_dict):
        t = ckpt.state_dict[name].detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{t.numel()};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _remember(key: str, acc: float) -> None:
    with _MNIST_LOCK:
        if key not in _MNIST_SCORES and len(_MNIST_SCORES) >= MAX_REMEMBERED:
            _MNIST_SCORES.pop(next(iter(_MNIST_SCORES)))  # the oldest
        _MNIST_SCORES[key] = acc


def _mnist_before(ckpt: checkpoint.Checkpoint, model, sets: "_Sets", progress) -> float:
    key = weights_key(ckpt)
    with _MNIST_LOCK:
        known = _MNIST_SCORES.get(key)
    if known is not None:
        return known
    acc = _accuracy(model, sets.x_test, sets.y_test, progress, "MNIST's test set, before")
    _remember(key, acc)
    return acc


def _norm(x: torch.Tensor) -> torch.Tensor:
    info = DATASETS["mnist"]
    return (x - info.mean) / info.std


@dataclass
class _Sets:
    """What fine-tuning reads: the class set's readable drawings, split in two, and MNIST."""

    ids: list[str]
    x: torch.Tensor  # every readable drawing, [N, 1, 28, 28], 0..1
    y: torch.Tensor
    fit: list[int]  # indices to learn from
    hold: list[int]  # indices held out to check it
    mnist: object  # the MNIST data set: its training images are replayed in each batch
    x_test: torch.Tensor  # MNIST's test set, normalised
    y_test: torch.Tensor


def _sets(ckpt: checkpoint.Checkpoint, store: ClassSet) -> _Sets:
    drawings = store.list()
    check(ckpt, [d.label for d in drawings])
    x_np, y_np, ids = _images(store, drawings)
    check(ckpt, list(map(int, y_np)))
    fit, hold = split(ids, list(map(int, y_np)))
    mnist = load_dataset("mnist")
    x_test = _norm(mnist.test.images.unsqueeze(1).float().div_(255.0))
    return _Sets(ids, torch.from_numpy(x_np).unsqueeze(1), torch.from_numpy(y_np), fit, hold, mnist, x_test,
                 mnist.test.labels)


def _suspects(model, sets: _Sets) -> list[str]:
    """Drawings the model was sure are another digit than their label: perhaps mislabelled."""
    with torch.inference_mode():
        conf, pred = F.softmax(model(_norm(sets.x)), 1).max(1)
    return [sets.ids[i] for i in range(len(sets.ids)) if pred[i] != sets.y[i] and conf[i] > SUSPECT_ABOVE]


def _learn(model, sets: _Sets, steps: int, seed: int, progress: Callable[[Progress], None] | None) -> list[float]:
    """``steps`` batches of class-set drawings with MNIST replay, augmented; the loss of each."""
    xf, yf, train = sets.x[sets.fit], sets.y[sets.fit], sets.mnist.train
    # The batches and their augmentation draw from this fine-tuning's own generator. Dropout, in a model
    # that has it, takes no generator and draws from the process-wide one: it is seeded here, which repeats
    # the masks as long as nothing else in the process draws meanwhile (models built to show draw nothing).
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    losses = []
    for step in range(1, steps + 1):
        model.train()
        ci = torch.randint(len(xf), (CLASS_BATCH,), generator=gen)
        ri = torch.randint(len(train), (REPLAY_BATCH,), generator=gen)
        xb = torch.cat([xf[ci], train.images[ri].unsqueeze(1).float().div_(255.0)])
        xb = _norm(random_affine(xb, AUGMENT, gen))
        loss = F.cross_entropy(model(xb), torch.cat([yf[ci], train.labels[ri]]))
        if not torch.isfinite(loss):
            raise FinetuneError("Fine-tuning diverged (the loss is not a number); the current model is unchanged.")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if progress is not None:
            progress(Progress(step, steps, losses[-1]))
    model.eval()
    return losses


def _finetuned(ckpt: checkpoint.Checkpoint, model, sets: _Sets, steps: int, seed: int, *, holdout_before: float,
               holdout_after: float, mnist_after: float, seconds: float) -> checkpoint.Checkpoint:
    """The new checkpoint, with what was measured while making it."""
    metrics = dict(ckpt.metrics)
    for stale in ("pen_acc", "pen_worst_acc", "pen_worst", "drawn_acc"):
        metrics.pop(stale, None)  # measured on the old weights
    metrics.update({"test_acc": mnist_after, "classset_holdout_before_acc": holdout_before,
                    "classset_holdout_after_acc": holdout_after, "train_seconds": round(seconds, 2),
                    "epochs": 1, "steps": steps})
    train_config = {"recipe": "core.finetune", "base": ckpt.title, "steps": steps,
                    "seed": seed, "lr": LR, "drawings": len(sets.fit), "held_out": len(sets.hold)}
    return checkpoint.from_model(model, ckpt.model_config, dataset="mnist", train_config=train_config,
                                 metrics=metrics, name=f"{ckpt.title}, fine-tuned on our drawings"[:120])


def _refuse_unless_better(result: FinetuneResult) -> None:
    """FinetuneError (carrying ``result``) when the held-out drawings or MNIST got worse."""
    r = result
    if r.holdout_after < r.holdout_before:
        raise FinetuneError(f"Fine-tuning made the held-out drawings worse ({r.holdout_before:.1%} -> "
                            f"{r.holdout_after:.1%}), so it was not kept; the current model is unchanged. Check the "
                            "labels" + (f": {len(r.suspects)} drawings still read confidently as another digit"
                                        if r.suspects else "") + ".", result)
    if r.mnist_after < r.mnist_before - MAX_MNIST_DROP:
        raise FinetuneError(f"Fine-tuning made MNIST's test set worse ({r.mnist_before:.2%} -> {r.mnist_after:.2%}), "
                            "so it was not kept; the current model is unchanged. Add drawings of more digits.", result)


def finetune(ckpt: checkpoint.Checkpoint, store: ClassSet | None = None, *, steps: int = STEPS, seed: int = 0,
             progress: Callable[[Progress], None] | None = None) -> FinetuneResult:
    """Fine-tune ``ckpt``'s model on the class set; raises FinetuneError (nothing changed) when it cannot help."""
    sets = _sets(ckpt, store if store is not None else ClassSet())
    xh, yh = _norm(sets.x[sets.hold]), sets.y[sets.hold]
    t0 = time.perf_counter()
    model = ckpt.build()
    before_hold, before_mnist = _accuracy(model, xh, yh), _mnist_before(ckpt, model, sets, progress)
    suspects = _suspects(model, sets)
    losses = _learn(model, sets, steps, seed, progress)
    after_hold = _accuracy(model, xh, yh)
    after_mnist = _accuracy(model, sets.x_test, sets.y_test, progress, "MNIST's test set, after")
    seconds = time.perf_counter() - t0
    new = _finetuned(ckpt, model, sets, steps, seed, holdout_before=before_hold, holdout_after=after_hold,
                     mnist_after=after_mnist, seconds=seconds)
    _remember(weights_key(new), after_mnist)  # fine-tuning it again starts from a known score
    result = FinetuneResult(new, len(sets.fit), len(sets.hold), before_hold, after_hold, before_mnist, after_mnist,
                            seconds, losses, suspects)
    _refuse_unless_better(result)
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
