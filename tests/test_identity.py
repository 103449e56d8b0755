"""Who is who without accounts: names, ownership of runs, the teacher key, the class's results (core only)."""

from __future__ import annotations

import json

import pytest

from core import checkpoint, identity
from core import models as M
from core.identity import NotAllowed, Who
from core.results import ClassSetScores, HiddenEntries, best_runs, classset_signature
from core.runs import RunStore
from core.trainer import BatchEvent, EndEvent, EpochEvent, TrainConfig

ANA, BEN = Who("Ana", "s1"), Who("Ben", "s2")


def saved(store, author, acc=0.9, reason="finished", name="run", dataset="mnist", model=None, **settings):
    model = model or M.MLPConfig(hidden=(16,))
    cfg = TrainConfig(dataset=dataset, model=model, **settings).to_dict()
    ckpt = checkpoint.from_model(M.build_model(model), model, dataset=dataset, train_config=cfg,
                                 metrics={"test_acc": acc, "epochs": cfg["epochs"], "train_seconds": 12.5})
    end = EndEvent(reason, "", 1, 5, 1.5, 1000.0, acc, 0.4)
    return store.save(name, ckpt, [BatchEvent(1, 1, 2.0, 0.1, 1000.0)], [EpochEvent(1, 0.5, 0.8, 0.4, acc, 1.5, 1.5)],
                      end, author=author)


# ---------------------------------------------------------------------- names

@pytest.mark.parametrize("typed, kept", [
    ("  Ana  ", "Ana"),
    ("Ana\x00\x1b[31m\u200bM.", "Ana[31mM."),  # control and invisible characters go
    ("Ana\n\tMaría", "Ana María"),  # one line
    ("x" * 500, "x" * identity.MAX_NAME),
    ("<b onmouseover=alert(1)>Ana</b>", "<b onmouseover=alert(1)>Ana</b>"),  # kept as text: escaped where shown
    ("", ""), ("   \u200b\x07 ", ""),  # nothing left: refused by the page with EMPTY_NAME
])
def test_a_name_is_one_line_of_visible_text_at_most_40_characters(typed, kept):
    assert identity.clean_name(typed) == kept


def test_two_sessions_using_one_name_are_told_and_a_reset_forgets_every_name():
    book = identity.NameBook()
    book.seen("Ana", "s1", now=100.0)
    assert book.others_using("Ana", "s1", now=101.0) == 0
    book.seen("ana", "s2", now=102.0)  # another browser, the same name in another case
    assert book.others_using("Ana", "s1", now=103.0) == 1 and book.others_using("ANA", "s2", now=103.0) == 1
    assert book.others_using("Ana", "s1", within_s=60, now=500.0) == 0  # not active recently: no clash
    assert book.others_using("Ana", "s1", now=103.0, alive=lambda s: s != "s2") == 0  # s2's tab was reloaded
    book.seen("Ana2", "s2", now=104.0)  # s2 picked another name: Ana is s1's alone again
    assert book.others_using("Ana", "s1", now=105.0) == 0
    generation = book.generation
    book.clear()
    assert book.generation == generation + 1 and book.others_using("Ana2", "s1", now=105.0) == 0
    assert "Ana" in identity.clash_message("Ana") and "initial" in identity.clash_message("Ana")


# ---------------------------------------------------------------------- ownership

def test_a_student_manages_only_their_own_runs_and_the_teacher_all(monkeypatch):
    monkeypatch.setenv(identity.TEACHER_KEY_ENV, "owl-42")
    assert identity.may_manage(ANA, "Ana") and not identity.may_manage(BEN, "Ana")
    assert not identity.may_manage(ANA, "") and not identity.may_manage(ANA, identity.guest_owner("s2"))
    assert identity.may_manage(Who("Ana", "s1", teacher=True), "Ben")
    guest = Who("", "s9")
    assert guest.owner == identity.guest_owner("s9") and identity.may_manage(guest, guest.owner)
    assert identity.may_manage(Who("Zoe", "s9"), guest.owner)  # a guest who then gave a name keeps their runs
    assert not identity.may_manage(Who("", "s1"), "")  # an old run without an author is the teacher's to manage
    monkeypatch.delenv(identity.TEACHER_KEY_ENV)
    assert identity.may_manage(Who("", "s1"), "")  # ... and anyone's where no teacher key is set: never stuck
    assert not identity.may_manage(BEN, "Ana")  # while a named run stays its author's
    assert identity.shown("") == "unknown" and identity.shown(guest.owner) == "a guest"


def test_run_json_records_its_author_and_old_runs_read_as_unknown(tmp_path):
    store = RunStore(tmp_path / "runs")
    rec = saved(store, "Ana")
    assert json.loads((rec.folder / "run.json").read_text())["author"] == "Ana"
    meta = json.loads((rec.folder / "run.json").read_text())
    del meta["author"]  # as written before authors were kept
    (rec.folder / "run.json").write_text(json.dumps(meta))
    old = store.get(rec.id)
    assert old.author == "" and identity.shown(old.author) == "unknown"
    meta["author"] = ["not", "text"]
    (rec.folder / "run.json").write_text(json.dumps(meta))
    assert store.get(rec.id).author == ""  # a damaged author field reads as unknown, the run stays listed


def test_a_student_cannot_rename_or_delete_another_students_run_and_the_teacher_can(tmp_path):
    store = RunStore(tmp_path / "runs")
    rec = saved(store, "Ana", name="Ana's run")
    with pytest.raises(NotAllowed, match="Ana's"):
        store.rename(rec.id, "mine now", by=BEN)
    with pytest.raises(NotAllowed):
        store.delete(rec.id, by=BEN)
    assert store.get(rec.id).name == "Ana's run"
    assert store.rename(rec.id, "best so far", by=ANA).name == "best so far"
    assert store.get(rec.id).author == "Ana"  # a rename keeps the author
    store.delete(rec.id, by=Who("Ben", "s2", teacher=True))
    assert store.list() == []


def test_a_live_run_of_another_student_cannot_be_stopped_by_them():
    class Run:  # core.jobs.TrainingRun's owner, as core.live keeps it
        owner = "Ana"

    with pytest.raises(NotAllowed):
        identity.require(BEN, Run.owner)
    identity.require(ANA, Run.owner)
    identity.require(Who("Ben", "s2", teacher=True), Run.owner)


# ---------------------------------------------------------------------- the teacher key

def test_the_teacher_key_opens_only_with_the_key_set_on_the_server(monkeypatch):
    monkeypatch.delenv(identity.TEACHER_KEY_ENV, raising=False)
    assert not identity.teacher_key_set() and not identity.check_teacher_key("")
    assert not identity.check_teacher_key("anything")
    assert identity.TEACHER_KEY_ENV in identity.TEACHER_NOT_SET
    monkeypatch.setenv(identity.TEACHER_KEY_ENV, "owl-42-ünï")
    assert identity.teacher_key_set()
    assert identity.check_teacher_key("owl-42-ünï") and identity.check_teacher_key(" owl-42-ünï ")
    for wrong in ("owl-42", "OWL-42-ÜNÏ", "", None, "owl-42-ünï" * 100):
        assert not identity.check_teacher_key(wrong)
    assert "owl" not in identity.WRONG_KEY


def test_resetting_the_class_needs_the_teacher_and_stops_every_live_run():
    class Run:
        def __init__(self, done):
            self.done, self.stopped = done, None

        def stop(self, message=None):
            self.stopped = message

    class Live:
        runs = [Run(False), Run(True), Run(False)]

        def all(self):
            return self.runs

    identity.name_book().seen("Ana", "s1")
    with pytest.raises(NotAllowed):
        identity.reset_class(ANA, Live())
    assert [r.stopped for r in Live.runs] == [None, None, None]
    assert identity.reset_class(Who("T", "s0", teacher=True), Live()) == 2
    assert "teacher reset the class" in Live.runs[0].stopped and Live.runs[1].stopped is None
    assert identity.name_book().others_using("Ana", "s2") == 0


# ---------------------------------------------------------------------- results

def test_the_results_list_each_students_best_run_that_ended_well(tmp_path):
    store = RunStore(tmp_path / "runs")
    saved(store, "Ana", 0.91, name="first")
    best = saved(store, "Ana", 0.97, name="second", optimizer="sgd", lr=0.1, batch_size=128, epochs=2, augment=True)
    saved(store, "Ana", 0.99, reason="diverged")  # never ranked: it did not end well
    saved(store, "Ana", 0.995, dataset="fashion-mnist")  # another data set
    saved(store, "Ben", 0.95, model=M.CNNConfig())
    saved(store, "", 0.999)  # saved before authors were kept
    saved(store, identity.guest_owner("s7"), 0.998)
    entries, unnamed = best_runs(store.list())
    assert [(e.author, e.test_acc) for e in entries] == [("Ana", 0.97), ("Ben", 0.95)]
    assert unnamed == 2
    ana = entries[0]
    assert (ana.run_id, ana.run_name, ana.optimizer, ana.lr, ana.batch_size, ana.epochs, ana.augment) == \
        (best.id, "second", "sgd", 0.1, 128, 2, True)
    assert ana.model == "MLP 784-16-10" and ana.train_seconds == 12.5 and ana.runs == 2
    assert entries[1].model == "seed CNN"
    hidden, _ = best_runs(store.list(), hidden={"Ana"})
    assert [e.author for e in hidden] == ["Ben"]


def test_only_the_teacher_hides_an_entry_and_it_is_kept_in_a_file(tmp_path):
    path = tmp_path / "results.json"
    hidden = HiddenEntries(path)
    with pytest.raises(NotAllowed):
        hidden.set(ANA, "Ben", True)
    assert hidden.get() == frozenset() and not path.exists()
    teacher = Who("T", "s0", teacher=True)
    assert hidden.set(teacher, "Ben", True) == {"Ben"}
    assert HiddenEntries(path).get() == {"Ben"}  # as after a restart
    assert hidden.set(teacher, "Ben", False) == frozenset()
    path.write_text("{not json")
    assert HiddenEntries(path).get() == frozenset()  # damaged: nothing hidden, nothing broken


def test_a_runs_class_set_accuracy_is_computed_once_per_class_set(tmp_path, monkeypatch):
    from core import classset as C

    store = RunStore(tmp_path / "runs")
    rec = saved(store, "Ana")
    calls = []
    monkeypatch.setattr(C, "score", lambda model, cs: calls.append(1) or type("S", (), {"accuracy": 0.5})())

    class D:
        def __init__(self, i, label):
            self.id, self.label = i, label

    one, two = classset_signature([D("a", 1)]), classset_signature([D("a", 2)])
    assert one != two  # a relabel changes it
    scores = ClassSetScores()
    assert scores.known(rec.id, one) == (False, None)
    assert scores.score(rec, None, one) == 0.5 and scores.score(rec, None, one) == 0.5
    assert len(calls) == 1
    assert scores.score(rec, None, two) == 0.5 and len(calls) == 2


# ---------------------------------------------------------------------- the class set's authors

def test_a_drawing_keeps_its_author_inside_its_file_once_through_export_and_import(tmp_path):
    import csv
    import io
    import zipfile

    from core.classset import ClassSet
    from tests.apptest import drawing

    cs = ClassSet(tmp_path / "a")
    mine = cs.add(drawing(3), 3, background="dark", author="Ana")
    theirs = cs.add(drawing(7), 7, background="dark", author="Ben")
    assert (cs.author(mine), cs.author(theirs)) == ("Ana", "Ben")
    assert len(list((tmp_path / "a").iterdir())) == 2  # each drawing stored once, no index beside them
    with pytest.raises(NotAllowed, match="Ben's"):
        cs.remove([theirs.id], by=ANA)
    with pytest.raises(NotAllowed):
        cs.relabel(theirs.id, 1, by=ANA)
    with pytest.raises(NotAllowed):
        cs.clear(by=ANA)
    assert cs.relabel(mine.id, 8, by=ANA).label == 8 and cs.author(cs.find(mine.id)) == "Ana"
    data = cs.export_zip()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        rows = list(csv.DictReader(io.StringIO(zf.read("labels.csv").decode())))
    assert sorted((r["label"], r["author"]) for r in rows) == [("7", "Ben"), ("8", "Ana")]
    other = ClassSet(tmp_path / "b")
    assert other.import_zip(data, author="Zoe").added == 2
    assert sorted(other.author(d) for d in other.list()) == ["Ana", "Ben"]  # the column wins over the importer
    plain = ClassSet(tmp_path / "c")
    plain.add(drawing(1), 1, background="dark")  # no author: labels.csv stays file,label
    with zipfile.ZipFile(io.BytesIO(plain.export_zip())) as zf:
        assert zf.read("labels.csv").decode().splitlines()[0] == "file,label"
    fresh = ClassSet(tmp_path / "d")
    fresh.import_zip(plain.export_zip(), author="Zoe")
    assert [fresh.author(d) for d in fresh.list()] == ["Zoe"]  # no column: filed under whoever imported it
    assert cs.remove_own(ANA) == 1 and [d.id for d in cs.list()] == [theirs.id]
    assert cs.clear(by=Who("T", "s0", teacher=True)) == 1


def test_a_model_fine_tuned_on_the_class_set_is_not_ranked_as_a_run_trained(tmp_path):
    store = RunStore(tmp_path / "runs")
    saved(store, "Ana", 0.95)
    tuned = saved(store, "Ben", 0.99)  # the bundled model fine-tuned: near the top without training anything
    meta_path = tuned.folder / "run.json"
    meta = json.loads(meta_path.read_text())
    meta["settings"] = {"recipe": "core.finetune", "base": "Canvas CNN", "dataset": "mnist"}
    meta_path.write_text(json.dumps(meta))
    entries, _ = best_runs(store.list())
    assert [e.author for e in entries] == ["Ana"]


def test_wrong_teacher_keys_are_limited_on_the_whole_server_not_per_tab(monkeypatch):
    monkeypatch.setattr(identity, "_WRONG_KEYS", [])
    assert identity.key_guess_allowed()
    for _ in range(identity.WRONG_KEYS_PER_MINUTE):
        identity.record_wrong_key()  # from any number of tabs: the count is the server's
    assert not identity.key_guess_allowed()
    identity._WRONG_KEYS[:] = [t - 61 for t in identity._WRONG_KEYS]  # a minute later
    assert identity.key_guess_allowed()
