"""Everything one browser session keeps, and the names of its session-state keys.

Streamlit calls happen only in the script thread. The training thread lives inside a
``TrainingRun`` (``core.jobs``) and is read through its lock-protected ``view()`` and ``status()``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st
import torch.nn as nn

from core import checkpoint, identity, paths, pendigits
from core.data import DatasetInfo, dataset_info
from core.jobs import TrainingRun
from core.values import is_number

# session-state keys, all in one place
SESSION = "digitlab.session"
CANVAS_KEY = "digitlab.canvas"
PROJECTOR = "projector"  # the projector-mode toggle (in the sidebar of every page, and in the URL)
TRAIN_PREFIX = "train."  # the Train page's widgets (persisted across pages and mirrored in the URL)
STUDENT = "student"  # the name box in the side panel, kept across pages and in the URL: ?student=Ana
SESSION_ID = "digitlab.session_id"
TEACHER = "digitlab.teacher"  # True once this session has entered the teacher key (never the key itself)


UNHEALTHY = ("diverged", "failed")  # runs whose model never answers unless a person picks it

T = TypeVar("T")


def _plain(value: object) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    return isinstance(value, tuple) and all(_plain(v) for v in value)


def _same(a: object, b: object) -> bool:
    """Plain values are the same when equal; anything else (a Checkpoint, a model) only when it is the same object."""
    if _plain(a) and _plain(b):
        return type(a) is type(b) and a == b
    return a is b


class Memo:
    """Things a page builds once and keeps while what they were built from stays the same.

    ``get(key, deps, build)`` calls ``build()`` the first time, and again whenever ``deps`` differ from the
    last call's, element by element: plain values (str, int, float, bool, None, tuples of them) by equality,
    any other object by identity, so a checkpoint is never compared by its weights.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[tuple, Any]] = {}

    def get(self, key: str, deps: tuple, build: Callable[[], T]) -> T:
        entry = self._entries.get(key)
        if entry is not None and len(entry[0]) == len(deps) and all(map(_same, entry[0], deps)):
            return entry[1]
        value = build()
        self._entries[key] = (tuple(deps), value)
        return value

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __contains__(self, key: str) -> bool:
        return key in self._entries


@dataclass
class LossTrace:
    """The Train page's copy of a run's batches so far, so each refresh copies only the new ones."""

    ticket: int | None = None  # the run it follows
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    last: object = None  # the newest batch record

    def follow(self, ticket: int) -> None:
        """Start over when another run is shown."""
        if self.ticket != ticket:
            self.ticket, self.steps, self.losses, self.last = ticket, [], [], None


@dataclass
class ModelChoice:
    """A model the Draw page can predict with, and how to describe it."""

    model: nn.Module
    name: str
    detail: str  # test accuracy, when it was trained, or the live step
    dataset: str
    live: bool = False  # weights of a run still training
    why: str = ""  # why the bundled model is what it is, when it says so

    @property
    def info(self) -> DatasetInfo:
        return dataset_info(self.dataset)


@dataclass
class AppSession:
    current: checkpoint.Checkpoint
    current_source: str  # "bundled", "trained"
    run: TrainingRun | None = None
    runs_started: int = 0
    canvas_generation: int = 0
    last_drawing: object = None  # the last canvas pixels, re-read while weights change
    canvas_bytes: bytes | None = None  # the PNG those pixels came from
    saved_run_id: str | None = None
    save_error: str | None = None
    train_config: object = None  # the settings the Train page shows now (a TrainConfig)
    lesson_run: tuple | None = None  # (lesson title, run label, TrainConfig) of the lesson last loaded
    flash: tuple | None = None  # (kind, text): a message for the next run of a page, after a callback
    chosen_during: int | None = None  # ticket of the run that was training when a model was picked by hand
    adopted_ticket: int | None = None  # the run whose end was last seen and dealt with
    memo: Memo = field(default_factory=Memo)  # models, evaluations and exports built for this session
    # the Class set page
    classset_table_version: int = 0  # bumped to give the drawings table fresh widget keys
    classset_imported_upload: str | None = None  # file id of the last zip imported (once per upload)
    finetune_outcome: tuple | None = None  # ("done", FinetuneResult, run name) or ("error", message)
    # the Runs page
    runs_compared: list | None = None  # ids of the runs picked for Compare (kept when a run is renamed)
    runs_name_of: str | None = None  # the run whose name the rename box shows
    # the Models page
    models_uploaded: tuple | None = None  # (file id, ok, message) of the last file read
    # the Train page
    preview_batch: int = 0  # which batch of training images the preview shows
    loss_trace: LossTrace = field(default_factory=LossTrace)

    def adopt_finished_run(self) -> bool:
        """The first time a run is seen to have ended: its model (if any) becomes the current one.

        A run that diverged or failed is never adopted: its weights are kept on the Runs page, and
        only a person's click there makes them answer. True when the run is first seen ended, so
        the page redraws whole: buttons unlock, the sidebar names the new model.
        """
        run = self.run
        if run is None or not run.done or self.adopted_ticket == run.ticket:
            return False
        self.adopted_ticket = run.ticket
        end = run.status().end
        healthy = end is not None and end.reason not in UNHEALTHY
        if run.result is not None and healthy and self.chosen_during != run.ticket:  # a model picked meanwhile stays
            self.current, self.current_source = run.result, "trained"
        self.saved_run_id, self.save_error = run.saved_id, run.save_error
        return True

    def use_bundled(self) -> None:
        """Back to the model that came with Digit Lab."""
        self.use_checkpoint(bundled_checkpoint(), "bundled")

    def use_checkpoint(self, ckpt: checkpoint.Checkpoint, source: str) -> None:
        self.current, self.current_source = ckpt, source
        if self.run is not None and self.adopted_ticket != self.run.ticket:
            # training, or ended but not yet adopted (the second before a page sees the end): the pick stays
            self.chosen_during = self.run.ticket

    def current_model(self) -> nn.Module:
        return self.memo.get("current", (self.current,), self.current.build)

    def model_for_drawing(self) -> ModelChoice:
        """The live weights of a run in progress, else the current model."""
        run = self.run
        if run is not None and not run.done:
            snap = run.snapshot()
            if snap is not None and snap.step > 0:
                live = self.memo.get("live", (run.ticket, snap.step), snap.build)
                view = run.status()
                last = view.epochs[-1] if view.epochs else None
                acc = f", test accuracy {last.test_acc:.1%} after epoch {last.epoch}" if last else ""
                return ModelChoice(live, "the model being trained",
                                   f"live weights at step {snap.step:,}{acc}", run.config.dataset, live=True)
        ck = self.current
        acc = ck.metrics.get("test_acc")
        parts = [f"test accuracy {acc:.2%}" if is_number(acc) else "test accuracy unknown"]
        pen = pendigits.figure_text(ck.metrics)  # real writers' digits; never the synthetic stroke set's figure
        if pen:
            parts.append(pen)
        if ck.created:
            parts.append("trained " + ck.created.replace("T", " ").replace("+00:00", " UTC"))
        name, why = ck.title, ""
        if self.current_source == "bundled":
            name = f"{name} (bundled)"
            why = ck.train_config.get("why", "")
            why = why if isinstance(why, str) else ""
        elif self.current_source.startswith("run "):
            name = f"{name} (saved run)"
        elif self.current_source == "uploaded":
            name = f"{name} (uploaded)"
        return ModelChoice(self.current_model(), name, ", ".join(parts), ck.dataset,
                           why=why if isinstance(why, str) else "")


@st.cache_resource(show_spinner=False)
def bundled_checkpoint(path: str = str(paths.BUNDLED_MODEL)) -> checkpoint.Checkpoint:
    """Read once per server; sessions share it read-only."""
    return checkpoint.load(Path(path))


def session() -> AppSession:
    if SESSION not in st.session_state:
        st.session_state[SESSION] = AppSession(current=bundled_checkpoint(), current_source="bundled")
    return st.session_state[SESSION]


@st.cache_resource(show_spinner=False, max_entries=2)
def test_split(dataset: str):
    """The test split, shared read-only by every session (for the Evaluate page)."""
    from core.data import load_dataset

    return load_dataset(dataset).test


@st.cache_resource(show_spinner=False, max_entries=2)
def train_split(dataset: str):
    """The training split, shared read-only by every session (for the Train page's data preview)."""
    from core.data import load_dataset

    return load_dataset(dataset).train


def projector_on() -> bool:
    return bool(st.session_state.get(PROJECTOR, False))


def session_id() -> str:
    """This browser session's own random id (a guest's runs and drawings are filed under it)."""
    if SESSION_ID not in st.session_state:
        st.session_state[SESSION_ID] = secrets.token_hex(8)
    return st.session_state[SESSION_ID]


def who() -> identity.Who:
    """This browser session's person: the name in the side panel (and the URL), and the teacher key if entered."""
    name = identity.clean_name(st.session_state.get(STUDENT) or "")
    return identity.Who(name, session_id(), bool(st.session_state.get(TEACHER)))


def owner() -> str:
    """Who a run started here belongs to (core.live): the name, or this browser session for a guest."""
    return who().owner


def may_manage(owner_of_it: str) -> bool:
    return identity.may_manage(who(), owner_of_it)


def attach_run() -> None:
    """Show this person's run wherever they are: after a reload, on another page or another device, the
    session finds their run still going in core.live. A run of someone else (the name was changed) is let go."""
    from core.live import live_runs

    sess, person = session(), who()
    run = sess.run
    if run is not None and not run.done and not person.owns(run.owner):
        sess.run = run = None  # it carries on for its owner; it is not this person's to show or stop
    if person.name and (run is None or run.done):
        active = live_runs().active(person.name)
        if active is not None:
            sess.run = active
