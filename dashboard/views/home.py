"""The first page: what Digit Lab is and what to do first."""

import streamlit as st

st.title("Digit Lab")
st.markdown(
    """
**Train a neural network and watch it learn to read your handwriting.**

1. **Draw** — open *Draw* and write a digit with the mouse or a finger. A network that came with Digit Lab
   answers at once, shows how sure it is, and shows the 28×28 picture it actually looked at.
2. **Train** — open *Train*, pick the tutorial's MLP or CNN, choose an optimizer and a learning rate, and press
   **Start**. The loss falls live on the chart.
3. **Compare** — go back to *Draw* while it trains: your drawing is re-read with the newest weights every
   second, so you can watch the answers improve epoch by epoch. When the run ends, your model answers.

Things to try: a learning rate of 3 or 10 (watch it diverge), SGD against Adam, the MLP against the CNN,
augmentation on and off for digits you draw small or slanted.
"""
)
c1, c2 = st.columns(2)
c1.page_link("views/draw.py", label="Draw a digit", icon=":material/draw:")
c2.page_link("views/train.py", label="Train a network", icon=":material/model_training:")
