"""Digit Lab: train a network and draw digits for it, in the browser.

Start with ``bash scripts/app.sh`` (or ``streamlit run dashboard/app.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run` puts only this folder on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import people, state, widgets  # noqa: E402

st.set_page_config(page_title="Digit Lab", page_icon=":material/draw:", layout="wide", initial_sidebar_state=240)  # px, open from 768 px wide up

sess = state.session()
sess.adopt_finished_run()

pages = [
    st.Page("views/home.py", title="Start here", icon=":material/school:", default=True),
    st.Page("views/train.py", title="Train", icon=":material/model_training:", url_path="train"),
    st.Page("views/draw.py", title="Draw", icon=":material/draw:", url_path="draw"),
    st.Page("views/classset.py", title="Class set", icon=":material/groups:", url_path="classset"),
    st.Page("views/evaluate.py", title="Evaluate", icon=":material/grid_on:", url_path="evaluate"),
    st.Page("views/runs.py", title="Runs", icon=":material/history:", url_path="runs"),
    st.Page("views/results.py", title="Results", icon=":material/leaderboard:", url_path="results"),
    st.Page("views/models.py", title="Models", icon=":material/download:", url_path="models"),
    st.Page("views/tensors.py", title="Tensors", icon=":material/function:", url_path="tensors"),
    st.Page("views/glossary.py", title="Glossary", icon=":material/menu_book:", url_path="glossary"),
]
page = st.navigation(pages, position="top")

with st.sidebar:
    st.markdown("## :material/draw: Digit Lab")
    people.name_box()  # first: who is here, so the run below is theirs
    state.attach_run()  # their run still going (after a reload, from another device) shows again
    widgets.sidebar()
    widgets.projector()
    people.teacher_box()
    widgets.page_css()  # after the toggle: a link with ?projector=true is read by then

page.run()
