"""Lessons: the file is valid, each run sets exactly what it says, and a shared link restores the settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from streamlit.testing.v1 import AppTest

from core import lessons as L
from core.models import CNNConfig, MLPConfig
from core.trainer import TrainConfig
from dashboard import state, trainform
from tests.apptest import app

LESSONS = L.load_lessons()
ROOT = Path(__file__).resolve().parent.parent


def train_page(query: dict | None = None) -> AppTest:
    return app("views/train.py", query)


def shown_config(at: AppTest) -> TrainConfig:
    return at.session_state[state.SESSION].train_config


def test_the_lessons_file_has_at_least_five_lessons_each_with_what_to_watch():
    assert len(LESSONS) >= 5
    assert len({lesson.id for lesson in LESSONS}) == len(LESSONS)
    for lesson in LESSONS:
        assert len(lesson.watch.split(".")) >= 3, lesson.id  # two or three sentences at least
        for run in lesson.runs:
            run.config.validate(run.config.train_subset or 60_000)


def test_settings_left_out_take_the_train_pages_defaults():
    assert L.config_from_settings({}) == TrainConfig()
    assert L.config_from_settings({"model": "mlp"}).model == MLPConfig()
    cfg = L.config_from_settings({"channels": [8, 32]})
    assert cfg.model == CNNConfig(channels=(8, 32), fc=(L.CUSTOM_CNN_FC, 84))
    assert L.config_from_settings({"optimizer": "rmsprop"}).momentum == 0.0


def test_every_choice_the_page_offers_is_one_the_config_accepts():
    import core.trainer as T

    assert L.LEARNING_RATES is T.LEARNING_RATES and L.WIDTHS is T.WIDTHS and L.MAX_EPOCHS == T.PAGE_MAX_EPOCHS
    assert list(trainform.OPTIMIZER_LABELS.values()) == list(T.OPTIMIZERS)
    assert list(trainform.SCHEDULE_LABELS.values()) == list(T.SCHEDULES)
    for lr in T.LEARNING_RATES:
        TrainConfig(lr=lr).validate()
    for wd in T.WEIGHT_DECAYS:
        TrainConfig(weight_decay=wd).validate()
    TrainConfig(epochs=T.PAGE_MAX_EPOCHS, model=MLPConfig(hidden=(T.WIDTHS[-1],) * T.MAX_HIDDEN_LAYERS,
                                                          dropout=T.MAX_DROPOUT)).validate()


@pytest.mark.parametrize("settings, says", [
    ({"learning_rate": 0.1}, "unknown setting(s) learning_rate"),
    ({"lr": 0.2}, "lr = 0.2 is not offered"),
    ({"batch_size": 100}, "batch_size = 100 is not offered"),
    ({"epochs": 0}, "epochs = 0"),
    ({"model": "rnn"}, "model = 'rnn'"),
    ({"model": "mlp", "hidden": [100]}, "a width in hidden = 100"),
    ({"model": "mlp", "hidden": 128}, "hidden = 128 must be a list"),
    ({"model": "mlp", "hidden": [16, 16, 16, 16]}, "must be a list of 1 to 3 widths"),
    ({"optimizer": "sgd", "momentum": 0.995}, "momentum = 0.995 must be a number from 0 to 0.99"),
    ({"seed": -1}, "seed = -1 must be a whole number"),
    ({"seed": 2**32}, "seed = 4294967296 must be a whole number"),
    ({"train_subset": 70_000}, "train_subset = 70000 must be a whole number from 0 to 60,000"),
    ({"augment": "false"}, "augment = 'false' must be true or false"),
    ({"epochs": 2.5}, "epochs = 2.5 must be a whole number"),
    ({"target": 101}, "target = 101 must be a number from 0 to 100"),
    ({"dataset": "cifar"}, "dataset = 'cifar'"),
    ({"model": "mlp", "channels": [6, 16]}, "channels and fc are CNN settings"),
    ({"optimizer": "adam", "momentum": 0.5}, "momentum applies to SGD and RMSprop"),
    ({"optimizer": "adam", "nesterov": True}, "Nesterov momentum needs SGD"),
    ({"dropout": 0.33}, "steps of 0.05"),
    ({"train_subset": 100, "batch_size": 128}, "larger than the 100 training samples"),
])
def test_a_mistake_in_a_lesson_is_named(settings, says):
    with pytest.raises(L.LessonError, match=None) as err:
        L.config_from_settings(settings)
    assert says in str(err.value)


def test_a_broken_lessons_file_says_which_lesson_and_run(tmp_path):
    bad = tmp_path / "lessons.toml"
    bad.write_text('[[lesson]]\nid = "fast"\ntitle = "Fast"\n[[lesson.run]]\nlabel = "Go"\n'
                   'settings = { lr = 0.5 }\n')
    with pytest.raises(L.LessonError, match=r"lessons.toml, lesson 'fast': run 'Go': lr = 0.5 is not offered"):
        L.load_lessons(bad)
    bad.write_text("[[lesson]\n")
    with pytest.raises(L.LessonError, match="not valid TOML"):
        L.load_lessons(bad)
    with pytest.raises(L.LessonError, match="cannot read"):
        L.load_lessons(tmp_path / "missing.toml")


def test_a_broken_lessons_file_leaves_the_train_page_working(tmp_path, monkeypatch):
    bad = tmp_path / "lessons.toml"
    bad.write_text('[[lesson]]\nid = "x"\ntitle = "X"\n[[lesson.run]]\nlabel = "Go"\nsettings = { hidden = 128, model = "mlp" }\n')
    monkeypatch.setenv("DIGITLAB_LESSONS", str(bad))
    at = train_page()
    assert any("The lessons could not be read" in e.value and "hidden = 128" in e.value for e in at.error)
    assert shown_config(at) == TrainConfig()  # the settings work as ever
    bad.write_text("[[lesson]]\nid = 3\n")
    at = train_page()
    assert any("missing 'title'" in e.value for e in at.error)


def test_a_teacher_can_point_the_app_at_an_own_lessons_file(tmp_path, monkeypatch):
    own = tmp_path / "ours.toml"
    own.write_text('[[lesson]]\nid = "ours"\ntitle = "Our lesson"\nwatch = "Watch it."\n'
                   '[[lesson.run]]\nlabel = "Tiny MLP"\nsettings = { model = "mlp", hidden = [16], epochs = 1 }\n')
    monkeypatch.setenv("DIGITLAB_LESSONS", str(own))
    at = train_page()
    at.selectbox(key=trainform.LESSON_KEY).set_value("ours").run()
    at.button(key="lesson.run0").click().run()
    assert shown_config(at).model == MLPConfig(hidden=(16,))


def test_every_lesson_run_sets_every_setting_it_says_on_the_train_page():
    at = train_page()
    # start far from every lesson: a customised MLP with unusual settings everywhere
    at.radio(key="train.model").set_value("MLP").run()
    at.toggle(key="train.custom").set_value(True).run()
    at.slider(key="train.dropout").set_value(0.3)
    at.select_slider(key="train.batch_size").set_value(1024)
    at.number_input(key="train.seed").set_value(7)
    at.toggle(key="train.augment").set_value(True)
    at.run()
    for lesson in LESSONS:
        at.selectbox(key=trainform.LESSON_KEY).set_value(lesson.id).run()
        assert any(lesson.watch.splitlines()[0] in m.value for m in at.markdown)
        for i, run in enumerate(lesson.runs):
            at.button(key=f"lesson.run{i}").click().run()
            assert not at.exception, at.exception
            assert shown_config(at) == run.config, (lesson.id, run.label)
            assert not at.error


def test_a_run_started_from_a_lesson_is_named_after_it():
    at = train_page()
    lesson = next(le for le in LESSONS if le.id == "lr-too-high")
    at.selectbox(key=trainform.LESSON_KEY).set_value(lesson.id).run()
    at.button(key="lesson.run0").click().run()
    at.button(key="train.start_button").click().run()
    run = at.session_state[state.SESSION].run
    assert run.name == f"{lesson.runs[0].label} ({lesson.title})"
    run.stop()
    run.join(30)


ALL_RUNS = [(lesson, run) for lesson in LESSONS for run in lesson.runs]
UNUSUAL = TrainConfig(dataset="fashion-mnist", model=CNNConfig(channels=(8, 32), fc=(64,), dropout=0.25,
                                                               batch_norm=True),
                      optimizer="sgd", lr=0.03, momentum=0.8, nesterov=True, weight_decay=1e-5, batch_size=256,
                      epochs=7, schedule="cosine", augment=True, seed=42, train_subset=12_000, target_acc=0.985)


@pytest.mark.parametrize("cfg, title", [(run.config, lesson.title) for lesson, run in ALL_RUNS] + [(UNUSUAL, None)],
                         ids=[f"{lesson.id}-{i}" for i, (lesson, _) in enumerate(ALL_RUNS)] + ["unusual"])
def test_a_shared_link_restores_every_setting_in_a_new_session(cfg, title):
    link = trainform.share_link("http://192.168.1.20:8501/", cfg, title)
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "192.168.1.20:8501", "/train")
    fresh = train_page(dict(parse_qsl(parts.query)))  # another browser opening the link
    assert shown_config(fresh) == cfg
    lesson = fresh.selectbox(key=trainform.LESSON_KEY).value
    assert lesson == next((le.id for le in LESSONS if le.title == title), trainform.NO_LESSON)


def test_the_share_link_leaves_out_what_is_already_the_default():
    assert trainform.share_link(None, TrainConfig()) == "http://localhost:8501/train"
    assert trainform.share_link("http://h:1/train", TrainConfig(lr=0.1)) == "http://h:1/train?train.lr=0.1"
    assert trainform.link_params(TrainConfig(optimizer="rmsprop", momentum=0.0)) == {"train.optimizer": "RMSprop"}


# ---------------------------------------------------------------------- hostile and malformed lessons files

ONE_RUN = '[[lesson]]\nid = "fast"\ntitle = "Fast"\n[[lesson.run]]\nlabel = "Go"\n'


@pytest.mark.parametrize("text, says", [
    (ONE_RUN + "settings = { fc = 128.0 }\n", "lesson 'fast': run 'Go': fc = 128.0 is not offered"),
    (ONE_RUN + "settings = { batch_size = 64.0 }\n", "run 'Go': batch_size = 64.0 is not offered"),
    (ONE_RUN + 'settings = { model = "mlp", hidden = [128.0] }\n', "run 'Go': a width in hidden = 128.0"),
    (ONE_RUN + "settings = { epochs = 3.0 }\n", "run 'Go': epochs = 3.0 must be a whole number"),
    ("lesson = 5\n", "lessons.toml: lesson = 5 must be written as [[lesson]] tables"),
    ('lesson = "mlp"\n', "lesson = 'mlp' must be written as [[lesson]] tables"),
    ("lesson = [1, 2]\n", "lesson = [1, 2] must be written as [[lesson]] tables"),
    ('lesson = { id = "a", title = "A" }\n', "must be written as [[lesson]] tables"),
    ('[[lesson]]\nid = "a"\ntitle = "A"\nrun = { label = "x" }\n', "lesson 'a': lesson.run = {'label': 'x'} must be"),
    ('[[lesson]]\nid = "a"\ntitle = "A"\nrun = [5]\n', "lesson 'a': lesson.run = [5] must be"),
    ('[[lesson]]\nid = "a"\ntitle = "A"\n[[lesson.run]]\nsettings = {}\n', "lesson 'a': run 1: missing 'label'"),
    ('[[lesson]]\nid = "a"\ntitle = "A"\n[[lesson.run]]\nlabel = { x = 1 }\n', "lesson 'a': run 1: label = {'x': 1} must be text"),
    ('[[lesson]]\nid = ["a"]\ntitle = "A"\n', "lesson 1: id = ['a'] must be text"),
    ('[[lesson]]\nid = "a"\ntitle = 7\n', "lesson 'a': title = 7 must be text"),
    ('[[lesson]]\nid = "a"\ntitle = "A"\nwatch = [1]\n', "lesson 'a': watch = [1] must be text"),
    (ONE_RUN + "settings = [1]\n", "run 'Go': settings must be a table"),
    (ONE_RUN + "settings = { lr = { a = { b = { c = { d = 1 } } } } }\n", "run 'Go': lr = {'a': {'b': {...}}} is not offered"),
    (ONE_RUN + "settings = { model = " + "[" * 300 + "]" * 300 + " }\n", "run 'Go': model = [[[...]]]: choose one of"),
    (ONE_RUN + "settings = { epochs = " + "{a=" * 300 + "1" + "}" * 300 + " }\n", "epochs = {'a': {'a': {...}}} must be"),
    ("a = " + "[" * 100_000 + "]" * 100_000 + "\n", "nests arrays or tables too deeply"),
    ("a = " + "{b=" * 50_000 + "1" + "}" * 50_000 + "\n", "nests arrays or tables too deeply"),
    (ONE_RUN + "settings = { seed = " + "9" * 400 + " }\n", "run 'Go': seed = "),
    (ONE_RUN + "settings = { target = " + "9" * 400 + " }\n", "run 'Go': target = "),
    ('[[lesson]]\nid = "fast"\ntitle = "T"\n[[lesson.run]]\nlabel = "a"\n[[lesson]]\nid = "fast"\ntitle = "T"\n'
     '[[lesson.run]]\nlabel = "b"\n', "lesson 'fast': this id is used twice"),
])
def test_each_mistake_in_a_lessons_file_is_named_with_its_lesson_and_run(tmp_path, text, says):
    bad = tmp_path / "lessons.toml"
    bad.write_text(text)
    with pytest.raises(L.LessonError) as err:
        L.load_lessons(bad)
    assert says in str(err.value)
    assert len(str(err.value)) < 600  # a short message, however large the value
    assert bad.read_text() == text


def test_a_lessons_file_that_is_not_utf8_too_large_or_not_a_file_is_refused(tmp_path):
    bad = tmp_path / "lessons.toml"
    bad.write_bytes(ONE_RUN.encode() + b'# caf\xe9\n')
    with pytest.raises(L.LessonError, match=r"not UTF-8 text \(line 6\)"):
        L.load_lessons(bad)
    bad.write_bytes(ONE_RUN.encode() + b"#" * (L.MAX_FILE_BYTES + 1))
    with pytest.raises(L.LessonError, match="at most 1.0 MB is read"):
        L.load_lessons(bad)
    with pytest.raises(L.LessonError, match="not a regular file"):
        L.load_lessons("/dev/zero")
    with pytest.raises(L.LessonError, match="not a regular file"):
        L.load_lessons(tmp_path)
    os.mkfifo(tmp_path / "pipe.toml")  # opening it for reading would block: it must be refused, not waited on
    with pytest.raises(L.LessonError, match="not a regular file"):
        L.load_lessons(tmp_path / "pipe.toml")


def test_the_lessons_cli_prints_titles_and_labels_escaped(tmp_path):
    own = tmp_path / "ours.toml"
    own.write_text('[[lesson]]\nid = "x\\u001b]0;owned\\u0007"\ntitle = "T\\u001b[2J"\n'
                   '[[lesson.run]]\nlabel = "L\\r\\u009b31m"\nsettings = { lr = 0.5 }\n')
    done = subprocess.run([sys.executable, "-m", "core", "lessons", "--file", str(own)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and "lr = 0.5 is not offered" in done.stderr
    assert "\x1b" not in done.stderr and "\\x1b]0;owned\\x07" in done.stderr
    own.write_text(own.read_text().replace("lr = 0.5", "lr = 0.1"))
    done = subprocess.run([sys.executable, "-m", "core", "lessons", "--file", str(own)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "x\\x1b]0;owned\\x07\tT\\x1b[2J\tL\\r\\x9b31m\n"
