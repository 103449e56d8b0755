"""Classroom load: ``python -m bench.load [--sessions 10] [--drawings 6] [--train 1] [--json]``.

Starts the real app on 127.0.0.1, opens K browser sessions in Debian's Chromium, starts a CNN
training run in each of the first ``--train`` sessions (the server gets that many training slots,
so they all train at once), waits until every page is open, then has every session draw digits
with the mouse and read the prediction, all at once. The browsers share this
machine's cores with the server (in a classroom each student's browser has its own). Reports mouse-up -> "Prediction:" latency (p50, p95, max,
timed inside each page) and every error: a wrong answer, a timeout, an exception.
Traffic goes to loopback only, and the script stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from playwright.async_api import async_playwright

from tests.browser import CHROMIUM, CHROMIUM_FLAGS, WATCH_PREDICTION, StreamlitServer, digit_strokes

DIGITS = [0, 1, 2, 3, 6, 7, 8, 9]  # single-stroke digits: one mouse-up each


async def draw(page, strokes) -> None:
    canvas = page.locator("canvas").last
    await canvas.wait_for(state="visible")
    box = await canvas.bounding_box()
    for stroke in strokes:
        await page.mouse.move(box["x"] + stroke[0][0], box["y"] + stroke[0][1])
        await page.mouse.down()
        for x, y in stroke[1:]:
            await page.mouse.move(box["x"] + x, box["y"] + y, steps=2)
        await page.mouse.up()


async def student(browser, url: str, index: int, drawings: int, train: bool, results: dict,
                  ready: asyncio.Barrier, think_s: float) -> None:
    context = await browser.new_context(viewport={"width": 1300, "height": 950})
    page = await context.new_page()
    page.set_default_timeout(60_000)
    try:
        if train:
            await page.goto(url + "/train?train.model=CNN&train.epochs=30")
            await page.get_by_role("button", name="Start").click()
            await page.get_by_text("step ").first.wait_for(timeout=120_000)
            await page.get_by_role("link", name="Draw").first.click()
        else:
            await page.goto(url + "/draw")
        await page.get_by_text("Draw a digit on the black canvas").wait_for()
        results["page_ready_s"].append(round(time.perf_counter() - results["t0"], 1))
        await ready.wait()  # the class has its pages open; now everyone draws
        rng = random.Random(index)
        for i in range(drawings):
            digit = DIGITS[(index + i) % len(DIGITS)]
            await asyncio.sleep(rng.uniform(0, think_s))  # a person looks, thinks, then draws
            try:
                await page.evaluate(WATCH_PREDICTION)
                await draw(page, digit_strokes(digit))
                await page.wait_for_function("() => window.__predicted !== null", timeout=30_000)
                latency = await page.evaluate("() => window.__predicted - window.__mouseUp")
                results["latency_ms"].append(latency)
                results["by_drawing"].setdefault(i, []).append(round(latency))
                text = await page.locator("h2", has_text="Prediction:").inner_text()
                if not train and text.strip() != f"Prediction: {digit}":  # live weights may still be learning
                    results["errors"].append(f"session {index}: drew {digit}, read {text!r}")
                await page.get_by_role("button", name="Clear").click()
                await page.get_by_text("Draw a digit on the black canvas").wait_for()
            except Exception as err:  # counted, reported, and the session goes on
                results["errors"].append(f"session {index}, drawing {i}: {type(err).__name__}: {str(err)[:160]}")
    finally:
        await context.close()


async def run(sessions: int, drawings: int, think_s: float, training: int = 1) -> dict:
    home = Path(tempfile.mkdtemp(prefix="digitlab-load-")) / "home"
    home.mkdir(parents=True)
    server = StreamlitServer(home, {"DIGITLAB_TRAINING_SLOTS": str(training)} if training > 1 else {})
    t0 = time.perf_counter()
    results: dict = {"latency_ms": [], "errors": [], "by_drawing": {}, "page_ready_s": [], "t0": t0}
    ready = asyncio.Barrier(sessions)
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            await asyncio.gather(*(student(browser, server.url, i, drawings, i < training, results, ready, think_s)
                                   for i in range(sessions)))
            await browser.close()
    finally:
        server.stop()
    ms = sorted(results["latency_ms"])
    return {
        "sessions": sessions, "training_runs": training, "drawings_per_session": drawings, "think_s": think_s,
        "predictions": len(ms),
        "p50_ms": round(statistics.median(ms), 1) if ms else None,
        "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 1) if ms else None,
        "max_ms": round(ms[-1], 1) if ms else None,
        "errors": len(results["errors"]), "error_details": results["errors"][:20],
        "latency_ms_by_drawing": results["by_drawing"],
        "pages_ready_after_s": max(results["page_ready_s"], default=None),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=10)
    p.add_argument("--drawings", type=int, default=6, help="per session")
    p.add_argument("--think", type=float, default=2.0,
                   help="each drawing waits a random 0..THINK seconds first, as people do; 0: all at once")
    p.add_argument("--train", type=int, default=1, help="how many sessions start a CNN run (all train at once)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    r = asyncio.run(run(args.sessions, args.drawings, args.think, args.train))
    print(f"{r['sessions']} sessions ({r['training_runs']} training a CNN), {r['predictions']} predictions in "
          f"{r['seconds']} s: "
          f"p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, max {r['max_ms']} ms, errors {r['errors']} "
          f"(goal: p95 <= 1000 ms, 0 errors)")
    for line in r["error_details"]:
        print("  " + line)
    if args.json:
        print(json.dumps(r))
    return 0 if r["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
