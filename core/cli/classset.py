"""The class set from a terminal: ``python -m core classset {score,export,import,list} [--folder DIR]``.

``score`` reads every drawing with a model (the bundled one unless ``--checkpoint``) and prints its
accuracy, then each mistake, most confident first (``--json``: one JSON object). ``export`` writes
the set as a zip (``images/<id>.png`` + ``labels.csv``), ``import`` adds the drawings of such a zip,
``list`` counts the drawings per digit. The folder is ``$DIGITLAB_CLASSSET`` or
``<DIGITLAB_HOME>/classset`` unless ``--folder`` names another (core.classset says how it is kept).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from core import checkpoint, paths
from core.classset import EMPTY_MESSAGE, MAX_ZIP_BYTES, ClassSet, ClassSetError, Score, score
from core.cli import fail, load_checkpoint
from core.data import DATASETS
from core.files import shown

_MB = 1024 * 1024


def _score_json(result: Score) -> str:
    right = int((result.predictions == result.labels).sum())
    return json.dumps({
        "accuracy": result.accuracy, "n": len(result.drawings), "right": right,
        "per_class": [None if math.isnan(a) else a for a in result.per_class().tolist()],
        "mistakes": [{"file": result.drawings[i].member, "label": result.drawings[i].label,
                      "prediction": int(result.predictions[i]), "confidence": round(float(result.confidences[i]), 4)}
                     for i in result.mistakes()],
    })


def _score(args) -> int:
    ckpt = load_checkpoint(args.checkpoint, mnist_only=True)
    if ckpt is None:
        return 2
    classset = ClassSet(args.folder)
    if len(classset) == 0:
        print(EMPTY_MESSAGE, file=sys.stderr)
        return 1
    result = score(ckpt.build(), classset, DATASETS["mnist"])
    if args.json:
        print(_score_json(result))
        return 0
    right = int((result.predictions == result.labels).sum())
    print(f"accuracy {100 * result.accuracy:.2f} % on {len(result.drawings)} drawings ({right} right)")
    for i in result.mistakes():
        d = result.drawings[i]
        predicted = result.predictions[i] if result.predictions[i] >= 0 else "-"
        print(f"{d.member}\ttrue {d.label}\tpredicted {predicted}\t{result.confidences[i]:.2f}")
    return 0


def _import(args) -> int:
    path = Path(args.zip)
    try:
        if path.stat().st_size > MAX_ZIP_BYTES:
            raise ClassSetError(f"{path} is {path.stat().st_size / _MB:.0f} MB; a class set zip is at most "
                                f"{MAX_ZIP_BYTES / _MB:.0f} MB")
        report = ClassSet(args.folder).import_zip(path.read_bytes())
    except OSError as err:
        return fail(f"cannot read {shown(path)}: {err.strerror}")
    except ClassSetError as err:
        return fail(err)
    print(f"added {report.added}, already there {report.duplicates}, skipped {len(report.skipped)}")
    for line in report.skipped:  # names come from the zip's labels.csv: escaped, so they cannot drive the terminal
        print(f"skipped {shown(line, 400)}")
    return 1 if report.added == 0 and report.skipped else 0


def _export(args) -> int:
    classset = ClassSet(args.folder)
    checkpoint.atomic_write(args.zip, classset.export_zip())
    print(f"exported {len(classset)} drawings to {args.zip}")
    return 0


def _list(args) -> int:
    classset = ClassSet(args.folder)
    for digit, count in enumerate(classset.counts()):
        print(f"{digit}\t{count}")
    print(f"total\t{len(classset)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core classset", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    folder = argparse.ArgumentParser(add_help=False)
    folder.add_argument("--folder", default=None, help="default: $DIGITLAB_CLASSSET or <DIGITLAB_HOME>/classset")
    s = sub.add_parser("score", parents=[folder], help="score a model on the class set")
    s.add_argument("--checkpoint", default=str(paths.BUNDLED_MODEL), help="default: the bundled model")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    sub.add_parser("export", parents=[folder], help="write the class set as a zip").add_argument("zip", metavar="OUT.zip")
    sub.add_parser("import", parents=[folder], help="add the drawings of a zip").add_argument("zip", metavar="IN.zip")
    sub.add_parser("list", parents=[folder], help="count the drawings per digit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return {"score": _score, "import": _import, "export": _export, "list": _list}[args.command](args)
