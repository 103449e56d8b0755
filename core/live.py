"""Every run on this server, by its author: a run belongs to a person, not to a browser tab.

``live_runs()`` is the process-wide registry. A page starts a run for its owner, finds it again by
id or owner (after a reload, from another tab, on another page) and calls ``watch(run_id)`` while it
shows it. A run ends when it finishes or is stopped, or when no page has watched it for the idle
timeout (``DIGITLAB_RUN_IDLE_MINUTES``, default 10): then it stops, saying so, and is kept on the
Runs page like any stopped run. Finished runs stay listed here for a while (``keep_finished_s``).

Where runs train is the executor's business (``core.executors``): worker processes on this
machine, or a Ray cluster when ``DIGITLAB_RAY_ADDRESS`` is set. A Ray address that does not answer
is logged and named in ``notice``, and runs train on this machine instead.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from core.runs import RunStore
from core.jobs import TrainingRun
from core.trainer import TrainConfig

log = logging.getLogger("digitlab")

ACTIVE = ("queued", "starting", "running", "paused", "stopping")


def default_idle_timeout_s() -> float:
    text = os.environ.get("DIGITLAB_RUN_IDLE_MINUTES", "").strip()
    try:
        minutes = float(text) if text else 10.0
    except ValueError:
        minutes = 10.0
    return max(minutes, 0.0) * 60


def _duration(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:g} minutes"
    return f"{seconds:g} seconds"


class LiveRuns:
    keep_finished_s = 3600.0  # a finished run stays in of() this long (it is on disk for good)
    keep_finished_per_owner = 20

    def __init__(self, executor=None, store: RunStore | None = None, idle_timeout_s: float | None = None):
        self.notice = ""  # why runs train somewhere other than asked, for a page to show
        if executor is None:
            from core.executors import ExecutorUnavailable, LocalExecutor, default_executor

            try:
                executor = default_executor()
            except ExecutorUnavailable as err:
                self.notice = f"{err} Runs train on this machine instead."
                log.warning("%s", self.notice)
                executor = LocalExecutor()
        self.executor = executor
        warm = getattr(executor, "warm", None)
        if warm is not None:
            warm()
        self.store = store
        self.idle_timeout_s = default_idle_timeout_s() if idle_timeout_s is None else float(idle_timeout_s)
        self._lock = threading.Lock()
        self._runs: dict[str, TrainingRun] = {}  # by id, oldest first
        self._watched: dict[str, float] = {}  # run id -> time.monotonic() of the last watch
        self._ended: dict[str, float] = {}  # run id -> time.monotonic() when the reaper first saw it done
        self._reaper: threading.Thread | None = None
        self._closed = threading.Event()

    # -- the API pages use ------------------------------------------------------------
    def start(self, owner: str, config: TrainConfig, name: str = "") -> TrainingRun:
        store = self.store if self.store is not None else RunStore()
        run = TrainingRun(config, store=store, name=name, executor=self.executor, owner=str(owner))
        with self._lock:
            self._runs[run.id] = run
            self._watched[run.id] = time.monotonic()
        run.start()
        self._ensure_reaper()
        return run

    def get(self, run_id: str) -> TrainingRun | None:
        with self._lock:
            return self._runs.get(run_id)

    def of(self, owner: str) -> list[TrainingRun]:
        """The owner's runs, newest first."""
        with self._lock:
            return [r for r in reversed(self._runs.values()) if r.owner == owner]

    def active(self, owner: str) -> TrainingRun | None:
        """The owner's newest run that has not ended (queued, starting, running or paused)."""
        for run in self.of(owner):
            if not run.done:
                return run
        return None

    def all(self) -> list[TrainingRun]:
        """Every run, newest first."""
        with self._lock:
            return list(reversed(self._runs.values()))

    def watch(self, run_id: str) -> None:
        """A page shows this run now; without this for ``idle_timeout_s`` the run stops."""
        with self._lock:
            if run_id in self._runs:
                self._watched[run_id] = time.monotonic()

    # -- lifetime ----------------------------------------------------------------------
    def close(self, stop_runs: bool = True) -> None:
        self._closed.set()
        if stop_runs:
            for run in self.all():
                run.stop("stopped: the server shut down")

    def _ensure_reaper(self) -> None:
        with self._lock:
            if self._reaper is None or not self._reaper.is_alive():
                self._reaper = threading.Thread(target=self._reap_forever, name="digitlab-live-runs", daemon=True)
                self._reaper.start()

    def _reap_forever(self) -> None:
        tick = min(1.0, max(self.idle_timeout_s / 4, 0.05))
        while not self._closed.wait(tick):
            self.reap()

    def reap(self) -> None:
        """Stop runs nobody watches; forget finished runs kept long enough."""
        now = time.monotonic()
        with self._lock:
            runs = list(self._runs.values())
            watched = dict(self._watched)
        for run in runs:
            if not run.done and now - watched.get(run.id, now) >= self.idle_timeout_s:
                message = (f"stopped: nobody had this run open for {_duration(self.idle_timeout_s)}, "
                           "so it made way for others")
                if run.status().state != "stopping":
                    log.warning("training run %s of %r %s", run.id, run.owner, message)
                run.stop(message)
        with self._lock:
            per_owner: dict[str, int] = {}
            for run in reversed(list(self._runs.values())):  # newest first
                if not run.done:
                    continue
                per_owner[run.owner] = per_owner.get(run.owner, 0) + 1
                ended = self._ended.setdefault(run.id, now)
                if now - ended > self.keep_finished_s or per_owner[run.owner] > self.keep_finished_per_owner:
                    self._runs.pop(run.id, None)
                    self._watched.pop(run.id, None)
                    self._ended.pop(run.id, None)


_live: LiveRuns | None = None
_live_lock = threading.Lock()


def server_threads() -> int:
    """PyTorch threads for the server's own work (a page's prediction, the Evaluate page), ``DIGITLAB_SERVER_THREADS``.

    One: many pages ask at once, each on its own thread, and the cores are the training workers'.
    While a run trained, one 28x28 prediction took a median 0.26 ms with one thread and 99 ms with two
    (``python -m bench --only dashboard``, "prediction in the server while a run trains").
    """
    text = os.environ.get("DIGITLAB_SERVER_THREADS", "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else 1


def live_runs() -> LiveRuns:
    """The process-wide registry (made on first use, which also sets the server's own PyTorch threads)."""
    global _live
    with _live_lock:
        if _live is None:
            import torch

            torch.set_num_threads(server_threads())  # applies to the page threads made from now on
            _live = LiveRuns()
        return _live
