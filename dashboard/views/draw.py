"""Draw: a digit on the canvas, and the current model's answer after every stroke."""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.classset import ClassSet, ClassSetError
from core.inference import classify
from dashboard import inside, state, widgets
from dashboard.digitcanvas import digit_canvas

CANVAS_PX = 280  # 10x MNIST's 28: a 20 px brush then scales to MNIST's 2-pixel strokes
BRUSH_PX = 20
PROJECTOR_CANVAS_PX, PROJECTOR_BRUSH_PX = 320, 28  # seen from the back row, and within a phone; preprocessing rescales either

sess = state.session()
training = widgets.run_active()


def clear() -> None:
    """Empty the canvas in place (a new generation); a drawing it sent before is then ignored."""
    sess.canvas_generation += 1
    sess.last_drawing = None
    sess.canvas_bytes = None


TRUE_LABEL = "draw.true_label"


def add_to_class_set() -> None:
    """Keep the drawing with the digit its author says it is, then clear the canvas for the next one."""
    label = st.session_state.get(TRUE_LABEL)
    if sess.last_drawing is None or label is None:
        return
    try:
        ClassSet().add(sess.last_drawing, int(label), background="dark", author=state.owner())
    except (ClassSetError, OSError) as err:
        sess.flash = ("add-error", f"Not added: {err}")
        return
    n = len(ClassSet())
    sess.flash = ("added", f"Added a {label} to the class set ({n} drawing{'s' if n != 1 else ''}).")
    st.session_state[TRUE_LABEL] = None
    clear()


def class_set_ui() -> None:
    with st.container(border=True, key="draw-classset"):
        st.markdown("**Add it to the class set** — which digit did you draw?")
        st.pills("The digit you drew", list(range(10)), key=TRUE_LABEL, label_visibility="collapsed")
        chosen = st.session_state.get(TRUE_LABEL)
        st.button(f"Add this {chosen} to the class set" if chosen is not None else "Add to the class set",
                  icon=":material/add_photo_alternate:", on_click=add_to_class_set, key="draw.add",
                  disabled=chosen is None or sess.last_drawing is None,
                  help="Your class's own test set: score any model on it on the Class set page.")
        if sess.flash and sess.flash[0] in ("added", "add-error"):  # shown until the next stroke
            kind, text = sess.flash
            (st.success if kind == "added" else st.error)(text)


@st.fragment(run_every=1.0 if training else None)
def answer_panel() -> None:
    """Re-reads the same drawing every second while a run trains: the answer improves as you watch."""
    choice = sess.model_for_drawing()
    if choice.dataset != "mnist":
        st.warning("The answering model was trained on Fashion-MNIST (clothing), so it will name a piece of "
                   "clothing. Drawing is meant for digit models: train on MNIST to classify digits.")
    pixels = sess.last_drawing
    result = None if pixels is None else classify(choice.model, pixels, choice.info, background="dark")
    if result is None or not result.ok:
        if result is None or result.preprocessed.reason == "empty":
            st.info("Draw a digit on the black canvas. The model answers when you lift the mouse or your finger.",
                    icon=":material/draw:")
        else:
            st.warning(result.message, icon=":material/info:")
        # the same layout, empty: nothing jumps when the first answer arrives, and the browser has
        # already loaded everything it needs to show one
        answer_layout(choice, None, np.zeros((28, 28), np.float32), "What the model will see (28×28)")
        st.caption(f"Answering: **{widgets.md_escape(choice.name)}** · {widgets.md_escape(choice.detail)}")
        why_caption(choice)
        if not choice.live:
            widgets.back_to_bundled("draw.bundled")
        return
    label = choice.info.classes[result.digit]
    top = np.argsort(result.probabilities)[::-1][:3]
    if getattr(result, "not_a_digit", False):  # say so, and keep the guess small: no confident digit
        st.markdown("### This does not look like a digit")
        st.caption(f"Best guess, small on purpose: {label} ({result.confidence:.0%}). "
                   "Draw one digit, large and in the middle, then lift the mouse or your finger.")
    else:
        st.markdown(f"## Prediction: {label}")
        st.markdown(f"**{result.confidence:.0%}** sure")
    st.caption("Top 3: " + " · ".join(f"{choice.info.classes[i]} {result.probabilities[i]:.1%}" for i in top))
    answer_layout(choice, result, result.preprocessed.image, "What the model saw (28×28)")
    st.caption(f"Answered by **{widgets.md_escape(choice.name)}** · {widgets.md_escape(choice.detail)}")
    why_caption(choice)
    if not choice.live:
        widgets.back_to_bundled("draw.bundled")


def why_caption(choice) -> None:
    """Why the bundled model is not the tutorial's CNN, in its own words, and where the tutorial's one is."""
    if choice.why:
        st.caption(f"Why this model: {widgets.md_escape(choice.why[:300])}. The tutorial's own CNN is the "
                   "\"CNN\" network on the Train page.")


def answer_layout(choice, result, image: np.ndarray, caption: str) -> None:
    """Ten probability bars and the 28x28 image; bars at zero when there is no answer."""
    probs = result.probabilities if result is not None else np.zeros(10)
    best = int(result.digit) if result is not None and not getattr(result, "not_a_digit", False) else -1
    bars, seen = st.columns([3, 2])
    with bars:  # ten plain bars: far lighter for a browser than a chart library, on thirty laptops at once
        st.markdown("**How sure is the model?**")
        for i, p in enumerate(probs):
            name = choice.info.classes[i]
            st.progress(float(p), text=f"**{name}: {p:.0%}**" if i == best else f"{name}: {p:.0%}")
    with seen:
        st.image(widgets.pixelated(np.clip(image, 0, 1), 8), caption=caption, clamp=True)


@st.fragment
def draw_area() -> None:
    """The canvas and everything that follows a stroke. A stroke reruns only this, not the whole app
    (navigation, sidebar): the answer comes back sooner."""
    big = state.projector_on()
    size = PROJECTOR_CANVAS_PX if big else CANVAS_PX
    # the canvas box is exactly as wide as the canvas, and the answer wraps below it on a narrow screen:
    # the whole canvas is always seen, and only what is seen can be drawn on
    with st.container(key="draw-area"):  # its width decides whether the answer sits beside or under the canvas
        with st.container(horizontal=True, gap="medium", key="draw-row"):
            with st.container(width=size, key="draw-canvas"):
                pixels, png = digit_canvas(size, PROJECTOR_BRUSH_PX if big else BRUSH_PX, sess.canvas_generation,
                                           key=state.CANVAS_KEY)
                st.button("Clear", on_click=clear, icon=":material/ink_eraser:", key="draw.clear")
                if png is not None and png != sess.canvas_bytes:
                    sess.canvas_bytes = png
                    if (pixels[..., :3] > 64).any():
                        sess.last_drawing = pixels
                        if sess.flash and sess.flash[0] in ("added", "add-error"):
                            sess.flash = None  # a new stroke: the message about the last drawing has done its job
                class_set_ui()  # under the canvas: adding a drawing never scrolls the canvas away
            with st.container(key="draw-answer"):
                answer_panel()
    if sess.last_drawing is not None:  # the insight views follow each stroke, not the once-a-second refresh
        inside.look_inside(sess.model_for_drawing, sess.last_drawing)


st.title("Draw a digit")
draw_area()
