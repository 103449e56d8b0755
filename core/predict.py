"""Classify image files of digits: ``python -m core.predict [--checkpoint PATH] IMAGE...``.

Each image goes through the same pipeline as the canvas. One line per file on stdout:
``path<TAB>digit<TAB>confidence``, or ``path<TAB>-<TAB>nothing drawn`` (the reason follows
on stderr). Unreadable files print ``path<TAB>-<TAB>error: ...`` and make the exit code 1.
"""

from __future__ import annotations

import argparse
import sys

from core import checkpoint, paths
from core.data import dataset_info
from core.images import ImageError, load_image
from core.inference import classify


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(paths.BUNDLED_MODEL), help="default: the bundled model")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    args = p.parse_args(argv)
    try:
        ckpt = checkpoint.load(args.checkpoint)
    except checkpoint.CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    model = ckpt.build()
    info = dataset_info(ckpt.dataset)
    status = 0
    for path in args.images:
        try:
            pixels = load_image(path)
        except ImageError as err:
            print(f"{path}\t-\terror: {err}")
            status = 1
            continue
        result = classify(model, pixels, info)
        if result.ok:
            print(f"{path}\t{info.classes[result.digit]}\t{result.confidence:.4f}")
        else:
            print(f"{path}\t-\tnothing drawn")
            print(f"{path}: {result.message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
