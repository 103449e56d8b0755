"""Train the bundled model from its recipe: ``python -m core canvasmodel --save core/assets/default-cnn.pt``.

The recipe and why it is so are in core.canvasmodel; everything is seeded, so the same command
writes the same weights on the same machine and PyTorch.

``--cross-validate`` measures the choices instead, on the 20 writers that are not report writers:
for each fold the networks are trained without 4 of them and scored on those 4 (digits, and
non-digits made from them), one network alone and several averaged, at a few not-a-digit
thresholds, and the written digits behind the errors (which sample, misread as what, in how many of
its conditions). ``--keep DIR`` keeps each fold's networks there and reuses them on the next call.
"""

from __future__ import annotations

import argparse
import sys

from core import checkpoint
from core import pendigits as P
from core.canvasmodel import (ELASTIC_ALPHA, ELASTIC_SIGMA, EPOCHS, FOLDS, MEMBER, MEMBERS, TILTS, build,
                              cross_validate)
from core.models import MAX_MEMBERS, MAX_TILT


def _folds(text: str) -> tuple[int, ...]:
    try:
        folds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("folds are numbers, e.g. 0,1") from None
    if not folds or any(not 0 <= f < FOLDS for f in folds) or len(set(folds)) != len(folds):
        raise argparse.ArgumentTypeError(f"folds are distinct numbers from 0 to {FOLDS - 1}")
    return folds


def _print_cross_validation(result: dict, folds, most: int = 10) -> None:
    for k, r in result.items():
        flags = "; ".join(f"at {t:.2f} digits flagged {d:.2%}, non-digits {n:.1%}" for t, (d, n) in r["flags"].items())
        print(f"{k} network{'s' if k > 1 else ''} averaged: {r['accuracy']:.2%} of {r['drawings']:,} drawings "
              f"(folds {','.join(map(str, folds))}), worst {r['worst'][0]} {r['worst'][1]:.1%}; {flags}")
    k, conditions = max(result), len(P.grid())
    misread = result[k]["misread"]
    print(f"written digits misread by {k} network{'s' if k > 1 else ''} ({len(misread)}; the {min(most, len(misread))} "
          "most often): " + ("; ".join(f"{tag}'s {digit} as {answer} in {n} of {conditions} conditions"
                                      for tag, digit, n, answer in misread[:most]) or "none"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core canvasmodel", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=EPOCHS, help=f"per network (default {EPOCHS})")
    p.add_argument("--seed", type=int, default=0, help="the first member's seed; the next ones count up from it")
    p.add_argument("--members", type=int, default=MEMBERS, help=f"networks averaged (default {MEMBERS}; 1: a single CNN)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--save", metavar="PATH", help="train the bundled model and write it here")
    what.add_argument("--cross-validate", metavar="FOLDS", type=_folds, help="e.g. 0,1: measure the recipe instead")
    p.add_argument("--keep", metavar="DIR", help="with --cross-validate: keep and reuse the folds' networks here")
    p.add_argument("--thick", type=float, default=0.0, metavar="SHARE",
                   help="with --cross-validate: this share of the pen-written canvases drawn with the thickest brushes "
                        "allowed for their size (the bundled recipe: 0)")
    p.add_argument("--restroke", type=float, default=0.0, metavar="SHARE",
                   help="with --cross-validate: this share of each MNIST batch re-drawn as canvas strokes, its "
                        "skeleton stroked with a round brush (the bundled recipe: 0)")
    p.add_argument("--elastic", type=float, default=0.0, metavar="SHARE",
                   help="with --cross-validate: this share of each MNIST batch elastically distorted (alpha "
                        f"{ELASTIC_ALPHA:g} px, sigma {ELASTIC_SIGMA:g} px; the bundled recipe: 0)")
    p.add_argument("--convs", type=int, choices=(1, 2), default=MEMBER.convs,
                   help="with --cross-validate: conv layers before each pool in each network, 2 adding a 3x3 conv "
                        f"after each 5x5 (the bundled recipe: {MEMBER.convs})")
    p.add_argument("--tilt", type=float, default=TILTS[0], metavar="DEGREES",
                   help=f"each network also reads the drawing tilted this far either way (default {TILTS[0]:g}; "
                        "0: only as it is)")
    args = p.parse_args(argv)
    if not 1 <= args.members <= MAX_MEMBERS:
        p.error(f"--members must be between 1 and {MAX_MEMBERS}")
    if not 0 <= args.tilt <= MAX_TILT:
        p.error(f"--tilt is between 0 and {MAX_TILT:g} degrees")
    tilts = (args.tilt, -args.tilt) if args.tilt else ()
    if args.cross_validate:
        if not all(0 <= v <= 1 for v in (args.thick, args.restroke, args.elastic)):
            p.error("--thick, --restroke and --elastic are shares between 0 and 1")
        _print_cross_validation(cross_validate(args.cross_validate, args.members, args.epochs, keep=args.keep,
                                               thick=args.thick, restroke=args.restroke, tilts=tilts,
                                               elastic=args.elastic, convs=args.convs),
                                args.cross_validate)
        return 0
    ckpt, metrics = build(args.epochs, args.seed, args.members, tilts=tilts)
    path = checkpoint.save(ckpt, args.save)
    print(f"MNIST test {metrics['test_acc']:.2%}; {P.SET_NAME}: {metrics['pen_acc']:.2%} "
          f"(worst: {metrics['pen_worst']} {metrics['pen_worst_acc']:.2%}); saved {path}", file=sys.stderr)
    return 0
