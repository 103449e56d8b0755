"""Runs on a Ray cluster: ``DIGITLAB_RAY_ADDRESS=host:port`` (the address ``ray start --head`` prints).

Each run is one actor holding the CPUs, or the GPU, its device asks for; Ray queues it until a node
has them and places it there. The actor trains in a thread of its own (``core.worker.train``, the
same code as a local worker process) and keeps the messages; the server's thread for the run asks
for the new ones four times a second (``drain``), and passes stop, pause and resume on (``command``).

Nodes need this checkout at the same path, with its virtual environment (``ray start`` from it), and
the data set in their own ``DIGITLAB_HOME`` or ``DIGITLAB_MIRROR``; the server's DIGITLAB_* settings
are passed to each run.

This module is imported only when that setting is present: without it, Ray is never loaded.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path

import ray

from core import worker
from core.executors import ExecutorUnavailable, RAY_ADDRESS_ENV
from core.trainer import TrainConfig, TrainControl

log = logging.getLogger("digitlab")

ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.25  # how often the server asks a run for news; pages redraw once a second
CONNECT_TIMEOUT_S = 3.0
_init_lock = threading.Lock()


def check_answers(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """ExecutorUnavailable, quickly, when nothing listens at ``host:port``."""
    host, _, port = address.rpartition(":")
    if address == "auto":
        return
    if not host or not port.isdigit():
        raise ExecutorUnavailable(f"{RAY_ADDRESS_ENV}={address!r} is not host:port (such as 10.0.0.5:6379, "
                                  "the address `ray start --head` prints).")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise ExecutorUnavailable(
            f"The Ray cluster at {address} does not answer ({err.strerror or err}). Start one there with "
            f"`ray start --head --port={port}`, or unset {RAY_ADDRESS_ENV} to train on this machine.") from None


def connect(address: str) -> None:
    check_answers(address)
    with _init_lock:
        if ray.is_initialized():
            return
        try:
            ray.init(address=address, namespace="digitlab", log_to_driver=False, logging_level=logging.WARNING,
                     job_config=ray.job_config.JobConfig(_py_driver_sys_path=[str(ROOT)]))
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise ExecutorUnavailable(f"Could not join the Ray cluster at {address}: {err}") from None


def resources(config: TrainConfig) -> dict:
    """What a run asks Ray for: one GPU for a CUDA run (or "auto" on a cluster with GPUs), else CPUs."""
    gpus = ray.cluster_resources().get("GPU", 0)
    if config.device == "cuda" or (config.device == "auto" and gpus > 0):
        return {"num_cpus": 1, "num_gpus": 1}
    wanted = os.environ.get("DIGITLAB_RAY_CPUS_PER_RUN", "").strip()
    if wanted.isdigit() and int(wanted) > 0:
        return {"num_cpus": int(wanted), "num_gpus": 0}
    largest = max((n.get("Resources", {}).get("CPU", 1) for n in ray.nodes() if n.get("Alive")), default=1)
    return {"num_cpus": int(max(1, min(2, largest))), "num_gpus": 0}  # two threads train a run well


class _ListOutbox(worker.Outbox):
    """Keeps messages for ``drain``; only the newest snapshot is kept."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()
        self.messages: list[tuple] = []
        self.snapshot_message: tuple | None = None
        self.snapshot_seq = 0

    def deliver(self, message: tuple) -> None:
        with self.lock:
            self.messages.append(message)

    def snapshot(self, message: tuple) -> None:
        with self.lock:
            self.snapshot_message, self.snapshot_seq = message, self.snapshot_seq + 1


@ray.remote(max_concurrency=2)
class RunActor:
    def __init__(self, config: TrainConfig, name: str, env: dict, threads: int):
        worker.apply_env(env)
        worker.lower_priority()
        import torch

        torch.set_num_threads(max(1, threads))
        self.control = TrainControl()
        self.out = _ListOutbox()
        self.thread = threading.Thread(target=worker.train, args=(config, name, self.control, self.out), daemon=True)
        self.thread.start()

    def where(self) -> str:
        return socket.gethostname()

    def drain(self, since: int, snapshot_seen: int) -> tuple:
        """(messages from ``since`` on, the next index, the newest snapshot if newer than ``snapshot_seen``, its number)."""
        out = self.out
        with out.lock:
            new = out.messages[since:]
            snap = out.snapshot_message if out.snapshot_seq > snapshot_seen else None
            return new, since + len(new), snap, out.snapshot_seq

    def command(self, command: str) -> None:
        {"stop": self.control.stop, "pause": self.control.pause, "resume": self.control.resume}[command]()


class RayExecutor:
    """Each run an actor on the cluster at ``address``; Ray does the queueing and the placement."""

    name = "ray"
    uses_slots = False

    def __init__(self, address: str):
        self.address = address
        connect(address)

    def train(self, run) -> None:
        need = resources(run.config)
        actor = RunActor.options(**need).remote(run.config, run.name, worker.digitlab_env(), need["num_cpus"])
        placed = actor.where.remote()
        wait = threading.Event()
        try:
            while not ray.wait([placed], timeout=POLL_S)[0]:  # queued by Ray until a node has the resources
                if run.control.stopped:
                    run._ended_before_start()
                    return
            try:
                run.node = ray.get(placed)
            except ray.exceptions.RayError as err:
                run._died(f"it could not start on the cluster: {_short(err)}")
                return
            run._starting()
            run._attach(lambda command: actor.command.remote(command))
            since, seen = 0, 0
            while True:
                try:
                    messages, since, snap, seen = ray.get(actor.drain.remote(since, seen), timeout=60)
                except ray.exceptions.GetTimeoutError:
                    continue  # a busy node; the actor is still there
                except ray.exceptions.RayError as err:  # the actor's process or its node died
                    run._died(_short(err))
                    return
                finished = False
                for message in messages:
                    finished = run._receive(message) or finished
                if snap is not None:
                    run._receive(snap)
                if finished:
                    return
                wait.wait(POLL_S)
        finally:
            ray.kill(actor)


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]
