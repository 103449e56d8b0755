"""Results: every student's best run, for the projector; redrawn as runs finish."""

from __future__ import annotations

import time

import streamlit as st

from core import identity
from core import results as R
from core.classset import ClassSet
from core.live import live_runs
from core.runs import RunStore
from dashboard import state, widgets, words

REFRESH_S = 5.0  # a run that finishes shows up within this
SCORING_BUDGET_S = 1.5  # new class-set scores computed per redraw; the rest follow on the next ones


@st.cache_resource(show_spinner=False)
def class_set_scores() -> R.ClassSetScores:
    """One per server: each run's model is scored on the class set once, for every page that asks."""
    return R.ClassSetScores()


def hidden_entries() -> R.HiddenEntries:
    return R.HiddenEntries()


def class_set_column(entries: list[R.Entry], records: dict) -> tuple[dict[str, float | None], int]:
    """Accuracy on the class set per run id, as far as the time budget goes; how many are still to score."""
    classset = ClassSet()
    drawings = classset.list()
    if not drawings:
        return {}, 0
    signature = R.classset_signature(drawings)
    scores, out, waiting = class_set_scores(), {}, 0
    deadline = time.monotonic() + SCORING_BUDGET_S
    for e in entries:
        found, value = scores.known(e.run_id, signature)
        if not found and time.monotonic() < deadline:
            value, found = scores.score(records[e.run_id], classset, signature), True
        if found:
            out[e.run_id] = value
        else:
            waiting += 1
    return out, waiting


st.title("Class results")
st.caption("Each student's best run that finished, on MNIST: how accurate it is on the test images and on the "
           "drawings of our **Class set**. Click a column's name to sort by it. Only runs started under a name "
           "(top of the side panel) are listed.")


@st.fragment(run_every=REFRESH_S)
def board() -> None:
    store = RunStore()
    records = store.list()
    hidden = hidden_entries().get()
    entries, unnamed = R.best_runs(records, hidden=hidden)
    training = sum(1 for r in live_runs().all() if not r.done)
    if training:
        st.caption(f":material/directions_run: {training} run{'s are' if training != 1 else ' is'} training now; "
                   "each appears here when it finishes.")
    if not entries:
        st.info("No finished runs under a name yet. Type your name at the top of the side panel, then train a "
                "network on the **Train** page.", icon=":material/leaderboard:")
    else:
        by_id = {r.id: r for r in records}
        on_set, waiting = class_set_column(entries, by_id)
        # what a class compares first on the left, so that a projector's width shows it without scrolling
        rows = [{"#": i, "student": e.author, "test accuracy": e.test_acc,
                 "class set accuracy": on_set.get(e.run_id),
                 "training time": widgets.format_seconds(e.train_seconds) if e.train_seconds is not None else None,
                 "model": e.model, "optimizer": e.optimizer, "lr": e.lr, "batch": e.batch_size, "epochs": e.epochs,
                 "augmentation": "yes" if e.augment else "no" if e.augment is not None else None,
                 "run": e.run_name, "runs": e.runs} for i, e in enumerate(entries, 1)]
        st.dataframe(rows, hide_index=True, key="results.table", column_config={
            "#": st.column_config.NumberColumn(width=40, help="Ranked by test accuracy."),
            "student": st.column_config.TextColumn(help="The name typed at the top of the side panel."),
            "test accuracy": st.column_config.NumberColumn("test acc", format="percent",
                                                           help=words.term("test accuracy")),
            "class set accuracy": st.column_config.NumberColumn(
                "class set acc", format="percent", help="Right answers on the drawings of our Class set (empty: no drawings yet, "
                                       "or still being scored)."),
            "lr": st.column_config.NumberColumn("learning rate", format="%g"),
            "training time": st.column_config.TextColumn("time", help="Training time, pauses not counted."),
            "runs": st.column_config.NumberColumn(help="How many runs of this student finished."),
        })
        if waiting:
            st.caption(f"Scoring {waiting} more model{'s' if waiting != 1 else ''} on the class set…")
    notes = []
    if unnamed:
        notes.append(f"{unnamed} finished run{'s' if unnamed != 1 else ''} without a name "
                     f"{'are' if unnamed != 1 else 'is'} not listed")
    if hidden:
        notes.append(f"{len(hidden)} entr{'ies' if len(hidden) != 1 else 'y'} hidden by the teacher")
    if store.skipped:
        notes.append(store.skipped_note())
    if notes:
        st.caption(widgets.md_escape("; ".join(notes) + "."))


board()

if state.who().teacher:
    going = [r for r in live_runs().all() if not r.done]
    if going:
        st.subheader("Teacher: runs going now")
        for r in going:
            left, right = st.columns([4, 1], vertical_alignment="center")
            left.text(f"{identity.shown(r.owner)}: {r.name} ({r.status().state})")
            if right.button("Stop", key=f"results.stop.{r.id}", icon=":material/stop_circle:"):
                identity.require(state.who(), r.owner)
                r.stop("stopped by the teacher")
                st.rerun()
    st.subheader("Teacher: hide an entry")
    st.caption("A hidden student's runs stay on the Runs page; only this table leaves them out.")
    store = hidden_entries()
    hidden = store.get()
    shown_authors = [e.author for e in R.best_runs(RunStore().list(), hidden=hidden)[0]]
    a, b = st.columns(2)
    with a:
        pick = st.selectbox("Entry", shown_authors, key="results.hide_pick", index=None,
                            placeholder="Pick a student")
        if st.button("Hide from the results", icon=":material/visibility_off:", disabled=pick is None,
                     key="results.hide"):
            store.set(state.who(), pick, True)
            st.rerun()
    with b:
        back = st.selectbox("Hidden", sorted(hidden), key="results.show_pick", index=None,
                            placeholder="Pick a hidden student")
        if st.button("Show again", icon=":material/visibility:", disabled=back is None, key="results.show"):
            store.set(state.who(), back, False)
            st.rerun()
elif identity.teacher_key_set():
    st.caption("The teacher can hide an entry (with the teacher key, in the side panel).")
