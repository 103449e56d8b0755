"""A black square to draw one digit on, with a mouse, a pen or a finger.

It sends the drawing the moment the pointer lifts: a general-purpose drawing component waited a
further 200 ms after each stroke before sending, which was most of the time from mouse-up to the
answer. The square is exactly ``size`` CSS pixels wide, and its pixels are the PNG sent back, so
what is drawn is exactly what is seen and what the model reads. Pointer events cover mouse, pen and
touch alike; ``touch-action: none`` keeps a finger's stroke from scrolling the page.
"""

from __future__ import annotations

import base64

import numpy as np
import streamlit as st

_JS = r"""
const boards = new WeakMap();

function setup(root) {
  const canvas = document.createElement("canvas");
  canvas.setAttribute("aria-label", "Drawing square: draw one digit here");
  canvas.style.touchAction = "none";
  canvas.style.display = "block";
  canvas.style.cursor = "crosshair";
  root.appendChild(canvas);
  const ctx = canvas.getContext("2d");
  const b = {canvas, ctx, size: 0, brush: 20, generation: null, strokes: 0, last: null, pointer: null, send: null};
  const at = (e) => {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
  };
  const dot = ([x, y]) => { ctx.beginPath(); ctx.arc(x, y, b.brush / 2, 0, 2 * Math.PI); ctx.fill(); };
  canvas.addEventListener("pointerdown", (e) => {
    if (b.pointer !== null) return;
    b.pointer = e.pointerId;
    canvas.setPointerCapture(e.pointerId);
    b.last = at(e);
    dot(b.last);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (e.pointerId !== b.pointer) return;
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
    for (const ev of (events.length ? events : [e])) {
      const p = at(ev);
      ctx.beginPath(); ctx.moveTo(b.last[0], b.last[1]); ctx.lineTo(p[0], p[1]); ctx.stroke();
      b.last = p;
    }
  });
  const end = (e) => {
    if (e.pointerId !== b.pointer) return;
    b.pointer = null;
    b.strokes += 1;
    b.send({png: canvas.toDataURL("image/png"), generation: b.generation, strokes: b.strokes});
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  return b;
}

function clear(b) {
  const {ctx, canvas} = b;
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#fff"; ctx.strokeStyle = "#fff";
  ctx.lineWidth = b.brush; ctx.lineCap = "round"; ctx.lineJoin = "round";
  b.strokes = 0;
}

export default function (component) {
  const {data, parentElement, setStateValue} = component;
  const root = parentElement.querySelector(".digit-canvas");
  let b = boards.get(parentElement);
  if (!b) { b = setup(root); boards.set(parentElement, b); }
  b.send = (value) => setStateValue("drawing", value);
  if (b.size !== data.size || b.brush !== data.brush || b.generation !== data.generation) {
    b.size = data.size; b.brush = data.brush; b.generation = data.generation;
    b.canvas.width = b.canvas.height = data.size;
    b.canvas.style.width = b.canvas.style.height = data.size + "px";
    clear(b);
  }
  return () => {};
}
"""

_CSS = ".digit-canvas { line-height: 0; } .digit-canvas canvas { border-radius: 2px; }"

_component = st.components.v2.component("digitlab.digit_canvas", html='<div class="digit-canvas"></div>',
                                        js=_JS, css=_CSS, isolate_styles=True)


def digit_canvas(size: int, brush: int, generation: int, key: str) -> tuple[np.ndarray | None, bytes | None]:
    """The drawing as RGBA pixels (white ink on black) and its PNG; (None, None) while the square is empty.

    ``generation`` empties the square when it changes (Clear); a drawing sent before that is ignored.
    """
    result = _component(data={"size": int(size), "brush": int(brush), "generation": int(generation)}, key=key,
                        default={"drawing": None}, on_drawing_change=lambda: None, width="content",
                        height="content")
    return decode_drawing(result.get("drawing"), size, generation)


def decode_drawing(drawing, size: int, generation: int) -> tuple[np.ndarray | None, bytes | None]:
    """The square's message -> (RGBA pixels, PNG); (None, None) for an empty, stale or malformed one."""
    if not isinstance(drawing, dict) or drawing.get("generation") != generation or not drawing.get("png"):
        return None, None
    # what the browser sends is input like any upload: decoded only within the square's own size, and a
    # malformed message counts as no drawing rather than a traceback
    from core.images import ImageError, load_image_bytes

    try:
        png = base64.b64decode(str(drawing["png"]).split(",", 1)[1], validate=True)
        pixels = load_image_bytes(png, "the drawing", max_pixels=4 * int(size) ** 2)
    except (ImageError, ValueError, IndexError, TypeError):
        return None, None
    return pixels, png
