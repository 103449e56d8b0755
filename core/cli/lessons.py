"""The lessons file from a terminal: ``python -m core lessons [--file PATH] [--run [ID ...]]``.

Without ``--run`` it checks the file and lists each lesson (id, title, its runs). With ``--run`` it
trains every run of the lessons named (of all of them when none is named) headless, and prints
each run's reason to end, last train and test accuracy and time.
"""

from __future__ import annotations

import argparse
import sys
import time

from core.cli import fail
from core.files import shown
from core.lessons import LESSONS_FILE, Lesson, LessonError, load_lessons


def _list(lessons: list[Lesson]) -> int:
    for lesson in lessons:  # what the file says is shown escaped: a title cannot drive the terminal
        print("\t".join(shown(t, 200) for t in (lesson.id, lesson.title, " | ".join(r.label for r in lesson.runs))))
    print(f"{len(lessons)} lessons, all valid", file=sys.stderr)
    return 0


def _train(lesson: Lesson, run) -> None:
    """One run headless; its line on stdout."""
    from core.data import load_dataset
    from core.trainer import EndEvent, EpochEvent, Trainer

    start = time.perf_counter()
    trainer = Trainer(run.config, load_dataset(run.config.dataset))
    last_epoch = end = None
    for ev in trainer.run():
        if isinstance(ev, EpochEvent):
            last_epoch = ev
        elif isinstance(ev, EndEvent):
            end = ev
    train = f"train {last_epoch.train_acc:.2%}" if last_epoch else "train -"
    test = f"test {end.test_acc:.2%}" if end.test_acc is not None else "test -"
    print(f"{shown(lesson.id, 60)}\t{shown(run.label, 100)}\t{end.reason}\t{train}\t{test}\t"
          f"{time.perf_counter() - start:.1f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core lessons", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--file", help=f"default: $DIGITLAB_LESSONS or {LESSONS_FILE}")
    p.add_argument("--run", nargs="*", metavar="ID", help="train every run of these lessons (all when none given)")
    args = p.parse_args(argv)
    try:
        lessons = load_lessons(args.file)
    except LessonError as err:
        print(f"error: {shown(err, 2000)}", file=sys.stderr)
        return 2
    if args.run is None:
        return _list(lessons)
    unknown = set(args.run) - {lesson.id for lesson in lessons}
    if unknown:
        return fail(f"no lesson {shown(', '.join(sorted(unknown)), 400)}")
    for lesson in lessons:
        if not args.run or lesson.id in args.run:
            for run in lesson.runs:
                _train(lesson, run)
    return 0
