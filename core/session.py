"""A training run in a background thread, watched from another thread.

The dashboard owns one ``TrainingRun`` per browser session. The run's thread is the only
one that touches the trainer; it appends events to lock-protected lists, and the page's
script thread reads a consistent ``RunView`` of them. A ``liveness`` callable lets the
owner say "I am gone" (a closed browser tab): the run then stops by itself.

``SlotPool`` caps how many runs train at once on one server, so thirty students pressing
Start do not slow each run thirtyfold: later runs wait in a queue and start when a slot frees.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from core import checkpoint
from core.runs import RunStore
from core.data import DataUnavailableError, Dataset, load_dataset
from core.trainer import (BatchEvent, EndEvent, EpochEvent, Snapshot, StartEvent, TrainConfig, TrainControl,
                          Trainer)


log = logging.getLogger("digitlab")


class SlotPool:
    """At most ``size`` holders at once; the others wait in first-come order."""

    def __init__(self, size: int):
        self.size = max(1, size)
        self._cond = threading.Condition()
        self._holders: set[int] = set()
        self._queue: list[int] = []

    def acquire(self, ticket: int, cancelled: Callable[[], bool]) -> bool:
        with self._cond:
            self._queue.append(ticket)
            try:
                while not (len(self._holders) < self.size and self._queue[0] == ticket):
                    if cancelled():
                        return False
                    self._cond.wait(timeout=0.25)  # re-check cancellation; woken early on release
                self._holders.add(ticket)
                return True
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()

    def release(self, ticket: int) -> None:
        with self._cond:
            self._holders.discard(ticket)
            self._cond.notify_all()

    def position(self, ticket: int) -> int | None:
        """1 for the next in line; None if not waiting."""
        with self._cond:
            return self._queue.index(ticket) + 1 if ticket in self._queue else None

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


def _lower_priority() -> None:
    """Optionally give this thread (and the compute threads it spawns) a higher nice value.

    With ``DIGITLAB_TRAINING_NICE=10`` a server that must answer many Draw pages while a run
    trains lets training take only the CPU the pages leave. Off by default: on a quiet machine
    it cost a tenth of the training throughput (python -m bench --only dashboard). On Linux a
    nice value is per thread and inherited by threads created later, such as PyTorch's pool.
    """
    nice = os.environ.get("DIGITLAB_TRAINING_NICE", "0").strip()
    if nice in ("", "0"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), int(nice))
    except (AttributeError, OSError, ValueError):
        pass  # not Linux, or not allowed: train at the server's priority


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
    started_at: float | None
    paused_for: float


@dataclass
class TrainingRun:
    config: TrainConfig
    dataset: Dataset | None = None
    liveness: Callable[[], bool] | None = None  # returns False once the owner is gone
    liveness_grace_s: float = 10.0  # a reconnecting browser is not a closed one
    slots: SlotPool = field(default_factory=lambda: SLOTS)
    name: str = ""
    store: RunStore | None = None  # where the finished run is kept, written by the run's own thread

    def __post_init__(self):
        self.control = TrainControl()
        self._lock = threading.Lock()
        self._batches: list[BatchEvent] = []
        self._epochs: list[EpochEvent] = []
        self._start: StartEvent | None = None
        self._end: EndEvent | None = None
        self._error: str | None = None
        self._state = "queued"
        self._trainer: Trainer | None = None
        self._thread: threading.Thread | None = None
        self._started_at: float | None = None
        self._paused_since: float | None = None
        self._paused_for = 0.0
        self.result: checkpoint.Checkpoint | None = None
        self.saved_id: str | None = None
        self.save_error: str | None = None
        with _ticket_lock:
            self.ticket = next(_tickets)

    # -- owner's side (any thread) ---------------------------------------------------
    def start(self) -> "TrainingRun":
        self._thread = threading.Thread(target=self._main, name=f"digitlab-train-{self.ticket}", daemon=True)
        self._thread.start()
        if self.liveness is not None:
            threading.Thread(target=self._watch_owner, name=f"digitlab-watch-{self.ticket}", daemon=True).start()
        return self

    def stop(self) -> None:
        with self._lock:
            if self._paused_since is not None:
                self._paused_for += time.perf_counter() - self._paused_since
                self._paused_since = None
            if self._state not in ("done",):
                self._state = "stopping"
        self.control.stop()

    def pause(self) -> None:
        with self._lock:
            if self._state == "running":
                self._state = "paused"
                self._paused_since = time.perf_counter()
                self.control.pause()

    def resume(self) -> None:
        with self._lock:
            if self._state == "paused":
                self._state = "running"
                if self._paused_since is not None:
                    self._paused_for += time.perf_counter() - self._paused_since
                self._paused_since = None
                self.control.resume()

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

    def snapshot(self) -> Snapshot | None:
        trainer = self._trainer
        return trainer.snapshot() if trainer is not None else None

    def view(self, since_batch: int = 0) -> RunView:
        with self._lock:
            paused_for = self._paused_for + (time.perf_counter() - self._paused_since if self._paused_since else 0.0)
            return RunView(self._state, self.config, self.slots.position(self.ticket), self._start,
                           self._batches[since_batch:], list(self._epochs), self._end, self._error,
                           self._started_at, paused_for)

    # -- the run's own thread --------------------------------------------------------
    def _owner_gone(self, since: list[float | None]) -> bool:
        if self.liveness is None:
            return False
        try:
            alive = self.liveness()
        except Exception:
            alive = True  # a broken probe must not kill a run
        if alive:
            since[0] = None
            return False
        since[0] = since[0] or time.monotonic()
        return time.monotonic() - since[0] >= self.liveness_grace_s

    def _watch_owner(self) -> None:
        """Stop the run once its owner has been gone for the grace period (queued, running or paused)."""
        gone_since: list[float | None] = [None]
        while self._thread is not None and self._thread.is_alive():
            if self._owner_gone(gone_since):
                self.stop()
                self._thread.join()
                log.warning("training run %s stopped: its browser session closed; thread exited", self.ticket)
                return
            self._thread.join(timeout=1.0)

    def _main(self) -> None:
        _lower_priority()
        if not self.slots.acquire(self.ticket, lambda: self.control.stopped):
            with self._lock:
                self._state = "done"
                self._end = EndEvent("stopped", "stopped before it started", 0, 0, 0.0, 0.0, None, None)
            return
        try:
            with self._lock:
                if self._state == "queued":
                    self._state = "starting"
            try:
                ds = self.dataset if self.dataset is not None else load_dataset(self.config.dataset)
                self._trainer = Trainer(self.config, ds, self.control)
            except (ValueError, DataUnavailableError) as err:
                with self._lock:
                    self._error = str(err)
                    self._end = EndEvent("failed", str(err), 0, 0, 0.0, 0.0, None, None)
                return
            with self._lock:
                self._started_at = time.perf_counter()
                if self._state == "starting":
                    self._state = "running"
            for ev in self._trainer.run():
                with self._lock:
                    if isinstance(ev, BatchEvent):
                        self._batches.append(ev)
                    elif isinstance(ev, EpochEvent):
                        self._epochs.append(ev)
                    elif isinstance(ev, StartEvent):
                        self._start = ev
                    elif isinstance(ev, EndEvent):
                        self._end = ev
            end = self._end
            if end is not None and end.reason != "failed" and end.steps > 0:
                trainer = self._trainer
                metrics = dict(trainer.metrics)
                self.result = checkpoint.from_model(trainer.model, self.config.model, dataset=self.config.dataset,
                                                    train_config=self.config.to_dict(), metrics=metrics,
                                                    name=self.name)
                if self.store is not None:  # here, not in a page: a run whose tab has closed is kept too
                    view = self.view()
                    try:
                        self.saved_id = self.store.save(self.name, self.result, view.batches, view.epochs, end).id
                    except OSError as err:
                        self.save_error = f"the run could not be saved to disk: {err}"
        except Exception as err:  # the thread must never die silently
            with self._lock:
                self._error = f"{type(err).__name__}: {err}"
                self._end = EndEvent("failed", f"training failed: {err}", 0, 0, 0.0, 0.0, None, None)
        finally:
            self.slots.release(self.ticket)
            with self._lock:
                self._state = "done"
