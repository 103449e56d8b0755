"""Every page at the screen sizes a class has, normal and projector mode, in a real Chromium.

One server and one browser for the whole module; one browser context per screen size. For each page
and mode: nothing a person must use is cut (no button or metric text wider than its box), and a
screenshot lands in the artifacts. On Runs, two saved runs' charts sit side by side only where each is
wide enough for its type. On Draw: the whole canvas lies inside the screen and inside its
own box, a digit drawn with the mouse (or a finger, on the touch sizes) is read back, and projector
mode makes the answer large enough for the back row.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser import (TRUNCATED, StreamlitServer, artifacts_dir, digit_strokes, draw_on, font_px,
                           settled, touch_draw_on)

SHOTS = artifacts_dir() / "layout"
SHOTS.mkdir(parents=True, exist_ok=True)
expect.set_options(timeout=60_000)  # a shared 2-core machine: generous, never a speed assertion

SIZES = {
    "projector-1024x768": dict(viewport={"width": 1024, "height": 768}),
    "laptop-1366x768": dict(viewport={"width": 1366, "height": 768}),
    "hd-1920x1080": dict(viewport={"width": 1920, "height": 1080}),
    "tablet-820x1180": dict(viewport={"width": 820, "height": 1180}, has_touch=True),
    "phone-390x844": dict(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True,
                          device_scale_factor=2),
}
PAGES = {"home": "", "train": "train", "draw": "draw", "classset": "classset", "evaluate": "evaluate",
         "runs": "runs", "models": "models", "tensors": "tensors", "glossary": "glossary", "results": "results"}
TITLES = {"home": "Digit Lab", "train": "Train a network", "draw": "Draw a digit", "classset": None,
          "evaluate": "Evaluate the current model", "runs": "Runs", "models": None, "tensors": None,
          "glossary": "Glossary", "results": None}


def two_runs(folder) -> None:
    """Two finished runs with long names, so that Runs draws its two charts with a legend each."""
    import math

    from core import checkpoint, models as M
    from core.runs import RunStore
    from core.trainer import BatchEvent, EndEvent, EpochEvent

    for name, lr in (("CNN with Adam, lr 0.001, batch 64", 1e-3), ("MLP with SGD and a very long name for a run", 0.1)):
        ckpt = checkpoint.from_model(M.build_model(M.CNNConfig()), M.CNNConfig(), metrics={"test_acc": 0.98},
                                     train_config={"optimizer": "adam", "lr": lr, "batch_size": 64})
        batches = [BatchEvent(i, 1 + i // 300, 2.3 * math.exp(-i / 200) + 0.05, lr, 900.0) for i in range(1, 900)]
        epochs = [EpochEvent(e, 0.3 / e, 0.9 + e / 100, 0.2 / e, 0.95 + e / 100, 10.0, 10.0 * e) for e in (1, 2, 3)]
        RunStore(folder).save(name, ckpt, batches, epochs, EndEvent("finished", "", 3, 900, 30.0, 900.0, 0.98, 0.05))


@pytest.fixture(scope="module")
def server(tmp_path_factory, mirror_root):
    home = tmp_path_factory.mktemp("layout") / "home"
    two_runs(home / "runs")
    srv = StreamlitServer(home, {"DIGITLAB_CLASSSET": str(home / "classset")})
    yield srv
    srv.stop()


def open_page(pg, server, path: str, projector: bool) -> None:
    pg.goto(f"{server.url}/{path}" + ("?projector=true" if projector else ""))
    expect(pg.locator("h1").first).to_be_visible()
    settled(pg)


# how many lines the word "Prediction:" takes (1 unless the browser had to break it)
LINES = """e => { const walk = document.createTreeWalker(e, NodeFilter.SHOW_TEXT);
    while (walk.nextNode()) { const t = walk.currentNode, i = t.textContent.indexOf("Prediction:");
        if (i < 0) continue;
        const r = document.createRange(); r.setStart(t, i); r.setEnd(t, i + "Prediction:".length);
        return new Set([...r.getClientRects()].filter(b => b.width > 0).map(b => Math.round(b.top))).size; }
    return 0; }"""


def check_draw(pg, size: str, touch: bool, projector: bool) -> None:
    vw, vh = pg.viewport_size["width"], pg.viewport_size["height"]
    canvas = pg.locator("canvas").last  # fabric.js stacks its canvases; the top one takes the input
    column = pg.locator(".st-key-draw-canvas").first
    canvas.scroll_into_view_if_needed()
    c, col = canvas.bounding_box(), column.bounding_box()
    want = 320 if projector else 280  # the page's own sizes: 320 still fits a phone
    assert round(c["width"]) == want and round(c["height"]) == want, c
    assert c["x"] >= 0 and c["y"] >= 0 and c["x"] + c["width"] <= vw and c["y"] + c["height"] <= vh, \
        f"{size}: the canvas {c} leaves the {vw}x{vh} screen"
    if col is not None and col["width"] > 0:  # on a phone the column gives way (display: contents) to reorder
        assert col["x"] - 0.5 <= c["x"] and c["x"] + c["width"] <= col["x"] + col["width"] + 0.5, \
            f"{size}: the canvas {c} sticks out of its column {col}"
    (touch_draw_on if touch else draw_on)(pg, canvas, digit_strokes(7, size=want) if want != 280
                                           else digit_strokes(7))
    answer = pg.get_by_text(re.compile(r"^Prediction: "))
    expect(answer).to_have_text("Prediction: 7")
    settled(pg)
    a, box = answer.bounding_box(), pg.locator(".st-key-draw-classset").first.bounding_box()
    # the answer is beside the canvas or right under it: never below the box for adding to the class set
    assert a["y"] < box["y"], f"{size}: the prediction ({a['y']:.0f}) comes after the class-set box ({box['y']:.0f})"
    if projector:
        heading = pg.locator(".st-key-draw-answer h2").first
        px, lines = font_px(heading), heading.evaluate(LINES)
        # a screen or a projector: 72 px, read from the back row; a phone in a hand: as large as fits one line
        assert px >= (72 if vw >= 768 else 48), f"{size}: the prediction is {px} px in projector mode"
        assert lines == 1, f"{size}: the word 'Prediction:' breaks over {lines} lines"  # the digit may go below


def check_runs(pg, size: str, projector: bool) -> None:
    """The loss and accuracy charts sit side by side only where each gets the width its type needs."""
    pg.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .gtitle').length >= 2")
    settled(pg)
    loss, acc = (pg.locator(f".st-key-runs-{k} .js-plotly-plot").first.bounding_box() for k in ("loss", "acc"))
    least = 420 if projector else 340  # widget.py's rules, less the chart's own inner padding
    if abs(loss["y"] - acc["y"]) < 1:
        assert min(loss["width"], acc["width"]) >= least - 24, f"{size}: side by side at {loss['width']:.0f} px"
    else:
        assert acc["y"] >= loss["y"] + loss["height"], f"{size}: the accuracy chart overlaps the loss chart"


def in_view(pg, locator) -> bool:
    box = locator.bounding_box()
    vw, vh = pg.viewport_size["width"], pg.viewport_size["height"]
    return box is not None and box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= vw \
        and box["y"] + box["height"] <= vh


def test_a_lesson_run_trains_with_its_controls_progress_and_chart_in_one_screen(browser, server):
    """At 1366x768, without scrolling: the lesson's buttons say which run is which; while a run trains,
    Start, Pause and Stop, the progress bar and the live chart are all on screen. (First in this module:
    the stopped run then shows on the Runs page of the screen matrix below.)"""
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    try:
        pg = context.new_page()
        pg.goto(server.url + "/train")
        settled(pg)
        pg.locator(".stSelectbox").filter(has_text="Lesson").click()
        pg.get_by_role("option", name="A learning rate far too high").click()
        high, low = pg.get_by_role("button", name="lr 10 (far too high)"), pg.get_by_role("button", name="lr 0.1 (works)")
        expect(high).to_be_visible()
        expect(low).to_be_visible()
        settled(pg)
        assert not pg.evaluate(TRUNCATED)
        high.click()
        expect(pg.get_by_text(re.compile(r"^Ready: MNIST · seed MLP · SGD momentum 0.9 lr 10 · batch 64 · 1 epoch$"))).to_be_visible()
        # a longer run first, to see the controls while it trains: the tutorial's MLP for 3 epochs
        pg.goto(server.url + "/train?train.model=MLP&train.epochs=3")
        settled(pg)
        pg.get_by_role("button", name="Start").click()
        progress = pg.locator("[data-testid=stProgress]").first
        expect(progress).to_be_visible(timeout=90_000)
        chart = pg.locator(".st-key-train-live .js-plotly-plot").first
        expect(chart).to_be_visible()
        buttons = [pg.get_by_role("button", name=n, exact=True) for n in ("Start", "Pause", "Stop")]
        assert pg.evaluate("() => window.scrollY") == 0
        for item in [*buttons, progress, chart]:
            assert in_view(pg, item), f"{item} is not on the 1366x768 screen while training"
        assert [b.inner_text().split()[-1] for b in buttons] == ["Start", "Pause", "Stop"]  # after the icon
        pg.screenshot(path=SHOTS / "training-1366x768.png")
        pg.get_by_role("button", name="Stop", exact=True).click()
        expect(pg.get_by_text(re.compile(r"Run stopped\."))).to_be_visible(timeout=60_000)
        # the lr-10 run: the chart shows the loss blowing up, and its model does not answer on Draw
        pg.goto(server.url + "/train")
        settled(pg)
        pg.locator(".stSelectbox").filter(has_text="Lesson").click()
        pg.get_by_role("option", name="A learning rate far too high").click()
        pg.get_by_role("button", name="lr 10 (far too high)").click()
        settled(pg)
        pg.get_by_role("button", name="Start").click()
        expect(pg.get_by_text("The run diverged.")).to_be_visible(timeout=90_000)
        expect(pg.get_by_text(re.compile("it blew up"))).to_be_visible()
        expect(pg.get_by_text(re.compile(r"does not answer on the Draw page"))).to_be_visible()
        expect(pg.get_by_text(re.compile(r"\(bundled\)$")).first).to_be_visible()  # the sidebar's model
        pg.screenshot(path=SHOTS / "diverged-1366x768.png")
    finally:
        context.close()


@pytest.mark.parametrize("size", list(SIZES))
def test_every_page_fits_and_nothing_is_cut(browser, server, size):
    opts = SIZES[size]
    touch = opts.get("has_touch", False)
    context = browser.new_context(**opts)
    try:
        pg = context.new_page()
        pg.set_default_timeout(60_000)
        problems, value_px = [], {}
        for projector in (False, True):
            mode = "projector" if projector else "normal"
            for name, path in PAGES.items():
                open_page(pg, server, path, projector)
                if name == "evaluate":
                    expect(pg.get_by_text("Confusion matrix (click a cell)")).to_be_visible(timeout=120_000)
                    settled(pg)
                    value = font_px(pg.locator("[data-testid=stMetricValue]").first)
                    label = font_px(pg.locator("[data-testid=stMetricLabel] p").first)
                    assert value > 1.5 * label, f"{size} {mode}: a metric's value ({value} px) is not above its label"
                    value_px[mode] = value
                if name == "draw":
                    check_draw(pg, size, touch, projector)
                if name == "runs":
                    check_runs(pg, size, projector)
                pg.wait_for_function("() => [...document.querySelectorAll('img')].every(i => i.complete)")
                cut = pg.evaluate(TRUNCATED)
                if cut:
                    problems.append(f"{size} {mode} {name}: cut {cut}")
                pg.screenshot(path=SHOTS / f"{size}-{mode}-{name}.png")
        assert not problems, "\n".join(problems)
        assert value_px["projector"] > value_px["normal"], value_px  # projector mode enlarges the numbers
    finally:
        context.close()
