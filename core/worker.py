"""The training side of a run: what runs in the worker process (or the Ray actor), never in the web server.

``train(config, name, control, out)`` loads the data set, runs ``Trainer`` and hands everything the
server needs to ``out``, an ``Outbox``: the frozen events, a snapshot of the weights for the live
Draw page at most once a second (only when it changed), and at the end the model as checkpoint bytes.

Messages are plain tuples, the same over a pipe and over Ray:

    ("running",)                         the data is loaded and the model built
    ("events", [event, ...])             the trainer's frozen events, in order
    ("snapshot", step, epoch, {name: numpy array})
    ("result", checkpoint bytes)         the finished model (core.checkpoint.to_bytes)
    ("error", message)                   the run could not start or failed; message is for a student
    ("done",)                            the last message

Batch events are gathered and sent ten times a second, the rest at once: over a pipe that costs the
worker about 1 microsecond a batch, against 11-22 sending each on its own, and the server about 3.4 to
read one back (``python -m bench --only dashboard``: "a worker's cost per batch event").
"""

from __future__ import annotations

import os
import threading
import time

from core.trainer import BatchEvent, EndEvent, TrainConfig, TrainControl, Trainer

FLUSH_EVERY_S = 0.1  # batch events reach the server within this; the page redraws once a second
SNAPSHOT_EVERY_S = 1.0  # the live Draw page re-reads a drawing once a second


class Outbox:
    """Gathers a worker's messages; ``deliver`` (per transport) sends a list of them."""

    def __init__(self):
        self._pending: list = []  # events not yet sent
        self._last_flush = time.monotonic()

    def deliver(self, message: tuple) -> None:  # one message, in order
        raise NotImplementedError

    def snapshot(self, message: tuple) -> None:  # the newest weights; an older unsent one may be dropped
        self.deliver(message)

    def event(self, ev) -> None:
        self._pending.append(ev)
        if isinstance(ev, BatchEvent):
            now = time.monotonic()
            if now - self._last_flush < FLUSH_EVERY_S:
                return
        self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if self._pending:
            events, self._pending = self._pending, []
            self.deliver(("events", events))


def snapshot_message(snap) -> tuple:
    arrays = {k: v.numpy() for k, v in snap.state_dict.items()}  # plain arrays: no shared-memory handles
    return ("snapshot", snap.step, snap.epoch, arrays)


def train(config: TrainConfig, name: str, control: TrainControl, out: Outbox) -> None:
    """Train one run to its end and report everything to ``out``; never raises."""
    from core import checkpoint
    from core.data import DataUnavailableError, load_dataset

    try:
        try:
            trainer = Trainer(config, load_dataset(config.dataset), control)
        except (ValueError, DataUnavailableError) as err:
            out.deliver(("error", str(err)))
            return
        out.deliver(("running",))
        sent, sent_at, end = trainer.snapshot(), 0.0, None
        for ev in trainer.run():
            out.event(ev)
            if isinstance(ev, EndEvent):
                end = ev
                continue
            snap = trainer.snapshot()
            if snap is not sent and snap.step > 0 and time.monotonic() - sent_at >= SNAPSHOT_EVERY_S:
                out.flush()  # the events up to these weights first
                out.snapshot(snapshot_message(snap))
                sent, sent_at = snap, time.monotonic()
        out.flush()
        if end is not None and end.reason != "failed" and end.steps > 0:
            ckpt = checkpoint.from_model(trainer.model, config.model, dataset=config.dataset,
                                         train_config=config.to_dict(), metrics=dict(trainer.metrics), name=name)
            out.deliver(("result", checkpoint.to_bytes(ckpt)))
    except Exception as err:  # reported, never a silent death
        out.flush()
        out.deliver(("error", f"training failed: {type(err).__name__}: {err}"))
    finally:
        out.deliver(("done",))


def apply_env(env: dict) -> None:
    """The server's DIGITLAB_* settings as they are now (a forked worker inherits the forkserver's, not these)."""
    for key in [k for k in os.environ if k.startswith("DIGITLAB_")]:
        if key not in env:
            del os.environ[key]
    os.environ.update(env)


def digitlab_env() -> dict:
    """The settings a run takes along (to a worker, or to a Ray node): every DIGITLAB_* but the teacher key,
    which never leaves the web server."""
    return {k: v for k, v in os.environ.items() if k.startswith("DIGITLAB_") and k != "DIGITLAB_TEACHER_KEY"}


def lower_priority() -> None:
    """``DIGITLAB_TRAINING_NICE=10``: the whole worker trains on the CPU the web server leaves.

    Called first thing in the worker's main thread: on Linux a nice value is per thread and
    inherited by the threads made later (PyTorch's pool, the command listener).
    """
    nice = os.environ.get("DIGITLAB_TRAINING_NICE", "0").strip()
    if nice in ("", "0"):
        return
    try:
        value = int(nice)
        os.setpriority(os.PRIO_PROCESS, 0, value)
        # and every thread that already exists (a pool a library started before this ran): new ones inherit it
        for tid in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else ():
            try:
                os.setpriority(os.PRIO_PROCESS, int(tid), value)
            except OSError:
                pass  # the thread ended meanwhile
    except (AttributeError, OSError, ValueError):
        pass  # not allowed: train at the server's priority


# ----------------------------------------------------------------------------- a local worker process

class PipeOutbox(Outbox):
    def __init__(self, conn, control: TrainControl):
        super().__init__()
        self.conn, self.control = conn, control

    def deliver(self, message: tuple) -> None:
        try:
            self.conn.send(message)
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
            self.control.stop()  # the server is gone: stop at the next batch


def _listen(conn, control: TrainControl) -> None:
    """Commands from the server; its end of the pipe closing (the server died) stops the run."""
    while True:
        try:
            command = conn.recv()
        except (EOFError, OSError):
            control.stop()
            return
        if command == "stop":
            control.stop()
        elif command == "pause":
            control.pause()
        elif command == "resume":
            control.resume()


def process_main(config: TrainConfig, name: str, env: dict, threads: int, events, commands) -> None:
    """The entry point of a worker process (started by core.executors.LocalExecutor)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on the server's terminal is the server's to handle
    apply_env(env)
    lower_priority()
    import torch

    torch.set_num_threads(max(1, threads))
    control = TrainControl()
    threading.Thread(target=_listen, args=(commands, control), name="digitlab-commands", daemon=True).start()
    train(config, name, control, PipeOutbox(events, control))
    events.close()
