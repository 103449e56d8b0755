"""Small pieces shared by several pages."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import streamlit as st

from core.live import live_runs
from dashboard import state


def run_active() -> bool:
    run = state.session().run
    return run is not None and not run.done


_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def script_yield_check() -> Callable[[], None]:
    """What raises, on this page's script thread, once the page was closed or rerun (as any st call would):
    for a wait that draws nothing for a while. A no-op outside a page or where Streamlit lacks it."""
    try:
        from streamlit.runtime.scriptrunner_utils.script_run_context import get_run_yield_check
    except ImportError:
        return lambda: None
    return get_run_yield_check() or (lambda: None)


def md_escape(text: str) -> str:
    """User text (a run's name) for a Markdown element: shown as typed, never as links, images or icons.

    Escaping stops Markdown syntax; an invisible word joiner inside "://" and "www." also stops
    the bare-URL autolinks that Markdown makes after escapes are read.
    """
    text = str(text).replace("://", ":\u2060//").replace("www.", "www\u2060.")
    return _MARKDOWN_SPECIALS.sub(r"\\\1", text)


T = TypeVar("T")


def made_once(store: dict, key: str, make: Callable[[], T]) -> Callable[[], T]:
    """A download button's deferred data: ``make()`` runs at the first click only, and what it made is kept
    in ``store`` under ``key`` for every later click. Streamlit calls it on another thread, outside the
    script, so it touches only what it closes over."""

    def data() -> T:
        if key not in store:
            store[key] = make()
        return store[key]

    return data


def pixelated(image: np.ndarray, factor: int) -> np.ndarray:
    """A small image made ``factor`` times larger by nearest neighbour, so each pixel stays a visible square."""
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def format_seconds(s: float) -> str:
    s = max(0, int(round(s)))
    return f"{s // 60}:{s % 60:02d}"


def eta_text(last, total_steps: int, epochs: int, started_at: float | None, paused_for: float) -> str:
    """'epoch 2/5 · step 600/2,345 · 0:41 left' from the last BatchEvent."""
    if last is None or started_at is None:
        return "starting…"
    elapsed = time.perf_counter() - started_at - paused_for
    left = elapsed / max(last.step, 1) * (total_steps - last.step)
    return f"epoch {last.epoch}/{epochs} · step {last.step:,}/{total_steps:,} · {format_seconds(left)} left"


def sidebar() -> None:
    """The run's status and the answering model, live on every page; it also notices when a run ends."""
    active = run_active()

    @st.fragment(run_every=1.0 if active else None)
    def _status():
        sess = state.session()
        run = sess.run
        current_model_card()
        if run is None:
            return
        view = run.status()
        if not run.done:
            live_runs().watch(run.id)  # any page of the owner's keeps the run from counting as idle
        if run.done:
            if sess.adopt_finished_run():
                st.rerun()  # the whole page: buttons and the current model change
            end = view.end
            st.caption(f"Last run: {end.reason}" if end else "Last run ended.")
            return
        if view.state == "queued":
            st.caption(f":material/hourglass_top: Waiting: {queue_text(view)}")
        elif view.state == "paused":
            st.caption(":material/pause: Training paused")
        else:
            last = view.epochs[-1] if view.epochs else None
            extra = f" · test accuracy {last.test_acc:.1%}" if last else ""
            st.caption(f":material/directions_run: Training{extra}")

    with st.container():
        _status()


# Layout rules for every page, projector or not. Streamlit has no API for these, so a few rules on its
# stable data-testid hooks and on the st-key-* classes of keyed containers do it:
# - a button or metric label wraps onto a second line rather than ending in "…" in a narrow column;
# - keyed rows wrap their boxes onto the next line when a screen is too narrow for them side by side.
LAYOUT_CSS = """<style>
.stApp button p, .stApp button [data-testid="stMarkdownContainer"], .stApp label p,
.stApp [data-testid="stMetricLabel"], .stApp [data-testid="stMetricLabel"] * {
  white-space: normal !important; overflow: visible !important; text-overflow: clip !important;
  overflow-wrap: break-word; }
.stApp header button p { white-space: nowrap !important; overflow-wrap: normal; }  /* the page menu's "3 more" */
/* a row of buttons or numbers wraps to the next line; it never squeezes one below its label's width */
.stApp .st-key-train-buttons > *, .stApp .st-key-lesson-runs > *, .stApp .st-key-train-tiles > *,
.stApp .st-key-eval-tiles > *, .stApp .st-key-models-tiles > *, .stApp .st-key-finetune-tiles > *,
.stApp .st-key-classset-tiles > * {
  flex-shrink: 0; max-width: 100%; }
.stApp [data-testid="stMetricLabel"] { height: auto !important; min-height: 1.5rem; }
.stApp [data-testid="stBaseButton-primary"], .stApp [data-testid="stBaseButton-secondary"] { height: auto; }
.stApp [data-testid="stLayoutWrapper"]:has(> .st-key-train-settings) { flex: 1 1 260px; min-width: min(100%, 260px); }
.stApp [data-testid="stLayoutWrapper"]:has(> .st-key-train-live) { flex: 2 1 440px; min-width: min(100%, 340px); }
.stApp [data-testid="stLayoutWrapper"]:has(> .st-key-draw-answer) { flex: 1 1 280px; min-width: min(100%, 280px); }
.stApp [data-testid="stLayoutWrapper"]:has(> .st-key-eval-confusion) { flex: 1.2 1 460px; min-width: min(100%, 460px); }
.stApp [data-testid="stLayoutWrapper"]:has(> .st-key-eval-side) { flex: 1 1 300px; min-width: min(100%, 300px); }
.stApp [data-testid="stLayoutWrapper"]:has(> .st-key-runs-loss),
.stApp [data-testid="stLayoutWrapper"]:has(> .st-key-runs-acc) { flex: 1 1 340px; min-width: min(100%, 340px); }
@media (max-width: 1400px) {  /* a projector or a small laptop: the page's wide side margins go to the content */
  .stApp [data-testid="stMainBlockContainer"] { padding-left: 1.5rem; padding-right: 1.5rem; padding-top: 3.5rem; }
}
.stApp .st-key-draw-answer h2 { font-size: 2.6rem; line-height: 1.15; }
.stApp .st-key-draw-row { margin-top: 0.5rem; }
/* too narrow for the canvas and the answer side by side (a phone, a tablet with the side panel open):
   the answer comes right under the canvas and its Clear button, the class-set box after it (side by
   side, that box sits under the canvas, so adding a drawing never scrolls the canvas away) */
.stApp .st-key-draw-area { container-type: inline-size; }
@container (max-width: 660px) {
  .stApp .st-key-draw-row { flex-direction: column; flex-wrap: nowrap; }
  .stApp .st-key-draw-row > [data-testid="stLayoutWrapper"]:has(> .st-key-draw-canvas),
  .stApp .st-key-draw-canvas { display: contents; }
  .stApp .st-key-draw-row [data-testid="stLayoutWrapper"]:has(> .st-key-draw-answer) { order: 1; }
  .stApp .st-key-draw-row [data-testid="stLayoutWrapper"]:has(> .st-key-draw-classset) { order: 2; }
}
/* a chart's title and legend are SVG text, which cannot wrap: in a narrow chart (a phone, a side column in
   projector mode) they are capped at the normal sizes */
.stApp [data-testid="stPlotlyChart"] { container-type: inline-size; }
@container (max-width: 480px) {
  .stApp .js-plotly-plot .gtitle { font-size: 20px !important; }
  .stApp .js-plotly-plot .legendtext { font-size: 15px !important; } }
/* stacked on a narrow screen, the run (buttons, progress, chart) comes first; side by side, settings left */
.stApp .st-key-train-layout { flex-wrap: wrap-reverse; align-items: stretch; }
</style>"""

# Projector mode: larger type, heavier strokes, black on white. The same hooks as above. The answer on
# Draw is 3.6rem, 72 px, read from the back row; on a phone's width, as large as fits one line.
PROJECTOR_CSS = """<style>
html { font-size: 20px; }
.stApp p, .stApp li, .stApp label, .stApp input, .stApp button, .stApp [data-baseweb="select"] div,
.stApp [data-testid="stCaptionContainer"], .stApp [data-testid="stMetricLabel"],
.stApp [data-testid="stMetricLabel"] p { font-size: 1.2rem !important; }
.stApp, .stApp p, .stApp li, .stApp label, .stApp [data-testid="stCaptionContainer"] { color: #000 !important; }
.stApp h1 { font-size: 2.8rem; } .stApp h2 { font-size: 2.2rem; } .stApp h3, .stApp h4 { font-size: 1.6rem; }
.stApp [data-testid="stSidebar"] h2 { font-size: 1.6rem; }
.stApp [data-testid="stText"] { font-size: 1.2rem; color: #000; }
.stApp [data-testid="stMetricValue"], .stApp [data-testid="stMetricValue"] * {
  font-size: 2.6rem !important; font-weight: 700 !important; color: #000 !important; line-height: 1.2; }
.stApp [data-testid="stProgress"] > div > div { height: 1.1rem; }
.stApp [data-testid="stVerticalBlockBorderWrapper"], .stApp [data-testid="stExpander"] details { border: 2px solid #000; }
.stApp button { border-width: 2px !important; font-weight: 700; }
.stApp button:disabled, .stApp button:disabled * { color: #8a8a8a !important; border-color: #c8c8c8 !important; }
.stApp .st-key-draw-answer h2 { font-size: 3.6rem !important; }
@media (max-width: 480px) { .stApp .st-key-draw-answer h2 { font-size: 2.8rem !important; } }
.stApp .st-key-draw-answer h3 { font-size: 2rem !important; }
/* larger type needs wider charts: the Runs page's two stack unless each gets 420 px */
.stApp [data-testid="stLayoutWrapper"]:has(> .st-key-runs-loss),
.stApp [data-testid="stLayoutWrapper"]:has(> .st-key-runs-acc) { flex-basis: 420px; min-width: min(100%, 420px); }
</style>"""


def page_css() -> None:
    """The layout rules, and projector mode's when it is on: in the sidebar, where they take no room
    from a page (a style element applies to the whole page wherever it sits)."""
    css = re.sub(r"/\*.*?\*/", "", LAYOUT_CSS) + (PROJECTOR_CSS if state.projector_on() else "")
    st.markdown(css, unsafe_allow_html=True)  # the comments are for us, not for Markdown


def projector() -> None:
    """The toggle, in the sidebar of every page: kept across pages and in the URL (a bookmark keeps it)."""
    st.toggle("Projector mode", key=state.PROJECTOR, persist_state="session", bind="query-params",
              help="Large type, thick strokes and high contrast, for the back row of a classroom.")


def current_model_card() -> None:
    choice = state.session().model_for_drawing()
    st.markdown("**Model answering on Draw**")
    st.text(choice.name)
    st.caption(md_escape(choice.detail))  # the date comes from the checkpoint file
    back_to_bundled("sidebar.bundled")


def back_to_bundled(key: str) -> None:
    """One click back to the model that came with Digit Lab, wherever the current model is shown."""
    sess = state.session()
    if sess.current_source == "bundled":
        return
    if st.button("Back to the bundled model", key=key, icon=":material/undo:",
                 help="The model that came with Digit Lab (about 99 % right on the test images)."):
        sess.use_bundled()
        st.rerun()  # the whole page: the sidebar and every answer change


def queue_text(view) -> str:
    """'2nd in line, should start in about 40 s': the place and the estimate core.jobs gives."""
    place = view.queue_position or 1
    suffix = "th" if 10 <= place % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(place % 10, "th")
    eta = view.estimated_start_s
    if eta is None:
        return f"{place}{suffix} in line"
    when = f"{max(5, round(eta / 5) * 5):.0f} s" if eta < 90 else f"{round(eta / 60):.0f} min"
    return f"{place}{suffix} in line, should start in about {when}"
