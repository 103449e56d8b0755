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


def current_model_card() -> None:
    choice = state.session().model_for_drawing()
    st.markdown("**Model answering on Draw**")
    st.text(choice.name)
    st.caption(choice.detail)
