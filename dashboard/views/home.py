"""The first page: what Digit Lab is and what to do first."""

import streamlit as st

st.title("Digit Lab")
st.markdown(
    """
**Train a neural network and watch it learn to read your handwriting.**

1. **Draw** — write a digit with the mouse or a finger. A network that came with Digit Lab answers at once,
   shows how sure it is, and shows the 28×28 picture it actually looked at.
2. **Train** — pick the MLP or CNN of the PyTorch 入门 tutorial (see *Glossary*), an optimizer and a learning rate, and press **Start**; the loss
   falls live on the chart. Or pick a **lesson**: one click sets up a run, and it says what to watch for.
3. **Compare** — go back to *Draw* while it trains: your drawing is re-read with the newest weights every
   second. When the run ends, your model answers. *Runs* keeps every run side by side.

For a class: type your name at the top of the side panel first (or open the link your teacher gives you):
your runs are filed under it, come back after a reload, and **Results** ranks everyone's best run. Add your drawings to the **Class set** on *Draw* (pick the digit you drew), then score any model
on them — accuracy on *our* drawings, and its mistakes. Take the set home as one zip. **Models** downloads the
current model (checkpoint, TorchScript, ONNX) or loads one you bring. **Tensors** is the tutorial's first
step: a 2×2 tensor, a few operations and `backward()`. **Projector mode** (in the side panel; open it with » at the top left) makes everything large. **Glossary** explains
every word in one sentence.
"""
)
c1, c2, c3 = st.columns(3)
c1.page_link("views/draw.py", label="Draw a digit", icon=":material/draw:")
c2.page_link("views/train.py", label="Train a network", icon=":material/model_training:")
c3.page_link("views/classset.py", label="Our class set", icon=":material/groups:")
