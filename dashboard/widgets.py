"""Small pieces shared by several pages."""

from __future__ import annotations

import re
import time

import streamlit as st

from dashboard import state


def run_active() -> bool:
    run = state.session().run
    return run is not None and not run.done


_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def md_escape(text: str) -> str:
    """User text (a run's name) for a Markdown element: shown as typed, never as links, images or icons.

    Escaping stops Markdown syntax; an invisible word joiner inside "://" and "www." also stops
    the bare-URL autolinks that Markdown makes after escapes are read.
    """
    text = str(text).replace("://", ":\u2060//").replace("www.", "www\u2060.")
    return _MARKDOWN_SPECIALS.sub(r"\\\1", text)


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
        view = run.view(since_batch=10**12)
        if run.done:
            if sess.adopt_finished_run():
                st.rerun()  # the whole page: buttons and the current model change
            end = view.end
            st.caption(f"Last run: {end.reason}" if end else "Last run ended.")
            return
        if view.state == "queued":
            st.caption(f":material/hourglass_top: Waiting for a training slot (place {view.queue_position or 1})")
        elif view.state == "paused":
            st.caption(":material/pause: Training paused")
        else:
            last = view.epochs[-1] if view.epochs else None
            extra = f" · test accuracy {last.test_acc:.1%}" if last else ""
            st.caption(f":material/directions_run: Training{extra}")

    with st.container():
        _status()


# Projector mode: larger type, heavier strokes, black on white. Streamlit has no API for type size,
# so a few rules on its stable data-testid hooks do it.
PROJECTOR_CSS = """<style>
html { font-size: 20px; }
.stApp p, .stApp li, .stApp label, .stApp input, .stApp button, .stApp [data-baseweb="select"] div,
.stApp [data-testid="stCaptionContainer"], .stApp [data-testid="stMetricLabel"] { font-size: 1.2rem !important; }
.stApp, .stApp p, .stApp li, .stApp label, .stApp [data-testid="stCaptionContainer"] { color: #000 !important; }
.stApp h1 { font-size: 2.8rem; } .stApp h2 { font-size: 2.2rem; } .stApp h3, .stApp h4 { font-size: 1.6rem; }
.stApp [data-testid="stSidebar"] h2 { font-size: 1.6rem; }
.stApp [data-testid="stText"] { font-size: 1.2rem; color: #000; }
.stApp [data-testid="stMetricValue"] { font-size: 2.8rem; font-weight: 700; }
.stApp [data-testid="stProgress"] > div > div { height: 1.1rem; }
.stApp [data-testid="stVerticalBlockBorderWrapper"], .stApp [data-testid="stExpander"] details { border: 2px solid #000; }
.stApp button { border-width: 2px !important; font-weight: 700; }
</style>"""


def projector() -> None:
    """The toggle, in the sidebar of every page: kept across pages and in the URL (a bookmark keeps it)."""
    st.toggle("Projector mode", key=state.PROJECTOR, persist_state="session", bind="query-params",
              help="Large type, thick strokes and high contrast, for the back row of a classroom.")
    if state.projector_on():
        st.markdown(PROJECTOR_CSS, unsafe_allow_html=True)


def current_model_card() -> None:
    choice = state.session().model_for_drawing()
    st.markdown("**Model answering on Draw**")
    st.text(choice.name)
    st.caption(md_escape(choice.detail))  # the date comes from the checkpoint file
