"""``python -m core predict``: a not-a-digit line, terminal-safe names, and one bad file never stops the rest."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from core import outlier
from core import pendigits as P

ROOT = Path(__file__).resolve().parent.parent


def run(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "core", "predict", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def save(img: np.ndarray, path: Path) -> Path:
    Image.fromarray(img).save(path)
    return path


def test_a_scribble_is_not_a_digit_a_blank_is_nothing_and_a_digit_is_a_digit(tmp_path):
    rng = np.random.default_rng(11)
    scribble = save(P.render(P.place(outlier._to_pen(outlier.LETTERS["#"], rng), 0.7, 20), 20), tmp_path / "hash.png")
    digit = save(P.draw(P.load(writers=["UPV-W19"])[3], P.Condition(20, 0.7, "centre")), tmp_path / "three.png")
    blank = save(np.zeros((280, 280), np.uint8), tmp_path / "blank.png")
    out = run(str(scribble), str(digit), str(blank))
    assert out.returncode == 0, out.stderr
    lines = [line.split("\t") for line in out.stdout.strip().splitlines()]
    assert lines[0][:2] == [str(scribble), "?"]
    assert re.fullmatch(r"not a digit \(looks most like \d, \d{1,3} %\)", lines[0][2])
    assert lines[1][0] == str(digit) and lines[1][1] == str(P.load(writers=["UPV-W19"])[3].digit)
    assert lines[2] == [str(blank), "-", "nothing drawn"]


def test_names_are_printed_with_control_characters_escaped_and_errors_do_not_stop_the_rest(tmp_path):
    hostile = tmp_path / "a\x1b[2Jb\nc.png"
    save(P.draw(P.load(writers=["UPV-W19"])[1], P.Condition(20, 0.7, "centre")), hostile)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    missing = tmp_path / "missing.png"
    good = save(P.draw(P.load(writers=["UPV-W19"])[0], P.Condition(20, 0.7, "centre")), tmp_path / "zero.png")
    out = run(str(junk), str(hostile), str(missing), str(good))
    assert out.returncode == 1
    assert "\x1b" not in out.stdout and "\\x1b[2Jb\\nc.png" in out.stdout
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(f"{junk}\t-\terror: ") and lines[2].startswith(f"{missing}\t-\terror: ")
    assert lines[3] == f"{good}\t0\t" + lines[3].split("\t")[2]
