"""Draw: a digit on the canvas, and the current model's answer after every stroke."""

from __future__ import annotations

import numpy as np
import streamlit as st
from streamlit_drawable_canvas import st_canvas

from core.inference import classify
from dashboard import inside, state, widgets

CANVAS_PX = 280  # 10x MNIST's 28: a 20 px brush then scales to MNIST's 2-pixel strokes
BRUSH_PX = 20

sess = state.session()
training = widgets.run_active()


def clear() -> None:
    """Empty the canvas in place (a new ``initial_drawing``); remounting it could swallow the next stroke."""
    sess.canvas_generation += 1
    sess.last_drawing = None
    sess.stale_canvas = sess.canvas_bytes  # the canvas reports the old drawing until it has emptied itself


def upscale(image: np.ndarray, factor: int = 8) -> np.ndarray:
    return np.kron(np.clip(image, 0, 1), np.ones((factor, factor), np.float32))


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
        return
    label = choice.info.classes[result.digit]
    st.markdown(f"## Prediction: {label}")
    st.markdown(f"**{result.confidence:.0%}** sure")
    top = np.argsort(result.probabilities)[::-1][:3]
    st.caption("Top 3: " + " · ".join(f"{choice.info.classes[i]} {result.probabilities[i]:.1%}" for i in top))
    answer_layout(choice, result, result.preprocessed.image, "What the model saw (28×28)")
    st.caption(f"Answered by **{widgets.md_escape(choice.name)}** · {choice.detail}")


def answer_layout(choice, result, image: np.ndarray, caption: str) -> None:
    """Ten probability bars and the 28x28 image; bars at zero when there is no answer."""
    probs = result.probabilities if result is not None else np.zeros(10)
    best = int(result.digit) if result is not None else -1
    bars, seen = st.columns([3, 2])
    with bars:  # ten plain bars: far lighter for a browser than a chart library, on thirty laptops at once
        st.markdown("**How sure is the model?**")
        for i, p in enumerate(probs):
            name = choice.info.classes[i]
            st.progress(float(p), text=f"**{name}: {p:.0%}**" if i == best else f"{name}: {p:.0%}")
    with seen:
        st.image(upscale(image), caption=caption, clamp=True)


st.title("Draw a digit")
left, right = st.columns([1, 1.4], gap="large")
with left:
    canvas = st_canvas(stroke_width=BRUSH_PX, stroke_color="#FFFFFF", background_color="#000000",
                       height=CANVAS_PX, width=CANVAS_PX, drawing_mode="freedraw", return_image_data=True,
                       update_streamlit=True, key=state.CANVAS_KEY,
                       initial_drawing={"objects": [], "cleared": sess.canvas_generation})
    st.button("Clear", on_click=clear, icon=":material/ink_eraser:", key="draw.clear")
    png = canvas.image_bytes
    if png is not None and png != sess.stale_canvas:
        sess.stale_canvas = None
        sess.canvas_bytes = png
        sess.last_drawing = canvas.image_data
with right:
    answer_panel()

if sess.last_drawing is not None:  # the insight views follow each stroke, not the once-a-second refresh
    inside.look_inside(sess.model_for_drawing, sess.last_drawing)
