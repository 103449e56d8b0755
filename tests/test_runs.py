import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import checkpoint
from core import models as M
from core.runs import RunError, RunStore
from core.trainer import BatchEvent, EndEvent, EpochEvent

ROOT = Path(__file__).resolve().parent.parent


def fake_run():
    ckpt = checkpoint.from_model(M.build_model(M.MLPConfig(hidden=(16,))), M.MLPConfig(hidden=(16,)),
                                 train_config={"lr": 0.1}, metrics={"test_acc": 0.9})
    batches = [BatchEvent(i, 1, 2.0 / i, 0.1, 1000.0) for i in range(1, 6)]
    epochs = [EpochEvent(1, 0.5, 0.85, 0.4, 0.9, 1.5, 1.5)]
    return ckpt, batches, epochs, EndEvent("finished", "done", 1, 5, 1.5, 1000.0, 0.9, 0.4)


def test_a_saved_run_survives_a_reload_and_reads_without_this_project(tmp_path):
    store = RunStore(tmp_path / "runs")
    rec = store.save("MLP vs CNN", *fake_run())
    again = RunStore(tmp_path / "runs").list()  # a fresh store: as after an app restart
    assert [r.id for r in again] == [rec.id] and again[0].name == "MLP vs CNN"
    assert again[0].metrics == {"test_acc": 0.9} and again[0].reason == "finished"
    assert [b["loss"] for b in again[0].batches()] == [2.0, 1.0, 2.0 / 3, 0.5, 0.4]
    with open(rec.folder / "epochs.csv", newline="") as fh:  # plain CSV for a notebook
        rows = list(csv.DictReader(fh))
    assert rows[0]["test_acc"] == "0.9"
    assert json.loads((rec.folder / "run.json").read_text())["settings"] == {"lr": 0.1}
    assert again[0].checkpoint().model_config == M.MLPConfig(hidden=(16,))


@pytest.mark.parametrize("name", ["../../etc/passwd", "a/b\\c", "..", "/abs/path", "tab\tnew\nline", ""])
def test_names_never_place_files_outside_the_runs_folder(tmp_path, name):
    root = tmp_path / "runs"
    store = RunStore(root)
    rec = store.save(name, *fake_run())
    assert rec.folder.parent == root
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(root in p.parents for p in files)
    renamed = store.rename(rec.id, "../../" + name)
    assert renamed.folder == rec.folder and "\n" not in renamed.name and renamed.name
    assert all(root in p.parents for p in tmp_path.rglob("*") if p.is_file())


def test_rename_and_delete(tmp_path):
    store = RunStore(tmp_path / "runs")
    a = store.save("first", *fake_run())
    b = store.save("second", *fake_run())
    store.rename(a.id, "renamed")
    assert {r.name for r in store.list()} == {"renamed", "second"}
    store.delete(b.id)
    assert [r.id for r in store.list()] == [a.id]
    with pytest.raises(ValueError):
        store.delete("../outside")


def test_a_run_folder_left_half_written_is_skipped(tmp_path):
    store = RunStore(tmp_path / "runs")
    rec = store.save("ok", *fake_run())
    broken = rec.folder.parent / "20990101-000000-abcd"
    broken.mkdir()
    (broken / "model.pt").write_bytes(b"partial")
    assert [r.id for r in store.list()] == [rec.id]


# ---------------------------------------------------------------------- damaged and hostile run folders

def snapshot(folder):
    """Every file under ``folder`` (not following links) with its bytes: to show that nothing changed."""
    return {p: (p.read_bytes() if p.is_file() and not p.is_symlink() else os.readlink(p) if p.is_symlink() else None)
            for p in sorted(folder.rglob("*"))}


def two_good_runs_and(tmp_path, make_bad):
    """Two good runs around a third folder that ``make_bad(folder)`` spoils; returns (store, good ids, bad id)."""
    store = RunStore(tmp_path / "runs")
    saved = sorted((store.save(name, *fake_run()) for name in ("a", "b", "c")), key=lambda r: r.id)
    bad = saved[1]  # the middle one: runs on both sides of it still list
    make_bad(bad.folder)
    return store, [saved[2].id, saved[0].id], bad.id


def write(name, data):
    def spoil(folder):
        (folder / name).write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
    return spoil


def edit(**fields):
    def spoil(folder):
        meta = json.loads((folder / "run.json").read_text())
        for key, value in fields.items():
            if "." in key:
                outer, inner = key.split(".")
                meta[outer][inner] = value
            else:
                meta[key] = value
        (folder / "run.json").write_text(json.dumps(meta))
    return spoil


def link(name, target):
    def spoil(folder):
        (folder / name).unlink()
        (folder / name).symlink_to(target)
    return spoil


def outside_file(tmp_path):
    secret = tmp_path / "elsewhere.json"
    secret.write_text(json.dumps({"name": "not a run here", "created": "2026-01-01"}))
    return secret


@pytest.mark.parametrize("spoil, says", [
    (write("run.json", []), "holds a JSON list, not an object"),
    (write("run.json", "a string"), "holds a JSON str, not an object"),
    (write("run.json", 5), "holds a JSON int"),
    (write("run.json", b"[" * 100_000 + b"]" * 100_000), "at most 0.1 MB is read"),
    (write("run.json", b"[" * 30_000 + b"]" * 30_000), "nested too deeply"),
    (write("run.json", b'{"name": "x", "created": "' + b"\xff" * 10 + b'"}'), "not UTF-8"),
    (write("run.json", b'{"name": "x", '), "not valid JSON"),
    (write("run.json", {"created": "2026-01-01"}), "no 'name'"),
    (edit(name=5), "'name' is a int; it must be text"),
    (edit(created=None), "'created' is a NoneType; it must be text"),
    (edit(settings=[]), "'settings' is a list; it must be an object"),
    (edit(metrics="high"), "'metrics' is a str; it must be an object"),
    (edit(reason={"why": 1}), "'reason' is a dict; it must be text"),
    (edit(**{"metrics.test_acc": "99 %"}), "metric 'test_acc' is a str; it must be a number"),
    (edit(**{"metrics.train_seconds": [1, 2]}), "metric 'train_seconds' is a list"),
    (edit(**{"settings.lr": {"a": 1}}), "setting 'lr' is a dict"),
    (link("run.json", "/dev/zero"), "points outside its folder"),
    (lambda folder: link("run.json", outside_file(folder.parent.parent))(folder), "points outside its folder"),
    (lambda folder: (os.unlink(folder / "run.json"), os.mkfifo(folder / "run.json")), "not a regular file"),
])
def test_one_bad_run_folder_is_left_out_with_a_note_and_the_others_list(tmp_path, spoil, says):
    store, good, bad = two_good_runs_and(tmp_path, spoil)
    before = snapshot(tmp_path / "runs")
    records = store.list()
    assert [r.id for r in records] == good
    assert len(store.skipped) == 1 and store.skipped[0].folder == bad and says in store.skipped[0].reason
    note = store.skipped_note()
    assert bad in note and says in note and "not listed" in note
    with pytest.raises(RunError, match=bad):
        store.get(bad)
    assert all(r.batches() and r.checkpoint() for r in records)
    assert snapshot(tmp_path / "runs") == before  # listing changed nothing
    assert store.list() and RunStore(tmp_path / "runs").list()  # and lists again the same way
    assert len(store.skipped) == 1


def test_a_run_folder_that_is_a_link_elsewhere_is_left_out(tmp_path):
    store = RunStore(tmp_path / "runs")
    good = store.save("good", *fake_run())
    elsewhere = RunStore(tmp_path / "other").save("elsewhere", *fake_run())
    (tmp_path / "runs" / "20990101-000000-abcd").symlink_to(elsewhere.folder)
    assert [r.id for r in store.list()] == [good.id]
    assert store.skipped == [("20990101-000000-abcd", "the folder is a link to elsewhere; refused")]


def test_a_clean_listing_has_no_note(tmp_path):
    store = RunStore(tmp_path / "runs")
    store.save("good", *fake_run())
    assert store.list() and store.skipped == [] and store.skipped_note() == ""
    assert RunStore(tmp_path / "none").list() == []


@pytest.mark.parametrize("name, text, says", [
    ("batches.csv", "step,epoch,loss,lr,samples_per_s\n1,1,0.5,0.1,100\n2,1,lots,0.1,100\n",
     "batches.csv, line 3: loss = 'lots' is not a number"),
    ("batches.csv", "step,epoch,loss,lr,samples_per_s\n1.5,1,0.5,0.1,100\n", "step = '1.5' is not a whole number"),
    ("batches.csv", "step,epoch,loss,lr,samples_per_s\n1,1,0.5\n", "line 2: the number of values differs"),
    ("batches.csv", "step,epoch,loss,lr,samples_per_s\n1,1,0.5,0.1,100,7\n", "the number of values differs"),
    ("epochs.csv", "epoch,test_acc\n1,\n", "epochs.csv, line 2: test_acc = '' is not a number"),
    ("epochs.csv", b"epoch,test_acc\n1,\xff\n", "not UTF-8"),
])
def test_a_damaged_csv_row_is_an_error_naming_the_file_line_and_column(tmp_path, name, text, says):
    store = RunStore(tmp_path / "runs")
    rec = store.save("run", *fake_run())
    (rec.folder / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    before = snapshot(tmp_path / "runs")
    (record,) = store.list()  # the run still lists: only its curves are damaged
    with pytest.raises(RunError) as err:
        record.batches() if name == "batches.csv" else record.epochs()
    assert says in str(err.value)
    assert snapshot(tmp_path / "runs") == before


HOSTILE_FILES = r'''
import os, sys, json
from core.checkpoint import CheckpointError
from core.runs import RunError, RunStore
store = RunStore(sys.argv[1])
out = {}
for r in store.list():
    for what, read in (("batches", r.batches), ("epochs", r.epochs), ("model", r.checkpoint)):
        try:
            read()
            out[f"{r.name} {what}"] = "read"
        except (RunError, CheckpointError) as err:
            out[f"{r.name} {what}"] = str(err)
print(json.dumps(out))
'''


def test_files_linked_to_dev_zero_a_pipe_or_outside_the_folder_are_refused_without_hanging(tmp_path):
    store = RunStore(tmp_path / "runs")
    zero, fifo, outside = (store.save(name, *fake_run()) for name in ("zero", "fifo", "outside"))
    for name in ("batches.csv", "model.pt"):
        link(name, "/dev/zero")(zero.folder)
        (fifo.folder / name).unlink()
        os.mkfifo(fifo.folder / name)  # opening it for reading would block for ever
        link(name, RunStore(tmp_path / "other").save("elsewhere", *fake_run()).folder / name)(outside.folder)
    before = snapshot(tmp_path / "runs")
    done = subprocess.run([sys.executable, "-c", HOSTILE_FILES, str(tmp_path / "runs")], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    for run, says in (("zero", "points outside its folder"), ("fifo", "is not a regular file")):
        assert says in out[f"{run} batches"] and says in out[f"{run} model"]
        assert out[f"{run} epochs"] == "read"
    assert "points outside its folder" in out["outside batches"] and "points outside its folder" in out["outside model"]
    assert snapshot(tmp_path / "runs") == before


def test_the_runs_page_and_the_class_set_page_name_a_skipped_folder(tmp_path, runs_folder):
    from tests.apptest import app

    store, good, bad = two_good_runs_and(tmp_path, write("run.json", []))
    assert store.root == runs_folder
    (runs_folder / good[0] / "batches.csv").write_text("step,epoch,loss,lr,samples_per_s\n1,1,oops,0.1,5\n")
    at = app("views/runs.py")
    assert not at.exception
    notes = [w.value.replace("\\", "") for w in at.warning]  # Markdown-escaped on the page
    assert any(bad in note and "not an object" in note for note in notes), notes
    assert any("loss = 'oops' is not a number" in note for note in notes), notes  # that run's curve is left out
    assert len(at.dataframe[0].value) == 2

    from core.classset import ClassSet
    from tests.apptest import drawing
    ClassSet().add(drawing(3), 3)
    at.switch_page("views/classset.py")
    at.run()
    assert not at.exception
    assert any(bad in c.value.replace("\\", "") for c in at.caption)
    options = at.selectbox(key="classset.model").options
    assert sum("Run:" in o for o in options) == 2


def test_an_unchanged_run_json_is_read_once_and_any_change_is_seen(tmp_path, monkeypatch):
    from core import runs

    reads = []
    real_read = runs.read_regular
    monkeypatch.setattr(runs, "read_regular", lambda path, *a, **k: reads.append(path) or real_read(path, *a, **k))
    monkeypatch.setattr(runs, "_CHECKED", {})
    store = RunStore(tmp_path / "runs")
    rec = store.save("first name", *fake_run())
    meta_path = rec.folder / "run.json"
    store.list(), store.list()
    assert len(reads) == 3  # save's own get() and both listings: a file written this moment is not trusted yet

    monkeypatch.setattr(runs, "_SETTLED_NS", 0)  # as if the file had been written long ago
    reads.clear()
    store.list(), store.list(), store.get(rec.id)
    assert len(reads) == 1
    store.list()[0].settings["lr"] = 5.0  # a caller changing its copy changes nobody else's
    assert store.list()[0].settings == {"lr": 0.1} and len(reads) == 1

    store.rename(rec.id, "second name")  # written anew: another file
    assert store.list()[0].name == "second name"
    stat = meta_path.stat()
    meta_path.write_text(meta_path.read_text().replace("second name", "SECOND NAME"))  # in place, same size
    os.utime(meta_path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and its modification time put back
    assert store.list()[0].name == "SECOND NAME"  # its change time moved all the same

    meta_path.write_text("[]")
    assert store.list() == [] and "not an object" in store.skipped_note()
    meta_path.unlink()
    meta_path.symlink_to(tmp_path / "elsewhere.json")
    (tmp_path / "elsewhere.json").write_text(json.dumps({"name": "moved", "created": "2026-01-01"}))
    assert store.list() == [] and "points outside its folder" in store.skipped_note()
