import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import checkpoint, drawn

ROOT = Path(__file__).resolve().parent.parent


def run(*args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, **kw)


def test_train_cli_prints_json_metrics_last_and_saves_a_checkpoint(tmp_path, mirror_root):
    out = run("core", "train", "--model", "seed-mlp", "--subset", "3000", "--epochs", "2", "--batch-size", "100",
              "--optimizer", "sgd", "--lr", "0.1", "--schedule", "cosine", "--save", str(tmp_path / "m.pt"), "--json")
    assert out.returncode == 0, out.stderr
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"test_acc", "train_seconds", "epochs", "samples_per_second"} <= set(metrics)
    assert metrics["epochs"] == 2 and metrics["test_acc"] > 0.8 and 0 <= metrics["pen_acc"] <= 1
    assert "epoch 2: train loss" in out.stderr
    ckpt = checkpoint.load(tmp_path / "m.pt")
    assert ckpt.metrics["test_acc"] == metrics["test_acc"]
    assert ckpt.train_config["optimizer"] == "sgd" and ckpt.train_config["schedule"] == "cosine"


@pytest.mark.parametrize("args, message", [
    (["--lr", "1e9"], "learning rate"),
    (["--epochs", "0"], "at least one epoch"),
    (["--batch-size", "5000", "--subset", "100"], "larger than the 100 training samples"),
    (["--model", "seed-mlp", "--channels", "8,16"], "does not apply to a MLP"),
])
def test_train_cli_rejects_bad_settings_with_a_message(args, message, mirror_root):
    out = run("core", "train", *args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_train_cli_without_data_says_what_to_do(tmp_path):
    env_mirror = str(tmp_path / "missing")
    out = subprocess.run([sys.executable, "-m", "core", "train", "--epochs", "1"], cwd=ROOT, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "DIGITLAB_MIRROR": env_mirror,
                                         "DIGITLAB_HOME": str(tmp_path / "home")}, timeout=120)
    assert out.returncode == 2 and "DIGITLAB_MIRROR" in out.stderr and "Traceback" not in out.stderr


def test_predict_cli_reads_drawn_digits_in_any_colours(tmp_path):
    rng = np.random.default_rng(7)
    paths, expected = [], []
    for digit in (0, 3, 7):
        ink = drawn.render(drawn.place(drawn.TEMPLATES[digit][0], drawn.random_style(rng), 280), 280, 18)
        black_on_white = tmp_path / f"d{digit}.png"
        Image.fromarray(255 - ink).save(black_on_white)
        photo = tmp_path / f"d{digit}.jpg"
        Image.fromarray(ink).convert("RGB").save(photo, quality=85)
        paths += [black_on_white, photo]
        expected += [digit, digit]
    blank = tmp_path / "blank.png"
    Image.new("RGBA", (200, 200), (0, 0, 0, 0)).save(blank)
    out = run("core", "predict", *map(str, paths), str(blank))
    assert out.returncode == 0, out.stderr
    lines = [line.split("\t") for line in out.stdout.strip().splitlines()]
    assert len(lines) == len(paths) + 1
    for (path, digit, confidence), p, want in zip(lines, paths, expected):
        assert path == str(p) and digit == str(want) and 0.5 < float(confidence) <= 1.0
    assert lines[-1] == [str(blank), "-", "nothing drawn"]


def test_predict_cli_reports_unreadable_files_and_bad_checkpoints(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not a png")
    out = run("core", "predict", str(junk))
    assert out.returncode == 1 and out.stdout.startswith(f"{junk}\t-\terror: ")
    out = run("core", "predict", "--checkpoint", str(junk), str(junk))
    assert out.returncode == 2 and "not a readable PyTorch file" in out.stderr


def test_the_bundled_model_is_the_canvas_cnn_and_the_tutorials_cnn_stays_a_preset():
    from core import canvasmodel, models, presets

    path = ROOT / "core" / "assets" / "default-cnn.pt"
    ckpt = checkpoint.load(path)
    assert ckpt.name == "Canvas CNN" and ckpt.dataset == "mnist" and ckpt.train_config["recipe"] == "core.canvasmodel"
    assert ckpt.metrics["test_acc"] >= 0.99 and ckpt.metrics["pen_acc"] >= 0.98 and path.stat().st_size < 3 * 2**20
    assert isinstance(ckpt.model_config, models.EnsembleConfig) and ckpt.model_config.count == ckpt.train_config["members"] == 3
    assert ckpt.model_config.tilts == tuple(ckpt.train_config["tilts"]) == canvasmodel.TILTS  # what the recipe says
    assert drawn.drawn_accuracy(ckpt.build(), per_digit=20, seed=99) >= 0.9  # the synthetic stroke set too
    assert models.is_seed(presets.TRAIN_PRESETS["default-cnn"].model) and "seed-cnn" in models.REGISTRY


def test_the_benchmark_runs_and_prints_its_figures_as_json(mirror_root):
    out = run("bench", "--quick", "--only", "throughput", "latency", "dashboard", "classroom", "--json")
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["throughput"]["cnn"]["ratio"] > 0 and figures["throughput"]["mlp"]["seed_samples_per_s"] > 0
    assert figures["latency"]["p95_ms"] >= figures["latency"]["p50_ms"] > 0
    assert 0 < figures["dashboard"]["ratio"]
    room = figures["classroom"]
    assert room["onnx_kb"] > 0 and room["classset_imported"] == room["classset_drawings"] == 30
    assert room["scoring_images"] == 2000 and room["scoring_batch"] == 128 and room["scoring_ratio"] > 0
    assert room["runs_listed"] == 20 and room["runs_list_ms"] > 0 and room["runs_list_ratio"] > 0
    assert "Training throughput, batch 64" in out.stdout


def test_python_m_core_lists_every_command_and_refuses_an_unknown_one():
    from core.cli import COMMANDS

    for listing in (run("core"), run("core", "--help")):
        assert listing.returncode == 0, listing.stderr
        lines = listing.stdout.splitlines()
        for name in ("train", "predict", "classset", "lessons", "pendigits", "outlier", "finetune", "canvasmodel"):
            assert name in COMMANDS and sum(line.split()[:1] == [name] for line in lines) == 1, name
    out = run("core", "trian", "--epochs", "1")
    assert out.returncode == 2 and "no command 'trian'" in out.stderr and "Traceback" not in out.stderr
    assert "train" in out.stderr and not out.stdout


@pytest.mark.parametrize("name", ["train", "predict", "classset", "lessons", "pendigits", "outlier", "finetune",
                                  "canvasmodel"])
def test_each_command_has_its_module_and_help(name):
    import importlib

    assert callable(importlib.import_module(f"core.cli.{name}").main)
    out = run("core", name, "--help")
    assert out.returncode == 0 and out.stdout.startswith(f"usage: python -m core {name}")
