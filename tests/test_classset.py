import csv
import io
import json
import math
import os
import struct
import subprocess
import sys
import time
import zlib
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import checkpoint, classset, drawn, paths
from core import models as M
from core.classset import ClassSet, ClassSetError
from core.cli import classset as classset_cli
from core.inference import classify, to_ink

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model():
    return checkpoint.load(paths.BUNDLED_MODEL).build()


def canvas(digit: int, seed: int = 0) -> np.ndarray:
    """A white-on-black RGBA canvas as the Draw page receives it; each seed draws it differently."""
    style = drawn.Style(height=0.7, aspect=0.68, cx=0.5 + 0.01 * (seed % 7), cy=0.5, slant=0.05, rotate_deg=0,
                        stroke=0.07 + 0.002 * seed, wobble=0)
    ink = drawn.render(drawn.place(drawn.TEMPLATES[digit][0], style, 280), 280, 18 + seed % 5)
    return np.dstack([ink, ink, ink, np.full_like(ink, 255)])


def png_bytes(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def make_zip(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def claim_size(data: bytes, name: str, size: int) -> bytes:
    """Make the central directory say that ``name`` unpacks to ``size`` bytes, whatever it holds."""
    data = bytearray(data)
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        length = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46:at + 46 + length].decode() == name:
            struct.pack_into("<I", data, at + 24, size)
            return bytes(data)
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"{name} not in the zip")


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


# ---------------------------------------------------------------------- the folder

def test_add_list_count_relabel_remove_and_clear(classset_folder):
    cs = ClassSet()
    assert cs.root == classset_folder and not classset_folder.exists()  # created on the first write only
    assert cs.list() == [] and len(cs) == 0 and cs.counts() == [0] * 10

    a, b, c = cs.add(canvas(3), 3), cs.add(canvas(7), 7, background="dark"), cs.add(canvas(7, seed=1), 7)
    assert len({a.id, b.id, c.id}) == 3 and all(len(d.id) == 16 for d in (a, b, c))
    assert a.path == classset_folder / f"3-{a.id}.png" and a.label == 3
    now = time.time()
    for i, d in enumerate((a, b, c)):
        os.utime(d.path, (now + i, now + i))
    assert cs.list() == [a, b, c] and len(cs) == 3 and cs.counts() == [0, 0, 0, 1, 0, 0, 0, 2, 0, 0]

    img = cs.image(a)
    assert img.dtype == np.uint8 and img.shape == (280, 280)
    assert np.array_equal(img, np.rint(to_ink(canvas(3)) * 255).astype(np.uint8))
    with Image.open(a.path) as stored:
        assert stored.mode == "L"

    assert cs.add(canvas(3), 3) == a and len(cs) == 3  # the same drawing again: no duplicate
    moved = cs.add(canvas(3), 5)  # the same drawing with another digit: the author changed their mind
    assert moved.id == a.id and moved.label == 5 and len(cs) == 3 and not a.path.exists()
    assert cs.list()[0] == moved  # relabelling keeps its place

    (classset_folder / "notes.txt").write_text("hello")
    (classset_folder / f".3-{a.id}.png.123.tmp").write_bytes(b"half written")
    (classset_folder / "12-0123456789abcdef.png").write_bytes(b"not ours")
    assert len(cs) == 3 and [d.id for d in cs.list()] == [a.id, b.id, c.id]

    assert cs.relabel(b.id, 1).label == 1 and cs.counts()[1] == 1
    with pytest.raises(ClassSetError, match="no drawing"):
        cs.relabel("0123456789abcdef", 2)
    with pytest.raises(ClassSetError, match="digit 0-9"):
        cs.relabel(b.id, 10)
    assert cs.remove([b.id, "0123456789abcdef", "../notes", b.id]) == 1 and len(cs) == 2
    assert cs.remove(c.id) == 1
    assert cs.clear() == 1 and len(cs) == 0 and (classset_folder / "notes.txt").exists()


@pytest.mark.parametrize("label", [10, -1, True, 3.0, "3", None])
def test_a_label_must_be_a_digit(label, classset_folder):
    with pytest.raises(ClassSetError, match="digit 0-9"):
        ClassSet().add(canvas(3), label)
    assert not classset_folder.exists()


@pytest.mark.parametrize("pixels, message", [
    (np.zeros((280, 280, 4), np.uint8), "Nothing drawn"),
    (np.dstack([drawn.render([[(140.0, 140.0), (141.0, 141.0)]], 280, 20)] * 3 + [np.full((280, 280), 255, np.uint8)]),
     "only a dot"),
    (np.full((280, 280, 4), 255, np.uint8), "filled with ink"),
])
def test_nothing_drawn_is_refused_with_the_canvas_message(pixels, message, classset_folder):
    with pytest.raises(ClassSetError, match=message):
        ClassSet().add(pixels, 4, background="dark")
    assert not classset_folder.exists()


def test_a_full_set_takes_no_more_but_still_relabels(monkeypatch):
    monkeypatch.setattr(classset, "MAX_ITEMS", 2)
    cs = ClassSet()
    cs.add(canvas(1), 1)
    cs.add(canvas(2), 2)
    with pytest.raises(ClassSetError, match="full"):
        cs.add(canvas(3), 3)
    assert cs.add(canvas(2), 8).label == 8 and len(cs) == 2


def test_black_on_white_and_huge_images_are_stored_as_white_ink_on_black():
    cs = ClassSet()
    ink = canvas(4)[..., 0]
    d = cs.add(255 - ink, 4)  # a scan: dark ink on white paper
    assert np.array_equal(cs.image(d), ink)
    big = np.asarray(Image.fromarray(ink).resize((1400, 1400)))
    img = cs.image(cs.add(big, 4))
    assert img.shape == (560, 560) and img.max() > 200 and img[0].max() == 0


# ---------------------------------------------------------------------- zips

def test_export_then_import_into_an_empty_folder_gives_the_same_set(tmp_path):
    cs = ClassSet(tmp_path / "a")
    for i, digit in enumerate([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 3]):
        cs.add(canvas(digit, seed=i), digit)
    ring = np.zeros((280, 280), np.uint8)  # ink along most of the border: "auto" would read it inverted
    ring[:25], ring[-25:], ring[:, :25], ring[:, -25:] = 255, 255, 255, 255
    cs.add(ring, 0, background="dark")
    data = cs.export_zip()
    assert data == cs.export_zip()  # the same set always gives the same bytes

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        rows = list(csv.reader(io.StringIO(zf.read("labels.csv").decode())))
    assert names == [f"images/{d.id}.png" for d in cs.list()] + ["labels.csv"]
    assert rows == [["file", "label"]] + [[f"images/{d.id}.png", str(d.label)] for d in cs.list()]

    other = ClassSet(tmp_path / "b")
    report = other.import_zip(data)
    assert (report.added, report.duplicates, report.skipped) == (13, 0, [])
    before = {d.id: (d.label, cs.image(d)) for d in cs.list()}
    after = {d.id: (d.label, other.image(d)) for d in other.list()}
    assert before.keys() == after.keys()
    for key, (label, img) in before.items():
        assert after[key][0] == label and np.array_equal(after[key][1], img)
    assert [d.id for d in other.list()] == [d.id for d in cs.list()]

    again = other.import_zip(data)
    assert (again.added, again.duplicates, again.skipped) == (0, 13, []) and len(other) == 13


def test_a_hand_made_zip_of_scans_with_a_bom_and_crlf_is_imported():
    ink7, ink2 = canvas(7)[..., 0], canvas(2)[..., 0]
    labels = "\ufeffFile,Label\r\nscan7.png,7\r\n\r\nphoto2.jpg , 2 \r\n".encode()
    data = make_zip({"class 4b/labels.csv": labels, "class 4b/scan7.png": png_bytes(255 - ink7),
                     "class 4b/photo2.jpg": png_bytes(np.dstack([255 - ink2] * 3), "JPEG"),
                     "__MACOSX/class 4b/labels.csv": b"junk"}, zipfile.ZIP_DEFLATED)
    cs = ClassSet()
    report = cs.import_zip(data)
    assert (report.added, report.duplicates, report.skipped) == (2, 0, [])
    assert sorted(d.label for d in cs.list()) == [2, 7]
    scan = next(d for d in cs.list() if d.label == 7)
    assert np.array_equal(cs.image(scan), ink7)  # stored white on black


def test_a_spreadsheets_trailing_empty_column_is_ignored():
    ink = canvas(4)[..., 0]
    data = make_zip({"labels.csv": b"file,label,\na.png,4,\n", "a.png": png_bytes(ink)})
    report = ClassSet().import_zip(data)
    assert (report.added, report.skipped) == (1, [])


def test_a_large_image_named_by_its_own_hash_is_still_scaled_down_and_a_huge_one_refused():
    large = np.kron(canvas(1)[..., 0], np.ones((5, 5), np.uint8))  # 1400 px a side, exported-looking
    huge = np.kron(canvas(2)[..., 0], np.ones((12, 12), np.uint8))  # 3360 px a side: no drawing is that big
    names = [f"images/{classset._pixel_id(img)}.png" for img in (large, huge)]
    data = make_zip({"labels.csv": f"file,label\n{names[0]},1\n{names[1]},2\n".encode(),
                     names[0]: png_bytes(large), names[1]: png_bytes(huge)})
    cs = ClassSet()
    report = cs.import_zip(data)
    assert report.added == 1 and max(cs.image(cs.list()[0]).shape) <= classset.STORED_SIDE
    assert report.skipped == [f"{names[1]}: 3360 x 3360 pixels; an imported image is at most 2,000,000 pixels "
                              "(a drawing exported from here is at most 1000 x 1000)"]


@pytest.mark.parametrize("data, message", [
    (b"hello", "not a zip file"),
    (b"", "not a zip file"),
    (bytes(range(256)) * 40, "not a zip file"),
    (make_zip({"images/a.png": png_bytes(canvas(1)[..., 0])}), "no labels.csv"),
    (make_zip({"labels.csv": b"\xff\xfe\x00b,a\n"}), "not UTF-8"),
])
def test_a_zip_that_is_not_a_class_set_is_refused(data, message):
    with pytest.raises(ClassSetError, match=message):
        ClassSet().import_zip(data)
    assert len(ClassSet()) == 0


def test_bad_rows_are_skipped_with_their_reason_and_names_never_become_paths(tmp_path):
    good = png_bytes(canvas(5)[..., 0])
    labels = ("file,label\n"
              "ok.png,5\n"
              "ok.png,five\n"
              "ok.png,10\n"
              "ok.png\n"
              "gone.png,3\n"
              "notes.png,3\n"
              "blank.png,3\n"
              "../../evil.png,8\n"
              "/etc/abs.png,9\n")
    data = make_zip({"labels.csv": labels.encode(), "ok.png": good, "notes.png": b"just some text",
                     "blank.png": png_bytes(np.zeros((280, 280), np.uint8)),
                     "../../evil.png": png_bytes(canvas(8)[..., 0]), "/etc/abs.png": png_bytes(canvas(9)[..., 0])})
    root = tmp_path / "deep" / "down" / "classset"
    cs = ClassSet(root)
    report = cs.import_zip(data)
    assert report.added == 3 and report.duplicates == 0
    skipped = dict(line.split(": ", 1) for line in report.skipped)
    assert [line.split(": ")[0] for line in report.skipped] == ["ok.png", "ok.png", "ok.png", "gone.png",
                                                                "notes.png", "blank.png"]
    assert "'five' is not a digit 0-9" in report.skipped[0] and "'10' is not a digit" in report.skipped[1]
    assert "'' is not a digit" in report.skipped[2]
    assert skipped["gone.png"] == "not in the zip"
    assert "not an image that can be read" in skipped["notes.png"]
    assert "Nothing drawn" in skipped["blank.png"]
    assert sorted(d.label for d in cs.list()) == [5, 8, 9]
    assert all(p.parent == root for p in files_under(tmp_path))


def test_too_many_rows_are_refused_saying_how_many_fit(monkeypatch):
    monkeypatch.setattr(classset, "MAX_ITEMS", 3)
    cs = ClassSet()
    cs.add(canvas(0), 0)
    rows = "file,label\n" + "".join(f"{d}.png,{d}\n" for d in (1, 2, 3))
    data = make_zip({"labels.csv": rows.encode(), **{f"{d}.png": png_bytes(canvas(d)[..., 0]) for d in (1, 2, 3)}})
    with pytest.raises(ClassSetError, match="lists 3 drawings but only 2 more fit"):
        cs.import_zip(data)
    assert len(cs) == 1
    many = make_zip({f"{i}.png": b"x" for i in range(30)} | {"labels.csv": b"file,label\n"})
    with pytest.raises(ClassSetError, match="too many files"):
        cs.import_zip(many)


def test_a_zip_over_the_size_limit_is_refused_before_opening(monkeypatch):
    monkeypatch.setattr(classset, "MAX_ZIP_BYTES", 1000)
    with pytest.raises(ClassSetError, match="at most"):
        ClassSet().import_zip(b"PK" + bytes(2000))


def peak_memory(fn):
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_zip_bombs_are_refused_without_unpacking_them():
    labels = b"file,label\nbomb.png,1\n"
    bomb = make_zip({"labels.csv": labels, "bomb.png": bytes(30 * 1024 * 1024)}, zipfile.ZIP_DEFLATED)
    assert len(bomb) < 100_000
    cs = ClassSet()

    def refused(data, message):
        with pytest.raises(ClassSetError, match=message):
            cs.import_zip(data)

    assert peak_memory(lambda: refused(bomb, "bomb.png would unpack to 30 MB")) < 5e6
    claims = claim_size(make_zip({"labels.csv": labels, "bomb.png": b"small"}), "bomb.png", 2_000_000_000)
    refused(claims, "would unpack to 1907 MB")
    many = make_zip({"labels.csv": labels, **{f"{i}.png": b"x" for i in range(25)}})
    for i in range(25):
        many = claim_size(many, f"{i}.png", 9_000_000)
    refused(many, "more than 200 MB")

    # a header that claims a small size for a big member: reading stops at the claim
    liar = claim_size(bomb, "bomb.png", 1000)
    report = None

    def run():
        nonlocal report
        report = cs.import_zip(liar)

    assert peak_memory(run) < 5e6
    assert report.added == 0 and report.skipped[0].startswith("bomb.png: ") and len(cs) == 0


# ---------------------------------------------------------------------- scoring

def test_score_matches_classifying_each_stored_file(model, classset_folder):
    cs = ClassSet()
    for i in range(24):
        digit = i % 10
        cs.add(canvas(digit, seed=i), digit if i % 5 else (digit + 1) % 10)  # every fifth one mislabelled
    result = classset.score(model, cs)

    expected = {}
    for path in sorted(classset_folder.glob("*.png")):
        label, drawing_id = path.stem.split("-")
        pred = classify(model, np.asarray(Image.open(path)), background="dark")
        assert pred.ok
        expected[drawing_id] = (int(label), pred.digit, pred.confidence)
    assert len(result.drawings) == 24 and result.probabilities.shape == (24, 10)
    assert result.labels.dtype == np.int64 and result.predictions.dtype == np.int64
    assert result.confidences.dtype == np.float32 and result.probabilities.dtype == np.float32
    for i, d in enumerate(result.drawings):
        label, digit, confidence = expected[d.id]
        assert result.labels[i] == label and result.predictions[i] == digit
        assert result.confidences[i] == pytest.approx(confidence, abs=1e-5)
    right = sum(label == digit for label, digit, _ in expected.values())
    assert result.accuracy == pytest.approx(right / 24) and right < 24

    wrong = result.mistakes()
    assert len(wrong) == 24 - right and all(result.predictions[i] != result.labels[i] for i in wrong)
    assert list(result.confidences[wrong]) == sorted(result.confidences[wrong], reverse=True)
    per_class = result.per_class()
    for label in range(10):
        mask = result.labels == label
        want = (result.predictions[mask] == label).mean() if mask.any() else math.nan
        assert per_class[label] == pytest.approx(want, nan_ok=True)


def test_score_of_an_empty_set_and_of_damaged_files(model, classset_folder):
    empty = classset.score(model, ClassSet())
    assert math.isnan(empty.accuracy) and empty.probabilities.shape == (0, 10) and empty.mistakes() == []
    assert np.isnan(empty.per_class()).all()

    cs = ClassSet()
    good = cs.add(canvas(6), 6)
    (classset_folder / "3-0123456789abcdef.png").write_bytes(b"damaged")
    (classset_folder / "4-fedcba9876543210.png").write_bytes(png_bytes(np.zeros((280, 280), np.uint8)))
    result = classset.score(model, cs)
    by_id = {d.id: i for i, d in enumerate(result.drawings)}
    for bad in ("0123456789abcdef", "fedcba9876543210"):
        i = by_id[bad]
        assert result.predictions[i] == -1 and result.confidences[i] == 0 and i in result.mistakes()
    assert result.predictions[by_id[good.id]] == 6 and result.accuracy == pytest.approx(1 / 3)


def test_score_model_scores_a_loaded_model_or_says_why_it_cannot(tmp_path):
    cs = ClassSet(tmp_path / "small")
    for digit in (1, 4, 7):
        cs.add(canvas(digit, seed=digit), digit)
    bundled = checkpoint.load(paths.BUNDLED_MODEL)
    scored = classset.score_model(lambda: bundled, cs)
    assert scored.problem is None and scored.test_acc == bundled.metrics["test_acc"]
    assert list(scored.score.predictions) == list(classset.score(bundled.build(), cs).predictions)

    cfg = M.MLPConfig(hidden=(16,))
    fashion = checkpoint.from_model(M.build_model(cfg), cfg, dataset="fashion-mnist", name="clo*thes",
                                    metrics={"test_acc": 0.8})
    refused = classset.score_model(lambda: fashion, cs, quote=lambda name: name.replace("*", "\\*"))
    assert refused.score is None and refused.test_acc == 0.8
    assert refused.problem == classset.mnist_only(fashion, "clo\\*thes")
    assert refused.problem.startswith("“clo\\*thes” was trained on Fashion-MNIST") and "trained on MNIST" in refused.problem
    assert classset.mnist_only(bundled) is None and "“clo*thes”" in classset.mnist_only(fashion)

    def unreadable():
        raise checkpoint.CheckpointError("not a readable PyTorch file")

    broken = classset.score_model(unreadable, cs)
    assert broken == classset.ModelScore(None, "This model could not be loaded: not a readable PyTorch file", None)


# ---------------------------------------------------------------------- command line

def test_cli_score_export_import_and_list(tmp_path, capsys):
    folder = tmp_path / "mine"
    cs = ClassSet(folder)
    for i in range(6):
        cs.add(canvas(i, seed=i), i)
    wrong = cs.add(canvas(1, seed=9), 7)

    assert classset_cli.main(["score", "--folder", str(folder)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = classset.score(checkpoint.load(paths.BUNDLED_MODEL).build(), cs)
    right = int((result.predictions == result.labels).sum())
    assert lines[0] == f"accuracy {100 * right / 7:.2f} % on 7 drawings ({right} right)"
    mistake = [line for line in lines[1:] if line.startswith(wrong.member)]
    assert len(lines) == 1 + 7 - right and len(mistake) == 1
    predicted = result.predictions[[d.id for d in result.drawings].index(wrong.id)]
    assert mistake[0].split("\t")[:3] == [wrong.member, "true 7", f"predicted {predicted}"]

    assert classset_cli.main(["score", "--folder", str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 7 and report["right"] == right and report["accuracy"] == pytest.approx(right / 7)
    assert len(report["per_class"]) == 10 and report["per_class"][9] is None
    assert {"file": wrong.member, "label": 7, "prediction": int(predicted)}.items() <= \
        next(m for m in report["mistakes"] if m["file"] == wrong.member).items()

    out = tmp_path / "class.zip"
    assert classset_cli.main(["export", str(out), "--folder", str(folder)]) == 0
    assert out.read_bytes() == cs.export_zip()
    assert classset_cli.main(["import", str(out), "--folder", str(tmp_path / "copy")]) == 0
    assert "added 7, already there 0, skipped 0" in capsys.readouterr().out
    assert classset_cli.main(["import", str(out), "--folder", str(tmp_path / "copy")]) == 0  # duplicates only
    junk = tmp_path / "junk.zip"
    junk.write_bytes(make_zip({"labels.csv": b"file,label\nx.png,1\n"}))
    assert classset_cli.main(["import", str(junk), "--folder", str(tmp_path / "copy")]) == 1
    assert "skipped x.png: not in the zip" in capsys.readouterr().out
    junk.write_bytes(b"nope")
    assert classset_cli.main(["import", str(junk)]) == 2
    assert "not a zip file" in capsys.readouterr().err

    assert classset_cli.main(["list", "--folder", str(tmp_path / "copy")]) == 0
    listed = capsys.readouterr().out.strip().splitlines()
    assert listed == [f"{d}\t{n}" for d, n in enumerate([1, 1, 1, 1, 1, 1, 0, 1, 0, 0])] + ["total\t7"]


def test_cli_refuses_an_empty_set_and_models_that_cannot_read_digits(tmp_path, capsys):
    assert classset_cli.main(["score"]) == 1
    assert classset.EMPTY_MESSAGE in capsys.readouterr().err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert classset_cli.main(["score", "--checkpoint", str(junk)]) == 2
    assert "not a readable PyTorch file" in capsys.readouterr().err
    cfg = M.MLPConfig(hidden=(16,))
    fashion = checkpoint.save(checkpoint.from_model(M.build_model(cfg), cfg, dataset="fashion-mnist"),
                              tmp_path / "fashion.pt")
    ClassSet().add(canvas(1), 1)
    assert classset_cli.main(["score", "--checkpoint", str(fashion)]) == 2
    assert "Fashion-MNIST" in capsys.readouterr().err


def test_the_module_runs_from_the_command_line(tmp_path):
    ClassSet().add(canvas(3), 3)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "core", "classset", "score", "--json"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"accuracy": 1.0, "n": 1, "right": 1, "per_class": [None] * 3 + [1.0] + [None] * 6,
                                      "mistakes": []}


def test_a_class_adding_at_the_same_moment_loses_no_drawing(classset_folder):
    from concurrent.futures import ThreadPoolExecutor

    drawings = [(canvas(d, seed=s), d) for d in range(10) for s in range(3)]  # 30 different drawings
    with ThreadPoolExecutor(max_workers=8) as pool:  # eight students pressing Add together, twice each
        list(pool.map(lambda item: ClassSet().add(*item), drawings + drawings))
    stored = ClassSet().list()
    assert len(stored) == 30 and sorted(d.label for d in stored) == sorted(d for _, d in drawings)
    assert not [p for p in classset_folder.iterdir() if not p.name.endswith(".png")]  # no temporary files left


# ---------------------------------------------------------------------- the cost of an import

def png_of_size(width: int, height: int, rgba: bool = False) -> bytes:
    """A valid black PNG of any size, built a row at a time: a few hundred KB for 25 megapixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = bytes(1 + width * (4 if rgba else 1))  # filter byte 0, then the pixels
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 6 if rgba else 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def stored(folder: Path) -> dict:
    """Each file of the class set with its bytes and time: to show that a refused import changed nothing."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}


IMPORT_COST = r'''
import json, resource, sys, time
from pathlib import Path
from core.classset import ClassSet
data = Path(sys.argv[2]).read_bytes()
cs = ClassSet(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
report = cs.import_zip(data)
print(json.dumps({"seconds": time.perf_counter() - start,
                  "extra_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024,
                  "added": report.added, "duplicates": report.duplicates, "skipped": report.skipped}))
'''


@pytest.mark.parametrize("rgba, times", [(True, 1), (False, 40)], ids=["rgba-25-megapixels", "grey-25-megapixels-x40"])
def test_a_zip_of_huge_images_costs_little_time_and_memory_and_stores_nothing(tmp_path, classset_folder, rgba, times):
    kept = ClassSet().add(canvas(8), 8)
    before = stored(classset_folder)
    good = png_bytes(canvas(6)[..., 0])
    rows = "file,label\n" + "huge.png,3\n" * times + "good.png,6\n"
    path = tmp_path / "huge.zip"
    path.write_bytes(make_zip({"labels.csv": rows.encode(), "huge.png": png_of_size(5000, 5000, rgba),
                               "good.png": good}, zipfile.ZIP_DEFLATED))
    assert path.stat().st_size < 200_000
    done = subprocess.run([sys.executable, "-c", IMPORT_COST, str(classset_folder), str(path)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    # before: 22 s and 560 MB for forty grey rows, 850 MB for one RGBA row; the header alone refuses it now
    assert out["seconds"] < 5 and out["extra_mb"] < 150, out
    assert out["added"] == 1 and len(out["skipped"]) == times
    assert all(line == "huge.png: 5000 x 5000 pixels; an imported image is at most 2,000,000 pixels (a drawing "
               "exported from here is at most 1000 x 1000)" for line in out["skipped"])
    after = stored(classset_folder)
    assert {name: after[name] for name in before} == before and len(after) == len(before) + 1
    assert kept in ClassSet().list()


def test_each_distinct_image_of_a_zip_is_decoded_once(monkeypatch):
    decoded = []

    def counting(data, *args, **kwargs):
        decoded.append(len(data))
        return load(data, *args, **kwargs)

    load = classset.load_image_bytes
    monkeypatch.setattr(classset, "load_image_bytes", counting)
    square = png_bytes(255 - np.asarray(Image.fromarray(canvas(7)[..., 0]).resize((700, 700))))
    rows = "file,label\n" + "square.png,7\n" * 3 + "square.png,1\n" + "other.png,2\n" * 5 + "notes.png,4\n" * 4
    data = make_zip({"labels.csv": rows.encode(), "square.png": square, "other.png": png_bytes(canvas(2)[..., 0]),
                     "notes.png": b"not an image"})
    report = ClassSet().import_zip(data)
    assert len(decoded) == 3  # one per distinct member, however often it is listed
    assert (report.added, report.duplicates) == (2, 7)
    assert len(report.skipped) == 4 and all("not an image that can be read" in s for s in report.skipped)
    assert sorted(d.label for d in ClassSet().list()) == [2, 7]  # the first row's label is kept


def test_a_zip_whose_images_add_up_to_too_many_pixels_is_refused_before_decoding(monkeypatch, classset_folder):
    kept = ClassSet().add(canvas(8), 8)
    before = stored(classset_folder)
    monkeypatch.setattr(classset, "IMPORT_TOTAL_PIXELS", 3_000_000)
    monkeypatch.setattr(classset, "load_image_bytes", lambda *a, **k: pytest.fail("decoded"))
    members = {f"{i}.png": png_bytes(np.full((1400, 1000 + i), i, np.uint8)) for i in range(3)}
    rows = "file,label\n" + "".join(f"{name},1\n" for name in members) + "0.png,1\n" * 10
    with pytest.raises(ClassSetError, match="add up to 4 million pixels; one import reads at most 3 million"):
        ClassSet().import_zip(make_zip({"labels.csv": rows.encode(), **members}))
    assert stored(classset_folder) == before and ClassSet().list() == [kept]


def test_the_import_cli_prints_names_from_the_zip_escaped(tmp_path, capsys):
    hostile = ["\x1b]0;owned\x07.png", "\x1b[2J\x1b[H.png", "a\rb\u009b31m.png"]
    buf = io.StringIO()
    csv.writer(buf).writerows([["file", "label"], *([name, 3] for name in hostile), ["ok.png", "\x1b[5m"]])
    rows = buf.getvalue()
    path = tmp_path / "hostile.zip"
    path.write_bytes(make_zip({"labels.csv": rows.encode(), hostile[0]: b"text", "ok.png": b"x"}))
    assert classset_cli.main(["import", str(path), "--folder", str(tmp_path / "set")]) == 1
    out = capsys.readouterr().out
    assert not any(c in out for c in "\x1b\x07\r\u009b")
    assert "skipped \\x1b]0;owned\\x07.png: " in out and "skipped \\x1b[2J\\x1b[H.png: not in the zip" in out
    assert "skipped a\\rb\\x9b31m.png: not in the zip" in out and "label '\\x1b[5m' is not a digit" in out

    big = "\x1b[31mbig.png"
    path.write_bytes(claim_size(make_zip({"labels.csv": b"file,label\n", big: b"x"}), big, 50_000_000))
    assert classset_cli.main(["import", str(path), "--folder", str(tmp_path / "set")]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b[31mbig.png would unpack to 48 MB" in err


PLANTED = r'''
import json, sys, zipfile, io
from core import checkpoint, classset, paths
cs = classset.ClassSet(sys.argv[1])
result = classset.score(checkpoint.load(paths.BUNDLED_MODEL).build(), cs)
with zipfile.ZipFile(io.BytesIO(cs.export_zip())) as zf:
    names = zf.namelist()
print(json.dumps({"scored": {d.id: int(p) for d, p in zip(result.drawings, result.predictions)}, "exported": names}))
'''


def test_files_planted_in_the_folder_are_never_read_and_a_drawing_under_two_labels_exports_once(tmp_path,
                                                                                               classset_folder):
    cs = ClassSet()
    good = cs.add(canvas(6), 6)
    os.symlink("/dev/zero", classset_folder / "3-00000000000000aa.png")  # never ends
    os.mkfifo(classset_folder / "4-00000000000000bb.png")  # opening it would block
    outside = tmp_path / "outside.png"
    outside.write_bytes(png_bytes(canvas(5)[..., 0]))
    os.symlink(outside, classset_folder / "5-00000000000000cc.png")
    twice = cs.add(canvas(2), 2)  # as a folder written before adding took a lock might hold it
    (classset_folder / f"7-{twice.id}.png").write_bytes(twice.path.read_bytes())
    before = {p.name for p in classset_folder.iterdir()}
    done = subprocess.run([sys.executable, "-c", PLANTED, str(classset_folder)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["scored"][good.id] == 6 and out["scored"][twice.id] == 2
    assert all(out["scored"][i] == -1 for i in ("00000000000000aa", "00000000000000bb", "00000000000000cc"))
    assert sorted(out["exported"]) == sorted([good.member, twice.member, "labels.csv"])
    assert {p.name for p in classset_folder.iterdir()} == before and outside.read_bytes() == png_bytes(canvas(5)[..., 0])
