"""The training loop, shared by the CLI, the dashboard, the benchmark and the tests.

``Trainer.run()`` is a generator of small frozen events holding plain numbers. It knows
nothing about how they are shown. A ``TrainControl`` lets another thread stop, pause and
resume it between batches, and ``Trainer.snapshot()`` hands another thread a consistent
copy of the weights to predict with while training goes on.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Generator, Iterator, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from core import models as M
from core.data import Augment, BatchSampler, Dataset, Split, load_dataset, scoring_batch
from core.values import is_finite

# Every value a setting may take, and the name the Train page shows for it. This is the one list: the
# config's checks, the command line, the lessons file and the Train page's widgets all read it.
OPTIMIZER_NAMES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop"}
SCHEDULE_NAMES = {"constant": "constant", "onecycle": "one-cycle", "cosine": "cosine"}
OPTIMIZERS = tuple(OPTIMIZER_NAMES)
SCHEDULES = tuple(SCHEDULE_NAMES)
DEVICES = ("auto", "cpu", "cuda", "mps")
# What the Train page offers (log-spaced where the effect is multiplicative); a lesson may set only these.
LEARNING_RATES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0)
BATCH_SIZES = (8, 16, 32, 64, 128, 256, 512, 1024)
WEIGHT_DECAYS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
WIDTHS = (16, 32, 64, 128, 256, 512, 1024)  # of an MLP's hidden layers and a CNN's first fully connected one
CHANNELS = (2, 4, 6, 8, 16, 32, 64)
MAX_HIDDEN_LAYERS = 3
MAX_DROPOUT = 0.7
PAGE_MAX_EPOCHS = 30  # the Train page's slider; a script may train for up to MAX_EPOCHS
CNN_SECOND_FC = 84  # the seed's head is 120-84; a first width of at least 84 keeps the 84
CUSTOM_CNN_FC = 128  # where the page's fully connected slider starts
MAX_LR = LEARNING_RATES[-1]  # far past divergence for every model here; higher is a typo, not an experiment
MAX_EPOCHS = 1000


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = "mnist"
    model: M.ModelConfig = field(default_factory=M.CNNConfig)
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9  # SGD and RMSprop only
    nesterov: bool = False  # SGD only
    weight_decay: float = 0.0
    batch_size: int = 64  # the seed's
    epochs: int = 3
    schedule: str = "constant"
    augment: bool = False
    seed: int | None = 0  # None: a different run each time
    device: str = "auto"
    target_acc: float | None = None  # stop once the test accuracy reaches this (0-1)
    train_subset: int | None = None  # train on the first N samples only (to show overfitting)
    log_every: int = 0  # batches per BatchEvent; 0: every batch on the CPU, every 25 on a GPU

    def validate(self, train_size: int | None = None) -> None:
        """Raise ValueError with a message a student can act on."""
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.device not in DEVICES:
            raise ValueError(f"unknown device {self.device!r}; choose one of {', '.join(DEVICES)}")
        if not is_finite(self.lr) or not 0 < self.lr <= MAX_LR:
            raise ValueError(f"learning rate must be between 0 and {MAX_LR:g} (got {self.lr}); typical values are 1e-4 to 1")
        if not 0 <= self.momentum < 1:
            raise ValueError("momentum must be in [0, 1)")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("Nesterov momentum needs SGD with a momentum above 0")
        if not 0 <= self.weight_decay <= 1:
            raise ValueError("weight decay must be in [0, 1]")
        if self.epochs < 1:
            raise ValueError("train for at least one epoch")
        if self.epochs > MAX_EPOCHS:
            raise ValueError(f"at most {MAX_EPOCHS} epochs")
        if self.batch_size < 1:
            raise ValueError("batch size must be at least 1")
        if self.train_subset is not None and self.train_subset < 1:
            raise ValueError("a training subset needs at least one sample")
        n = train_size if self.train_subset is None or train_size is None else min(train_size, self.train_subset)
        if n is not None and self.batch_size > n:
            raise ValueError(f"batch size {self.batch_size} is larger than the {n} training samples; choose at most {n}")
        if self.target_acc is not None and not 0 < self.target_acc <= 1:
            raise ValueError("target accuracy is a fraction between 0 and 1, e.g. 0.99")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = M.config_to_dict(self.model)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["model"] = M.config_from_dict(d["model"])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


# ----------------------------------------------------------------------------- events

@dataclass(frozen=True)
class StartEvent:
    device: str
    model: str
    parameters: int
    dataset: str
    train_samples: int
    steps_per_epoch: int
    total_steps: int


@dataclass(frozen=True)
class BatchEvent:
    step: int  # 1-based, counted over the whole run
    epoch: int  # 1-based
    loss: float  # mean over the batches since the last BatchEvent
    lr: float
    samples_per_s: float  # samples trained so far / training seconds so far (pauses and test passes excluded)


@dataclass(frozen=True)
class EpochEvent:
    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    seconds: float  # this epoch, evaluation included, pauses excluded
    elapsed: float  # since the run started, pauses excluded


@dataclass(frozen=True)
class EndEvent:
    reason: str  # finished | stopped | target reached | diverged | failed
    message: str
    epochs: int  # completed epochs
    steps: int
    train_seconds: float  # since the run started, test passes included, pauses excluded
    samples_per_s: float  # samples trained / (train_seconds - test passes): the same as BatchEvent's
    test_acc: float | None  # of the weights the run keeps (after a stop mid-epoch: those, not the last epoch's)
    test_loss: float | None


Event = Union[StartEvent, BatchEvent, EpochEvent, EndEvent]


# ----------------------------------------------------------------------------- control

class TrainControl:
    """Stop, pause and resume a run from any thread; honoured between batches."""

    def __init__(self):
        self._cond = threading.Condition()
        self._stop = False
        self._paused = False

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()

    def pause(self) -> None:
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    @property
    def stopped(self) -> bool:
        return self._stop

    @property
    def paused(self) -> bool:
        return self._paused and not self._stop

    def wait_while_paused(self) -> float:
        """Block while paused (not spinning); return the seconds spent waiting."""
        if not self._paused:
            return 0.0
        t0 = time.perf_counter()
        with self._cond:
            while self._paused and not self._stop:
                self._cond.wait()
        return time.perf_counter() - t0


@dataclass(frozen=True)
class Snapshot:
    """A consistent copy of the weights on the CPU, taken between two batches."""

    model_config: M.ModelConfig
    state_dict: dict
    step: int
    epoch: int

    def build(self) -> nn.Module:
        return M.with_weights(self.model_config, self.state_dict)


# ----------------------------------------------------------------------------- helpers

def pick_device(name: str = "auto") -> torch.device:
    """CUDA, then MPS, then CPU for "auto"; a clear error for a device this machine lacks."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("no CUDA GPU is available on this machine; use device 'auto' or 'cpu'")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("Apple's MPS is not available on this machine; use device 'auto' or 'cpu'")
    return torch.device(name)


def available_devices() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found.insert(0, "cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        found.insert(0, "mps")
    return found


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


@torch.inference_mode()
def evaluate(model: nn.Module, split: Split, info, batch_size: int | None = None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``split`` (in batches fit for its device by default)."""
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), device=split.images.device)
    correct = torch.zeros((), dtype=torch.long, device=split.images.device)
    batch_size = batch_size or scoring_batch(split.images.device)
    for x, y in BatchSampler(split, info, batch_size, shuffle=False):
        logits = model(x)
        total_loss += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    n = len(split)
    return total_loss.item() / n, correct.item() / n


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    wd = cfg.weight_decay
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=wd)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=wd)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=wd)
    return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=wd)


def make_schedule(cfg: TrainConfig, optimizer, total_steps: int):
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total_steps)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    return None


def _all_finite(tensors) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


# ----------------------------------------------------------------------------- trainer

class Trainer:
    """One training run. Build it, then iterate ``run()`` (in any thread)."""

    snapshot_every_s = 0.5  # how stale a snapshot may get while training

    def __init__(self, config: TrainConfig, dataset: Dataset | None = None, control: TrainControl | None = None):
        self.config = config
        self.control = control or TrainControl()
        self.device = pick_device(config.device)
        ds = dataset if dataset is not None else load_dataset(config.dataset)
        config.validate(len(ds.train))
        self.info = ds.info
        train = ds.train if config.train_subset is None else ds.train.subset(config.train_subset)
        self.train_split = train.to(self.device)
        self.test_split = ds.test.to(self.device)
        # The run's own generators: the initial weights (on the CPU, so a seed gives the same weights on any
        # device), the shuffling and the augmentation draw from these alone, so another thread drawing random
        # numbers cannot change them. Dropout cannot be given one: see _seed_dropout. Without a seed, a fresh
        # one (Generator.seed() leaves the process-wide generator alone, unlike torch.seed()).
        self.seed = config.seed if config.seed is not None else torch.Generator().seed()
        self.model = M.build_model(config.model, generator=torch.Generator().manual_seed(self.seed)).to(self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed)
        self.metrics: dict = {}  # final metrics, filled in at the end
        self.history: list[Event] = []  # every EpochEvent and the EndEvent
        self._snapshot: Snapshot | None = None
        self._publish(step=0, epoch=0)

    # -- snapshots ------------------------------------------------------------
    def _publish(self, step: int, epoch: int) -> bool:
        """Copy the weights to the CPU if they are all finite; return whether they were."""
        state = self.model.state_dict()
        if not _all_finite(v for v in state.values() if v.is_floating_point()):
            return False
        cpu_state = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
        self._snapshot = Snapshot(self.config.model, cpu_state, step, epoch)  # one reference swap: atomic
        return True

    def snapshot(self) -> Snapshot | None:
        """The latest consistent weights (at most ``snapshot_every_s`` old while training)."""
        return self._snapshot

    # -- the loop ---------------------------------------------------------------
    def run(self) -> Iterator[Event]:
        cfg, dev = self.config, self.device
        augment = Augment() if cfg.augment else None
        sampler = BatchSampler(self.train_split, self.info, cfg.batch_size, augment=augment, generator=self.generator)
        total_steps = len(sampler) * cfg.epochs
        optimizer = make_optimizer(cfg, self.model.parameters())
        schedule = make_schedule(cfg, optimizer, total_steps)
        self._log_every = cfg.log_every or (1 if dev.type == "cpu" else 25)
        yield StartEvent(device_label(dev), M.describe(cfg.model), M.count_parameters(self.model), self.info.name,
                         len(self.train_split), len(sampler), total_steps)
        self._seed_dropout()
        self._at = _Progress()
        self.model.train()
        try:
            reason, message = yield from self._epochs(sampler, optimizer, schedule)
        except (_Diverged, torch.OutOfMemoryError, RuntimeError) as err:
            if not isinstance(err, _Diverged) and not _is_out_of_memory(err):
                raise
            kept = self._keep_last_good_weights()
            if isinstance(err, _Diverged):
                self._test()  # the metrics must describe the weights kept
                yield self._end("diverged", "the learning rate is too high: the loss became NaN (not a number). "
                                f"The last good weights, from step {kept}, were kept. "
                                "Try a learning rate 10 times smaller.")
            else:  # not tested again: evaluating could run out of memory as well
                yield self._end("failed", "out of memory: the model or the batch is too large for this device. "
                                "Try a smaller batch size or a smaller model.")
            return
        yield self._end(reason, message)

    def _seed_dropout(self) -> None:
        """Seed the process-wide generator for dropout, the one draw a run cannot make from its own.

        ``F.dropout`` takes no generator: its masks come from the process-wide one, on the CPU or the
        GPU. So it is seeded here as training starts, and a run with dropout repeats exactly as long
        as nothing else in its process draws from it while it trains. Nothing in Digit Lab does:
        models for showing and predicting are built on the meta device (``models.with_weights``)
        and draw nothing, and the dashboard trains each run in a process of its own (core.executors).
        """
        if any(isinstance(m, nn.Dropout) for m in self.model.modules()):
            torch.manual_seed(self.seed)

    def _epochs(self, sampler: BatchSampler, optimizer, schedule) -> Generator[Event, None, tuple[str, str]]:
        """Train epoch after epoch; the reason the run ends and what to say about it."""
        cfg, at = self.config, self._at
        for epoch in range(1, cfg.epochs + 1):
            t_epoch, paused_before = time.perf_counter(), at.paused_s
            tally = _EpochTally(self.device)
            window = _LossWindow(self._log_every, self.device)
            yield from self._train_epoch(epoch, sampler, optimizer, schedule, tally, window)
            if self.control.stopped:
                return "stopped", f"stopped by request after {at.step} steps"
            if not window.finite():
                raise _Diverged(float("nan"))
            ev = self._close_epoch(epoch, tally, t_epoch, paused_before)
            yield ev
            if cfg.target_acc is not None and ev.test_acc >= cfg.target_acc:
                return "target reached", (f"test accuracy {ev.test_acc:.2%} reached the target "
                                          f"{cfg.target_acc:.2%} after {epoch} epochs")
        return "finished", f"trained for {cfg.epochs} epochs"

    def _train_epoch(self, epoch: int, sampler: BatchSampler, optimizer, schedule, tally: "_EpochTally",
                     window: "_LossWindow") -> Iterator[BatchEvent]:
        """One pass over the training set (or until a stop), with a BatchEvent each time the window fills."""
        model, at = self.model, self._at
        for x, y in sampler:
            if not self._go_on():
                return
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            at.step += 1
            at.trained += len(y)
            tally.add(loss.detach(), logits.detach(), y)
            mean_loss = window.add(loss.detach())
            if mean_loss is None:
                continue
            if not math.isfinite(mean_loss):
                raise _Diverged(mean_loss)
            yield BatchEvent(at.step, epoch, mean_loss, optimizer.param_groups[0]["lr"], at.rate())
            now = time.perf_counter()
            if now - at.last_publish >= self.snapshot_every_s:
                if not self._publish(at.step, epoch - 1):
                    raise _Diverged(float("nan"))
                at.last_publish = now

    def _go_on(self) -> bool:
        """Honour a pause (publishing the weights first, then waiting) and a stop: whether to train a batch."""
        if self.control.paused and not self.control.stopped:
            self._publish(self._at.step, self._at.epochs_done)
            self._at.paused_s += self.control.wait_while_paused()
        return not self.control.stopped

    def _close_epoch(self, epoch: int, tally: "_EpochTally", t_epoch: float, paused_before: float) -> EpochEvent:
        """Test the epoch's weights and report it: its time counts the test pass, not the pauses."""
        at = self._at
        test_loss, test_acc = self._test()
        self.model.train()
        at.epochs_done = epoch
        train_loss = tally.mean_loss()
        if not math.isfinite(train_loss) or not math.isfinite(test_loss):
            raise _Diverged(train_loss)
        seconds = time.perf_counter() - t_epoch - (at.paused_s - paused_before)
        ev = EpochEvent(epoch, train_loss, tally.accuracy(), test_loss, test_acc, seconds, at.elapsed())
        self.history.append(ev)
        self._publish(at.step, epoch)
        at.last_publish = time.perf_counter()
        return ev

    def _test(self) -> tuple[float, float]:
        at = self._at
        t0 = time.perf_counter()
        at.test_loss, at.test_acc = evaluate(self.model, self.test_split, self.info)
        at.eval_s += time.perf_counter() - t0
        at.evaluated_at = at.step
        return at.test_loss, at.test_acc

    def _keep_last_good_weights(self) -> int:
        """Put the last published (finite) weights back in the model; the step they are from."""
        snap = self._snapshot
        if snap is None:
            return 0
        self.model.load_state_dict(snap.state_dict)
        return snap.step

    def _end(self, reason: str, message: str) -> EndEvent:
        at = self._at
        if reason == "stopped" and at.step > at.evaluated_at:  # the metrics must describe the weights kept
            self._test()
        ev = EndEvent(reason, message, at.epochs_done, at.step, at.elapsed(), at.rate(), at.test_acc, at.test_loss)
        self.metrics = {"reason": reason, "test_acc": at.test_acc, "test_loss": at.test_loss,
                        "epochs": at.epochs_done, "steps": at.step, "train_seconds": ev.train_seconds,
                        "samples_per_second": ev.samples_per_s}
        self.history.append(ev)
        self._publish(at.step, at.epochs_done)
        self.model.eval()
        return ev


@dataclass
class _Progress:
    """Where a run is and the time it has spent: what its events' counts, durations and rates come from."""

    step: int = 0
    epochs_done: int = 0
    trained: int = 0  # samples trained on
    evaluated_at: int = 0  # the step of the last pass over the test set
    test_loss: float | None = None
    test_acc: float | None = None
    start: float = field(default_factory=time.perf_counter)
    last_publish: float = field(default_factory=time.perf_counter)
    paused_s: float = 0.0
    eval_s: float = 0.0  # seconds spent on the test set

    def elapsed(self) -> float:
        return time.perf_counter() - self.start - self.paused_s

    def rate(self) -> float:
        """The one samples/s of a run: what tiles, summaries and tables all show."""
        training_s = self.elapsed() - self.eval_s
        return self.trained / training_s if training_s > 0 else 0.0


class _EpochTally:
    """An epoch's summed loss and correct answers, kept on the device: no sync per batch."""

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.seen = 0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.loss_sum.add_(loss, alpha=len(labels))
        self.correct.add_((logits.argmax(1) == labels).sum())
        self.seen += len(labels)

    def mean_loss(self) -> float:
        return self.loss_sum.item() / max(self.seen, 1)

    def accuracy(self) -> float:
        return self.correct.item() / max(self.seen, 1)


class _LossWindow:
    """The batch losses since the last BatchEvent: ``every`` of them make one mean (read with one sync)."""

    def __init__(self, every: int, device: torch.device):
        self.every, self.n = every, 0
        self.sum = torch.zeros((), device=device)  # unused when every batch is its own window

    def add(self, loss: torch.Tensor) -> float | None:
        """Count one batch's loss; the window's mean once it is full (and a new window begins), else None."""
        self.n += 1
        if self.every == 1:
            self.n = 0
            return loss.item()
        self.sum.add_(loss)
        if self.n < self.every:
            return None
        mean = self.sum.item() / self.n
        self.sum.zero_()
        self.n = 0
        return mean

    def finite(self) -> bool:
        """Whether the losses not reported yet (an epoch's last, partial window) are finite."""
        return self.n == 0 or math.isfinite(self.sum.item())


class _Diverged(Exception):
    pass


def _is_out_of_memory(err: BaseException) -> bool:
    text = str(err)
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


def train(config: TrainConfig, dataset: Dataset | None = None) -> tuple[Trainer, list[Event]]:
    """Run to the end and return the trainer and all its events (for scripts and tests)."""
    trainer = Trainer(config, dataset)
    events = list(trainer.run())
    return trainer, events
