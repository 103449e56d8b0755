"""Classroom features in a real Chromium against a real Streamlit server: lessons and links, the class set, projector mode."""

from __future__ import annotations

import csv
import io
import re
import zipfile

import numpy as np
import pytest
from playwright.sync_api import expect

from core import pendigits as P
from core.classset import ClassSet
from tests.apptest import drawing
from tests.browser import StreamlitServer, artifacts_dir, digit_strokes, draw_on, settled

SHOTS = artifacts_dir()
expect.set_options(timeout=30_000)  # a shared 2-core machine: generous, never a speed assertion
VIEWPORT = {"width": 1400, "height": 1000}


@pytest.fixture(scope="module")
def server(tmp_path_factory, mirror_root):
    home = tmp_path_factory.mktemp("classroom") / "home"
    srv = StreamlitServer(home, {"DIGITLAB_CLASSSET": str(home / "classset")})
    srv.classset = ClassSet(home / "classset")
    yield srv
    srv.stop()


def ready_line(page):
    return page.get_by_text(re.compile(r"^Ready: "))


def test_a_lesson_link_opens_the_same_settings_in_another_browser(page, browser, server):
    page.goto(server.url + "/train")
    expect(ready_line(page)).to_have_text(re.compile(r"seed CNN · Adam lr 0\.001 · batch 64 · 3 epochs$"))
    page.locator(".stSelectbox").filter(has_text="Lesson").click()
    page.get_by_role("option", name="Overfitting a tiny training set").click()
    expect(page.get_by_text("Watch the accuracy chart")).to_be_visible()
    page.get_by_role("button", name="Same 500, augmented").click()
    expected = "Ready: MNIST · MLP 784-512-256-10 · Adam lr 0.001 · batch 32 · 30 epochs · first 500 images · augmented"
    expect(ready_line(page)).to_have_text(expected)
    page.get_by_role("button", name="Share these settings").click()
    link = page.locator("[data-testid=stPopoverBody] code").first.inner_text().strip()
    assert link.startswith(server.url + "/train?")
    page.screenshot(path=SHOTS / "30-lesson-and-share-link.png")

    other = browser.new_context(viewport=VIEWPORT)  # a student opening the link
    try:
        student = other.new_page()
        student.goto(link)
        expect(ready_line(student)).to_have_text(expected)
        expect(student.get_by_text("Watch the accuracy chart")).to_be_visible()
        expect(student.get_by_text("Width of hidden layer 1")).to_be_visible()
    finally:
        other.close()


def add_drawing(page, digit: int) -> None:
    draw_on(page, page.locator("canvas").last, digit_strokes(digit))
    expect(page.get_by_text(re.compile(r"^Prediction: "))).to_be_visible()
    choice = page.get_by_role("radiogroup", name="The digit you drew").get_by_role("radio", name=str(digit), exact=True)
    if choice.get_attribute("aria-checked") != "true":  # a second click would unpick it
        choice.click()
    page.get_by_role("button", name=f"Add this {digit} to the class set").click()
    expect(page.get_by_text(f"Added a {digit} to the class set")).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Prediction: "))).to_have_count(0)  # cleared for the next one
    expect(page.get_by_text(f"Added a {digit} to the class set")).to_be_visible()  # and the message stays


def test_the_class_set_from_drawings_to_a_zip_and_back(page, server, tmp_path):
    server.classset.clear()
    page.goto(server.url + "/draw")
    expect(page.get_by_role("button", name="Add to the class set")).to_be_disabled()  # nothing drawn, no label
    page.get_by_role("radiogroup", name="The digit you drew").get_by_role("radio", name="3", exact=True).click()
    expect(page.get_by_role("button", name="Add this 3 to the class set")).to_be_disabled()  # still nothing drawn
    for digit in (3, 7, 1):
        add_drawing(page, digit)
    page.get_by_role("link", name="Class set", exact=True).click()
    expect(page.get_by_text("3 drawings", exact=True)).to_be_visible()
    accuracy = page.get_by_test_id("stMetric").filter(has_text="Accuracy on our drawings")
    expect(accuracy).to_contain_text("100.0%")
    page.screenshot(path=SHOTS / "31-class-set.png", full_page=True)

    with page.expect_download() as download:
        page.get_by_role("button", name="Download the class set (.zip)").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    with zipfile.ZipFile(saved) as zf:
        rows = list(csv.DictReader(io.TextIOWrapper(zf.open("labels.csv"), encoding="utf-8")))
        assert sorted(int(r["label"]) for r in rows) == [1, 3, 7]
        assert all(zf.read(r["file"]).startswith(b"\x89PNG") for r in rows)

    page.get_by_role("button", name="Remove all drawings").click()
    page.get_by_role("button", name="Yes, remove all").click()
    expect(page.get_by_text("No drawings yet")).to_be_visible()

    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(saved)
    expect(page.get_by_text("Added 3 drawings; 0 were already here; 0 skipped.")).to_be_visible()
    expect(page.get_by_text("3 drawings", exact=True)).to_be_visible()
    expect(accuracy).to_contain_text("100.0%")


def test_removing_a_selected_drawing_removes_that_one_and_clears_the_selection(page, server):
    store = server.classset
    store.clear()
    for digit in (2, 5, 8):  # oldest first; the table lists the newest first
        store.add(drawing(digit), digit, background="dark")
    newest = store.list()[-1]
    page.goto(server.url + "/classset")
    page.get_by_text("Every drawing, newest first").click()
    grid = page.get_by_test_id("stDataFrame").first
    expect(grid).to_be_visible()
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    header, row = 35, 60  # px: Streamlit's header row, and the page's row height (a 56 px thumbnail + 4)
    page.mouse.click(box["x"] + 15, box["y"] + header + row / 2)  # the first row's selection box
    remove = page.get_by_role("button", name="Remove 1 selected")
    expect(remove).to_be_enabled()
    remove.click()
    expect(page.get_by_text("2 drawings", exact=True)).to_be_visible()
    assert [d.label for d in store.list()] == [2, 5] and newest.id not in {d.id for d in store.list()}
    expect(page.get_by_role("button", name="Remove selected")).to_be_disabled()  # nothing left selected
    expect(page.get_by_test_id("stException")).to_have_count(0)


def test_projector_mode_is_large_and_kept_across_pages(page, server):
    page.goto(server.url + "/draw")
    title = page.get_by_role("heading", name="Draw a digit")
    expect(title).to_be_visible()
    size = lambda: page.evaluate("() => parseFloat(getComputedStyle(document.querySelector('h1')).fontSize)")  # noqa: E731
    normal = size()
    normal_canvas = page.locator("canvas").last.bounding_box()["width"]
    page.get_by_text("Projector mode").click()
    expect(page.get_by_role("switch", name="Projector mode")).to_be_checked()
    page.wait_for_function(f"() => parseFloat(getComputedStyle(document.querySelector('h1')).fontSize) > {normal}")
    expect(page.locator("canvas").last).not_to_have_attribute("width", str(int(normal_canvas)))
    assert page.locator("canvas").last.bounding_box()["width"] > normal_canvas  # a larger canvas, a thicker brush
    page.get_by_role("link", name="Train", exact=True).click()
    expect(page.get_by_role("heading", name="Train a network")).to_be_visible()
    expect(page.get_by_role("switch", name="Projector mode")).to_be_checked()
    assert size() > normal and "projector=true" in page.url
    settled(page)  # the screenshot shows the page drawn, not its loading placeholders
    page.screenshot(path=SHOTS / "32-projector-train.png")


def test_two_students_fine_tuning_at_once_take_turns_and_each_gets_a_model(browser, tmp_path, mirror_root):
    home = tmp_path / "home"
    store, rng = ClassSet(home / "classset"), np.random.default_rng(0)
    for sample in P.load(writers=P.REPORT_WRITERS[:2]):  # 40 pen-written digits: enough to fine-tune on
        store.add(P.random_canvas(sample.strokes, rng), sample.digit, background="dark")
    srv = StreamlitServer(home, {"DIGITLAB_CLASSSET": str(home / "classset"), "DIGITLAB_TRAINING_SLOTS": "1"})
    laptop = browser.new_context(viewport={"width": 1366, "height": 768})
    phone = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    try:
        pages = laptop.new_page(), phone.new_page()
        for page in pages:
            page.goto(srv.url + "/classset")
        button = [p.get_by_role("button", name="Fine-tune the current model on our drawings") for p in pages]
        for b in button:
            expect(b).to_be_enabled(timeout=60_000)
        button[0].click()
        expect(pages[0].get_by_text(re.compile(r"^Fine-tuning: step"))).to_be_visible()
        button[1].scroll_into_view_if_needed()
        button[1].tap()
        waiting = pages[1].get_by_text("Waiting for a classmate's fine-tune to finish: yours is next")
        expect(waiting).to_be_visible()
        pages[1].screenshot(path=SHOTS / "35-phone-waits-its-fine-tune-turn.png")
        for page in pages:  # the laptop's ends, then the phone's runs and ends: both are kept and answer
            expect(page.get_by_text("Held-out drawings (")).to_be_visible(timeout=240_000)
            expect(page.get_by_text("it now answers on Draw")).to_be_visible()
    finally:
        laptop.close()
        phone.close()
        srv.stop()
