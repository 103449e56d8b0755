"""A training run as the web server sees it: it trains elsewhere, and its events stream back here.

A ``TrainingRun`` trains in a worker process of its own (``core.executors.LocalExecutor``) or on a
Ray cluster (``core.rayrun``), never in the server's interpreter: the server keeps its GIL and its
cores for people, a crash stays with the run, and a seeded run repeats exactly because nothing else
draws from its process's random numbers. One thread per run in the server receives the worker's
messages and appends the events to lock-protected lists; pages read a consistent ``RunView``.

Who a run belongs to and how long it lives is ``core.live.LiveRuns``'s business, not a page's.

``SlotPool`` caps how many runs train at once on one machine, so thirty students pressing Start do
not slow each run thirtyfold: later runs wait in line, each knowing its place and when it should start.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import threading
import time
import weakref
from dataclasses import dataclass, field, replace
from typing import Callable

from core import checkpoint
from core.data import Dataset
from core.runs import RunStore
from core.trainer import BatchEvent, EndEvent, EpochEvent, Snapshot, StartEvent, TrainConfig, TrainControl

log = logging.getLogger("digitlab")


class SlotPool:
    """At most ``size`` holders at once; the others wait in first-come order."""

    def __init__(self, size: int):
        self.size = max(1, size)
        self._cond = threading.Condition()
        self._holders: list[int] = []  # in the order they got their slot
        self._queue: list[int] = []

    def acquire(self, ticket: int, cancelled: Callable[[], bool]) -> bool:
        with self._cond:
            self._queue.append(ticket)
            self._cond.notify_all()  # the line changed: whoever watches it sees so at once
            try:
                while not (len(self._holders) < self.size and self._queue[0] == ticket):
                    if cancelled():
                        return False
                    self._cond.wait(timeout=0.25)  # re-check cancellation; woken early on release
                self._holders.append(ticket)
                return True
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()

    def release(self, ticket: int) -> None:
        with self._cond:
            if ticket in self._holders:
                self._holders.remove(ticket)
            self._cond.notify_all()

    def position(self, ticket: int) -> int | None:
        """1 for the next in line; None if not waiting."""
        with self._cond:
            return self._queue.index(ticket) + 1 if ticket in self._queue else None

    def lineup(self) -> tuple[list[int], list[int]]:
        """(the tickets training now, the tickets waiting in order)."""
        with self._cond:
            return list(self._holders), list(self._queue)

    @property
    def busy(self) -> int:
        with self._cond:
            return len(self._holders)


def default_slots() -> int:
    """One run per two cores: a run uses both of a small machine's cores well."""
    env = os.environ.get("DIGITLAB_TRAINING_SLOTS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, (os.cpu_count() or 2) // 2)


SLOTS = SlotPool(default_slots())
_tickets = iter(range(1, 1 << 62))
_ticket_lock = threading.Lock()
_by_ticket: "weakref.WeakValueDictionary[int, TrainingRun]" = weakref.WeakValueDictionary()


# ----------------------------------------------------------------------------- how long a run takes

# Samples a second a run trains at on this project's 2-core machine (python -m bench, batch 64), used
# until this server has seen a run of the same model and batch size finish.
TYPICAL_SAMPLES_PER_S = {"mlp": 90_000.0, "cnn": 20_000.0}
TRAIN_SIZES = {"mnist": 60_000, "fashion-mnist": 60_000}
TEST_SIZE = 10_000
_measured: dict[tuple, float] = {}  # (model description, batch size, device) -> samples/s seen here
_measured_lock = threading.Lock()


def _rate_key(cfg: TrainConfig) -> tuple:
    from core import models as M

    return (M.describe(cfg.model), cfg.batch_size, cfg.device)


def expected_samples_per_s(cfg: TrainConfig) -> float:
    with _measured_lock:
        seen = _measured.get(_rate_key(cfg))
    return seen or TYPICAL_SAMPLES_PER_S.get(cfg.model.kind, 20_000.0)


def expected_seconds(cfg: TrainConfig) -> float:
    """A whole run: every epoch's samples, and its test pass (a forward pass costs about a third of a step)."""
    n = TRAIN_SIZES.get(cfg.dataset, 60_000)
    if cfg.train_subset:
        n = min(n, cfg.train_subset)
    rate = expected_samples_per_s(cfg)
    return cfg.epochs * (n / rate + TEST_SIZE / (3 * rate))


def remember_speed(cfg: TrainConfig, samples_per_s: float) -> None:
    if samples_per_s > 0 and math.isfinite(samples_per_s):
        with _measured_lock:
            _measured[_rate_key(cfg)] = samples_per_s


# ----------------------------------------------------------------------------- the run

@dataclass
class RunView:
    """What a page needs to draw a run, copied under the lock."""

    state: str  # queued | starting | running | paused | stopping | done
    config: TrainConfig
    queue_position: int | None
    start: StartEvent | None
    batches: list[BatchEvent]
    epochs: list[EpochEvent]
    end: EndEvent | None
    error: str | None
    started_at: float | None  # time.perf_counter() in this process when training began
    paused_for: float
    last_batch: BatchEvent | None = None  # the newest batch, also when ``batches`` is left out
    estimated_start_s: float | None = None  # seconds from now; only while queued (and known)


@dataclass(eq=False)  # one run is one thread and one worker: equal only to itself, and hashable
class TrainingRun:
    config: TrainConfig
    dataset: Dataset | None = None  # unused: the worker loads config.dataset itself (0.1 s from the cache)
    slots: SlotPool = field(default_factory=lambda: SLOTS)  # local runs: how many train at once
    name: str = ""
    store: RunStore | None = None  # where the finished run is kept, written by this server
    executor: object | None = None  # None: core.executors.default_executor() when the run starts
    owner: str = ""

    def __post_init__(self):
        self.control = TrainControl()  # what was asked of the run; the worker keeps its own copy
        self._lock = threading.Lock()
        self._batches: list[BatchEvent] = []
        self._epochs: list[EpochEvent] = []
        self._start: StartEvent | None = None
        self._end: EndEvent | None = None
        self._error: str | None = None
        self._state = "queued"
        self._snapshot: Snapshot | None = None
        self._thread: threading.Thread | None = None
        self._send: Callable[[str], None] | None = None
        self._started_at: float | None = None
        self._paused_since: float | None = None
        self._paused_for = 0.0
        self._stop_message: str | None = None
        self.result: checkpoint.Checkpoint | None = None
        self.saved_id: str | None = None
        self.save_error: str | None = None
        self.pid: int | None = None  # of a local worker process, while it lives
        self.node: str | None = None  # the Ray node it trains on
        self.created = time.time()
        with _ticket_lock:
            self.ticket = next(_tickets)
        self.id = f"{self.ticket}-{secrets.token_hex(4)}"
        _by_ticket[self.ticket] = self

    # -- owner's side (any thread) ---------------------------------------------------
    def start(self) -> "TrainingRun":
        if self.executor is None:
            from core.executors import default_executor

            self.executor = default_executor()
        self._thread = threading.Thread(target=self._main, name=f"digitlab-run-{self.ticket}", daemon=True)
        self._thread.start()
        return self

    def stop(self, message: str | None = None) -> None:
        """End the run between two batches; ``message`` replaces the usual "stopped by request"."""
        with self._lock:
            if self._state == "done":
                return
            self._end_pause()
            self._state = "stopping"
            if message and self._stop_message is None:
                self._stop_message = message
            send = self._send
        self.control.stop()
        if send is not None:
            send("stop")

    def pause(self) -> None:
        self._switch("running", "paused", self.control.pause, "pause")

    def resume(self) -> None:
        self._switch("paused", "running", self.control.resume, "resume")

    def _switch(self, was: str, now: str, control: Callable[[], None], command: str) -> None:
        """Pause or resume, only from state ``was``: this side's control is set, and the worker is told ``command``."""
        with self._lock:
            if self._state != was:
                return
            self._state = now
            self._end_pause()
            if now == "paused":
                self._paused_since = time.perf_counter()
            control()
            send = self._send
        if send is not None:
            send(command)

    def _end_pause(self) -> None:  # under the lock
        if self._paused_since is not None:
            self._paused_for += time.perf_counter() - self._paused_since
            self._paused_since = None

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def done(self) -> bool:
        return self._state == "done"

    @property
    def executor_name(self) -> str:
        return getattr(self.executor, "name", "local")

    def snapshot(self) -> Snapshot | None:
        """The newest weights the worker sent (at most about a second old while it trains)."""
        return self._snapshot

    def view(self, since_batch: int = 0) -> RunView:
        queue = self._queue_place()
        with self._lock:
            return self._view(self._batches[since_batch:], queue)

    def status(self) -> RunView:
        """The view without the batch list (``last_batch`` has the newest): cheap enough for any page."""
        queue = self._queue_place()
        with self._lock:
            return self._view([], queue)

    @property
    def queue_position(self) -> int | None:
        return self.slots.position(self.ticket) if self._uses_slots() else None

    @property
    def estimated_start_s(self) -> float | None:
        """Seconds until this queued run should start, from the runs ahead of it; None unless queued."""
        if self._state != "queued" or not self._uses_slots():
            return None
        return estimate_start(self)

    def _uses_slots(self) -> bool:
        return self.executor is None or getattr(self.executor, "uses_slots", self.executor_name == "local")

    def _queue_place(self) -> tuple[int | None, float | None]:
        """(place in line, seconds until the start) while queued for a local slot; outside the run's lock,
        as the estimate reads the runs ahead."""
        if self._state != "queued" or not self._uses_slots():
            return None, None
        return self.slots.position(self.ticket), estimate_start(self)

    def _view(self, batches: list[BatchEvent], queue: tuple) -> RunView:  # under the lock
        paused_for = self._paused_for + (time.perf_counter() - self._paused_since if self._paused_since else 0.0)
        position, eta = queue if self._state == "queued" else (None, None)
        return RunView(self._state, self.config, position, self._start, batches, list(self._epochs), self._end,
                       self._error, self._started_at, paused_for, self._batches[-1] if self._batches else None, eta)

    # -- the executor's side (the run's own thread) -------------------------------------
    def _starting(self) -> None:
        with self._lock:
            if self._state == "queued":
                self._state = "starting"

    def _attach(self, send: Callable[[str], None]) -> None:
        """The worker's command channel; whatever was asked before it existed is passed on now."""
        with self._lock:
            self._send = send
            stopped, paused = self.control.stopped, self.control.paused
        if stopped:
            send("stop")
        elif paused:
            send("pause")

    def _receive(self, message: tuple) -> bool:
        """One message from the worker (see core.worker); True once it is the last."""
        kind = message[0]
        if kind == "events":
            with self._lock:
                for ev in message[1]:
                    if isinstance(ev, BatchEvent):
                        self._batches.append(ev)
                    elif isinstance(ev, EpochEvent):
                        self._epochs.append(ev)
                    elif isinstance(ev, StartEvent):
                        self._start = ev
                    elif isinstance(ev, EndEvent):
                        if ev.reason == "stopped" and self._stop_message:
                            ev = replace(ev, message=self._stop_message)
                        self._end = ev
        elif kind == "running":
            with self._lock:
                self._started_at = time.perf_counter()
                if self._state == "starting":
                    self._state = "running"
        elif kind == "snapshot":
            import torch

            _, step, epoch, arrays = message
            state = {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}  # ours: Ray hands read-only views
            self._snapshot = Snapshot(self.config.model, state, step, epoch)  # one reference swap
        elif kind == "result":
            try:
                self.result = checkpoint.load_bytes(message[1], "the finished run's model")
            except checkpoint.CheckpointError as err:
                with self._lock:
                    self._error = f"the finished model could not be read back: {err}"
        elif kind == "error":
            with self._lock:
                self._error = message[1]
                if self._end is None:
                    self._end = self._failed_end(message[1])
        elif kind == "done":
            return True
        return False

    def _failed_end(self, message: str) -> EndEvent:  # under the lock
        last = self._batches[-1] if self._batches else None
        epochs = self._epochs[-1] if self._epochs else None
        elapsed = 0.0
        if self._started_at is not None:
            elapsed = time.perf_counter() - self._started_at - self._paused_for
        return EndEvent("failed", message, epochs.epoch if epochs else 0, last.step if last else 0, elapsed,
                        last.samples_per_s if last else 0.0, epochs.test_acc if epochs else None,
                        epochs.test_loss if epochs else None)

    def _died(self, how: str) -> None:
        """The worker ended without its last message: a kill, an out-of-memory kill, a crash."""
        message = (f"failed: the training process died ({how}). The server and other runs carry on; "
                   "start the run again, perhaps with a smaller batch size or model.")
        log.warning("training run %s: %s", self.ticket, message)
        with self._lock:
            self._error = message
            self._end = self._failed_end(message)
            self.result = None

    def _ended_before_start(self, message: str = "stopped before it started") -> None:
        with self._lock:
            self._end = EndEvent("stopped", self._stop_message or message, 0, 0, 0.0, 0.0, None, None)

    def _main(self) -> None:
        try:
            self.executor.train(self)
        except Exception as err:  # the run's thread must never die silently
            log.exception("training run %s failed in the server", self.ticket)
            with self._lock:
                self._error = f"{type(err).__name__}: {err}"
                self._end = self._failed_end(f"training failed: {err}")
        try:
            with self._lock:
                end = self._end
                if end is None:  # the worker said goodbye without an end: never leave a run open
                    end = self._end = self._failed_end(self._error or "failed: the run ended without a result")
                batches, epochs = list(self._batches), list(self._epochs)
            if end.reason != "failed" and end.steps > 0:
                remember_speed(self.config, end.samples_per_s)
            if self.result is not None and end.reason != "failed" and end.steps > 0 and self.store is not None:
                try:  # here, by the server: a run nobody watches any more is kept too
                    self.saved_id = self.store.save(self.name, self.result, batches, epochs, end,
                                                    author=self.owner).id
                except OSError as err:
                    self.save_error = f"the run could not be saved to disk: {err}"
        finally:
            with self._lock:
                self._state = "done"
                self._send = None
                self.pid = None


def estimate_start(run: TrainingRun) -> float | None:
    """Seconds from now until a queued run gets a slot: the runs training now end after their remaining
    time (from their progress and speed), then each run ahead in line takes the first free slot for its
    expected length (its steps at the speed this server has seen for its model, else a typical one)."""
    holders, queue = run.slots.lineup()
    if run.ticket not in queue:
        return None
    now = time.perf_counter()
    free_at = []
    for ticket in holders:
        other = _by_ticket.get(ticket)
        free_at.append(_remaining(other, now) if other is not None else 0.0)
    free_at += [0.0] * max(0, run.slots.size - len(free_at))
    for ticket in queue:
        free_at.sort()
        if ticket == run.ticket:
            return free_at[0]
        other = _by_ticket.get(ticket)
        free_at[0] += expected_seconds(other.config) if other is not None else 0.0
    return None


def _remaining(run: TrainingRun, now: float) -> float:
    status = run.status()
    last, start = status.last_batch, status.start
    if status.started_at is None or start is None or last is None or last.step == 0:
        return expected_seconds(run.config)
    elapsed = now - status.started_at - status.paused_for
    return max(0.0, elapsed / last.step * (start.total_steps - last.step))
