"""The dashboard in a real Chromium, driven with a real mouse, against a real Streamlit server."""

from __future__ import annotations

import json
import re
import statistics
import time
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import expect

from core import checkpoint, paths

from tests.browser import (WATCH_PREDICTION, any_answer, StreamlitServer, artifacts_dir,
                           digit_strokes, draw_on)

SHOTS = artifacts_dir()
expect.set_options(timeout=30_000)  # a shared 2-core machine: generous, never a speed assertion


@pytest.fixture(scope="module")
def server(tmp_path_factory, mirror_root):
    srv = StreamlitServer(tmp_path_factory.mktemp("browser") / "home")
    yield srv
    srv.stop()


def canvas(page):
    return page.locator("canvas").last  # fabric.js stacks its canvases; the top one takes the mouse


def open_draw(page, server):
    page.goto(server.url + "/draw")
    expect(page.get_by_text("Draw a digit on the black canvas")).to_be_visible()
    expect(canvas(page)).to_be_visible()


def clear_canvas(page):
    page.get_by_role("button", name="Clear").click()
    expect(page.get_by_text("Draw a digit on the black canvas")).to_be_visible()
    expect(prediction(page)).to_have_count(0)


def images_loaded(page):
    """Wait until every image on the page has arrived (before a screenshot)."""
    page.wait_for_function("() => [...document.querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 0)")


def prediction(page):
    return page.get_by_text(re.compile(r"^Prediction: "))


def test_draw_a_digit_see_the_prediction_then_clear(page, server):
    open_draw(page, server)
    images_loaded(page)
    page.screenshot(path=SHOTS / "1-draw-empty.png")
    draw_on(page, canvas(page), digit_strokes(3))
    expect(prediction(page)).to_have_text("Prediction: 3")
    expect(page.get_by_text("What the model saw (28×28)")).to_be_visible()
    expect(page.get_by_text(re.compile("Answered by .*bundled"))).to_be_visible()
    images_loaded(page)
    page.screenshot(path=SHOTS / "2-draw-prediction-3.png")
    clear_canvas(page)
    expect(prediction(page)).to_have_count(0)
    images_loaded(page)
    page.screenshot(path=SHOTS / "3-draw-cleared.png")


def test_mouse_up_to_prediction_latency(page, server):
    """Mouse-up -> 'Prediction: N' on screen, timed inside the browser (performance.now()).

    The figures go to artifacts/browser/latency.json and the test log, not into an assertion:
    shared machines are noisy, and `python -m bench` is where speed is judged.
    """
    open_draw(page, server)
    latencies, answers = [], []
    digits = [0, 1, 2, 3, 6, 7, 8, 9] * 2  # single-stroke digits: one mouse-up each
    for digit in digits:
        page.evaluate(WATCH_PREDICTION)
        draw_on(page, canvas(page), digit_strokes(digit))
        expect(prediction(page)).to_have_count(1)
        page.wait_for_function("() => window.__predicted !== null")
        latencies.append(page.evaluate("() => window.__predicted - window.__mouseUp"))
        answers.append(prediction(page).inner_text())
        clear_canvas(page)
    assert answers == [f"Prediction: {d}" for d in digits]
    ms = sorted(latencies)
    figures = {"drawings": len(ms), "p50_ms": round(statistics.median(ms), 1),
               "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 1), "max_ms": round(ms[-1], 1)}
    (SHOTS / "latency.json").write_text(json.dumps(figures, indent=2))
    print("mouse-up -> prediction:", figures)


def test_train_live_then_the_new_model_answers(page, server):
    # settings come from a shareable link: a short CNN run on part of MNIST
    page.goto(server.url + "/train?train.subset=24000&train.epochs=2&train.batch_size=128")
    start = page.get_by_role("button", name="Start")
    expect(start).to_be_enabled()
    expect(page.get_by_text("24000")).to_have_count(0)  # number inputs show the value in the input, not as text
    start.click()
    progress = page.get_by_text(re.compile(r"step [\d,]+/[\d,]+"))
    expect(progress).to_be_visible(timeout=90_000)  # the first run also imports the data set
    seen = set()
    deadline = time.monotonic() + 120
    while len(seen) < 3 and time.monotonic() < deadline:  # the chart and progress redraw while it trains
        if page.get_by_text(re.compile(r"Run (finished|stopped|diverged)")).count():
            break
        try:
            seen.add(progress.inner_text(timeout=2000))
        except Exception:
            pass
        page.wait_for_timeout(300)
    assert len(seen) >= 2, f"the progress text should update while training, saw {seen}"
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    images_loaded(page)
    page.screenshot(path=SHOTS / "4-train-running.png")
    expect(page.get_by_text(re.compile(r"Run finished\. Test accuracy"))).to_be_visible(timeout=120_000)
    expect(page.get_by_text("Accuracy per epoch")).to_be_visible()
    images_loaded(page)
    page.screenshot(path=SHOTS / "5-train-finished.png")
    # back to Draw in the same session: the model just trained answers
    page.get_by_role("link", name="Draw").first.click()
    expect(canvas(page)).to_be_visible()
    draw_on(page, canvas(page), digit_strokes(7))
    expect(prediction(page)).to_have_text("Prediction: 7")
    expect(page.get_by_text(re.compile(r"Answered by Run 1: seed CNN"))).to_be_visible()
    images_loaded(page)
    page.screenshot(path=SHOTS / "6-draw-with-trained-model.png")


def start_run(page, server, query: str):
    page.goto(server.url + "/train?" + query)
    page.get_by_role("button", name="Start").click()
    progress = page.get_by_text(re.compile(r"step [\d,]+/[\d,]+"))
    expect(progress).to_be_visible(timeout=90_000)
    return progress


def test_a_run_outlives_its_tab_and_stops_once_nobody_has_watched_it_for_the_idle_time(browser, tmp_path_factory,
                                                                                      mirror_root):
    idle_s = 6
    srv = StreamlitServer(tmp_path_factory.mktemp("idle") / "home", {"DIGITLAB_RUN_IDLE_MINUTES": str(idle_s / 60)})
    context = browser.new_context()
    try:
        page = context.new_page()
        start_run(page, srv, "train.model=MLP&train.epochs=30")
        last_watched = time.monotonic()
        page.reload()  # F5 does not stop the run: it belongs to its author, not to the tab
        log = Path(srv.log.name)
        context.close()  # and now nobody shows it
        deadline = last_watched + 60
        while "nobody had this run open" not in log.read_text():
            assert time.monotonic() < deadline, "a run nobody watches should stop after the idle time"
            time.sleep(0.2)  # polling the server's log for the line
        assert time.monotonic() - last_watched >= idle_s - 1.5  # not before (the last watch was up to 1 s earlier)
        assert "its browser session closed" not in log.read_text()
    finally:
        srv.stop()


def test_two_sessions_train_different_models_and_stay_isolated(browser, tmp_path_factory, mirror_root):
    srv = StreamlitServer(tmp_path_factory.mktemp("isolation") / "home", {"DIGITLAB_TRAINING_SLOTS": "2"})
    ctx_a, ctx_b = browser.new_context(viewport={"width": 1400, "height": 1000}), \
        browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        a, b = ctx_a.new_page(), ctx_b.new_page()
        start_run(a, srv, "train.model=MLP&train.epochs=30")
        progress_b = start_run(b, srv, "train.model=CNN&train.epochs=30")
        a.get_by_role("button", name="Stop").click()
        expect(a.get_by_text(re.compile(r"Run stopped\."))).to_be_visible()
        first = progress_b.inner_text()
        expect(progress_b).not_to_have_text(first, timeout=30_000)  # B trains on
        expect(b.get_by_text(re.compile(r"Run stopped"))).to_have_count(0)
        images_loaded(b)
        b.screenshot(path=SHOTS / "7-isolation-b-still-training.png")
        # each Draw page answers with its own session's model
        a.get_by_role("link", name="Draw").first.click()
        draw_on(a, canvas(a), digit_strokes(1))
        expect(a.get_by_text(re.compile(r"Answered by Run 1: seed MLP"))).to_be_visible()
        b.get_by_role("link", name="Draw").first.click()
        draw_on(b, canvas(b), digit_strokes(1))
        expect(b.get_by_text(re.compile(r"Answered by the model being trained"))).to_be_visible()
        images_loaded(b)
        b.screenshot(path=SHOTS / "8-isolation-b-draws-with-live-weights.png")
    finally:
        ctx_a.close()
        ctx_b.close()
        srv.stop()


def test_evaluate_click_a_confusion_matrix_cell_to_see_its_images(page, server, mnist):
    from core import checkpoint, insight, paths

    ev = insight.evaluate_split(checkpoint.load(paths.BUNDLED_MODEL).build(), mnist.test, mnist.info)
    off = ev.confusion * (1 - np.eye(10, dtype=np.int64))
    true, pred = np.unravel_index(off.argmax(), off.shape)  # the commonest mistake
    page.goto(server.url + "/evaluate")
    expect(page.get_by_text("Confusion matrix (click a cell)")).to_be_visible(timeout=90_000)
    expect(page.get_by_text(f"{ev.accuracy:.2%}", exact=True)).to_be_visible()
    images_loaded(page)
    page.screenshot(path=SHOTS / "9-evaluate.png", full_page=True)
    point = page.locator(".js-plotly-plot").first.locator("path.point").nth(int(true) * 10 + int(pred))
    box = point.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(page.locator(".hoverlayer .hovertext")).to_be_visible()  # plotly clicks the point it hovers
    page.mouse.down()
    page.mouse.up()
    heading = f"{off[true, pred]} test images that are {true} and the model called {pred}"
    expect(page.get_by_text(heading)).to_be_visible()
    gallery = page.locator("[data-testid='stImage']")
    expect(gallery.first).to_be_visible()
    assert gallery.count() >= off[true, pred]
    images_loaded(page)
    page.screenshot(path=SHOTS / "10-evaluate-cell.png", full_page=True)


def test_look_inside_a_drawing(page, server):
    open_draw(page, server)
    draw_on(page, canvas(page), digit_strokes(8))
    expect(prediction(page)).to_have_text("Prediction: 8")
    page.locator("button", has_text="Steps").click()
    expect(page.get_by_text("4. centred in 28×28")).to_be_visible()
    page.locator("button", has_text="Saliency").click()
    expect(page.get_by_text(re.compile("red: pixels that pushed the score"))).to_be_visible()
    expect(page.get_by_text("saliency alone (brighter = more influence)")).to_be_visible()
    page.get_by_text("saliency alone (brighter = more influence)").scroll_into_view_if_needed()
    images_loaded(page)
    page.screenshot(path=SHOTS / "11-draw-saliency.png", full_page=True)
    page.locator("button", has_text="Inside the network").click()
    expect(page.get_by_text("Learned conv1 filters (5×5)")).to_be_visible()
    cfg = checkpoint.load(paths.BUNDLED_MODEL).model_config
    member = getattr(cfg, "member", cfg)  # the bundled model's (first) network
    channels, last_conv = member.channels[-1], 2 * member.convs  # its last conv layer's width, and its number
    expect(page.get_by_text(re.compile(rf"pool2: {channels} maps of 4×4"))).to_be_visible()
    page.get_by_text(re.compile(rf"conv{last_conv}: {channels} maps")).scroll_into_view_if_needed()
    images_loaded(page)
    page.screenshot(path=SHOTS / "12-draw-inside-cnn.png", full_page=True)


HOSTILE = '<img src=x onerror="window.__pwned=1">[a](http://127.0.0.1:9/)**b**:red[c]'  # under 80 chars


@pytest.fixture
def fresh_server(tmp_path_factory, mirror_root):
    srv = StreamlitServer(tmp_path_factory.mktemp("fresh") / "home")
    yield srv
    srv.stop()


def test_a_hostile_run_name_is_shown_as_text(page, fresh_server, runs_folder):
    server = fresh_server  # its own runs folder: the run to rename is the only one
    page.goto(server.url + "/train?train.model=MLP&train.subset=2000&train.epochs=1")
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_text(re.compile(r"Run finished\."))).to_be_visible(timeout=120_000)
    page.get_by_role("link", name="Runs").first.click()
    name = page.get_by_label("New name")
    expect(name).to_have_value(re.compile(r"^Run \d+: seed MLP$"))  # the page has settled on this run
    name.fill(HOSTILE)
    page.get_by_role("button", name="Rename").click()
    deadline = time.monotonic() + 30
    while not any(json.loads(p.read_text())["name"] == HOSTILE for p in runs_folder.glob("*/run.json")):
        assert time.monotonic() < deadline, "the rename did not reach run.json"
        page.wait_for_timeout(100)
    page.get_by_role("button", name="Make it the current model").click()
    expect(page.get_by_text(re.compile(r"“<img src=x onerror=.*\*\*b\*\*:red\[c\]” now answers"))).to_be_visible()
    page.get_by_role("link", name="Draw").first.click()
    draw_on(page, canvas(page), digit_strokes(0))
    expect(any_answer(page)).to_have_count(1)  # a one-epoch model: any answer will do
    expect(page.get_by_text(re.compile(r"Answered by .*<img src=x"))).to_be_visible()
    assert page.locator("img[src='x']").count() == 0
    assert page.locator("a[href^='http://127.0.0.1:9']").count() == 0
    assert page.evaluate("() => window.__pwned") is None
    images_loaded(page)
    page.screenshot(path=SHOTS / "13-hostile-name-as-text.png")


def test_a_reload_brings_back_the_same_run_with_its_live_chart_and_stop(browser, tmp_path_factory, mirror_root,
                                                                        runs_folder):
    """F5 while training, and the same name on a second device: both show the run still going and can stop it."""
    srv = StreamlitServer(tmp_path_factory.mktemp("reload") / "home")
    laptop = browser.new_context(viewport={"width": 1400, "height": 1000})
    phone = browser.new_context(viewport={"width": 1400, "height": 1000})
    step = re.compile(r"step ([\d,]+)/([\d,]+)")
    try:
        page = laptop.new_page()
        progress = start_run(page, srv, "student=Ana&train.model=MLP&train.epochs=30")
        expect(page.get_by_text("Run 1: seed MLP · Ana")).to_be_visible()
        expect(progress).not_to_have_text(re.compile(r"step 0/"))
        before = int(step.search(progress.inner_text()).group(1).replace(",", ""))
        page.reload()
        expect(name_box(page)).to_have_value("Ana")  # from the URL
        expect(page.get_by_text("Run 1: seed MLP · Ana")).to_be_visible()  # the same run, not a new one
        expect(progress).to_be_visible()
        after = int(step.search(progress.inner_text()).group(1).replace(",", ""))
        assert after >= before, f"the run went on from step {before}; a new run would start again ({after})"
        expect(page.locator(".js-plotly-plot").first).to_be_visible()  # the live loss chart
        expect(page.get_by_role("button", name="Stop")).to_be_enabled()
        expect(page.get_by_role("button", name="Start")).to_be_disabled()
        expect(page.get_by_text("Someone else here is using the name")).to_have_count(0)  # the reloaded tab is gone
        images_loaded(page)
        page.screenshot(path=SHOTS / "14-reload-same-run.png")

        other = phone.new_page()  # another device, the same name: the same run
        other.goto(srv.url + "/train?student=Ana")
        expect(other.get_by_text("Run 1: seed MLP · Ana")).to_be_visible()
        expect(other.get_by_role("button", name="Stop")).to_be_enabled()

        page.get_by_role("button", name="Stop").click()
        expect(page.get_by_text(re.compile(r"Run stopped\."))).to_be_visible()
        expect(other.get_by_text(re.compile(r"Run stopped\."))).to_be_visible()  # its live panel saw it end
        deadline = time.monotonic() + 30
        while not list(runs_folder.glob("*/run.json")):
            assert time.monotonic() < deadline, "the stopped run should be saved"
            page.wait_for_timeout(100)
        saved = [json.loads(p.read_text()) for p in runs_folder.glob("*/run.json")]
        assert [(m["author"], m["reason"]) for m in saved] == [("Ana", "stopped")]  # one run, Ana's
    finally:
        laptop.close()
        phone.close()
        srv.stop()


HTML_NAME = '<img src=x onerror="__pwned=1">**Ana**'  # 38 characters: within a name's 40


def name_box(page):
    return page.get_by_role("textbox", name="Your name")


def test_a_name_with_html_is_shown_as_typed_never_as_html(page, fresh_server):
    from urllib.parse import quote

    page.goto(fresh_server.url + "/train?train.model=MLP&train.subset=2000&train.epochs=1&student=" + quote(HTML_NAME))
    expect(name_box(page)).to_have_value(HTML_NAME)
    page.get_by_role("button", name="Start").click()  # the run's caption shows the name too
    expect(page.get_by_text("Run 1: seed MLP · " + HTML_NAME)).to_be_visible(timeout=90_000)
    expect(page.get_by_text(re.compile(r"Run finished\."))).to_be_visible(timeout=120_000)
    assert page.locator("img[src='x']").count() == 0
    assert page.locator("strong", has_text="Ana").count() == 0  # **Ana** stays two stars and a name
    assert page.evaluate("() => window.__pwned") is None
    images_loaded(page)
    page.screenshot(path=SHOTS / "15-html-name-as-text.png")
    assert len(HTML_NAME) <= 40


def test_the_pen_digit_renderer_draws_what_the_canvas_draws(page, server):
    """core.pendigits scores the model on pen-written digits drawn as the canvas would draw them: the
    browser's own drawing of the same points, with its brush, must match it pixel for pixel but for the
    anti-aliased rim."""
    import base64
    import io

    from PIL import Image

    from core import pendigits as P
    from dashboard.views.draw import BRUSH_PX

    open_draw(page, server)
    size = round(canvas(page).bounding_box()["width"])
    sample = next(s for s in P.load(writers=["UPV-W19"]) if s.digit == 8)
    strokes = P.place(sample.strokes, 0.6, BRUSH_PX, "centre", canvas=size)
    draw_on(page, canvas(page), [[(float(x), float(y)) for x, y in s] for s in strokes])
    expect(prediction(page)).to_be_visible()
    png = canvas(page).evaluate("c => c.toDataURL('image/png')").split(",", 1)[1]
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(png))).convert("L")) > 127
    drawn = P.render(strokes, BRUSH_PX, canvas=size) > 127
    differ = int((seen != drawn).sum())
    # measured: 99 of 10,849 ink pixels differ (0.9 %, the rim's sub-pixel rounding); the earlier renderer,
    # one polyline whose segments left seams and spikes, differed by 464 (4.3 %)
    assert seen.shape == drawn.shape and differ <= 0.02 * seen.sum(), (differ, int(seen.sum()))
