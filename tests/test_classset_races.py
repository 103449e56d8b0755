"""The class set under races between processes: two people adding or importing at the same moment.

Each test starts two real processes. They prepare everything first, say "ready", and then wait
on their stdin; the test writes "go" to both only once both are ready, so the racing part starts
together in both. Nothing here sleeps.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from core import classset
from core.classset import ClassSet
from tests.test_classset import canvas, make_zip, png_bytes

ROOT = Path(__file__).resolve().parent.parent

WORKER = r'''
import json, sys
from pathlib import Path
from core import classset
from tests.test_classset_races import variants

job = json.loads(sys.argv[1])
classset.MAX_ITEMS = job.get("max_items", classset.MAX_ITEMS)
cs = classset.ClassSet(job["folder"])
if job["kind"] == "add":
    drawings = variants(job["n"])
else:
    data = Path(job["zip"]).read_bytes()
print("ready", flush=True)
assert sys.stdin.readline() == "go\n"
if job["kind"] == "add":
    for img in drawings:
        cs.add(img, job["label"], background="dark")
    print(json.dumps({"done": len(drawings)}))
else:
    report = cs.import_zip(data)
    print(json.dumps({"added": report.added, "duplicates": report.duplicates, "skipped": report.skipped}))
'''


def variants(n: int, digit: int = 3, first: int = 0) -> list[np.ndarray]:
    """``n`` different drawings of ``digit`` (white ink on black, 280 x 280): one pixel's shade tells them apart."""
    base = canvas(digit)[..., 0]
    ys, xs = np.nonzero(base == 255)
    out = []
    for i in range(first, first + n):
        img = base.copy()
        for bit in range(16):  # i in binary, one shade step on bright ink pixels: the same digit to the eye
            if i >> bit & 1:
                img[ys[bit * 37], xs[bit * 37]] = 254
        out.append(img)
    return out


def race(*jobs: dict) -> list[dict]:
    """Run the jobs in processes of their own, released together; each one's JSON answer."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(job)], cwd=ROOT, env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE) for job in jobs]
    try:
        for p in procs:
            assert p.stdout.readline() == "ready\n"
        for p in procs:  # both are waiting on their stdin: release them together
            p.stdin.write("go\n")
            p.stdin.flush()
        answers = [p.communicate(timeout=600)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), answers
    return [json.loads(a) for a in answers]


def stored(folder: Path) -> dict:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_two_processes_adding_the_same_drawings_with_different_labels_store_each_once(classset_folder):
    n = 300
    kept = ClassSet().add(canvas(8), 8)  # already there before: must not change
    before = stored(classset_folder)
    ids = {classset._pixel_id(img) for img in variants(n)}
    assert len(ids) == n

    race(*({"kind": "add", "folder": str(classset_folder), "n": n, "label": label} for label in (1, 2)))

    names = [p.name for p in classset_folder.iterdir()]
    assert all(classset._NAME.match(name) for name in names), names  # no temporary file left behind
    drawings = ClassSet().list()
    assert len(drawings) == n + 1 and len({d.id for d in drawings}) == n + 1  # each stored once...
    assert {d.id for d in drawings} == ids | {kept.id}
    assert all(d.label in (1, 2) for d in drawings if d.id != kept.id)  # ...under one of the two labels
    after = stored(classset_folder)
    assert {name: after[name] for name in before} == before
    with zipfile.ZipFile(io.BytesIO(ClassSet().export_zip())) as zf:
        members = zf.namelist()
        rows = zf.read("labels.csv").decode().splitlines()[1:]
    assert len(members) == len(set(members)) == n + 2
    assert len(rows) == len({row.split(",")[0] for row in rows}) == n + 1


def test_two_imports_at_once_never_take_the_set_past_its_limit(tmp_path, classset_folder):
    limit, each = 60, 40  # as two 2,600-drawing imports into a set of 5,000, scaled down
    for img in variants(10, digit=8):
        ClassSet().add(img, 8, background="dark")
    before = stored(classset_folder)
    zips = []
    for k, digit in enumerate((4, 5)):
        members = {f"images/{i}.png": png_bytes(img) for i, img in enumerate(variants(each, digit, first=100 * k))}
        rows = "file,label\n" + "".join(f"{name},{digit}\n" for name in members)
        zips.append(tmp_path / f"{digit}.zip")
        zips[-1].write_bytes(make_zip({"labels.csv": rows.encode(), **members}))

    answers = race(*({"kind": "import", "folder": str(classset_folder), "zip": str(z), "max_items": limit}
                     for z in zips))

    drawings = ClassSet().list()
    assert len(drawings) == limit and len({d.id for d in drawings}) == limit  # full, and not one more
    assert sum(a["added"] for a in answers) == limit - 10 and all(a["duplicates"] == 0 for a in answers)
    refused = [line for a in answers for line in a["skipped"]]
    assert len(refused) == 2 * each - (limit - 10)
    assert all(line.endswith(f"the class set is full ({limit} drawings): remove some before adding more")
               for line in refused)
    after = stored(classset_folder)
    assert {name: after[name] for name in before} == before
    assert all(classset._NAME.match(p.name) for p in classset_folder.iterdir())
