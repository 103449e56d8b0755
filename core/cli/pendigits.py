"""A model on pen-written digits: ``python -m core pendigits [--checkpoint PATH] [--writers report|all|...]
[--mistakes sheet.png] [--json]``.

Prints accuracy over the whole grid of brush widths, sizes and places, then per condition and per
digit (core.pendigits says how the digits are drawn and how the writers are split).
"""

from __future__ import annotations

import argparse
import json

from core import paths
from core import pendigits as P
from core.cli import fail, load_checkpoint


def _writers_arg(text: str) -> tuple[str, ...]:
    named = {"report": P.REPORT_WRITERS, "all": P.WRITERS, "fit": P.FIT_WRITERS, "tune": P.TUNE_WRITERS}
    if text in named:
        return named[text]
    out = tuple(part.strip() for part in text.split(","))
    unknown = [w for w in out if w not in P.WRITERS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown writer {unknown[0]!r}: use report, all, fit, tune or tags such as "
                                         "UJI-W02,UPV-W19")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core pendigits", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(paths.BUNDLED_MODEL), help="default: the bundled model")
    p.add_argument("--writers", type=_writers_arg, default=P.REPORT_WRITERS,
                   help="report (20 writers never trained or tuned on; the default), all, fit, tune, "
                        "or tags such as UJI-W02,UPV-W19")
    p.add_argument("--mistakes", metavar="PNG", help="write a sheet of the mistakes here")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    return p


def _print_report(report: P.Report, samples: list[P.Sample], trained_on: set) -> dict:
    s = report.summary()
    seen = sorted(trained_on & {x.writer for x in samples})
    print(f"{s['set']}: {s['samples']} samples x {len(report.conditions)} conditions = {s['drawings']} drawings")
    if seen:
        print(f"warning: the model was trained on writers {', '.join(seen)}: these figures flatter it")
    print(f"accuracy {s['accuracy']:.2%}")
    print("by brush width: " + ", ".join(f"{k} px {v:.1%}" for k, v in report.by("width").items()))
    print("by size:        " + ", ".join(f"{k:.0%} {v:.1%}" for k, v in report.by("size").items()))
    print("by place:       " + ", ".join(f"{k} {v:.1%}" for k, v in report.by("position").items()))
    print("by digit:       " + ", ".join(f"{k}: {v:.1%}" for k, v in report.per_digit().items()))
    print(f"worst condition: {s['worst_condition']} {s['worst_condition_acc']:.1%}; "
          f"worst cell: {s['worst_cell']} {s['worst_cell_acc']:.1%}")
    return s


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ckpt = load_checkpoint(args.checkpoint)
    if ckpt is None:
        return 2
    try:
        samples = P.load(writers=args.writers)
    except P.PenDigitsUnavailable as err:
        return fail(err)
    if ckpt.dataset != "mnist":
        return fail(f"{args.checkpoint} was trained on {ckpt.dataset}; these are digits")
    if not samples:
        return fail("no samples for those writers")
    report = P.evaluate(ckpt.build(), None if set(args.writers) == set(P.REPORT_WRITERS) else samples)
    listed = ckpt.train_config.get("pen_writers")
    trained_on = {w for w in listed if isinstance(w, str)} if isinstance(listed, list) else set()
    summary = _print_report(report, samples, trained_on)
    if args.mistakes:
        print(f"mistakes ({len(report.mistakes())}): {P.mistake_sheet(report, args.mistakes)}")
    if args.json:
        print(json.dumps(summary))
    return 0
