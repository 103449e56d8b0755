"""Digit Lab's command lines, one module per command: ``python -m core <command> [args]``.

``python -m core`` (or ``--help``) lists the commands; ``python -m core <command> --help`` says what
one takes. Each module has ``main(argv=None) -> int``. A command module is imported only when it
runs, so listing them, or importing this package, loads neither PyTorch nor Ray.
"""

from __future__ import annotations

import importlib
import sys

from core.files import shown

# name -> one line; each is the module core.cli.<name>
COMMANDS = {
    "train": "train a model headless, with a progress bar; --save writes its checkpoint",
    "predict": "classify image files of digits, one line per file",
    "classset": "the class's own drawings: score a model on them, list, export or import them as a zip",
    "finetune": "fine-tune a model on the class set and keep it as a saved run",
    "lessons": "check the lessons file, or train its runs headless and time them",
    "pendigits": "score a model on pen-written digits drawn as the canvas draws them",
    "outlier": "how often a model flags non-digits, and real digits, as not a digit",
    "canvasmodel": "train the bundled model from its recipe",
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m core <command> [args]", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, summary in COMMANDS.items()]
    lines += ["", "python -m core <command> --help says what a command takes."]
    return "\n".join(lines)


def run(argv: list[str] | None = None) -> int:
    """Run the command ``argv[0]`` names with the rest of ``argv``; 2 for a command that does not exist."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: no command '{shown(name, 60)}'; the commands are: {', '.join(COMMANDS)}\n"
              "(python -m core --help says what each does)", file=sys.stderr)
        return 2
    return importlib.import_module(f"core.cli.{name}").main(rest)


def fail(message: object) -> int:
    """Print ``error: <message>`` on stderr, escaped for a terminal; the exit code of a refused command."""
    print(f"error: {shown(message, 1000)}", file=sys.stderr)
    return 2


def load_checkpoint(path: str, *, mnist_only: bool = False):
    """The checkpoint at ``path``, or None once the reason it cannot be used is printed (``fail``).

    ``mnist_only``: refuse a model that was not trained on MNIST's digits (core.classset.mnist_only).
    """
    from core import checkpoint
    from core.classset import mnist_only as refusal

    try:
        ckpt = checkpoint.load(path)
    except checkpoint.CheckpointError as err:
        fail(err)
        return None
    why = refusal(ckpt, name=path) if mnist_only else None
    if why:
        fail(why)
        return None
    return ckpt
