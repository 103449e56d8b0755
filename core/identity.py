"""Who is who in a classroom without accounts: a display name each, and one teacher key.

Names are trust, not security. A student types a name (or opens a link with ``?student=Ana``)
and their runs and drawings are filed under it; anyone who types the same name is, to Digit Lab,
the same student. What a name protects is against mistakes (renaming, stopping or deleting a
classmate's run by accident), not against a classmate who wants to pretend.

The only lock is the teacher key: ``DIGITLAB_TEACHER_KEY`` on the server. Whoever enters it
manages everything (any run, the class set, the names in use, the results). It is compared in
constant time and never stored in a URL, a page or a log. With no key set there is no teacher mode.

A person who has not given a name is a guest: what they start belongs to their browser session
(``guest_owner``) and stays theirs only as long as that session lives.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
import unicodedata
from dataclasses import dataclass

MAX_NAME = 40  # characters: enough for "Ana María G.", short enough for a table column on a projector
TEACHER_KEY_ENV = "DIGITLAB_TEACHER_KEY"
GUEST_PREFIX = "guest:"
CLASH_WINDOW_S = 15 * 60.0  # two sessions seen this close together with one name are told about each other
FORGET_AFTER_S = 24 * 3600.0  # the name book forgets a session not seen for this long
EMPTY_NAME = "Type a name: it cannot be empty (spaces and invisible characters do not count)."
TEACHER_NOT_SET = (f"Teacher mode is off on this server: start Digit Lab with the environment variable "
                   f"{TEACHER_KEY_ENV} set to a key of your choice to turn it on.")
WRONG_KEY = "That is not the teacher key."


class NotAllowed(PermissionError):
    """Someone tried to manage what is not theirs; the message says whose it is."""


def clean_name(text) -> str:
    """Display text: one line, no control or invisible formatting characters, spaces collapsed,
    at most MAX_NAME characters. "" when nothing is left (the caller refuses it with EMPTY_NAME)."""
    text = unicodedata.normalize("NFC", str(text or ""))
    kept = "".join(" " if ch.isspace() else ch for ch in text
                   if ch.isspace() or unicodedata.category(ch)[0] != "C")  # Cc, Cf, Co, Cs, Cn
    return " ".join(kept.split())[:MAX_NAME].strip()


def clean_owner(owner) -> str:
    """An owner as stored (run.json, a drawing): a clean name, or a guest's session."""
    owner = str(owner or "")
    if owner.startswith(GUEST_PREFIX):
        return GUEST_PREFIX + "".join(ch for ch in owner[len(GUEST_PREFIX):] if ch.isalnum() or ch == "-")[:64]
    return clean_name(owner)


def guest_owner(session_id: str) -> str:
    return GUEST_PREFIX + str(session_id)


def is_named(owner: str) -> bool:
    """A person's name, not a guest's session or an unknown author of an old run."""
    return bool(owner) and not str(owner).startswith(GUEST_PREFIX)


def shown(owner: str) -> str:
    """How an owner reads in a table: the name, "a guest" or "unknown" (a run saved before authors were kept)."""
    if not owner:
        return "unknown"
    return "a guest" if str(owner).startswith(GUEST_PREFIX) else str(owner)


@dataclass(frozen=True)
class Who:
    """One browser session: its name ("" for a guest), its session id, and whether it holds the teacher key."""

    name: str = ""
    session: str = ""
    teacher: bool = False

    @property
    def owner(self) -> str:
        """What this session's new runs and drawings are filed under."""
        return self.name or guest_owner(self.session)

    def owns(self, owner: str) -> bool:
        """The name, or this session as a guest (a guest who then types a name keeps what they started)."""
        return bool(owner) and owner in {self.name, guest_owner(self.session)} - {""}


def may_manage(who: Who | None, owner: str) -> bool:
    """Stop, rename or delete what ``owner`` made: its owner or the teacher. ``who`` None means the
    server itself (the command line, a test): not a person in a classroom, so not limited.

    Something made before authors were kept (``owner`` empty) is the teacher's to manage; on a server
    with no teacher key (a student alone at home) it is anyone's, or nobody could ever remove it."""
    if who is None:
        return True
    if not owner:
        return who.teacher or not teacher_key_set()
    return who.teacher or who.owns(owner)


def why_not(owner: str) -> str:
    return f"This is {shown(owner)}'s: only they or the teacher can change it."


def require(who: Who | None, owner: str) -> None:
    if not may_manage(who, owner):
        raise NotAllowed(why_not(owner))


def require_teacher(who: Who | None) -> None:
    if who is not None and not who.teacher:
        raise NotAllowed("Only the teacher can do this (with the teacher key, in the side panel).")


# ---------------------------------------------------------------------- the teacher key

def teacher_key_set() -> bool:
    return bool(os.environ.get(TEACHER_KEY_ENV, "").strip())


_WRONG_KEYS: list[float] = []  # time.monotonic() of each wrong key in the last minute, on the whole server
_WRONG_KEYS_LOCK = threading.Lock()
WRONG_KEYS_PER_MINUTE = 20  # server-wide: a reload or a new tab does not reset it, so guessing stays slow


def key_guess_allowed() -> bool:
    """False once the server has seen WRONG_KEYS_PER_MINUTE wrong keys within a minute, from anyone."""
    with _WRONG_KEYS_LOCK:
        now = time.monotonic()
        _WRONG_KEYS[:] = [t for t in _WRONG_KEYS if now - t < 60.0]
        return len(_WRONG_KEYS) < WRONG_KEYS_PER_MINUTE


def record_wrong_key() -> None:
    with _WRONG_KEYS_LOCK:
        _WRONG_KEYS.append(time.monotonic())


def check_teacher_key(given) -> bool:
    """True only for the server's key; constant time whatever the guess; always False with no key set."""
    key = os.environ.get(TEACHER_KEY_ENV, "").strip()
    if not key or not isinstance(given, str):
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), key.encode("utf-8"))


# ---------------------------------------------------------------------- names in use

class NameBook:
    """The names in use on this server, with the sessions using each and when each was last seen.

    Only to tell two people who picked the same name; nothing is refused because of it.
    ``generation`` grows when the teacher resets the class, so every session drops its name.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._seen: dict[str, dict[str, float]] = {}  # casefolded name -> {session id: time.monotonic()}
        self.generation = 0

    def seen(self, name: str, session: str, now: float | None = None) -> None:
        if not name:
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            for key, by in list(self._seen.items()):
                if key != name.casefold():
                    by.pop(session, None)  # one name per session: the one it uses now
                for s in [s for s, t in by.items() if now - t > FORGET_AFTER_S]:
                    del by[s]  # a term's worth of closed tabs is not kept
                if not by:
                    del self._seen[key]
            self._seen.setdefault(name.casefold(), {})[session] = now

    def others_using(self, name: str, session: str, within_s: float = CLASH_WINDOW_S,
                     now: float | None = None, alive=None) -> int:
        """How many other sessions used this name (any case) in the last ``within_s`` seconds; with
        ``alive`` (session -> bool), only those still open (a tab reloaded is gone at once)."""
        if not name:
            return 0
        now = time.monotonic() if now is None else now
        with self._lock:
            others = [s for s, t in self._seen.get(name.casefold(), {}).items() if s != session and now - t <= within_s]
        return sum(1 for s in others if alive is None or alive(s))

    def names(self, within_s: float = CLASH_WINDOW_S) -> int:
        now = time.monotonic()
        with self._lock:
            return sum(1 for by in self._seen.values() if any(now - t <= within_s for t in by.values()))

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()
            self.generation += 1


def clash_message(name: str) -> str:
    return f"Someone else here is using the name {name}: add an initial?"


_book = NameBook()


def name_book() -> NameBook:
    """The server's book of names (one per process, as the server is one process)."""
    return _book


def reset_class(who: Who | None, live) -> int:
    """The teacher starts afresh: every run still going is stopped and every session forgets its name.
    ``live`` is the server's ``core.live.LiveRuns``. How many runs were stopped."""
    require_teacher(who)
    stopped = 0
    for run in live.all():
        if not run.done:
            run.stop("stopped: the teacher reset the class")
            stopped += 1
    name_book().clear()
    return stopped
