"""Digit Lab's benchmark: ``python -m bench [--json] [--quick] [--only SECTION ...]``.

Every figure is measured in this one process on this machine, and speed is reported as a
ratio against a baseline measured alongside it (shared machines are noisy; absolute
numbers drift from run to run, ratios much less).

Sections:
  throughput  samples/s of the seed tutorial's exact loop (datasets.MNIST + ToTensor +
              DataLoader, batch 64) against the project's trainer, same model and batch size
  target      seconds of training to 99.0 % test accuracy (seed CNN) and 97.5 % (seed MLP)
  latency     canvas pixels -> ten probabilities, p50 and p95 over many drawings
  dashboard   a run started as the Train page starts one (a worker process streaming its events
              back), with the live panel's redraw work once a second, against the same trainer
              headless; a 28x28 prediction in the server while a run trains, with 1 and 2 threads;
              what sending each batch event costs the worker, for each way of sending it
  classroom   the Models page's downloads (checkpoint, TorchScript, ONNX, each checked against
              the model), a class set of drawn digits scored, exported as a zip and imported, and
              MNIST's test set scored in the device's scoring batches against batches of 2,000
  gpu         time to 99 % on a CUDA GPU, with the card's name (only where one is present)
  hostile     what a hostile file can cost: the worst images for the canvas pipeline (preprocessing
              and a full answer, goal <= 100 ms), and every hostile checkpoint of bench.hostile loaded
              in a fresh, memory-capped process (outcome, seconds, peak memory above the baseline)
  pen         the bundled model on pen-written digits of 20 writers it never saw, drawn on the canvas
              (overall and the worst brush or size), the share of non-digits and of those digits it
              flags as not a digit, and fine-tuning on a class set of pen-written digits (time,
              held-out and MNIST accuracy before and after)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from core import models as M
from core import paths, presets
from core.data import load_dataset
from core.trainer import BatchEvent, EndEvent, TrainConfig, Trainer

SECTIONS = ("throughput", "target", "latency", "dashboard", "classroom", "gpu", "pen", "hostile")


# ----------------------------------------------------------------------------- throughput

def seed_loop_samples_per_s(model_cls, batches: int) -> float:
    """The tutorial's training loop, verbatim in its pattern, timed over ``batches`` batches."""
    import torch.nn as nn
    import torch.optim as optim
    from torchvision import datasets, transforms

    load_dataset("mnist")  # makes sure torchvision's raw files exist (from the mirror, offline)
    train_dataset = datasets.MNIST(root=str(paths.home() / "torchvision"), train=True, download=False,
                                   transform=transforms.ToTensor())
    train_loader = torch.utils.data.DataLoader(train_dataset, batch_size=64, shuffle=True)
    model = model_cls()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=0.01)
    running_loss, seen = 0.0, 0
    t0 = time.perf_counter()
    for i, (inputs, labels) in enumerate(train_loader):
        optimizer.zero_grad()
        outputs = model(inputs)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
        seen += len(labels)
        if i + 1 == batches:
            break
    return seen / (time.perf_counter() - t0)


def trainer_samples_per_s(model_cfg, batches: int, dataset) -> float:
    cfg = TrainConfig(model=model_cfg, optimizer="sgd", lr=0.01, momentum=0.0, batch_size=64, epochs=1, seed=0)
    trainer = Trainer(cfg, dataset)
    end = None
    for ev in trainer.run():
        if isinstance(ev, BatchEvent) and ev.step == batches:
            trainer.control.stop()
        elif isinstance(ev, EndEvent):
            end = ev
    return end.samples_per_s


def bench_throughput(quick: bool, dataset) -> dict:
    batches = 60 if quick else 300
    out = {}
    for name, cls, cfg in (("mlp", M.SeedMLP, M.MLPConfig()), ("cnn", M.SeedCNN, M.CNNConfig())):
        seed_runs, ours_runs = [], []
        for _ in range(1 if quick else 3):  # interleaved, so both see the same machine
            seed_runs.append(seed_loop_samples_per_s(cls, batches))
            ours_runs.append(trainer_samples_per_s(cfg, batches, dataset))
        seed, ours = statistics.median(seed_runs), statistics.median(ours_runs)
        out[name] = {"seed_samples_per_s": round(seed), "trainer_samples_per_s": round(ours),
                     "ratio": round(ours / seed, 2)}
    return out


# ----------------------------------------------------------------------------- time to target

def time_to_target(cfg: TrainConfig, dataset) -> dict:
    trainer = Trainer(cfg, dataset)
    end = [ev for ev in trainer.run() if isinstance(ev, EndEvent)][-1]
    return {"reached": end.reason == "target reached", "target": cfg.target_acc, "test_acc": end.test_acc,
            "train_seconds": round(end.train_seconds, 2), "epochs": end.epochs, "device": str(trainer.device)}


def bench_target(quick: bool, dataset) -> dict:
    out = {}
    for name in ("fast-cnn", "fast-mlp"):
        cfg = replace(presets.TRAIN_PRESETS[name], device="cpu")
        if quick:
            cfg = replace(cfg, epochs=1, train_subset=6000)
        out[name] = time_to_target(cfg, dataset)
    return out


# ----------------------------------------------------------------------------- latency

def bench_latency(quick: bool) -> dict:
    import numpy as np

    from core import checkpoint
    from core.drawn import drawn_set
    from core.inference import classify

    model = checkpoint.load(paths.BUNDLED_MODEL).build()
    canvases, labels = drawn_set(per_digit=5 if quick else 30, seed=7)
    rgba = [np.dstack([c, c, c, np.full_like(c, 255)]) for c in canvases]
    classify(model, rgba[0], background="dark")  # warm up
    times, correct = [], 0
    for pixels, label in zip(rgba, labels):
        t0 = time.perf_counter()
        result = classify(model, pixels, background="dark")
        times.append((time.perf_counter() - t0) * 1000)
        correct += result.digit == label
    times.sort()
    return {"drawings": len(times), "p50_ms": round(statistics.median(times), 2),
            "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2), "accuracy": round(correct / len(times), 3),
            "canvas": "280x280 RGBA"}


# ----------------------------------------------------------------------------- dashboard

def chart_work(steps, losses, total, epochs=()) -> None:
    """Build and encode the Train page's charts, as st.plotly_chart does."""
    import plotly.io
    import plotly.tools

    from dashboard import charts

    figs = [charts.loss_figure(steps, losses, total)]
    if epochs:
        figs.append(charts.accuracy_figure([e.epoch for e in epochs], [e.train_acc for e in epochs],
                                           [e.test_acc for e in epochs]))
    for fig in figs:
        plotly.io.to_json(plotly.tools.return_figure_from_figure_or_data(fig, validate_figure=True), validate=False)


def live_panel_work(run) -> None:
    """What the Train page's fragment does once a second: copy the new events, build and encode charts."""
    view = run.view()
    chart_work([b.step for b in view.batches], [b.loss for b in view.batches],
               view.start.total_steps if view.start else None, view.epochs)


DASHBOARD_CFG = TrainConfig(model=M.CNNConfig(), batch_size=128, epochs=1, train_subset=12000, seed=0)


def dashboard_probe(mode: str, quick: bool) -> float:
    """One measurement, in a process of its own: the CLI's trainer in the main thread, or a run started as
    the Train page starts one (core.live: a worker process streaming its events back to this process) with
    the live panel's chart work and heartbeat once a second."""
    cfg = replace(DASHBOARD_CFG, train_subset=3000) if quick else DASHBOARD_CFG
    if mode == "headless":
        from core.jobs import SLOTS

        # the worker's own thread count (cores / training slots), set as the worker sets it: on this shared
        # machine a process that sets 2 threads and one that leaves the default of 2 trained at different speeds
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // SLOTS.size))
        return [e for e in Trainer(cfg, load_dataset("mnist")).run() if isinstance(e, EndEvent)][-1].samples_per_s
    import tempfile

    from core.live import LiveRuns
    from core.runs import RunStore

    chart_work([1], [2.3], 10)  # the server has imported plotly long before anyone presses Start
    with tempfile.TemporaryDirectory() as tmp:
        live = LiveRuns(store=RunStore(Path(tmp)), idle_timeout_s=3600)
        run = live.start("bench", cfg, name="bench")
        while not run.join(timeout=1.0):  # the fragment's refresh interval
            live.watch(run.id)
            live_panel_work(run)
        return run.view().end.samples_per_s


def predict_probe(threads: int, quick: bool) -> list[float]:
    """Milliseconds per 28x28 prediction of the bundled CNN in a page's thread, with ``threads`` intra-op
    threads in the server, while a run trains in its worker process on this machine's cores."""
    import threading

    from core import checkpoint
    from core.live import LiveRuns

    model = checkpoint.load(paths.BUNDLED_MODEL).build()
    live = LiveRuns(idle_timeout_s=3600)
    run = live.start("bench", replace(DASHBOARD_CFG, epochs=50))
    times: list[float] = []

    def page():  # a Streamlit script thread
        torch.set_num_threads(threads)
        x = torch.rand(1, 1, 28, 28)
        with torch.inference_mode():
            model(x)
            for _ in range(50 if quick else 300):
                t0 = time.perf_counter()
                model(x)
                times.append((time.perf_counter() - t0) * 1000)
                time.sleep(0.002)  # pages ask now and then, not in a tight loop

    while not run.view().batches and not run.done:
        run.join(timeout=0.1)
    worker = threading.Thread(target=page)
    worker.start()
    worker.join()
    run.stop()
    run.join()
    return times


def bench_dashboard(quick: bool, dataset) -> dict:
    """Each run in a fresh process, as the CLI and the server each are; the dashboard's run trains in
    its worker process, as in the app, and streams back to the probe's process."""
    import subprocess

    from bench import streaming

    def probe(*args: str) -> str:
        cmd = [sys.executable, "-m", "bench", "--probe", *args] + (["--quick"] if quick else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return out.stdout.strip().splitlines()[-1]

    headless, streamed = [], []
    for i in range(1 if quick else 6):  # ABBA order: drift over the minute favours neither
        for mode in (("headless", "dashboard") if i % 2 == 0 else ("dashboard", "headless")):
            (headless if mode == "headless" else streamed).append(float(probe(mode)))
    h, s = statistics.median(headless), statistics.median(streamed)
    predict = {}
    for threads in (1, 2):
        times = sorted(json.loads(probe("predict", str(threads))))
        predict[f"{threads}_thread{'s' if threads > 1 else ''}"] = {
            "p50_ms": round(statistics.median(times), 2), "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2)}
    return {"headless_samples_per_s": round(h), "dashboard_samples_per_s": round(s), "ratio": round(s / h, 3),
            "runs": len(headless), "predict_while_training": predict,
            "streaming_us_per_event": streaming.per_event_cost(quick),
            "note": "server side: a run from core.live (worker process, events streamed back) + the live panel's "
                    "chart work at 1 Hz; the headless trainer in a process of its own"}


# ----------------------------------------------------------------------------- classroom

def bench_classroom(quick: bool) -> dict:
    """What a teacher waits for: each model download, and the class set scored, exported and imported."""
    import tempfile

    import numpy as np

    from core import checkpoint, export
    from core.classset import ClassSet, score
    from core.drawn import drawn_set

    ckpt = checkpoint.load(paths.BUNDLED_MODEL)
    out = {}
    for name, make in (("checkpoint", checkpoint.to_bytes), ("torchscript", export.torchscript_bytes),
                       ("onnx", export.onnx_bytes)):
        t0 = time.perf_counter()
        data = make(ckpt)  # the first call pays for imports and tracing set-up
        first = time.perf_counter() - t0
        again = []
        for _ in range(2 if quick else 5):
            t0 = time.perf_counter()
            make(ckpt)
            again.append(time.perf_counter() - t0)
        out[f"{name}_first_s"], out[f"{name}_s"] = round(first, 3), round(statistics.median(again), 3)
        out[f"{name}_kb"] = round(len(data) / 1024)
    canvases, labels = drawn_set(per_digit=3 if quick else 30, seed=11)
    with tempfile.TemporaryDirectory() as tmp:
        store = ClassSet(Path(tmp) / "set")
        for c, y in zip(canvases, labels):
            store.add(np.dstack([c, c, c, np.full_like(c, 255)]), int(y), background="dark")
        model = ckpt.build()
        t0 = time.perf_counter()
        result = score(model, store)
        out["classset_drawings"] = len(store)
        out["classset_score_s"] = round(time.perf_counter() - t0, 3)
        out["classset_accuracy"] = round(result.accuracy, 3)
        t0 = time.perf_counter()
        data = store.export_zip()
        out["classset_export_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        report = ClassSet(Path(tmp) / "copy").import_zip(data)
        out["classset_import_s"] = round(time.perf_counter() - t0, 3)
        out["classset_imported"] = report.added
    out.update(scoring_batches(ckpt.build(), quick))
    out.update(listing_runs(ckpt, quick))
    return out


def listing_runs(ckpt, quick: bool) -> dict:
    """A class's runs listed as the Runs and Results pages list them every few seconds for each viewer: each
    run.json opened, resolved and checked (the remembered ones forgotten before each listing), against the
    listing that parses a run.json it has already checked and that has not changed. Milliseconds per listing."""
    import tempfile

    from core import runs
    from core.trainer import EndEvent

    count = 20 if quick else 200
    with tempfile.TemporaryDirectory() as tmp:
        store = runs.RunStore(Path(tmp))
        first = store.save("a run", ckpt, [], [], EndEvent("finished", "", 6, 2812, 60.0, 9000.0, 0.99, 0.03))
        for i in range(1, count):
            folder = Path(tmp) / f"20260101-{i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}-{i:04x}"
            folder.mkdir()
            shutil.copy(first.folder / "run.json", folder / "run.json")
        time.sleep(runs._SETTLED_NS / 1e9)  # a run.json written this moment is read each time, settled ones once
        seconds = {}
        for remembered in (False, True):
            tries = []
            for _ in range(5 if quick else 20):
                if not remembered:
                    runs._CHECKED.clear()
                t0 = time.perf_counter()
                listed = store.list()
                tries.append(time.perf_counter() - t0)
            seconds[remembered] = statistics.median(tries)
    assert len(listed) == count
    return {"runs_listed": count, "runs_list_read_ms": round(seconds[False] * 1000, 2),
            "runs_list_ms": round(seconds[True] * 1000, 2), "runs_list_ratio": round(seconds[False] / seconds[True], 2)}


def scoring_batches(model, quick: bool) -> dict:
    """MNIST's test set scored as every check scores it (``core.data.scoring_batch``) against one batch of
    2,000 at a time, the same model in this process: the seconds and their ratio (the better of two tries)."""
    from core import data
    from core.trainer import evaluate

    mnist = load_dataset("mnist")
    test = mnist.test.subset(2000) if quick else mnist.test
    n = data.scoring_batch(test.images.device)
    seconds = {}
    for batch in (n, 2000):
        tries = []
        for _ in range(2):
            t0 = time.perf_counter()
            evaluate(model, test, mnist.info, batch_size=batch)
            tries.append(time.perf_counter() - t0)
        seconds[batch] = min(tries)
    return {"scoring_images": len(test), "scoring_batch": n, "scoring_s": round(seconds[n], 2),
            "scoring_2000_s": round(seconds[2000], 2), "scoring_ratio": round(seconds[2000] / seconds[n], 2)}


# ----------------------------------------------------------------------------- gpu

def bench_gpu(quick: bool, dataset) -> dict:
    if not torch.cuda.is_available():
        return {"available": False}
    name = torch.cuda.get_device_name(0)
    cfg = replace(presets.TRAIN_PRESETS["gpu-cnn"], device="cuda")
    time_to_target(replace(cfg, epochs=1, target_acc=None, train_subset=10_000), dataset)  # warm-up: CUDA init, kernels
    return {"available": True, "card": name, **time_to_target(cfg, dataset)}


# ----------------------------------------------------------------------------- pen

def bench_pen(quick: bool) -> dict:
    """Real handwriting: pen-written digits, non-digits, and fine-tuning on a class set of pen-written digits."""
    import tempfile

    import numpy as np

    from core import checkpoint, finetune, outlier
    from core import pendigits as P
    from core.classset import ClassSet

    ckpt = checkpoint.load(paths.BUNDLED_MODEL)
    model = ckpt.build()
    report = P.evaluate(model, P.load(writers=P.REPORT_WRITERS[:2]) if quick else None)
    worst, worst_acc = report.worst_condition()
    flags = outlier.flag_rates(model, per_family=5 if quick else 100)
    out = {"set": report.summary()["set"], "drawings": int(report.correct.size), "accuracy": round(report.accuracy, 6),
           "worst_condition": worst, "worst_condition_acc": round(worst_acc, 4),
           "non_digits": flags["non_digits"], "non_digits_flagged": flags["non_digits_flagged"],
           "digits_flagged": flags["digits_flagged"]}
    rng = np.random.default_rng(0)
    samples = P.load(writers=P.REPORT_WRITERS[:5 if quick else 20])
    with tempfile.TemporaryDirectory() as tmp:
        store = ClassSet(Path(tmp) / "set")
        for s in samples:
            store.add(P.random_canvas(s.strokes, rng), s.digit, background="dark")
        try:
            r, kept = finetune.finetune(ckpt, store), True
        except finetune.FinetuneError as err:  # ran, but did not help: reported all the same
            if err.result is None:
                raise
            r, kept = err.result, False
        again = _finetune_seconds(ckpt, store)  # the same model again: its MNIST score is remembered
        out.update({"finetune_kept": kept, "finetune_drawings": len(samples), "finetune_seconds": round(r.seconds, 2),
                    "finetune_again_seconds": round(again, 2),
                    "finetune_held_out": r.held_out, "holdout_before": round(r.holdout_before, 4),
                    "holdout_after": round(r.holdout_after, 4), "mnist_before": round(r.mnist_before, 4),
                    "mnist_after": round(r.mnist_after, 4)})
        steps = 30 if quick else finetune.STEPS
        out["together"] = {"pages": 3, "steps": steps, "turns": finetunes_together(ckpt, store, 3, steps, turns=True),
                           "at_once": finetunes_together(ckpt, store, 3, steps, turns=False)}
    return out


def _finetune_seconds(ckpt, store) -> float:
    from core import finetune

    try:
        return finetune.finetune(ckpt, store).seconds
    except finetune.FinetuneError as err:
        if err.result is None:
            raise
        return err.result.seconds


def finetunes_together(ckpt, store, pages: int, steps: int, turns: bool) -> dict:
    """``pages`` fine-tunes started at the same moment, as a class pressing the button together, each on its own
    thread as Streamlit runs each page: seconds until the first and the last one ended. ``turns``: they take
    turns as the server makes them (core.finetune.turn); otherwise all run at once."""
    import threading

    from core import finetune

    pool = finetune.SlotPool(finetune.TURNS.size if turns else pages)
    go, ended, lock = threading.Event(), [], threading.Lock()

    def page() -> None:
        go.wait()
        with finetune.turn(pool=pool):
            try:
                finetune.finetune(ckpt, store, steps=steps)
            except finetune.FinetuneError:  # ran, but did not help: it took its time all the same
                pass
        with lock:
            ended.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=page) for _ in range(pages)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    return {"slots": pool.size, "first_s": round(min(ended), 1), "last_s": round(max(ended), 1)}


# ----------------------------------------------------------------------------- hostile

def bench_hostile(quick: bool) -> dict:
    """Hostile inputs: the slowest images to preprocess and the costliest checkpoints to load."""
    from bench import hostile, hostile_images

    images = hostile_images.time_worst_cases(repeats=1 if quick else 3)
    names = ["bytearray_3gb_in_name", "deep_list_in_metrics", "nested_dicts_20mb"] if quick else None
    rows = hostile.measure(names)
    worst = max(rows, key=lambda r: r["peak_mb"])
    return {"images": images,
            "worst_preprocess_ms": max(v["preprocess_ms"] for v in images.values()),
            "worst_classify_ms": max(v["classify_ms"] for v in images.values()),
            "checkpoints": rows, "checkpoint_worst_peak_mb": worst["peak_mb"], "checkpoint_worst_name": worst["name"],
            "checkpoint_worst_seconds": max(r["seconds"] for r in rows),
            "hostile_loaded": [r["name"] for r in rows if r["outcome"] == "loaded"]}


# ----------------------------------------------------------------------------- report

def say(text: str) -> None:
    print(text, flush=True)


def show_throughput(r: dict) -> None:
    say("\nTraining throughput, batch 64 (samples/s; goal: CNN >= 2.5x, MLP >= 6x)")
    say(f"{'model':8}{'seed loop':>12}{'trainer':>12}{'ratio':>9}")
    for k, v in r.items():
        say(f"{k:8}{v['seed_samples_per_s']:>12,}{v['trainer_samples_per_s']:>12,}{v['ratio']:>8.2f}x")


def show_target(r: dict) -> None:
    say("\nTime to target test accuracy (goal: CNN 99.0% <= 8 s, MLP 97.5% <= 4 s)")
    for k, v in r.items():
        status = "reached" if v["reached"] else "NOT reached"
        say(f"{k:10} {status:12} {v['test_acc']:.2%} after {v['epochs']} epochs, {v['train_seconds']:.1f} s")


def show_latency(r: dict) -> None:
    say(f"\nCanvas -> probabilities, bundled CNN, {r['drawings']} drawings on a {r['canvas']} canvas "
        f"(goal p95 <= 15 ms)\np50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, accuracy {r['accuracy']:.1%}")


def show_dashboard(r: dict) -> None:
    say(f"\nDashboard streaming vs headless (goal >= 95%)\nheadless {r['headless_samples_per_s']:,} samples/s, "
        f"dashboard {r['dashboard_samples_per_s']:,} samples/s: {r['ratio']:.1%}  ({r['note']})")
    say("one 28x28 prediction in the server while a run trains: " + ", ".join(
        f"{k.replace('_', ' ')} p50 {v['p50_ms']} ms, p95 {v['p95_ms']} ms"
        for k, v in r["predict_while_training"].items()))
    say("a worker's cost per batch event sent to the server: " + "; ".join(
        f"{k} {v} us" for k, v in r["streaming_us_per_event"].items()))


def show_classroom(r: dict) -> None:
    say("\nClassroom: model downloads (bundled CNN; first call, then the median of later calls)")
    for k in ("checkpoint", "torchscript", "onnx"):
        checked = "" if k == "checkpoint" else ", loaded back and checked against the model"
        say(f"{k:12} {r[k + '_first_s']:.3f} s first, {r[k + '_s']:.3f} s after, {r[k + '_kb']} kB{checked}")
    say(f"class set of {r['classset_drawings']} drawings: scored in {r['classset_score_s']:.2f} s "
        f"({r['classset_accuracy']:.1%}), exported in {r['classset_export_s']:.2f} s, imported in "
        f"{r['classset_import_s']:.2f} s ({r['classset_imported']} added)")
    say(f"MNIST's test set ({r['scoring_images']:,} images) scored in batches of {r['scoring_batch']:,}: "
        f"{r['scoring_s']:.2f} s, against {r['scoring_2000_s']:.2f} s in batches of 2,000 "
        f"({r['scoring_ratio']:.2f}x)")
    say(f"{r['runs_listed']} runs listed: {r['runs_list_ms']:.1f} ms with unchanged run.json files remembered, "
        f"against {r['runs_list_read_ms']:.1f} ms reading each ({r['runs_list_ratio']:.2f}x)")


def show_gpu(r: dict) -> None:
    if r["available"]:
        say(f"\nGPU time to 99% (goal <= 0.5 s on one H100): {r['card']}: {r['train_seconds']:.2f} s, "
            f"{r['test_acc']:.2%} after {r['epochs']} epochs")
    else:
        say("\nGPU: no CUDA device here; the GPU path is tested on the CPU (data and model on one device)")


def show_pen(r: dict) -> None:
    say(f"\nPen-written digits, bundled model (goal >= 99 %, every brush and size >= 98 %): {r['set']}, "
        f"{r['drawings']:,} drawings\naccuracy {r['accuracy']:.2%}; worst: {r['worst_condition']} "
        f"{r['worst_condition_acc']:.2%}")
    say(f"not a digit (goal: >= 90 % of non-digits, <= 1 % of digits): {r['non_digits_flagged']:.1%} of "
        f"{r['non_digits']} non-digits flagged, {r['digits_flagged']:.2%} of the pen-written digits")
    say(f"fine-tuning on {r['finetune_drawings']} pen-written drawings ({'kept' if r['finetune_kept'] else 'not kept'})"
        f": {r['finetune_seconds']:.1f} s ({r['finetune_again_seconds']:.1f} s again, its MNIST score remembered); "
        f"held-out "
        f"({r['finetune_held_out']}) {r['holdout_before']:.1%} -> {r['holdout_after']:.1%}, MNIST "
        f"{r['mnist_before']:.2%} -> {r['mnist_after']:.2%}")
    t = r["together"]
    say(f"{t['pages']} pages pressing Fine-tune together ({t['steps']} steps each): taking turns "
        f"({t['turns']['slots']} at a time), the first ends after {t['turns']['first_s']:.1f} s and the last after "
        f"{t['turns']['last_s']:.1f} s; all at once, {t['at_once']['first_s']:.1f} s and {t['at_once']['last_s']:.1f} s")


def show_hostile(r: dict) -> None:
    say("\nHostile images: fastest of 3, ms (goal: any accepted image answers in <= 100 ms)")
    for name, v in r["images"].items():
        say(f"{name:36} preprocess {v['preprocess_ms']:7.1f}   full answer {v['classify_ms']:7.1f}")
    say(f"Hostile checkpoints ({len(r['checkpoints'])} files, each loaded in a fresh memory-capped process): "
        f"worst peak {r['checkpoint_worst_peak_mb']:.1f} MB above the baseline ({r['checkpoint_worst_name']}), "
        f"slowest {r['checkpoint_worst_seconds']:.2f} s; loaded: {', '.join(r['hostile_loaded']) or 'none'}")


def sections(quick: bool, dataset) -> list[tuple[str, Callable[[], dict], Callable[[dict], None]]]:
    """Each section in the order it runs: its name, what measures it, what prints its figures."""
    return [
        ("throughput", lambda: bench_throughput(quick, dataset), show_throughput),
        ("target", lambda: bench_target(quick, dataset), show_target),
        ("latency", lambda: bench_latency(quick), show_latency),
        ("dashboard", lambda: bench_dashboard(quick, dataset), show_dashboard),
        ("classroom", lambda: bench_classroom(quick), show_classroom),
        ("gpu", lambda: bench_gpu(quick, dataset), show_gpu),
        ("pen", lambda: bench_pen(quick), show_pen),
        ("hostile", lambda: bench_hostile(quick), show_hostile),
    ]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="last line: all figures as one JSON object")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that the benchmark runs, not speed")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--probe", nargs="+", help=argparse.SUPPRESS)  # headless | dashboard | predict THREADS
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.probe:  # one dashboard-section measurement, run by bench_dashboard in a fresh process
        if args.probe[0] == "predict":
            print(json.dumps(predict_probe(int(args.probe[1]), args.quick)))
        else:
            print(dashboard_probe(args.probe[0], args.quick))
        return 0

    dataset = load_dataset("mnist")
    results: dict = {"machine": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                                 "cuda": torch.cuda.is_available()}}
    for name, measure, show in sections(args.quick, dataset):
        if name in args.only:
            results[name] = measure()
            show(results[name])
    if args.json:
        print(json.dumps(results))
    return 0

if __name__ == "__main__":
    sys.exit(main())
