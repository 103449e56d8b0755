"""Every setting a lesson's words name is the setting its runs use, and its times are ranges.

A teacher reads the text aloud before pressing Start: "plain SGD" over a run with momentum 0.9,
or "about 5 s" for a run of 14 s, teaches the wrong thing.
"""

from __future__ import annotations

import re

import pytest

from core import lessons as L
from dashboard import trainform

LESSONS = L.load_lessons(L.lessons_file())
NUMBER = r"(\d+(?:\.\d+)?(?:e-?\d+)?)"
WORDS = {"one": 1, "two": 2, "three": 3}
OPTIMIZERS = {"SGD": "sgd", "Adam": "adam", "AdamW": "adamw", "RMSprop": "rmsprop"}


def claims(text: str) -> dict[str, set]:
    """The settings a text names, by kind."""
    text = " ".join(text.split())
    found: dict[str, set] = {k: set() for k in ("lr", "momentum", "batch", "epochs", "optimizer", "model",
                                                "subset", "hidden", "schedule", "dataset")}
    for m in re.finditer(r"learning rates? (?:of )?" + NUMBER, text):
        found["lr"].add(float(m.group(1)))
    for m in re.finditer(r"\blr " + NUMBER, text):
        found["lr"].add(float(m.group(1)))
    for m in re.finditer(r"momentum " + NUMBER, text):
        found["momentum"].add(float(m.group(1)))
    if re.search(r"plain SGD|no momentum", text):
        found["momentum"].add(0.0)
    for m in re.finditer(r"batch size " + NUMBER, text):
        found["batch"].add(int(m.group(1)))
    for m in re.finditer(r"\b(\d+|one|two|three) (?:whole )?epochs?\b", text):
        found["epochs"].add(int(WORDS.get(m.group(1), m.group(1))))
    for name, value in OPTIMIZERS.items():
        if re.search(rf"\b{name}\b", text):
            found["optimizer"].add(value)
    for kind in ("MLP", "CNN"):
        if re.search(rf"\b{kind}\b", text):
            found["model"].add(kind.lower())
    for m in re.finditer(r"\b(\d+) (?:training )?images\b", text):
        found["subset"].add(int(m.group(1)))
    for m in re.finditer(r"\b784((?:-\d+)+)-10\b", text):
        found["hidden"].add(tuple(int(w) for w in m.group(1).strip("-").split("-")))
    if "one-cycle" in text:
        found["schedule"].add("onecycle")
    if "Fashion-MNIST" in text:
        found["dataset"].add("fashion-mnist")
    return found


def values(cfg) -> dict:
    return {"lr": cfg.lr, "momentum": cfg.momentum if cfg.optimizer in ("sgd", "rmsprop") else None,
            "batch": cfg.batch_size, "epochs": cfg.epochs, "optimizer": cfg.optimizer, "model": cfg.model.kind,
            "subset": cfg.train_subset, "hidden": getattr(cfg.model, "hidden", None), "schedule": cfg.schedule,
            "dataset": cfg.dataset}


@pytest.mark.parametrize("lesson", LESSONS, ids=[x.id for x in LESSONS])
def test_each_setting_the_text_names_is_a_setting_of_its_runs(lesson):
    said = claims(lesson.watch)
    runs = [values(r.config) for r in lesson.runs]
    for kind, named in said.items():
        used = {r[kind] for r in runs}
        for value in named:
            assert value in used, f"{lesson.id}: the text says {kind} {value}, its runs use {used}"


@pytest.mark.parametrize("lesson", LESSONS, ids=[x.id for x in LESSONS])
def test_the_text_names_every_setting_that_matters_of_every_run(lesson):
    """Optimizer, learning rate, momentum (for SGD), batch size, epochs, network: each run's are said,
    in the text or on its own button."""
    for run in lesson.runs:
        said = claims(lesson.watch + " " + run.label)
        v = values(run.config)
        for kind in ("optimizer", "lr", "batch", "epochs", "model"):
            assert v[kind] in said[kind], f"{lesson.id} / {run.label}: {kind} {v[kind]} is never said"
        if run.config.optimizer == "sgd":
            assert v["momentum"] in said["momentum"], f"{lesson.id} / {run.label}: momentum {v['momentum']} unsaid"
        if run.config.train_subset:
            assert run.config.train_subset in said["subset"]


@pytest.mark.parametrize("lesson", LESSONS, ids=[x.id for x in LESSONS])
def test_times_are_ranges_not_promises(lesson):
    text = " ".join(lesson.watch.split())
    single = re.findall(r"[Aa]bout \d+ ?(?:s|min)\b(?!-)", text)
    assert not single, f"{lesson.id}: {single} is one number; runs take longer on a busy machine — give a range"
    assert re.search(r"\d+-\d+ ?(?:s|min)|[Aa] few seconds", text), f"{lesson.id}: say how long it takes"


@pytest.mark.parametrize("lesson", LESSONS, ids=[x.id for x in LESSONS])
def test_the_buttons_of_a_lesson_tell_its_runs_apart(lesson):
    labels = [r.label for r in lesson.runs]
    assert len(set(labels)) == len(labels)
    assert len({trainform.summary(r.config) for r in lesson.runs}) == len(lesson.runs)
    # no two labels share the first 12 characters: on a narrow screen a cut label would still differ
    assert len({label[:12] for label in labels}) == len(labels), labels
