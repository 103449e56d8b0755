"""Names, ownership and the teacher key in the pages (AppTest: the real app scripts, one session each)."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core import identity
from core.live import live_runs
from tests.apptest import APP, session
from tests.test_identity import saved

KEY = "owl-42-secret"


def as_student(name: str | None, page: str | None = None, **query) -> AppTest:
    """A fresh browser session (as after a reload, or on another device), opened with ``?student=name``."""
    at = AppTest.from_file(APP, default_timeout=60)
    if name is not None:
        at.query_params["student"] = name
    at.query_params.update(query)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, at.exception
    return at


def unlock(at: AppTest, key: str) -> AppTest:
    at.sidebar.text_input(key="people.teacher_key").set_value(key)
    at.sidebar.button[[b.label for b in at.sidebar.button].index("Unlock")].click().run()
    return at


def everything_shown(at: AppTest) -> str:
    """Every element's content as the browser receives it (the protobufs), sidebar included."""
    return "\n".join(str(node.proto) for node in at._tree if hasattr(node, "proto"))


@pytest.fixture
def teacher_key(monkeypatch):
    monkeypatch.setenv(identity.TEACHER_KEY_ENV, KEY)
    return KEY


@pytest.fixture
def slow_mlp_run(mirror_root):
    """Ana starts a long MLP run on the Train page."""
    at = as_student("Ana", "views/train.py", **{"train.model": "MLP", "train.epochs": "30"})
    at.button(key="train.start_button").click().run()
    run = session(at).run
    assert run is not None and run.owner == "Ana"
    yield at, run
    run.stop()
    run.join(timeout=60)


def test_a_reload_or_another_device_under_the_same_name_finds_the_run_still_going(slow_mlp_run):
    _, run = slow_mlp_run
    again = as_student("Ana", "views/train.py")  # F5: a new session, the name back from the URL
    assert session(again).run is run
    assert not again.button(key="train.stop_button").disabled and again.button(key="train.start_button").disabled
    ben = as_student("Ben", "views/train.py")
    assert session(ben).run is None and not ben.button(key="train.start_button").disabled
    again.button(key="train.stop_button").click().run()
    assert run.join(timeout=60) and run.view().end.reason == "stopped"


def test_a_run_found_again_after_a_reload_becomes_the_current_model_when_it_finishes(mirror_root):
    at = as_student("Ana", "views/train.py", **{"train.model": "MLP", "train.subset": "2000", "train.epochs": "1"})
    at.button(key="train.start_button").click().run()
    run = session(at).run
    again = as_student("Ana", "views/draw.py")  # reloaded on another page
    assert session(again).run is run and session(again).current_source == "bundled"
    assert run.join(timeout=120) and run.view().end.reason == "finished"
    again.run()
    assert session(again).current is run.result and session(again).current_source == "trained"


def test_a_link_with_an_empty_name_is_a_guest_told_why():
    at = as_student(" \u200b ", "views/train.py")
    assert [w.value for w in at.sidebar.warning] == [identity.EMPTY_NAME]
    assert any("a guest's" in c.value for c in at.caption)


def test_a_student_cannot_stop_another_students_run_and_the_teacher_can(slow_mlp_run, teacher_key):
    _, run = slow_mlp_run
    ben = as_student("Ben", "views/train.py")
    session(ben).run = run  # as if Ben's page held Ana's run: it is let go, never shown or stopped there
    ben.run()
    assert session(ben).run is None and ben.button(key="train.stop_button").disabled
    with pytest.raises(identity.NotAllowed, match="Ana's"):
        identity.require(identity.Who("Ben", "s"), run.owner)
    ben.switch_page("views/results.py")
    ben.run()
    assert not [b for b in ben.button if b.key == f"results.stop.{run.id}"]  # no Stop for a student
    unlock(ben, teacher_key)
    ben.button(key=f"results.stop.{run.id}").click().run()
    assert run.join(timeout=60) and run.view().end.message == "stopped by the teacher"


def test_on_the_runs_page_a_student_renames_and_deletes_only_their_own_runs(runs_folder, teacher_key):
    from core.runs import RunStore

    store = RunStore()
    ana_run = saved(store, "Ana", name="Ana's run")
    ben = as_student("Ben", "views/runs.py")
    assert ben.dataframe[0].value["by"].tolist() == ["Ana"]
    assert ben.button(key="runs.use").disabled is False  # anyone may use anyone's model
    rename = ben.button[[b.label for b in ben.button].index("Rename")]
    assert rename.disabled and any("only they or the teacher" in c.value for c in ben.caption)
    assert delete_locked(ben)
    unlock(ben, teacher_key)
    assert not ben.button[[b.label for b in ben.button].index("Rename")].disabled and not delete_locked(ben)
    ben.button(key="runs.delete").click().run()
    assert not ben.exception and not (runs_folder / ana_run.id).exists()
    mine = saved(store, "Ben", name="Ben's run")
    zoe = as_student("Zoe", "views/runs.py")
    assert zoe.dataframe[0].value["by"].tolist() == ["Ben"]
    ben_again = as_student("Ben", "views/runs.py")
    ben_again.text_input(key="runs.new_name").set_value("renamed by Ben")
    ben_again.button[[b.label for b in ben_again.button].index("Rename")].click().run()
    assert store.get(mine.id).name == "renamed by Ben"


def popover(at: AppTest, label: str):
    """A popover's settings as drawn (AppTest has no collection for them)."""
    found = []
    for node in at._tree:
        try:
            if node.proto.WhichOneof("type") == "popover" and node.proto.popover.label == label:
                found.append(node.proto.popover)
        except (AttributeError, ValueError, TypeError):
            continue
    assert len(found) == 1, f"{len(found)} popovers named {label!r}"
    return found[0]


def delete_locked(at: AppTest) -> bool:
    return popover(at, "Delete").disabled


def test_a_wrong_teacher_key_is_refused_and_never_shown(teacher_key):
    at = as_student("Ana")
    wrong = "guess-<b>1</b>-" + teacher_key[:4]
    unlock(at, wrong)
    assert [e.value for e in at.sidebar.error] == [identity.WRONG_KEY]
    assert not session_is_teacher(at)
    shown = everything_shown(at)
    assert wrong not in shown and teacher_key not in shown and "guess" not in shown
    assert at.sidebar.text_input(key="people.teacher_key").value == ""  # not kept in the box either
    assert "teacher" not in "".join(at.query_params) and wrong not in str(at.query_params)
    unlock(at, teacher_key)
    assert session_is_teacher(at) and not at.sidebar.error
    assert teacher_key not in everything_shown(at) and teacher_key not in str(at.query_params)


def session_is_teacher(at: AppTest) -> bool:
    from dashboard import state

    return bool(at.session_state[state.TEACHER]) if state.TEACHER in at.session_state else False


def test_without_a_key_on_the_server_teacher_mode_says_where_the_key_goes(monkeypatch):
    monkeypatch.delenv(identity.TEACHER_KEY_ENV, raising=False)
    at = as_student("Ana")
    assert any(identity.TEACHER_KEY_ENV in c.value and "environment variable" in c.value for c in at.sidebar.caption)
    assert not [t for t in at.sidebar.text_input if t.key == "people.teacher_key"]


@pytest.mark.parametrize("typed, kept, warned", [
    ("   ", "", identity.EMPTY_NAME),
    ("x" * 500, "x" * identity.MAX_NAME, None),
    ("<img src=x onerror=alert(1)>**Ana**", "<img src=x onerror=alert(1)>**Ana**", None),
])
def test_a_bad_name_is_refused_cut_or_kept_as_plain_text(typed, kept, warned):
    at = as_student(None)
    at.sidebar.text_input(key="student").set_value(typed).run()
    from dashboard import state

    assert state.STUDENT not in at.session_state or identity.clean_name(at.session_state[state.STUDENT]) == kept
    assert [w.value for w in at.sidebar.warning] == ([warned] if warned else [])


def test_an_html_name_is_escaped_wherever_it_is_shown(runs_folder, isolated_home):
    from core.runs import RunStore

    name = "<img src=x onerror=alert(1)>**Ana**"
    saved(RunStore(), name, name="a run")
    other = as_student(name)  # a second session with the same name: the clash warning names it
    at = as_student(name, "views/results.py")
    warning = [w.value for w in at.sidebar.warning]
    assert warning and "\\<img src=x onerror=alert\\(1\\)\\>\\*\\*Ana\\*\\*" in warning[0]  # Markdown-escaped
    assert at.dataframe[0].value["student"].tolist() == [name]  # a table cell is text, never HTML
    assert other is not None
    ben = as_student("Ben", "views/runs.py")  # why Ben may not rename it names its author, escaped
    locked = [c.value for c in ben.caption if "only they or the teacher" in c.value]
    assert locked and "\\<img src=x onerror=alert\\(1\\)\\>\\*\\*Ana\\*\\*" in locked[0]
    assert "\\<img" in popover(ben, "Delete").help


def test_two_sessions_with_one_name_are_told_but_may_carry_on():
    first = as_student("Sam")
    assert not first.sidebar.warning
    second = as_student("sam", "views/train.py")
    assert [w.value for w in second.sidebar.warning] and "Someone else here is using the name sam" in \
        second.sidebar.warning[0].value
    assert not second.button(key="train.start_button").disabled  # told, not stopped


def test_the_results_page_lists_each_students_best_run(runs_folder, teacher_key, isolated_home):
    from core.runs import RunStore

    store = RunStore()
    saved(store, "Ana", 0.91)
    saved(store, "Ana", 0.97, optimizer="sgd", lr=0.1, batch_size=128)
    saved(store, "Ben", 0.95)
    saved(store, "Ben", 0.99, reason="diverged")
    at = as_student("Zoe", "views/results.py")
    table = at.dataframe[0].value
    assert table["student"].tolist() == ["Ana", "Ben"]
    assert table["test accuracy"].tolist() == [0.97, 0.95]
    assert table[["optimizer", "lr", "batch"]].iloc[0].tolist() == ["sgd", 0.1, 128]
    assert not [b for b in at.button if b.key == "results.hide"]  # a student cannot hide an entry
    unlock(at, teacher_key)
    at.selectbox(key="results.hide_pick").set_value("Ana").run()
    at.button(key="results.hide").click().run()
    assert at.dataframe[0].value["student"].tolist() == ["Ben"]
    assert as_student("Ana", "views/results.py").dataframe[0].value["student"].tolist() == ["Ben"]


def test_the_class_set_score_of_each_best_run_is_shown(runs_folder, classset_folder, isolated_home):
    from core import checkpoint, paths
    from core.classset import ClassSet
    from core.runs import RunStore
    from core.trainer import EndEvent
    from tests.apptest import drawing

    bundled = checkpoint.load(paths.BUNDLED_MODEL)
    RunStore().save("the bundled CNN", bundled, [], [], EndEvent("finished", "", 1, 1, 1.0, 1.0, 0.99, 0.1),
                    author="Ana")
    cs = ClassSet()
    for digit in (1, 3, 7):
        cs.add(drawing(digit), digit, background="dark", author="Ana")
    at = as_student("Ana", "views/results.py")
    assert at.dataframe[0].value["class set accuracy"].tolist() == [1.0]


def test_resetting_the_class_stops_every_run_and_forgets_names(slow_mlp_run, teacher_key):
    _, run = slow_mlp_run
    teacher = as_student("Teacher")
    unlock(teacher, teacher_key)
    teacher.button(key="people.reset").click().run()
    assert not teacher.exception
    assert run.join(timeout=60) and "teacher reset the class" in run.view().end.message
    assert live_runs().active("Ana") is None
