"""Runs on a Ray cluster: a real local cluster on 127.0.0.1, started once for this module, a real MNIST run
through the run API the dashboard uses and through the command line; and an address that does not answer."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from core import models as M
from core.runs import RunStore
from core.trainer import BatchEvent, TrainConfig, Trainer
from tests.browser import free_port

ROOT = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).parent / "ray")


def cfg(**kw) -> TrainConfig:
    base = dict(model=M.MLPConfig(), optimizer="sgd", lr=0.05, batch_size=64, epochs=1, train_subset=3200, seed=0,
                device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def wait_for(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.05)
    return True


@pytest.fixture(scope="module")
def ray_cluster(mirror_root):
    """``ray start --head`` on 127.0.0.1 with 2 CPUs, its files under a fresh temp folder, stopped at the end."""
    temp = tempfile.mkdtemp(prefix="dlray")  # short: Ray's socket paths must fit in 107 bytes
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0")
    log = open(Path(temp) / "ray-start.log", "w")
    proc = subprocess.Popen([RAY, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
                             "--object-store-memory=100000000", "--block"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        from core.rayrun import check_answers
        from core.executors import ExecutorUnavailable

        def answers() -> bool:
            assert proc.poll() is None, Path(temp, "ray-start.log").read_text()[-2000:]
            try:
                check_answers(address, timeout=1)
                return "Ray runtime started" in Path(temp, "ray-start.log").read_text()
            except ExecutorUnavailable:
                return False

        assert wait_for(answers, timeout=90), "the local Ray cluster did not start"
        yield address
    finally:
        import ray

        ray.shutdown()
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of the cluster is left, and only it
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def test_a_run_trains_on_the_ray_cluster_through_the_run_api_and_repeats_a_headless_run(ray_cluster, mnist,
                                                                                      runs_folder):
    from core.live import LiveRuns
    from core.rayrun import RayExecutor

    joined = []  # the server joins the cluster from a page's thread, not the main thread
    page = threading.Thread(target=lambda: joined.append(RayExecutor(ray_cluster)))
    page.start()
    page.join()
    live = LiveRuns(executor=joined[0], idle_timeout_s=600)
    run = live.start("ada", cfg(epochs=2), name="on the cluster")
    assert live.active("ada") is run and run.executor_name == "ray"
    assert wait_for(lambda: run.snapshot() is not None and run.snapshot().step > 0)  # the live Draw page's weights
    assert run.join(timeout=120) and run.done
    view = run.view()
    assert view.end.reason == "finished" and len(view.batches) == 100 and len(view.epochs) == 2, view
    assert view.queue_position is None and run.estimated_start_s is None  # Ray queues, not our slots
    headless = [e.loss for e in Trainer(cfg(epochs=2), mnist).run() if isinstance(e, BatchEvent)]
    assert [b.loss for b in view.batches] == headless  # seeded: the same run, wherever it trains
    assert run.result is not None and run.result.metrics["test_acc"] == view.end.test_acc
    assert run.saved_id is not None and [r.name for r in RunStore(runs_folder).list()] == ["on the cluster"]
    assert live.active("ada") is None and live.of("ada") == [run]


def test_stop_reaches_a_run_on_the_cluster(ray_cluster):
    from core.live import LiveRuns
    from core.rayrun import RayExecutor

    live = LiveRuns(executor=RayExecutor(ray_cluster), idle_timeout_s=600)
    run = live.start("ada", cfg(epochs=200, train_subset=None))
    assert wait_for(lambda: len(run.view().batches) > 5)
    run.stop()
    assert run.join(timeout=60) and run.view().end.reason == "stopped"


def test_the_command_line_trains_on_the_cluster_and_says_so(ray_cluster, tmp_path):
    out = subprocess.run([sys.executable, "-m", "core", "train", "--model", "seed-mlp", "--subset", "3200", "--epochs", "1",
                          "--optimizer", "sgd", "--lr", "0.05", "--device", "cpu", "--no-pen-eval",
                          "--save", str(tmp_path / "m.pt"), "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "DIGITLAB_RAY_ADDRESS": ray_cluster})
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    assert metrics["executor"] == "ray" and metrics["reason"] == "finished" and metrics["steps"] == 50
    assert "epoch 1: train loss" in out.stderr
    from core import checkpoint

    assert checkpoint.load(tmp_path / "m.pt").metrics["test_acc"] == metrics["test_acc"]


def test_an_address_that_does_not_answer_is_named_and_runs_train_here_instead(monkeypatch, mirror_root):
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    out = subprocess.run([sys.executable, "-m", "core", "train", "--model", "seed-mlp", "--epochs", "1", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "DIGITLAB_RAY_ADDRESS": dead})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"The Ray cluster at {dead} does not answer" in out.stderr and "unset DIGITLAB_RAY_ADDRESS" in out.stderr

    from core.live import LiveRuns

    monkeypatch.setenv("DIGITLAB_RAY_ADDRESS", dead)
    live = LiveRuns(idle_timeout_s=600)
    assert live.executor.name == "local" and dead in live.notice and "train on this machine" in live.notice
    run = live.start("ada", cfg())
    assert run.join(timeout=120) and run.view().end.reason == "finished"


def test_without_the_setting_ray_is_never_imported(mirror_root):
    code = ("import sys; from core.live import LiveRuns; from core.cli import train; live = LiveRuns(); "
            "print(live.executor.name, 'ray' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "DIGITLAB_RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**env, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["local", "False"]
