"""Runs: every finished or stopped run, kept on disk; compare them, reuse one, rename or delete."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from core import identity
from core.checkpoint import CheckpointError
from core.runs import RunError, RunStore
from core.values import is_number
from dashboard import charts, state, widgets, words

sess = state.session()
store = RunStore()
records = store.list()

st.title("Runs")
st.caption(f"Saved in `{store.root}`: one folder per run with `run.json`, `batches.csv`, `epochs.csv` and "
           "`model.pt`, readable from a notebook with pandas.")
if sess.save_error:
    st.error(sess.save_error)
if store.skipped:  # a damaged folder is left out, never breaking the list
    st.warning(widgets.md_escape(store.skipped_note()), icon=":material/folder_off:")
if not records:
    st.info("No runs yet. Every run you finish or stop on the Train page is kept here.", icon=":material/history:")
    st.stop()


def label(r) -> str:
    acc = r.metrics.get("test_acc")
    return f"{r.name} · {acc:.2%}" if is_number(acc) else r.name


by_id = {r.id: r for r in records}
st.dataframe([{
    "name": r.name, "by": identity.shown(r.author), "created": r.created.replace("T", " ")[:16], "ended": r.reason,
    "optimizer": r.settings.get("optimizer"), "lr": r.settings.get("lr"), "batch": r.settings.get("batch_size"),
    "epochs": r.metrics.get("epochs"), "test acc": r.metrics.get("test_acc"),
    "time": widgets.format_seconds(r.metrics.get("train_seconds") or 0),
    "samples/s": round(r.metrics.get("samples_per_second") or 0)} for r in records], hide_index=True,
    column_config={"test acc": st.column_config.NumberColumn(format="percent", help=words.term("test accuracy")),
                   "samples/s": st.column_config.NumberColumn(help=words.term("samples/s")),
                   "time": st.column_config.TextColumn(help="Training time, pauses not counted.")})

def best_finished(n: int = 2) -> list[str]:
    """The most accurate runs that ended well: what is worth comparing first (not the newest, maybe diverged)."""
    good = [r for r in records if r.reason in ("finished", "target reached")
            and is_number(r.metrics.get("test_acc"))]
    good.sort(key=lambda r: r.metrics["test_acc"], reverse=True)
    return [r.id for r in good[:n]] or [r.id for r in records[:n]]


def remember_compare() -> None:
    sess.runs_compared = list(st.session_state.get("runs.compare") or [])


kept = [i for i in (best_finished() if sess.runs_compared is None else sess.runs_compared) if i in by_id]
chosen = st.multiselect("Compare", list(by_id), default=kept, format_func=lambda i: label(by_id[i]),
                        key="runs.compare", on_change=remember_compare,
                        help="Starts with the two most accurate finished runs.")
sess.runs_compared = list(chosen)
if chosen:
    loss, acc = go.Figure(), go.Figure()
    for rid in chosen:
        r = by_id[rid]
        try:
            batches, epochs = r.batches(), r.epochs()
        except RunError as err:  # a damaged CSV: that run's curves are left out
            st.warning(widgets.md_escape(f"{r.name}: {err}"))
            batches, epochs = [], []
        if batches:
            loss.add_trace(go.Scatter(x=[b["step"] for b in batches], y=charts.smooth([b["loss"] for b in batches]),
                                      mode="lines", name=charts.legend_name(r.name),
                                      hovertemplate=charts.hover_name(r.name, "step %{x}", "loss %{y:.3f}")))
        if epochs:
            acc.add_trace(go.Scatter(x=[e["epoch"] for e in epochs], y=[e["test_acc"] * 100 for e in epochs],
                                     mode="lines+markers", name=charts.legend_name(r.name),
                                     hovertemplate=charts.hover_name(r.name, "epoch %{x}", "%{y:.2f} %")))
    with st.container(horizontal=True, gap="medium", key="runs-charts"):  # side by side when both fit, else stacked
        a, b = st.container(key="runs-loss"), st.container(key="runs-acc")
    title = "Loss (smoothed)"
    if any(charts.blew_up(list(t.y)) for t in loss.data):  # one diverged run would flatten every other onto 0
        loss.update_yaxes(type="log", autorange=True)
        title = "Loss (smoothed, log scale)"
    charts.finish(loss, title, 340, "cross-entropy", "step")
    charts.finish(acc, "Test accuracy per epoch", 340, "%", "epoch")
    for fig in (loss, acc):
        if len(fig.data) > 1:  # run names are long: in a half-width chart the legend takes a line each, above the plot
            fig.update_layout(margin=dict(t=fig.layout.margin.t + 26 * (len(fig.data) - 1)))
    a.plotly_chart(loss, key="runs.loss",
                   config={"displayModeBar": False})
    if acc.data:
        acc.update_yaxes(range=[0, 100])  # from zero, as on Evaluate: a height is an accuracy
        b.plotly_chart(acc, key="runs.acc",
                       config={"displayModeBar": False})
    else:
        b.info("No epoch has ended in these runs yet, so there is no test accuracy per epoch to draw. The table's "
               "test accuracy is of the weights each run kept when it ended.", icon=":material/info:")

st.subheader("Manage a run")
rid = st.selectbox("Run", list(by_id), format_func=lambda i: label(by_id[i]), key="runs.pick")
r = by_id[rid]
c1, c2, c3 = st.columns([1, 2, 1])
mine = state.may_manage(r.author)  # students see every run; they rename or delete their own
not_mine = None if mine else widgets.md_escape(identity.why_not(r.author))  # a name is user text


def use_run(record) -> None:
    """A callback, so that the sidebar (drawn before this page) already names the new model."""
    try:
        ckpt = record.checkpoint()
        ckpt.name = record.name
        sess.use_checkpoint(ckpt, f"run {record.id}")
        sess.flash = ("run-used", f"“{widgets.md_escape(record.name)}” now answers on the Draw page.")
    except (CheckpointError, OSError) as err:  # deleted meanwhile from another tab, or damaged
        sess.flash = ("run-error", f"This run's model could not be loaded: {err}")


c1.button("Make it the current model", key="runs.use", icon=":material/check_circle:", on_click=use_run, args=(r,))
if sess.flash and sess.flash[0].startswith("run-"):
    kind, text = sess.flash
    sess.flash = None
    (c1.success if kind == "run-used" else c1.error)(text)
with c2.form("rename", border=False):
    if sess.runs_name_of != r.id:  # another run picked: the box shows its name, not the last one's
        st.session_state["runs.new_name"] = r.name
        sess.runs_name_of = r.id
    new_name = st.text_input("New name", max_chars=80, key="runs.new_name", disabled=not mine)
    if st.form_submit_button("Rename", disabled=not mine, help=not_mine):
        try:
            store.rename(r.id, new_name, by=state.who())
            sess.runs_name_of = None  # show the name as stored
            st.rerun()
        except identity.NotAllowed as err:
            st.error(widgets.md_escape(str(err)))
        except OSError:
            st.error("This run is gone (deleted from another tab).")
if not_mine:
    c2.caption(not_mine)
with c3.popover("Delete", icon=":material/delete:", disabled=not mine, help=not_mine):
    st.write(f"Delete “{widgets.md_escape(r.name)}” and its files?")
    if st.button("Yes, delete", type="primary", key="runs.delete"):
        try:
            store.delete(r.id, by=state.who())
        except identity.NotAllowed as err:
            st.error(widgets.md_escape(str(err)))
            st.stop()
        except (OSError, RunError):
            pass  # already gone
        st.rerun()
