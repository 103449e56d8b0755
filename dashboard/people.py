"""Who is using this page: the name box at the top of the side panel, and the teacher's key below it.

The name is display text (``core.identity``): kept across pages and in the URL (``?student=Ana``,
so a teacher can hand out links), escaped wherever it is shown. The teacher key is typed into a
password box in a form that forgets it at once; only "this session is the teacher's" is kept.
"""

from __future__ import annotations

import time

import streamlit as st

from core import identity
from core.live import live_runs
from dashboard import state
from dashboard.widgets import md_escape

REFUSED = "people.refused"  # the name just typed was refused (empty once cleaned)
KEY_BOX = "people.teacher_key"
GENERATION = "people.names_generation"  # the name book's generation this session last saw
WRONG_TRIES = "people.wrong_tries"  # (count, time.monotonic() of the last) for this session
MAX_TRIES, LOCKOUT_S = 5, 60.0


def _name_typed() -> None:
    """The name box's callback: keep the cleaned text, so the box and the URL show what is used."""
    raw = st.session_state.get(state.STUDENT) or ""
    cleaned = identity.clean_name(raw)
    st.session_state[REFUSED] = not cleaned  # emptied, or nothing left once cleaned: a guest again, and told why
    if cleaned != raw:
        st.session_state[state.STUDENT] = cleaned


def forget_name_after_reset() -> None:
    """When the teacher has reset the class, every session starts again without a name.
    Called before the name box is drawn (its value can be set only then)."""
    generation = identity.name_book().generation
    seen = st.session_state.get(GENERATION)
    if seen is not None and seen != generation:
        st.session_state[state.STUDENT] = ""
    st.session_state[GENERATION] = generation


def _book_key(session: str) -> str:
    """This session in the name book: Streamlit's id (to ask whether the tab is still open) and ours."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return f"{ctx.session_id if ctx is not None else ''}/{session}"


def _still_open(key: str) -> bool:
    """A reloaded or closed tab's session is gone at once: only open ones count as someone else."""
    from streamlit.runtime import Runtime

    if not Runtime.exists():  # AppTest: no server, every session is open
        return True
    return Runtime.instance().is_active_session(key.split("/", 1)[0])


def name_box() -> None:
    """The first thing in the side panel: small, so the page beside it stays readable on a projector."""
    forget_name_after_reset()
    st.text_input("Your name", key=state.STUDENT, bind="query-params", persist_state="session",
                  max_chars=identity.MAX_NAME, on_change=_name_typed, placeholder="e.g. Ana M.",
                  help="Your runs and drawings are filed under this name, and a run you start comes back after a "
                       "reload or on another device with the same name. It is not a password: names are trust.")
    person = state.who()
    raw = st.session_state.get(state.STUDENT) or ""
    if st.session_state.get(REFUSED) or (raw and not person.name):  # typed, or in a link: nothing left once cleaned
        st.warning(identity.EMPTY_NAME, icon=":material/badge:")
        return
    if not person.name:
        st.caption("Type your name (then Enter) so that your runs are yours.")
        return
    book, here = identity.name_book(), _book_key(person.session)
    book.seen(person.name, here)
    if book.others_using(person.name, here, alive=_still_open):
        st.warning(md_escape(identity.clash_message(person.name)) + " (If it is you on another device, carry on.)",
                   icon=":material/group:")


def _unlock() -> None:
    """The key form's callback: compare, forget the typed key, keep only the outcome."""
    given = st.session_state.get(KEY_BOX) or ""
    st.session_state[KEY_BOX] = ""  # never kept, never sent back to the page
    count, last = st.session_state.get(WRONG_TRIES, (0, 0.0))
    if count >= MAX_TRIES and time.monotonic() - last < LOCKOUT_S or not identity.key_guess_allowed():
        st.session_state[REFUSED + ".key"] = "Too many wrong keys: wait a minute, then try again."
        return
    if identity.check_teacher_key(given):
        st.session_state[state.TEACHER] = True
        st.session_state[WRONG_TRIES] = (0, 0.0)
        st.session_state[REFUSED + ".key"] = None
    else:
        identity.record_wrong_key()
        st.session_state[WRONG_TRIES] = (count + 1 if count < MAX_TRIES else 1, time.monotonic())
        st.session_state[REFUSED + ".key"] = identity.WRONG_KEY


def _reset() -> None:
    stopped = identity.reset_class(state.who(), live_runs())
    st.session_state[GENERATION] = None  # this session forgets its name too, without a warning
    st.session_state[state.STUDENT] = ""
    st.session_state["people.reset_done"] = stopped


def _lock() -> None:
    st.session_state[state.TEACHER] = False


def teacher_box() -> None:
    """Below the page's own controls in the side panel: the key once, then what only the teacher may do."""
    with st.expander("Teacher", icon=":material/key:", expanded=bool(st.session_state.get(state.TEACHER))):
        if not identity.teacher_key_set():
            st.caption(identity.TEACHER_NOT_SET.replace(identity.TEACHER_KEY_ENV, f"`{identity.TEACHER_KEY_ENV}`"))
            return
        if not st.session_state.get(state.TEACHER):
            with st.form("people.teacher_form", border=False, clear_on_submit=True):
                st.text_input("Teacher key", type="password", key=KEY_BOX, autocomplete="off")
                st.form_submit_button("Unlock", on_click=_unlock)
            problem = st.session_state.get(REFUSED + ".key")
            if problem:
                st.error(problem)
            return
        st.caption("Teacher mode: you may stop, rename or delete any run, clear the class set and hide results.")
        st.button("Lock", key="people.lock", on_click=_lock, icon=":material/lock:")
        with st.popover("Reset the class", icon=":material/restart_alt:"):
            active = [r for r in live_runs().all() if not r.done]
            st.write(f"Stop every run still going ({len(active)} now) and forget every name in use, so that the "
                     "next class starts afresh? Saved runs and the class set stay.")
            st.button("Yes, reset the class", type="primary", key="people.reset", on_click=_reset)
        done = st.session_state.pop("people.reset_done", None)
        if done is not None:
            st.success(f"The class was reset: {done} run{'s' if done != 1 else ''} stopped, every name forgotten.")
