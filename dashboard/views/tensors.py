"""Tensors: §4.1 of the PyTorch 入门 tutorial, on a 2x2 tensor you edit, step by step, then backward() and x.grad."""

from __future__ import annotations

import math

import streamlit as st

from core import autograd_lab as lab
from core.autograd_lab import OUT_OPS, TUTORIAL, TUTORIAL_X, Y_OPS, Z_OPS
from dashboard import words

SHOWN = "tensors.backward_for"  # the inputs backward() was last pressed for; any change hides x.grad


def number(v: float) -> str:
    if math.isnan(v):
        return r"\text{nan}"
    if math.isinf(v):
        return r"\infty" if v > 0 else r"-\infty"
    text = f"{v:.5g}"
    if "e" in text:  # 1e+06 reads as 1 × 10⁶ on a projector
        mantissa, exponent = text.split("e")
        text = rf"{mantissa} \times 10^{{{int(exponent)}}}"
    return text


def latex(name: str, value) -> str:
    """A value as LaTeX: a bracketed matrix for 2x2, a plain number for out."""
    if not isinstance(value, list):
        return rf"\texttt{{{name}}} = {number(value)}"
    rows = r" \\ ".join(" & ".join(number(v) for v in row) for row in value)
    return rf"\texttt{{{name}}} = \begin{{bmatrix}} {rows} \end{{bmatrix}}"


def step_card(step: lab.Step) -> None:
    with st.container(border=True):
        st.markdown(f"`{step.expression}`")
        st.latex(latex(step.name, step.value))
        st.caption(f"shape {tuple(step.shape)} · grad_fn **{step.grad_fn or 'None'}** · "
                   f"requires_grad {step.requires_grad}")


st.title("Tensors and autograd")
st.caption("§4.1 of the PyTorch 入门 tutorial (a short introduction to PyTorch, in Chinese; see About in the "
           "Glossary): edit x, build y, z and out from the menus, then press backward() to see x.grad. "
           "The starting choices are the tutorial's own code. **grad_fn**: " + words.term("grad_fn"))

controls, results = st.columns([1.2, 2.4], gap="large")
with controls:
    st.markdown("**x** (2×2, float32)")
    x = [[0.0, 0.0], [0.0, 0.0]]
    for i in range(2):
        for j, cell in enumerate(st.columns(2)):
            x[i][j] = cell.number_input(f"x[{i}, {j}]", value=TUTORIAL_X[i][j], step=1.0, format="%g",
                                        key=f"tensors.x{i}{j}")
    y_op = st.selectbox("y =", list(Y_OPS), format_func=lambda name: Y_OPS[name][0], key="tensors.y_op")
    z_op = st.selectbox("z =", list(Z_OPS), key="tensors.z_op")
    out_op = st.selectbox("out =", list(OUT_OPS), index=list(OUT_OPS).index(TUTORIAL["out_op"]),
                          key="tensors.out_op")
    from_start = st.toggle("requires_grad from the start", value=TUTORIAL["requires_grad_from_start"],
                           key="tensors.from_start",
                           help="Off: x.requires_grad is set after y and z, as in the tutorial, so autograd "
                                "records only out. On: x requires grad before y, and the gradient flows through y and z.")
    inputs = (tuple(map(tuple, x)), y_op, z_op, out_op, from_start)
    if st.button("backward()", key="tensors.backward", type="primary"):
        st.session_state[SHOWN] = inputs

with results:
    try:
        result = lab.run(x, y_op, z_op, out_op, from_start, backward=st.session_state.get(SHOWN) == inputs)
    except ValueError as e:
        st.error(f"Cannot compute this: {e}", icon=":material/error:")
        result = None
    if result is not None:
        for pair in (result.steps[:2], result.steps[2:]):
            for step, cell in zip(pair, st.columns(2)):
                with cell:
                    step_card(step)
        if result.warning:
            st.warning(result.warning, icon=":material/warning:")
        if result.grad is not None:
            st.latex(latex("x.grad", result.grad))
        if st.session_state.get(SHOWN) == inputs:
            st.info(result.explanation, icon=":material/lightbulb:")
        else:
            st.caption("Press **backward()** to compute x.grad.")

if result is not None:
    st.markdown("**The same in PyTorch** — copy it into Python:")
    st.code(lab.code(x, y_op, z_op, out_op, from_start), language="python")
