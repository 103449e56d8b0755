"""Plotly figures built from plain numbers: large type and strong colours, for a projector."""

from __future__ import annotations

import html
import math
from typing import Sequence

import plotly.graph_objects as go

from dashboard import state

INK = "#1f2937"
RAW = "rgba(37, 99, 235, 0.28)"
SMOOTH = "#2563eb"
TEST = "#dc2626"
TRAIN = "#2563eb"
MAX_POINTS = 1500  # more points than this add nothing visible and slow the browser


def finish(fig: go.Figure, title: str, height: int, y_title: str, x_title: str) -> go.Figure:
    """Title top left, legend (if any) on its own line under it: they never overlap. Every text is set
    explicitly, dark and large, so that no theme greys it out or shrinks it on a projector."""
    big = state.projector_on()
    ink = "#000" if big else INK
    size = 22 if big else 15
    text = dict(size=size, color=ink)
    legend = sum(1 for t in fig.data if t.showlegend is not False and t.name) > 1
    top = (48 if big else 40) + ((40 if big else 30) if legend else 0)
    fig.update_layout(
        # from the chart's own left edge, not the plot's (which starts after the y axis's labels): a title
        # fits a narrow chart that way, with the type capped there (dashboard.widgets.LAYOUT_CSS)
        title=dict(text=title, font=dict(size=30 if big else 20, color=ink), x=0, xanchor="left", xref="container",
                   y=1, yanchor="top", yref="container", pad=dict(t=6, l=10)),
        height=int(height * 1.25) if big else height, margin=dict(l=10, r=10, t=top, b=10), font=text,
        legend=dict(orientation="h", x=0, xanchor="left", y=1, yanchor="bottom", font=text),
        xaxis_title=x_title, yaxis_title=y_title, uirevision="keep",  # keep zoom while the data grows
        hoverlabel=dict(font_size=size),
    )
    fig.update_xaxes(tickfont=text, title_font=text)
    fig.update_yaxes(tickfont=text, title_font=text)
    if big:  # thick lines and strong grid lines that survive a washed-out projector
        fig.for_each_trace(lambda t: t.update(line_width=(t.line.width or 2) * 2) if t.type == "scatter" else None)
        fig.update_xaxes(gridcolor="#6b7280", linecolor="#000", linewidth=2)
        fig.update_yaxes(gridcolor="#6b7280", linecolor="#000", linewidth=2)
    return fig


LEGEND_CHARS = 24  # a legend entry's length: in a half-width chart on a projector, longer ones ran off its edge


def legend_name(name: str) -> str:
    """A run's name for a legend: escaped (plotly renders some HTML) and cut to ``LEGEND_CHARS`` with an
    ellipsis; the hover shows it whole (``hover_name``)."""
    short = name if len(name) <= LEGEND_CHARS else name[:LEGEND_CHARS - 1].rstrip() + "…"
    return html.escape(short)


def hover_name(name: str, x: str, y: str) -> str:
    """A hover template naming the trace in full, then ``x`` and ``y`` (plotly template text)."""
    return f"{html.escape(name)}<br>{x}, {y}<extra></extra>"


def smooth(values: Sequence[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average with bias correction (as TensorBoard draws it)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** i))
    return out


def _thin(xs: list, ys: list) -> tuple[list, list]:
    if len(xs) <= MAX_POINTS:
        return xs, ys
    stride = -(-len(xs) // MAX_POINTS)
    return xs[::stride] + [xs[-1]], ys[::stride] + [ys[-1]]


def loss_figure(steps: list[int], losses: list[float], total_steps: int | None = None, height: int = 340) -> go.Figure:
    fig = go.Figure()
    sm = smooth(losses)
    xs, raw = _thin(steps, losses)
    _, smoothed = _thin(steps, sm)
    fig.add_trace(go.Scatter(x=xs, y=raw, mode="lines", name="loss per batch", line=dict(color=RAW, width=1)))
    fig.add_trace(go.Scatter(x=xs, y=smoothed, mode="lines", name="smoothed", line=dict(color=SMOOTH, width=3)))
    if total_steps:
        fig.update_xaxes(range=[0, total_steps])
    title = "Loss"
    if blew_up(losses):  # every value kept, on a log axis: a divergence shows as the spike it is
        fig.update_yaxes(type="log", autorange=True)
        title = "Loss — it blew up (log scale)"
    else:
        fig.update_yaxes(autorange=True, rangemode="tozero")
    return finish(fig, title, height, "cross-entropy", "step")


def blew_up(losses: Sequence[float]) -> bool:
    """The loss rose far above where it started: a learning rate too high, diverging."""
    finite = [v for v in losses if math.isfinite(v)]
    return bool(finite) and max(finite) > max(10.0, 3 * finite[0])


def accuracy_figure(epochs: list[int], train_acc: list[float], test_acc: list[float], height: int = 300) -> go.Figure:
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=epochs, y=[a * 100 for a in train_acc], mode="lines+markers", name="train",
                             line=dict(color=TRAIN, width=3), marker=dict(size=9)))
    fig.add_trace(go.Scatter(x=epochs, y=[a * 100 for a in test_acc], mode="lines+markers", name="test",
                             line=dict(color=TEST, width=3), marker=dict(size=9)))
    fig.update_xaxes(dtick=1)
    return finish(fig, "Accuracy per epoch", height, "%", "epoch")
