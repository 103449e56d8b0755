"""Lessons: ready-made runs a teacher starts with one click, read from one TOML file.

The file (``core/lessons.toml``, or the one ``DIGITLAB_LESSONS`` names) lists lessons; each has a
title, what to watch for, and one or more runs whose settings become a ``TrainConfig``. The
values a setting may take are the ones the Train page offers, so every lesson can be shown,
changed and shared from that page; a typo in the file is reported with the lesson it is in.
"""

from __future__ import annotations

import math
import os
import reprlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

from core.files import FileRefused, read_regular, shown
from core.models import CNNConfig, MLPConfig
from core.trainer import (BATCH_SIZES, CHANNELS, CNN_SECOND_FC, CUSTOM_CNN_FC, LEARNING_RATES, MAX_DROPOUT,
                          MAX_HIDDEN_LAYERS, PAGE_MAX_EPOCHS, WEIGHT_DECAYS, WIDTHS, TrainConfig)
from core.values import is_finite, is_number

LESSONS_FILE = Path(__file__).resolve().parent / "lessons.toml"
MAX_FILE_BYTES = 1024 * 1024  # the bundled file is about 10 KB
MAX_TEXT = 4000  # characters in a title, a label or a "watch" text

# The choices the Train page offers, defined with the config (core.trainer) and named here for the page.
MAX_EPOCHS = PAGE_MAX_EPOCHS

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


_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxlist, _repr.maxdict, _repr.maxstring, _repr.maxother = 2, 4, 4, 40, 40


def _show(value) -> str:
    """A value from the file for a message: short, one level or two deep, however deep it is nested."""
    return _repr.repr(value)


def _one_of(name: str, value, choices) -> None:
    whole = all(isinstance(c, int) for c in choices)  # a width of 128.0 is not a width: layers take ints
    if not is_number(value) or (whole and not isinstance(value, int)) or not any(value == c for c in choices):
        offered = ", ".join(f"{c:g}" if isinstance(c, float) else str(c) for c in choices)
        hint = " (a whole number, written without a decimal point)" if whole and isinstance(value, float) else ""
        raise LessonError(f"{name} = {_show(value)} is not offered; choose one of {offered}{hint}")


def _flag(s: dict, name: str) -> bool:
    value = s.get(name, False)
    if not isinstance(value, bool):
        raise LessonError(f"{name} = {_show(value)} must be true or false (without quotes)")
    return value


def _whole(s: dict, name: str, default: int, lo: int, hi: int) -> int:
    value = s.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise LessonError(f"{name} = {_show(value)} must be a whole number from {lo:,} to {hi:,}")
    return value


def _number(s: dict, name: str, default: float, lo: float, hi: float, step: float | None = None) -> float:
    value = s.get(name, default)
    ok = is_finite(value) and lo <= value <= hi
    if ok and step is not None:
        ok = math.isclose(value / step, round(value / step), abs_tol=1e-6)
    if not ok:
        steps = f" in steps of {step:g}" if step else ""
        raise LessonError(f"{name} = {_show(value)} must be a number from {lo:g} to {hi:g}{steps}")
    return round(float(value), 6)


def _word(s: dict, name: str, default: str, choices) -> str:
    value = s.get(name, default)
    if not isinstance(value, str) or value not in choices:
        raise LessonError(f"{name} = {_show(value)}: choose one of {', '.join(repr(c) for c in choices)}")
    return value


def _widths(s: dict, name: str, default: tuple, choices, counts: range, what: str) -> tuple[int, ...]:
    value = s.get(name, list(default))
    if not isinstance(value, list) or len(value) not in counts:
        raise LessonError(f"{name} = {_show(value)} must be a list of {counts.start} to {counts.stop - 1} {what}, "
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
        raise LessonError(f"unknown setting(s) {shown(', '.join(sorted(unknown)), 100)}; "
                          f"the settings are {', '.join(sorted(SETTINGS))}")
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


def _text(raw: dict, key: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise LessonError(f"{key} = {_show(value)} must be text in quotes")
    if len(value) > MAX_TEXT:
        raise LessonError(f"{key} is {len(value):,} characters long; at most {MAX_TEXT:,}")
    return value


def _tables(value, name: str, example: str) -> list[dict]:
    """An array of tables (``[[name]]``); anything else is a mistake worth naming."""
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise LessonError(f"{name} = {_show(value)} must be written as [[{name}]] tables, e.g. {example}")
    return value


def _lesson(raw: dict, file: str, number: int) -> tuple[str, Lesson]:
    """The ``number``-th [[lesson]] table -> (where it is, for messages; the lesson)."""
    where = f"{file}, lesson {number}"
    for key in ("id", "title"):
        if key not in raw:
            raise LessonError(f"{where}: missing {key!r}")
    try:
        lid = _text(raw, "id")
    except LessonError as err:
        raise LessonError(f"{where}: {err}") from None
    where = f"{file}, lesson {_show(lid)}"
    try:
        title, watch = _text(raw, "title"), _text(raw, "watch", "")
        runs = []
        for j, run in enumerate(_tables(raw.get("run", []), "lesson.run", '[[lesson.run]] label = "…"'), 1):
            if "label" not in run:
                raise LessonError(f"run {j}: missing 'label'")
            try:
                label = _text(run, "label")
            except LessonError as err:
                raise LessonError(f"run {j}: {err}") from None
            try:
                runs.append(LessonRun(label, config_from_settings(run.get("settings", {}))))
            except LessonError as err:
                raise LessonError(f"run {_show(label)}: {err}") from None
        if not runs:
            raise LessonError("a lesson needs at least one [[lesson.run]]")
    except LessonError as err:
        raise LessonError(f"{where}: {err}") from None
    return where, Lesson(lid, title, watch.strip(), tuple(runs))


def load_lessons(path: str | Path | None = None) -> list[Lesson]:
    """Every lesson of the file; LessonError naming the lesson, the run and the mistake otherwise."""
    path = Path(path) if path is not None else lessons_file()
    try:
        text = read_regular(path, MAX_FILE_BYTES, "the lessons file").decode("utf-8")
    except FileRefused as err:
        raise LessonError(str(err)) from None
    except UnicodeDecodeError as err:
        line = err.object.count(b"\n", 0, err.start) + 1
        raise LessonError(f"the lessons file {path} is not UTF-8 text (line {line}): save it as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise LessonError(f"the lessons file {path} is not valid TOML: {err}") from None
    except RecursionError:
        raise LessonError(f"the lessons file {path} nests arrays or tables too deeply to be lessons") from None
    lessons, seen = [], set()
    try:
        raw_lessons = _tables(data.get("lesson", []), "lesson", '[[lesson]] id = "…"')
    except LessonError as err:
        raise LessonError(f"{path.name}: {err}") from None
    for i, raw in enumerate(raw_lessons, 1):
        try:
            where, lesson = _lesson(raw, path.name, i)
        except LessonError:
            raise
        except RecursionError:  # a value nested deeper than any message can show
            raise LessonError(f"{path.name}, lesson {i}: a value is nested too deeply") from None
        except (TypeError, ValueError, AttributeError, ArithmeticError) as err:  # a mistake no check above names
            raise LessonError(f"{path.name}, lesson {i}: {shown(err, 200)}") from None
        if lesson.id in seen:
            raise LessonError(f"{where}: this id is used twice")
        seen.add(lesson.id)
        lessons.append(lesson)
    if not lessons:
        raise LessonError(f"the lessons file {path} has no [[lesson]]")
    return lessons
