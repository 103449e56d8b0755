"""Helpers for the real-browser tests: a Streamlit server on loopback and Debian's Chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from core import drawn

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def artifacts_dir() -> Path:
    """Screenshots and measured figures land here (CI keeps the folder)."""
    path = Path(os.environ.get("DIGITLAB_ARTIFACTS") or ROOT / "artifacts") / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StreamlitServer:
    def __init__(self, home: Path, extra_env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "DIGITLAB_HOME": str(home), **(extra_env or {})}
        self.log = open(home.parent / f"streamlit-{self.port}.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
             "--server.address", "127.0.0.1", "--server.port", str(self.port), "--server.headless", "true"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_healthy(timeout=60)

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(self.url + "/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        return
            except OSError:
                pass
            time.sleep(0.2)  # polling a server that is still starting
        raise TimeoutError("streamlit did not become healthy")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def digit_strokes(digit: int, variant: int = 0, size: int = 280) -> list[list[tuple[float, float]]]:
    """Canvas coordinates of a clearly drawn digit, from the drawn-digit set's templates."""
    style = drawn.Style(height=0.7, aspect=0.68, cx=0.5, cy=0.5, slant=0.08, rotate_deg=0.0, stroke=0.07,
                        wobble=0.0)
    return drawn.place(drawn.TEMPLATES[digit][variant], style, size)


def draw_on(page, canvas_locator, strokes) -> None:
    """Draw strokes with the real mouse: down, moves, up."""
    canvas_locator.wait_for(state="visible")
    box = canvas_locator.bounding_box()
    for stroke in strokes:
        x0, y0 = stroke[0]
        page.mouse.move(box["x"] + x0, box["y"] + y0)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=2)
        page.mouse.up()


# Run in a page before drawing: records when the mouse goes up and when "Prediction:" appears.
WATCH_PREDICTION = """() => {
    window.__mouseUp = null; window.__predicted = null;
    window.addEventListener("mouseup", () => { window.__mouseUp = performance.now(); }, {capture: true, once: true});
    const seen = () => [...document.querySelectorAll("h2")].some(h => h.innerText.startsWith("Prediction: "));
    const obs = new MutationObserver(() => {
        if (window.__mouseUp !== null && seen()) { window.__predicted = performance.now(); obs.disconnect(); }
    });
    obs.observe(document.body, {childList: true, subtree: true, characterData: true});
}"""
