"""Class set: the class's own drawings. Accuracy on our drawings for any model, its mistakes, and the set as a zip."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Callable

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from core import classset as C
from core import identity
from core import finetune as FT
from core.checkpoint import Checkpoint
from core.results import classset_signature
from core.runs import RunStore
from dashboard import charts, state, widgets

THUMB = 56  # px: a drawing in the galleries and the table
sess = state.session()
store = C.ClassSet()


def thumbnail(d: C.Drawing) -> np.ndarray:
    try:
        return _thumbnail(str(d.path), d.id)
    except (OSError, ValueError):  # removed from another tab a moment ago (a relabel renames the file)
        return np.zeros((THUMB, THUMB), np.uint8)


def thumbnail_url(d: C.Drawing) -> str | None:
    try:
        return _data_url(str(d.path), d.id)
    except (OSError, ValueError):
        return None


# Kept per drawing id: an id is a hash of the pixels, so its picture never changes. A missing file
# raises, and Streamlit does not keep an exception, so a drawing added again shows again.
@st.cache_data(show_spinner=False, max_entries=20_000)
def _thumbnail(path: str, drawing_id: str) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("L").resize((THUMB, THUMB), Image.Resampling.BOX))


@st.cache_data(show_spinner=False, max_entries=20_000)
def _data_url(path: str, drawing_id: str) -> str:
    buf = io.BytesIO()
    Image.fromarray(_thumbnail(path, drawing_id)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def author_of(d: C.Drawing) -> str:
    try:
        return _author(str(d.path), d.id)
    except (OSError, ValueError):
        return ""


@st.cache_data(show_spinner=False, max_entries=20_000)
def _author(path: str, drawing_id: str) -> str:
    """Who added it, read once per stored file (a relabel renames it: read again, the same answer)."""
    return store.author(C.Drawing(drawing_id, 0, Path(path)))


def models() -> dict[str, tuple[str, Callable[[], Checkpoint]]]:
    """key -> (label, a function giving the checkpoint): the current model, the bundled one, each saved run."""
    found = {"current": (f"The current model: {sess.current.title}", lambda: sess.current),
             "bundled": ("The bundled model", state.bundled_checkpoint)}
    runs = RunStore()
    for r in runs.list():
        if (r.folder / "model.pt").is_file():
            found[f"run {r.id}"] = (f"Run: {r.name}", r.checkpoint)
    if runs.skipped:  # a damaged run folder is left out of the list, never breaking it
        st.caption(widgets.md_escape(runs.skipped_note()))
    return found


def scored(key: str, load: Callable[[], Checkpoint], drawings: list[C.Drawing]) -> C.ModelScore:
    """The score of one model on the set as it is now; computed again only when either changes."""
    def build() -> C.ModelScore:
        with st.spinner("Reading every drawing…"):
            return C.score_model(load, store, quote=widgets.md_escape)

    current = sess.current if key == "current" else None  # the current model is the same key, but may change
    return sess.memo.get("classset_score", (key, classset_signature(drawings), current), build)


def header_ui(drawings: list[C.Drawing]) -> list[int]:
    """The title, what the set is, and how many drawings of each digit it holds (returned)."""
    st.title("Our class set")
    st.caption("Digits drawn here on the **Draw** page, each with the label its author picked. MNIST's test set "
               "says how a model does on scanned pen strokes; this set says how it does on *our* drawings. From a "
               "terminal: `python -m core classset score --checkpoint model.pt`.")
    counts = store.counts()
    st.markdown(f"**{len(drawings)} drawings** · " + " · ".join(f"{d}: {n}" for d, n in enumerate(counts)))
    return counts


def model_ui() -> tuple[str, Callable[[], Checkpoint]]:
    """The model to score with: its key and a function giving its checkpoint."""
    choices = models()
    pick = st.selectbox("Score with", list(choices), format_func=lambda k: choices[k][0], key="classset.model")
    return pick, choices[pick][1]


def accuracy_ui(result: C.ModelScore, counts: list[int]) -> None:
    score = result.score
    right = int((score.labels == score.predictions).sum())
    with st.container(horizontal=True, key="classset-tiles"):  # full numbers: a row wraps, never cuts one
        st.metric("Accuracy on our drawings", f"{score.accuracy:.1%}", width="content")
        st.metric("Right", f"{right} of {len(score.labels)}", width="content")
        st.metric("On MNIST's test set", f"{result.test_acc:.2%}" if result.test_acc is not None else "–",
                  width="content")
    per = score.per_class()
    bars = go.Figure(go.Bar(x=[str(d) for d in range(10)], y=[None if np.isnan(a) else a * 100 for a in per],
                            text=[f"{n}" for n in counts], marker_color=charts.SMOOTH,
                            hovertemplate="digit %{x}: %{y:.0f} % of %{text} drawings<extra></extra>"))
    bars.update_yaxes(range=[0, 100])
    bars.update_xaxes(type="category")
    st.plotly_chart(charts.finish(bars, "Accuracy per digit", 260, "%", "digit"),
                    config={"displayModeBar": False})


def mistakes_ui(score: C.Score) -> None:
    mistakes = score.mistakes()
    st.subheader(f"Its mistakes ({len(mistakes)})" if mistakes else "No mistakes")
    cols = st.columns(8)
    for i, idx in enumerate(mistakes[:48]):
        d, pred = score.drawings[idx], int(score.predictions[idx])
        said = f"said {pred} ({score.confidences[idx]:.0%})" if pred >= 0 else "could not read it"
        cols[i % 8].image(thumbnail(d), caption=f"drew {d.label}, {said}", width=THUMB * 2)
    if len(mistakes) > 48:
        st.caption(f"the 48 most confident of {len(mistakes)}")


def table_ui(score: C.Score | None, drawings: list[C.Drawing]) -> tuple[list[dict], list[int]]:
    """Every drawing, newest first, with what the model says; the rows and the selected row numbers."""
    listed = score.drawings if score is not None else drawings  # the predictions belong to score's list
    preds = score.predictions if score is not None else None
    table = [{"drawing": thumbnail_url(d), "label": d.label,
              "model says": (int(preds[i]) if preds is not None and preds[i] >= 0 else None),
              "by": identity.shown(author_of(d)), "id": d.id, "author": author_of(d)}
             for i, d in reversed(list(enumerate(listed)))][:1000]
    # a new table after every change: a selection is kept by row number, which would then point elsewhere
    event = st.dataframe(table, hide_index=True, on_select="rerun", selection_mode="multi-row",
                         key=f"classset.table.{sess.classset_table_version}", row_height=THUMB + 4,
                         column_config={"drawing": st.column_config.ImageColumn("drawing", width="small"),
                                        "id": None, "author": None})
    if len(listed) > 1000:
        st.caption("the newest 1,000 drawings")
    rows = event.selection.rows if event and event.selection else []
    return table, [r for r in rows if 0 <= r < len(table)]


def changed() -> None:
    """The set changed here: the drawings table starts afresh, and the page is drawn again."""
    sess.classset_table_version += 1
    st.rerun()


def edit_ui(table: list[dict], rows: list[int]) -> None:
    """Relabel or remove the selected drawings: only their authors', or the teacher's, to do."""
    picked = [table[r]["id"] for r in rows]
    others = [table[r]["by"] for r in rows if not state.may_manage(table[r]["author"])]
    not_mine = (f"You picked drawings by {widgets.md_escape(', '.join(sorted(set(others))))}: only their authors "
                "or the teacher can change them." if others else None)
    if not_mine:
        st.caption(not_mine)
    a, b = st.columns([2, 1])
    new_label = a.pills("Change the label of the selected drawings to", list(range(10)), key="classset.relabel_to")
    if a.button("Change label", disabled=not picked or new_label is None or bool(others), key="classset.relabel",
                help=not_mine):
        for did in picked:
            try:
                store.relabel(did, int(new_label), by=state.who())
            except (C.ClassSetError, OSError, identity.NotAllowed):
                pass  # removed meanwhile from another tab
        changed()
    if b.button(f"Remove {len(picked)} selected" if picked else "Remove selected",
                disabled=not picked or bool(others), help=not_mine,
                icon=":material/delete:", key="classset.remove"):
        try:
            store.remove(picked, by=state.who())
        except identity.NotAllowed:
            pass  # the page said so
        changed()


def finetune_ui(drawings: list[C.Drawing]) -> None:
    """Why fine-tuning cannot start yet, or its button; the outcome is kept for the next run of the page."""
    st.subheader("Fine-tune on our drawings")
    st.caption("Teach the current model our handwriting in seconds. A quarter of each digit's drawings is held out "
               "to check it; MNIST's test set shows whether it forgot anything. The result is kept as a saved run "
               "and answers on Draw; the current model stays as it is unless fine-tuning helped. From a terminal: "
               "`python -m core finetune`.")
    problem = None
    try:
        FT.check(sess.current, [d.label for d in drawings])
    except FT.FinetuneError as err:
        problem = str(err)
    if problem and drawings:  # an empty set is already said above, once
        st.info(widgets.md_escape(problem), icon=":material/school:")
    elif problem:
        st.caption("Needs drawings first.")
    if st.button("Fine-tune the current model on our drawings", icon=":material/model_training:",
                 key="classset.finetune", disabled=problem is not None or widgets.run_active(),
                 help="Wait for the run in progress to end first." if widgets.run_active() else None):
        sess.finetune_outcome = finetune_now()
        st.rerun()


def finetune_now() -> tuple:
    """Fine-tune the current model with a progress bar; ("done", result, run name) or ("error", message)."""
    line = st.empty()  # the place in line while waiting: its own line, which wraps where a bar's text would not
    bar = st.progress(0.0, text="Fine-tuning…")

    def progress(p: FT.Progress) -> None:
        if p.checking:  # what is checked on its own line, which wraps where a bar's text would run onto the bar
            line.markdown(f"Checking {p.checking}…")
            bar.progress(p.step / p.total, text=f"{p.step:,} of {p.total:,} images")
            return
        if p.step == 1:
            line.empty()
        if p.step % 5 == 0 or p.step == p.total:
            bar.progress(p.step / p.total, text=f"Fine-tuning: step {p.step} of {p.total}, loss {p.loss:.3f}")

    shown, still_wanted = [None], widgets.script_yield_check()

    def waiting(place: int) -> None:
        still_wanted()  # a page closed or rerun leaves the line now, not after its turn
        if place != shown[0]:
            shown[0] = place
            where = "yours is next" if place == 1 else f"yours is number {place} in line"
            line.markdown(f"Waiting for a classmate's fine-tune to finish: {where}…")
            bar.progress(0.0, text="Waiting for your turn…")

    try:
        with FT.turn(waiting):
            line.empty()
            try:
                result = FT.finetune(sess.current, store, progress=progress)
            finally:
                line.empty()  # the last check's line: the outcome says the rest
        record = FT.save_run(result, author=state.owner())
    except (FT.FinetuneError, C.ClassSetError, OSError) as err:
        return ("error", str(err))
    sess.use_checkpoint(record.checkpoint(), f"run {record.id}")
    return ("done", result, record.name)


def finetune_outcome_ui(outcome: tuple | None) -> None:
    if outcome and outcome[0] == "error":
        st.error(widgets.md_escape(outcome[1]))
    if not outcome or outcome[0] == "error":
        return
    result, run_name = outcome[1], outcome[2]
    with st.container(horizontal=True, key="finetune-tiles"):  # full numbers: a row wraps, never cuts one
        st.metric(f"Held-out drawings ({result.held_out})", f"{result.holdout_after:.1%}",
                  f"{100 * (result.holdout_after - result.holdout_before):+.1f} points", width="content")
        st.metric("MNIST's test set", f"{result.mnist_after:.2%}",
                  f"{100 * (result.mnist_after - result.mnist_before):+.2f} points", width="content")
        st.metric("Time", f"{result.seconds:.1f} s", f"{result.trained_on} drawings learnt", delta_color="off",
                  width="content")
    st.success(f"Before: {result.holdout_before:.1%} of the held-out drawings, {result.mnist_before:.2%} of MNIST. "
               f"Saved as the run “{widgets.md_escape(run_name)}”; it now answers on Draw.")
    if result.suspects:
        st.warning(f"Before fine-tuning, the model was sure that {len(result.suspects)} drawings were another digit "
                   "than their label: check their labels in the table above.")


def export_ui(drawings: list[C.Drawing]) -> None:
    st.markdown("**Export** as one zip: a PNG per drawing and `labels.csv` (`file,label`).")
    data = sess.memo.get("classset_zip", (classset_signature(drawings),),
                         lambda: store.export_zip() if drawings else b"")
    st.download_button("Download the class set (.zip)", data, file_name="digitlab-class-set.zip",
                       mime="application/zip", icon=":material/download:", disabled=not drawings,
                       key="classset.export", on_click="ignore")


def remove_all_ui(drawings: list[C.Drawing]) -> None:
    """A student removes their own drawings; the teacher, any."""
    person = state.who()
    own = sum(1 for d in drawings if person.owns(author_of(d)))
    everything = person.teacher or own == len(drawings)
    with st.popover("Remove all drawings" if everything else f"Remove my drawings ({own})",
                    icon=":material/delete_forever:", disabled=not drawings or not (everything or own),
                    help=None if everything or own else "Only the teacher can clear the whole class set."):
        st.write(f"Remove {'all ' + str(len(drawings)) if everything else 'your ' + str(own)} drawings? "
                 "Export them first to keep a copy.")
        if st.button("Yes, remove all" if everything else "Yes, remove mine", type="primary", key="classset.clear"):
            if person.teacher:
                store.clear(by=person)
            else:
                store.remove_own(person)
            changed()


def import_ui() -> None:
    """Read an uploaded zip once per upload, not on every rerun; what happened is said on the next run."""
    upload = st.file_uploader("**Import** a class set (.zip): added to the drawings here", type=["zip"],
                              key="classset.import")
    if upload is None or sess.classset_imported_upload == upload.file_id:
        return
    sess.classset_imported_upload = upload.file_id
    try:
        with st.spinner("Reading the drawings…"):
            report = store.import_zip(upload.getvalue(), author=state.owner())  # rows without an author: theirs
        sess.flash = ("import", report)
        sess.classset_table_version += 1
    except (C.ClassSetError, OSError) as err:
        sess.flash = ("import-error", widgets.md_escape(f"{upload.name}: {err}"))
    st.rerun()


def import_report_ui() -> None:
    flash = sess.flash if sess.flash and sess.flash[0].startswith("import") else None
    if not flash:
        return
    sess.flash = None
    if flash[0] == "import-error":
        st.error(flash[1])
        return
    report = flash[1]
    (st.success if report.added else st.warning)(
        f"Added {report.added} drawings; {report.duplicates} were already here; {len(report.skipped)} skipped.")
    if report.skipped:
        with st.expander("Why some were skipped"):
            st.text("\n".join(report.skipped[:200]))


drawings = store.list()
counts = header_ui(drawings)
if not drawings:
    st.info("No drawings yet. On **Draw**, draw a digit, pick which digit it is and press *Add to the class set*; "
            "or import a class set below.", icon=":material/groups:")
else:
    result = scored(*model_ui(), drawings)
    if result.problem:
        st.warning(result.problem)
    elif result.score is not None:
        accuracy_ui(result, counts)
        mistakes_ui(result.score)
    with st.expander("Every drawing, newest first: fix a label or remove drawings"):
        edit_ui(*table_ui(result.score, drawings))
finetune_ui(drawings)
finetune_outcome_ui(sess.finetune_outcome)

st.subheader("Take it home, bring it back")
left, right = st.columns(2, gap="large")
with left:
    export_ui(drawings)
    remove_all_ui(drawings)
with right:
    import_ui()
    import_report_ui()
