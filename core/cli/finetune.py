"""Fine-tune a model on the class set: ``python -m core finetune [--checkpoint PATH] [--folder DIR] [--save PATH]``.

Prints the held-out drawings' and MNIST's accuracy before and after (core.finetune says how it
learns and when the result is kept), and the drawings the model was sure were another digit than
their label. The result is kept as a saved run (``--no-run`` to skip); ``--save`` also writes it.
"""

from __future__ import annotations

import argparse

from core import checkpoint, paths
from core.classset import ClassSet, ClassSetError
from core.cli import fail, load_checkpoint
from core.finetune import STEPS, FinetuneError, finetune, save_run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core finetune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(paths.BUNDLED_MODEL), help="the model to start from (default: bundled)")
    p.add_argument("--folder", help="the class set folder (default: $DIGITLAB_CLASSSET or <home>/classset)")
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--save", metavar="PATH", help="also write the fine-tuned checkpoint here")
    p.add_argument("--run", action=argparse.BooleanOptionalAction, default=True, help="keep it as a saved run")
    args = p.parse_args(argv)
    if not 1 <= args.steps <= 10_000:
        return fail("--steps must be between 1 and 10000")
    ckpt = load_checkpoint(args.checkpoint, mnist_only=True)
    if ckpt is None:
        return 2
    try:
        result = finetune(ckpt, ClassSet(args.folder), steps=args.steps)
    except (FinetuneError, ClassSetError) as err:
        return fail(err)
    print(result.summary())
    if result.suspects:
        print(f"check the labels of {len(result.suspects)} drawings the model was sure were another digit: "
              + ", ".join(result.suspects[:10]))
    if args.save:
        print(f"saved {checkpoint.save(result.checkpoint, args.save)}")
    if args.run:
        print(f"saved run {save_run(result).id}")
    return 0
