"""Train the bundled model from its recipe: ``python -m core canvasmodel --save core/assets/default-cnn.pt``.

The recipe and why it is so are in core.canvasmodel; everything is seeded, so the same command
writes the same weights on the same machine and PyTorch.
"""

from __future__ import annotations

import argparse
import sys

from core import checkpoint
from core import pendigits as P
from core.canvasmodel import build


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core canvasmodel", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", metavar="PATH", required=True)
    args = p.parse_args(argv)
    ckpt, metrics = build(args.epochs, args.seed)
    path = checkpoint.save(ckpt, args.save)
    print(f"MNIST test {metrics['test_acc']:.2%}; {P.SET_NAME}: {metrics['pen_acc']:.2%} "
          f"(worst: {metrics['pen_worst']} {metrics['pen_worst_acc']:.2%}); saved {path}", file=sys.stderr)
    return 0
