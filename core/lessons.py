"""Lessons: ready-made runs a teacher starts with one click, read from one TOML file.

The file (``core/lessons.toml``, or the one ``DIGITLAB_LESSONS`` names) lists lessons; each has a
title, what to watch for, and one or more runs whose settings become a ``TrainConfig``. The
values a setting may take are the ones the Train page offers, so every lesson can be shown,
changed and shared from that page; a typo in the file is reported with the lesson it is in.
"""

from __future__ import annotations

import math
import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from core.models import CNNConfig, MLPConfig
from core.trainer import TrainConfig

LESSONS_FILE = Path(__file__).resolve().parent / "lessons.toml"

# The choices the Train page offers (log-spaced where the effect is multiplicative).
LEARNING_RATES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0)
BATCH_SIZES = (8, 16, 32, 64, 128, 256, 512, 1024)
WEIGHT_DECAYS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
WIDTHS = (16, 32, 64, 128, 256, 512, 1024)
CHANNELS = (2, 4, 6, 8, 16, 32, 64)
MAX_EPOCHS = 30
MAX_HIDDEN_LAYERS = 3
MAX_DROPOUT = 0.7
CNN_SECOND_FC = 84  # the seed's head is 120-84; a first width of at least 84 keeps the 84
CUSTOM_CNN_FC = 128

SETTINGS = {"dataset", "model", "hidden", "channels", "fc", "dropout", "batch_norm", "optimizer", "lr", "momentum",
            "nesterov", "weight_decay", "batch_size", "epochs", "schedule", "augment", "seed", "train_subset", "target"}


class LessonError(ValueError):
    """The lessons file has a mistake; the message names the lesson and the setting."""


@dataclass(frozen=True)
class LessonRun:
    label: str
    config: TrainConfig


@dataclass(frozen=True)
class Lesson:
    id: str
    title: str
    watch: str  # Markdown
    runs: tuple[LessonRun, ...]


def lessons_file() -> Path:
    return Path(os.environ.get("DIGITLAB_LESSONS") or LESSONS_FILE).expanduser()


def _one_of(name: str, value, choices) -> None:
    if not any(value == c for c in choices) or isinstance(value, bool):
        raise LessonError(f"{name} = {value!r} is not offered; choose one of {', '.join(f'{c:g}' if isinstance(c, float) else str(c) for c in choices)}")


def config_from_settings(settings: dict) -> TrainConfig:
    """A lesson run's settings -> the ``TrainConfig`` the Train page would build from them."""
    unknown = set(settings) - SETTINGS
    if unknown:
        raise LessonError(f"unknown setting(s) {', '.join(sorted(unknown))}; the settings are {', '.join(sorted(SETTINGS))}")
    s = dict(settings)
    kind = s.pop("model", "cnn")
    dropout = float(s.pop("dropout", 0.0))
    if not 0 <= dropout <= MAX_DROPOUT or not math.isclose(dropout * 20, round(dropout * 20)):
        raise LessonError(f"dropout = {dropout} must be between 0 and {MAX_DROPOUT} in steps of 0.05")
    batch_norm = s.pop("batch_norm", False)
    if kind == "mlp":
        hidden = tuple(s.pop("hidden", MLPConfig().hidden))
        if not 1 <= len(hidden) <= MAX_HIDDEN_LAYERS:
            raise LessonError(f"hidden = {list(hidden)} must list 1 to {MAX_HIDDEN_LAYERS} widths")
        for w in hidden:
            _one_of("a hidden width", w, WIDTHS)
        if "channels" in s or "fc" in s:
            raise LessonError("channels and fc are CNN settings; this run's model is the MLP")
        model = MLPConfig(hidden=hidden, dropout=round(dropout, 2), batch_norm=bool(batch_norm))
    elif kind == "cnn":
        channels = tuple(s.pop("channels", CNNConfig().channels))
        if len(channels) != 2:
            raise LessonError(f"channels = {list(channels)} must list two numbers")
        for c in channels:
            _one_of("a channel count", c, CHANNELS)
        if "hidden" in s:
            raise LessonError("hidden is an MLP setting; this run's model is the CNN")
        customised = "fc" in s or channels != CNNConfig().channels or dropout or batch_norm
        if customised:  # the page's layer sliders: its fc slider starts at 128 (the seed's 120 is not offered)
            fc = s.pop("fc", CUSTOM_CNN_FC)
            _one_of("fc", fc, WIDTHS)
            model = CNNConfig(channels=channels, fc=(fc, CNN_SECOND_FC) if fc >= CNN_SECOND_FC else (fc,),
                              dropout=round(dropout, 2), batch_norm=bool(batch_norm))
        else:
            model = CNNConfig()
    else:
        raise LessonError(f"model = {kind!r}: choose \"cnn\" or \"mlp\"")
    optimizer = s.get("optimizer", "adam")
    lr = s.get("lr", 1e-3)
    _one_of("lr", lr, LEARNING_RATES)
    _one_of("batch_size", s.get("batch_size", 64), BATCH_SIZES)
    _one_of("weight_decay", s.get("weight_decay", 0.0), WEIGHT_DECAYS)
    epochs = s.get("epochs", 3)
    if not isinstance(epochs, int) or not 1 <= epochs <= MAX_EPOCHS:
        raise LessonError(f"epochs = {epochs!r} must be a whole number from 1 to {MAX_EPOCHS}")
    momentum = s.get("momentum", 0.0 if optimizer == "rmsprop" else 0.9)
    if optimizer not in ("sgd", "rmsprop") and "momentum" in s:
        raise LessonError(f"momentum applies to SGD and RMSprop, not {optimizer}")
    subset = s.get("train_subset", 0)
    target = s.get("target", 0)
    try:
        cfg = TrainConfig(dataset=s.get("dataset", "mnist"), model=model, optimizer=optimizer, lr=float(lr),
                          momentum=float(momentum), nesterov=bool(s.get("nesterov", False)),
                          weight_decay=float(s.get("weight_decay", 0.0)), batch_size=int(s.get("batch_size", 64)),
                          epochs=epochs, schedule=s.get("schedule", "constant"), augment=bool(s.get("augment", False)),
                          seed=int(s.get("seed", 0)), train_subset=int(subset) or None,
                          target_acc=(float(target) / 100) or None)
        cfg.validate(cfg.train_subset or 60_000)
    except (TypeError, ValueError) as err:
        raise LessonError(str(err)) from None
    if cfg.dataset not in ("mnist", "fashion-mnist"):
        raise LessonError(f"dataset = {cfg.dataset!r}: choose \"mnist\" or \"fashion-mnist\"")
    return cfg


def load_lessons(path: str | Path | None = None) -> list[Lesson]:
    path = Path(path) if path is not None else lessons_file()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise LessonError(f"cannot read the lessons file {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise LessonError(f"the lessons file {path} is not valid TOML: {err}") from None
    lessons, seen = [], set()
    for i, raw in enumerate(data.get("lesson", []), 1):
        where = f"{path.name}, lesson {i}"
        try:
            lid, title = str(raw["id"]), str(raw["title"])
            where = f"{path.name}, lesson {lid!r}"
            if lid in seen:
                raise LessonError("this id is used twice")
            seen.add(lid)
            runs = []
            for run in raw.get("run", []):
                label = str(run["label"])
                try:
                    runs.append(LessonRun(label, config_from_settings(run.get("settings", {}))))
                except LessonError as err:
                    raise LessonError(f"run {label!r}: {err}") from None
            if not runs:
                raise LessonError("a lesson needs at least one [[lesson.run]]")
            lessons.append(Lesson(lid, title, str(raw.get("watch", "")).strip(), tuple(runs)))
        except KeyError as err:
            raise LessonError(f"{where}: missing {err.args[0]!r}") from None
        except LessonError as err:
            raise LessonError(f"{where}: {err}") from None
    if not lessons:
        raise LessonError(f"the lessons file {path} has no [[lesson]]")
    return lessons


def main(argv: list[str] | None = None) -> int:
    """``python -m core.lessons [--run [ID ...]]``: check the lessons file; run lessons headless and time them."""
    import argparse
    import time

    from core.data import load_dataset
    from core.trainer import EndEvent, EpochEvent, Trainer

    p = argparse.ArgumentParser(prog="python -m core.lessons", description=main.__doc__)
    p.add_argument("--file", help=f"default: $DIGITLAB_LESSONS or {LESSONS_FILE}")
    p.add_argument("--run", nargs="*", metavar="ID", help="train every run of these lessons (all when none given)")
    args = p.parse_args(argv)
    try:
        lessons = load_lessons(args.file)
    except LessonError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.run is None:
        for lesson in lessons:
            print(f"{lesson.id}\t{lesson.title}\t" + " | ".join(r.label for r in lesson.runs))
        print(f"{len(lessons)} lessons, all valid", file=sys.stderr)
        return 0
    unknown = set(args.run) - {lesson.id for lesson in lessons}
    if unknown:
        print(f"error: no lesson {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    for lesson in lessons:
        if args.run and lesson.id not in args.run:
            continue
        for run in lesson.runs:
            start = time.perf_counter()
            trainer = Trainer(run.config, load_dataset(run.config.dataset))
            last_epoch = end = None
            for ev in trainer.run():
                if isinstance(ev, EpochEvent):
                    last_epoch = ev
                elif isinstance(ev, EndEvent):
                    end = ev
            train = f"train {last_epoch.train_acc:.2%}" if last_epoch else "train -"
            test = f"test {end.test_acc:.2%}" if end.test_acc is not None else "test -"
            print(f"{lesson.id}\t{run.label}\t{end.reason}\t{train}\t{test}\t{time.perf_counter() - start:.1f} s",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
