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
    if isinstance(value, bool) or not any(value == c for c in choices):
        offered = ", ".join(f"{c:g}" if isinstance(c, float) else str(c) for c in choices)
        raise LessonError(f"{name} = {value!r} is not offered; choose one of {offered}")


def _flag(s: dict, name: str) -> bool:
    value = s.get(name, False)
    if not isinstance(value, bool):
        raise LessonError(f"{name} = {value!r} must be true or false (without quotes)")
    return value


def _whole(s: dict, name: str, default: int, lo: int, hi: int) -> int:
    value = s.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise LessonError(f"{name} = {value!r} must be a whole number from {lo:,} to {hi:,}")
    return value


def _number(s: dict, name: str, default: float, lo: float, hi: float, step: float | None = None) -> float:
    value = s.get(name, default)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and lo <= value <= hi
    if ok and step is not None:
        ok = math.isclose(value / step, round(value / step), abs_tol=1e-6)
    if not ok:
        steps = f" in steps of {step:g}" if step else ""
        raise LessonError(f"{name} = {value!r} must be a number from {lo:g} to {hi:g}{steps}")
    return round(float(value), 6)


def _word(s: dict, name: str, default: str, choices) -> str:
    value = s.get(name, default)
    if value not in choices:
        raise LessonError(f"{name} = {value!r}: choose one of {', '.join(repr(c) for c in choices)}")
    return value


def _widths(s: dict, name: str, default: tuple, choices, counts: range, what: str) -> tuple[int, ...]:
    value = s.get(name, list(default))
    if not isinstance(value, list) or len(value) not in counts:
        raise LessonError(f"{name} = {value!r} must be a list of {counts.start} to {counts.stop - 1} {what}, "
                          f"e.g. {list(default)}")
    for v in value:
        _one_of(f"a width in {name}", v, choices)
    return tuple(value)


def config_from_settings(settings: dict) -> TrainConfig:
    """A lesson run's settings -> the ``TrainConfig`` the Train page would build from them.

    Every value must be one the page's widgets can show, of the type they take, so that a lesson
    never puts a widget into a state it cannot display.
    """
    if not isinstance(settings, dict):
        raise LessonError("settings must be a table, e.g. settings = { model = \"mlp\", lr = 0.01 }")
    unknown = set(settings) - SETTINGS
    if unknown:
        raise LessonError(f"unknown setting(s) {', '.join(sorted(unknown))}; the settings are {', '.join(sorted(SETTINGS))}")
    s = settings
    kind = _word(s, "model", "cnn", ("cnn", "mlp"))
    dropout = _number(s, "dropout", 0.0, 0.0, MAX_DROPOUT, 0.05)
    batch_norm = _flag(s, "batch_norm")
    if kind == "mlp":
        if "channels" in s or "fc" in s:
            raise LessonError("channels and fc are CNN settings; this run's model is the MLP")
        hidden = _widths(s, "hidden", MLPConfig().hidden, WIDTHS, range(1, MAX_HIDDEN_LAYERS + 1), "widths")
        model = MLPConfig(hidden=hidden, dropout=dropout, batch_norm=batch_norm)
    else:
        if "hidden" in s:
            raise LessonError("hidden is an MLP setting; this run's model is the CNN")
        channels = _widths(s, "channels", CNNConfig().channels, CHANNELS, range(2, 3), "channel counts")
        if "fc" in s or channels != CNNConfig().channels or dropout or batch_norm:
            fc = s.get("fc", CUSTOM_CNN_FC)  # the page's layer sliders: its fc slider starts at 128
            _one_of("fc", fc, WIDTHS)
            model = CNNConfig(channels=channels, fc=(fc, CNN_SECOND_FC) if fc >= CNN_SECOND_FC else (fc,),
                              dropout=dropout, batch_norm=batch_norm)
        else:
            model = CNNConfig()
    optimizer = _word(s, "optimizer", "adam", ("sgd", "adam", "adamw", "rmsprop"))
    if optimizer not in ("sgd", "rmsprop") and "momentum" in s:
        raise LessonError(f"momentum applies to SGD and RMSprop, not {optimizer}")
    momentum = _number(s, "momentum", 0.0 if optimizer == "rmsprop" else 0.9, 0.0, 0.99, 0.01)
    for name, choices, default in (("lr", LEARNING_RATES, 1e-3), ("batch_size", BATCH_SIZES, 64),
                                   ("weight_decay", WEIGHT_DECAYS, 0.0)):
        _one_of(name, s.get(name, default), choices)
    subset = _whole(s, "train_subset", 0, 0, 60_000)
    target = _number(s, "target", 0.0, 0.0, 100.0)
    try:
        cfg = TrainConfig(dataset=_word(s, "dataset", "mnist", ("mnist", "fashion-mnist")), model=model,
                          optimizer=optimizer, lr=float(s.get("lr", 1e-3)), momentum=momentum,
                          nesterov=_flag(s, "nesterov"), weight_decay=float(s.get("weight_decay", 0.0)),
                          batch_size=int(s.get("batch_size", 64)), epochs=_whole(s, "epochs", 3, 1, MAX_EPOCHS),
                          schedule=_word(s, "schedule", "constant", ("constant", "onecycle", "cosine")),
                          augment=_flag(s, "augment"), seed=_whole(s, "seed", 0, 0, 2**31 - 1),
                          train_subset=subset or None, target_acc=round(target / 100, 6) or None)
        cfg.validate(cfg.train_subset or 60_000)
    except ValueError as err:
        raise LessonError(str(err)) from None
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
        except (TypeError, ValueError, AttributeError) as err:  # e.g. a lesson that is not a table
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
