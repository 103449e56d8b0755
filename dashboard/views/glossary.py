"""Glossary: every word the pages use, in one sentence each, and where the lab comes from."""

import streamlit as st

from dashboard import words

st.title("Glossary")
st.caption("Each word as the pages use it. Hover over the ? mark beside a word on any page for the same sentence.")
for name in sorted(words.TERMS, key=str.lower):
    st.markdown(f"**{name}** — {words.TERMS[name]}")

st.header("About", anchor="about")
st.markdown(f"Digit Lab follows the tutorial {words.TUTORIAL}. Where a page says “{words.TUTORIAL_SHORT}”, "
            "it means that text. Its code is the starting point of the Tensors page and of the MLP and CNN on Train.")
