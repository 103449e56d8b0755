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


def settled(page, timeout: float = 60_000) -> None:
    """Wait until the app's script has finished its run and every element is drawn: no stale element
    left from the last run, no placeholder for an element whose code is still loading."""
    page.wait_for_function(
        "() => { const a = document.querySelector('.stApp');"
        " return a && a.getAttribute('data-test-script-state') === 'notRunning'"
        " && a.getAttribute('data-test-connection-state') === 'CONNECTED'"
        " && !document.querySelector('[data-stale=\"true\"], [data-testid=stSkeleton], [data-testid=stSkeletonElement]'); }",
        timeout=timeout)


def touch_draw_on(page, canvas_locator, strokes) -> None:
    """Draw strokes with a finger: real touch events (touchStart, touchMove, touchEnd) through the
    browser's input pipeline, as a tablet or phone sends them. The context needs has_touch=True."""
    canvas_locator.wait_for(state="visible")
    box = canvas_locator.bounding_box()
    cdp = page.context.new_cdp_session(page)
    try:
        for stroke in strokes:
            points = [(box["x"] + x, box["y"] + y) for x, y in stroke]
            cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [
                {"x": points[0][0], "y": points[0][1]}]})
            for x, y in points[1:]:
                cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
            cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    finally:
        cdp.detach()


# Every visible button label, metric label and metric value whose text is cut: wider than its box.
TRUNCATED = r"""() => {
    const sel = ['button', 'button *', '[data-testid="stMetricLabel"]', '[data-testid="stMetricLabel"] *',
                 '[data-testid="stMetricValue"]', '[data-testid="stMetricValue"] *'].join(',');
    const cut = [];
    for (const el of document.querySelectorAll(sel)) {
        const r = el.getBoundingClientRect();
        if (r.width === 0 || r.height === 0 || el.closest('[data-testid="stSidebar"][aria-expanded="false"]')) continue;
        const st = getComputedStyle(el);
        if (st.visibility === 'hidden') continue;
        if (el.scrollWidth > el.clientWidth + 1)
            cut.push((el.innerText || el.getAttribute('aria-label') || el.tagName).trim().slice(0, 60));
    }
    // a button squeezed narrower than its words: the words spill out of it, or break inside a word
    for (const b of document.querySelectorAll('button')) {
        const r = b.getBoundingClientRect();
        let text = b.innerText || '';  // the words, without the names of icons drawn from an icon font
        for (const i of b.querySelectorAll('[data-testid="stIconMaterial"]')) text = text.replace(i.innerText, '');
        text = text.trim();
        if (!text || r.width === 0 || b.closest('[data-testid="stSidebar"][aria-expanded="false"]')) continue;
        const range = document.createRange(); range.selectNodeContents(b);
        const t = range.getBoundingClientRect();
        const longest = Math.max(...text.split(/\s+/).map(w => w.length));
        if (t.left < r.left - 1 || t.right > r.right + 1 || t.top < r.top - 1 || t.bottom > r.bottom + 1
            || r.width < longest * 6) cut.push('squeezed: ' + text.slice(0, 60));
    }
    // a chart's title is SVG text: it never wraps, and past the chart's edge it is cut off
    for (const p of document.querySelectorAll('.js-plotly-plot')) {
        const t = p.querySelector('.gtitle'), b = p.getBoundingClientRect();
        if (!t || b.width === 0) continue;
        const r = t.getBoundingClientRect();
        if (r.left < b.left - 1 || r.right > b.right + 1) cut.push('chart title: ' + t.textContent.slice(0, 60));
    }
    for (const p of document.querySelectorAll('.js-plotly-plot')) {  // a legend's entries too
        const b = p.getBoundingClientRect();
        if (b.width === 0) continue;
        for (const t of p.querySelectorAll('.legendtext')) {
            const r = t.getBoundingClientRect();
            if (r.width > 0 && r.right > b.right + 1) cut.push('legend: ' + t.textContent.slice(0, 60));
        }
    }
    return cut;
}"""


def font_px(locator) -> float:
    return float(locator.evaluate("e => parseFloat(getComputedStyle(e).fontSize)"))


def any_answer(page):
    """The Draw page's answer, whatever it is: a digit, or the not-a-digit message an untrained model gets."""
    import re

    return page.get_by_text(re.compile(r"^(Prediction: |This does not look like a digit$)"))
