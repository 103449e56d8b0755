"""Helpers for the AppTest tests: the real app script, a page of it, a drawing as the canvas sends it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from core import drawn
from dashboard import state

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")


def app(page: str | None = None, query: dict | None = None) -> AppTest:
    """The whole app (navigation, sidebar) on ``page``, opened with ``query`` in its URL."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    for key, value in (query or {}).items():
        at.query_params[key] = value
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, at.exception
    return at


def session(at: AppTest) -> state.AppSession:
    return at.session_state[state.SESSION]


def drawing(digit: int, variant: int = 0, slant: float = 0.05) -> np.ndarray:
    """A white-on-black canvas as the Draw page receives it (RGBA)."""
    style = drawn.Style(height=0.7, aspect=0.68, cx=0.5, cy=0.5, slant=slant, rotate_deg=0, stroke=0.07, wobble=0)
    ink = drawn.render(drawn.place(drawn.TEMPLATES[digit][variant], style, 280), 280, 20)
    return np.dstack([ink, ink, ink, np.full_like(ink, 255)])
