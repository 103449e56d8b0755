"""Where a run trains: a worker process on this machine, or an actor on a Ray cluster.

An executor's ``train(run)`` is called in the run's own thread in the server. It starts the worker,
feeds what comes back into the ``TrainingRun`` (``core.jobs``) and returns when the worker is done,
whether it ended well, failed, or died.

``LocalExecutor`` (the default) starts one process per run from a fork server that has already
imported PyTorch and the trainer: a run starts in about 25 ms instead of 1.2 s with "spawn", and the
child shares nothing with the web server (no threads, no random state, no GIL). At most
``run.slots.size`` of them train at once; the others wait in line.

``RayExecutor`` (``DIGITLAB_RAY_ADDRESS=host:port``, see ``core.rayrun``) places each run on a Ray
cluster with the CPUs or GPU it needs; Ray does the queueing and placement. Without the setting Ray
is never imported.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import threading

from core import worker

log = logging.getLogger("digitlab")

RAY_ADDRESS_ENV = "DIGITLAB_RAY_ADDRESS"


def _context():
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "core.trainer", "core.worker"])
    return ctx


def exit_description(exitcode: int | None) -> str:
    if exitcode is None:
        return "it stopped answering"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = ": it was killed, perhaps for using too much memory" if -exitcode == signal.SIGKILL else ""
        return f"{name}{hint}"
    return f"exit status {exitcode}"


class LocalExecutor:
    """One worker process per run on this machine, at most ``run.slots.size`` at once."""

    name = "local"

    def __init__(self):
        self._ctx = _context()

    def warm(self) -> None:
        """Start the fork server in the background, so that the first Start is fast too."""
        from multiprocessing import forkserver

        def start():
            try:
                forkserver.ensure_running()
            except Exception as err:  # the first run starts it instead
                log.warning("the training fork server did not start ahead of time: %s", err)

        threading.Thread(target=start, name="digitlab-forkserver", daemon=True).start()

    def train(self, run) -> None:
        if not run.slots.acquire(run.ticket, lambda: run.control.stopped):
            run._ended_before_start()
            return
        try:
            run._starting()
            threads = max(1, (os.cpu_count() or 2) // run.slots.size)  # slots share the cores, none oversubscribed
            events_in, events_out = self._ctx.Pipe(duplex=False)
            commands_in, commands_out = self._ctx.Pipe(duplex=False)
            proc = self._ctx.Process(target=worker.process_main, name=f"digitlab-run-{run.ticket}", daemon=True,
                                     args=(run.config, run.name, worker.digitlab_env(), threads, events_out,
                                           commands_in))
            try:
                proc.start()
            except BaseException:
                events_in.close()
                commands_out.close()
                raise
            finally:
                events_out.close()
                commands_in.close()
            run.pid = proc.pid

            def send(command: str) -> None:
                try:
                    commands_out.send(command)
                except (BrokenPipeError, OSError):
                    pass  # the worker has ended; its last messages say how

            run._attach(send)
            finished = False
            try:
                while not finished:
                    try:
                        message = events_in.recv()
                    except (EOFError, OSError):
                        break  # the worker died without saying goodbye
                    finished = run._receive(message)
            finally:
                events_in.close()
                commands_out.close()
                proc.join(timeout=30)
                if proc.is_alive():  # said goodbye but hangs: it holds a slot and memory
                    proc.kill()
                    proc.join(timeout=10)
            if not finished:
                run._died(exit_description(proc.exitcode))
        finally:
            run.slots.release(run.ticket)


class ExecutorUnavailable(RuntimeError):
    """The configured executor cannot be used; the message says why and what to do."""


def default_executor():
    """Ray when ``DIGITLAB_RAY_ADDRESS`` is set (ExecutorUnavailable if it does not answer), else local."""
    address = os.environ.get(RAY_ADDRESS_ENV, "").strip()
    if address:
        from core import rayrun

        return rayrun.RayExecutor(address)
    return LocalExecutor()
