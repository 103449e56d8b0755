"""Evaluate: the current model on the whole test set. Click a cell of the confusion matrix to see its images."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core import insight
from core.data import dataset_info
from dashboard import charts, state, widgets, words

sess = state.session()
ck = sess.current
info = dataset_info(ck.dataset)
classes = info.classes

st.title("Evaluate the current model")
st.caption(f"{widgets.md_escape(ck.title)} on the {len(state.test_split(ck.dataset)):,} test images of {info.title}"
           " (while a run trains, this page shows the model that answered before it)")


def classify_test_set() -> insight.Evaluation:
    with st.spinner("Classifying the test set…"):
        return insight.evaluate_split(sess.current_model(), state.test_split(ck.dataset), info)


ev = sess.memo.get("evaluation", (ck,), classify_test_set)
images = state.test_split(ck.dataset).images

widgets.back_to_bundled("eval.bundled")
worst = int(np.argmin(ev.per_class_accuracy()))
with st.container(horizontal=True, key="eval-tiles"):  # full numbers: a row wraps, never cuts one
    st.metric("Accuracy", f"{ev.accuracy:.2%}", width="content", help=words.term("test accuracy"))
    st.metric("Mistakes", f"{int((ev.labels != ev.predictions).sum()):,}", width="content",
              help="Test images it got wrong, out of all of them.")
    st.metric("Hardest class", f"{classes[worst]} ({ev.per_class_accuracy()[worst]:.1%})", width="content",
              help="The class it gets right least often.")

with st.container(horizontal=True, gap="large", key="eval-row"):  # side by side when they fit, else stacked
    left, right = st.container(key="eval-confusion"), st.container(key="eval-side")
with left:
    # squares on a scatter plot rather than a heatmap, so that each cell can be clicked
    true_idx, pred_idx = np.meshgrid(range(10), range(10), indexing="ij")
    counts = ev.confusion.ravel()
    fig = go.Figure(go.Scatter(
        x=[classes[p] for p in pred_idx.ravel()], y=[classes[t] for t in true_idx.ravel()], mode="markers+text",
        text=[str(c) if c else "" for c in counts],
        textfont=dict(size=15 if state.projector_on() else 11, color=["white" if c > counts.max() / 4 else charts.INK for c in counts]),
        # squares of 30 px with 11 px counts: "1126" fits inside one even on a phone's width
        marker=dict(symbol="square", size=30, color=np.log1p(counts), colorscale="Blues", line=dict(width=0)),
        # a clicked cell turns amber; the others stay as they were, readable (not faded)
        selected=dict(marker=dict(opacity=1, color="#f59e0b")), unselected=dict(marker=dict(opacity=1)),
        customdata=np.stack([true_idx.ravel(), pred_idx.ravel(), counts], 1),
        hovertemplate="true %{y}, predicted %{x}: %{customdata[2]} images<extra></extra>"))
    fig.update_yaxes(autorange="reversed", type="category", tickmode="array", tickvals=list(classes))
    fig.update_xaxes(type="category", side="top", tickmode="array", tickvals=list(classes))
    charts.finish(fig, "Confusion matrix (click a cell)", 560, "true class", "predicted class")
    fig.update_layout(margin=dict(t=150 if state.projector_on() else 115))  # the title, then the top axis
    event = st.plotly_chart(fig, key="eval.confusion", on_select="rerun", selection_mode="points",
                            config={"displayModeBar": False})
with right:
    bars = go.Figure(go.Bar(x=list(classes), y=ev.per_class_accuracy() * 100, marker_color=charts.SMOOTH))
    bars.update_yaxes(range=[0, 100])  # from zero: a bar's height is its accuracy
    bars.update_xaxes(type="category")
    st.plotly_chart(charts.finish(bars, "Accuracy per class", 250, "%", ""), config={"displayModeBar": False})
    hist = go.Figure()
    right_mask = ev.labels == ev.predictions
    hist.add_trace(go.Histogram(x=ev.confidence[right_mask] * 100, name="right", marker_color=charts.TRAIN,
                                xbins=dict(start=0, end=100, size=5), histnorm="percent"))
    hist.add_trace(go.Histogram(x=ev.confidence[~right_mask] * 100, name="wrong", marker_color=charts.TEST,
                                xbins=dict(start=0, end=100, size=5), histnorm="percent", opacity=0.75))
    st.plotly_chart(charts.finish(hist, "How sure it was, right and wrong", 250, "% of answers", "confidence (%)"),
                    config={"displayModeBar": False})


def gallery(indices: np.ndarray, caption) -> None:
    cols = st.columns(8)
    for i, idx in enumerate(indices):
        cols[i % 8].image(widgets.pixelated(images[idx].numpy(), 3), caption=caption(idx))


points = (event.selection.points if event and event.selection else []) or []
if points:
    t, p = divmod(int(points[0]["point_index"]), 10)  # the squares are laid out true-class major
    cell = ev.cell(t, p)
    n = len(cell)
    st.subheader(f"{n} test images that are {classes[t]} and the model called {classes[p]}")
    if len(cell):
        gallery(cell[:48], lambda idx: f"{ev.confidence[idx]:.0%} sure")
        if len(cell) > 48:
            st.caption(f"the first 48 of {len(cell)}")
else:
    st.info("Click a cell of the confusion matrix to see its test images: which 4s did it call 9?",
            icon=":material/touch_app:")

st.subheader("The most confidently wrong answers")
mistakes = ev.confident_mistakes(24)
gallery(mistakes, lambda idx: f"true {classes[ev.labels[idx]]} → {classes[ev.predictions[idx]]} "
                              f"({ev.confidence[idx]:.0%})")
