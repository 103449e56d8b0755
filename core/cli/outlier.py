"""How often a model says "not a digit": ``python -m core outlier [--checkpoint PATH] [--sheet PNG]``.

Prints the share of non-digits flagged, per family (core.outlier says how they are made), and the
share of the pen-written digits of the report writers flagged, at the model's not-a-digit threshold.
"""

from __future__ import annotations

import argparse

from core import paths
from core import pendigits as P
from core.cli import fail, load_checkpoint
from core.outlier import flag_rates, negatives_sheet


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core outlier", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(paths.BUNDLED_MODEL), help="default: the bundled model")
    p.add_argument("--per-family", type=int, default=100)
    p.add_argument("--sheet", metavar="PNG", help="write a sheet of the non-digits (flagged ones framed) here")
    args = p.parse_args(argv)
    ckpt = load_checkpoint(args.checkpoint)
    if ckpt is None:
        return 2
    try:
        r = flag_rates(ckpt.build(), args.per_family)
    except P.PenDigitsUnavailable as err:
        return fail(err)
    print(f"non-digits flagged: {r['non_digits_flagged']:.1%} of {r['non_digits']} "
          f"({', '.join(f'{k} {v:.0%}' for k, v in r['by_family'].items())})")
    print(f"pen-written digits flagged: {r['digits_flagged']:.2%} of {r['digits']} ({P.SET_NAME})")
    print(f"threshold: most likely digit below {r['threshold']:.0%}")
    if args.sheet:
        print(f"sheet: {negatives_sheet(args.sheet)}")
    return 0
