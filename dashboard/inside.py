"""The Draw page's "look inside" views: each computation is in core.insight; this only lays it out."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core import insight
from core import models as M
from core.inference import classify
from dashboard import charts, words
from dashboard.widgets import pixelated

VIEWS = ["Steps", "Saliency", "Inside the network"]


def unit(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def steps_view(pre) -> None:
    st.caption("How a drawing becomes what the model reads, as MNIST's digits were made: crop to the ink, "
               "scale the longer side to 20 pixels, centre by the centre of mass in 28×28.")
    cols = st.columns(4)
    for col, (key, label) in zip(cols, [("canvas", "1. your canvas"), ("cropped", "2. cropped to the ink"),
                                        ("scaled", "3. scaled to 20 px"), ("centred", "4. centred in 28×28")]):
        img = pre.steps[key]
        col.image(np.clip(img, 0, 1) if key in ("canvas", "cropped") else pixelated(np.clip(img, 0, 1), 8),
                  caption=label, clamp=True, width="stretch")


def saliency_view(choice, pre, result) -> None:
    classes = choice.info.classes
    c1, c2 = st.columns(2)
    target = c1.selectbox("Explain the class", range(10), index=int(result.digit), format_func=lambda i: classes[i],
                          key="draw.saliency_class")
    method = c2.radio("Method", ["SmoothGrad", "Gradient"], horizontal=True, key="draw.saliency_method",
                      help="Gradient: how much each pixel changes the class's score. SmoothGrad: "
                           + words.term("SmoothGrad"))
    fn = insight.smoothgrad if method == "SmoothGrad" else insight.gradient_saliency
    sal = unit(fn(choice.model, pre.image, int(target), choice.info))
    overlay = np.dstack([np.maximum(pre.image * 0.45, sal), pre.image * 0.45, pre.image * 0.45])
    a, b = st.columns(2)
    a.image(pixelated(overlay, 8), caption=f"red: pixels that pushed the score of “{classes[target]}”", clamp=True)
    b.image(pixelated(sal, 8), caption="saliency alone (brighter = more influence)", clamp=True)


def _grid(maps: np.ndarray, caption: str, per_row: int = 8, factor: int = 5) -> None:
    st.markdown(f"**{caption}**")
    for start in range(0, len(maps), per_row):
        cols = st.columns(per_row)
        for i, col in enumerate(cols):
            if start + i < len(maps):
                col.image(pixelated(unit(maps[start + i]), factor), caption=f"#{start + i + 1}", clamp=True)


def network_view(choice, pre) -> None:
    model = choice.model
    try:
        maps = insight.feature_maps(model, pre.image, choice.info)
    except Exception:
        maps = []
    shown_net = insight.looked_into(model)[1]
    if shown_net:
        tilts = getattr(model, "tilts", ())
        views = f", each reading your drawing as it is and tilted {M.tilts_text(tilts)}" if tilts else ""
        st.caption(f"This model answers with several networks together{views} (all their probabilities averaged); "
                   f"below is {shown_net}.")
    if maps:
        st.caption("Each small image is one channel: bright where that filter found its pattern in your drawing. "
                   f"**ReLU**: {words.term('ReLU')} **Max pooling**: {words.term('max pooling')}")
        _grid(insight.conv_filters(model), "Learned conv1 filters (5×5)", factor=10)
        for name, fmap in maps:
            what = "before ReLU" if name.startswith("conv") else "after ReLU and 2×2 max pooling"
            _grid(fmap, f"{name}: {fmap.shape[0]} maps of {fmap.shape[1]}×{fmap.shape[2]} ({what})",
                  factor=max(2, 96 // fmap.shape[1]))
        return
    acts = insight.hidden_activations(model, pre.image, choice.info)
    weights = insight.first_layer_weights(model)
    order = np.argsort(-acts)
    fig = go.Figure(go.Bar(x=list(range(1, len(acts) + 1)), y=acts, marker_color=charts.SMOOTH))
    charts.finish(fig, "How strongly each unit fires", 260, "activation", f"unit (the first layer's {len(acts)})")
    st.plotly_chart(fig, key="draw.hidden_units", config={"displayModeBar": False})
    top = order[:16]
    st.markdown("**The weights of the 16 units that fire most, as 28×28 pictures** "
                "(bright: ink here raises the unit; dark: lowers it)")
    cols = st.columns(8)
    for i, u in enumerate(top):
        cols[i % 8].image(pixelated(unit(weights[u]), 3), caption=f"unit {u + 1}: {acts[u]:.1f}", clamp=True)


def look_inside(model_choice, pixels) -> None:
    """Computes only the view a person picked: a stroke with no view open costs nothing here."""
    st.divider()
    view = st.segmented_control("Look inside", VIEWS, default=None, key="draw.inside",
                                help="How the drawing was prepared, which pixels mattered, and what each layer saw")
    if view is None:
        return
    choice = model_choice()
    result = classify(choice.model, pixels, choice.info, background="dark")
    if not result.ok:
        return
    pre = result.preprocessed
    if view == "Steps":
        steps_view(pre)
    elif view == "Saliency":
        saliency_view(choice, pre, result)
    elif view == "Inside the network":
        network_view(choice, pre)
