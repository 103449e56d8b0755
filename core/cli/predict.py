"""Classify image files of digits: ``python -m core predict [--checkpoint PATH] IMAGE...``.

Each image goes through the same pipeline as the canvas. One line per file on stdout:
``path<TAB>digit<TAB>confidence``; ``path<TAB>?<TAB>not a digit (looks most like 4, 31 %)`` for a
drawing that does not look like a digit; ``path<TAB>-<TAB>nothing drawn`` (the reason follows on
stderr). A file that cannot be read or classified prints ``path<TAB>-<TAB>error: ...``, the next
file is read all the same, and the exit code is 1. Paths are printed with control characters
escaped, so a file name cannot rewrite the terminal.
"""

from __future__ import annotations

import argparse
import sys

from core import paths
from core.cli import load_checkpoint
from core.data import dataset_info
from core.files import shown
from core.images import ImageError, load_image
from core.inference import classify


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(paths.BUNDLED_MODEL), help="default: the bundled model")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    args = p.parse_args(argv)
    ckpt = load_checkpoint(args.checkpoint)
    if ckpt is None:
        return 2
    model = ckpt.build()
    info = dataset_info(ckpt.dataset)
    status = 0
    for path in args.images:
        name = shown(path, limit=1000)
        try:
            pixels = load_image(path)
            result = classify(model, pixels, info)
        except ImageError as err:
            print(f"{name}\t-\terror: {shown(err)}", flush=True)
            status = 1
            continue
        except Exception as err:  # noqa: BLE001 - one bad file never stops the others
            print(f"{name}\t-\terror: {shown(type(err).__name__)}: {shown(err)}", flush=True)
            status = 1
            continue
        if result.ok and result.not_a_digit:
            print(f"{name}\t?\tnot a digit (looks most like {info.classes[result.digit]}, "
                  f"{100 * result.confidence:.0f} %)", flush=True)
        elif result.ok:
            print(f"{name}\t{info.classes[result.digit]}\t{result.confidence:.4f}", flush=True)
        else:
            print(f"{name}\t-\tnothing drawn", flush=True)
            print(f"{name}: {result.message}", file=sys.stderr)
    return status
