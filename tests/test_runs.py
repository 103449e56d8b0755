import csv
import json

import pytest

from core import checkpoint
from core import models as M
from core.runs import RunStore
from core.trainer import BatchEvent, EndEvent, EpochEvent


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
