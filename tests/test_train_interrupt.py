"""Ctrl-C in ``python -m core train`` stops the run the ordinary way: its end is printed and --save still saves."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from core import checkpoint

ROOT = Path(__file__).resolve().parent.parent


def test_ctrl_c_stops_the_run_prints_its_end_and_saves_it(tmp_path, mirror_root):
    target = tmp_path / "stopped.pt"
    proc = subprocess.Popen([sys.executable, "-m", "core", "train", "--model", "seed-mlp", "--subset", "6400",
                             "--epochs", "200", "--no-pen-eval", "--save", str(target), "--json"],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)
    reader.start()
    stderr = []
    try:
        while not any(line.startswith("epoch 1:") for line in stderr):  # it has trained a while
            stderr.append(lines.get(timeout=120))
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    while not lines.empty():
        stderr.append(lines.get())
    stdout = proc.stdout.read()
    text = "".join(stderr)
    assert proc.returncode == 130, text
    assert "Traceback" not in text and "stopping after this batch" in text
    assert "stopped: stopped by request after" in text
    metrics = json.loads(stdout.strip().splitlines()[-1])
    assert metrics["reason"] == "stopped" and metrics["executor"] == "local" and metrics["epochs"] >= 1
    saved = checkpoint.load(target)
    assert saved.metrics["reason"] == "stopped" and saved.metrics["test_acc"] == metrics["test_acc"] > 0.5
