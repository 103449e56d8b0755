"""The Tensors lab against plain PyTorch, and its page through AppTest."""

from __future__ import annotations

import contextlib
import io
import itertools
import math
import re

import pytest
import torch
from streamlit.testing.v1 import AppTest

from core.autograd_lab import OUT_OPS, TUTORIAL, TUTORIAL_X, Y_OPS, Z_OPS, code, run
from tests.apptest import app

X = [[0.5, -1.0], [2.0, 0.25]]  # a negative entry for relu, no two entries alike
COMBINATIONS = list(itertools.product(Y_OPS, Z_OPS, OUT_OPS, [True, False]))


def reference(x_values, y_op, z_op, out_op, from_start):
    """The same steps written out directly: each menu name is itself the Python expression."""
    x = torch.tensor(x_values, dtype=torch.float32, requires_grad=from_start)
    y = eval(y_op, {"x": x})
    z = eval(z_op, {"x": x, "y": y})
    x.requires_grad = True
    out = eval(out_op, {"x": x, "y": y, "z": z})
    if out.requires_grad:
        out.backward()
    return x, y, z, out


@pytest.mark.parametrize("y_op, z_op, out_op, from_start", COMBINATIONS)
def test_every_menu_combination_matches_plain_torch(y_op, z_op, out_op, from_start):
    lab = run(X, y_op, z_op, out_op, from_start, backward=True)
    expected = reference(X, y_op, z_op, out_op, from_start)
    assert [s.name for s in lab.steps] == ["x", "y", "z", "out"]
    for step, t in zip(lab.steps, expected):
        assert torch.equal(torch.tensor(step.value), t.detach()), step.name
        assert step.shape == tuple(t.shape)
        assert step.requires_grad == t.requires_grad
        assert step.grad_fn == (type(t.grad_fn).__name__ if t.grad_fn is not None else None)
    x_ref = expected[0]
    if x_ref.grad is None:
        assert lab.grad is None and "backward() cannot run" in lab.warning
    else:
        assert torch.equal(torch.tensor(lab.grad), x_ref.grad)
        assert lab.warning is None
    assert lab.explanation.endswith(".")


def test_no_grad_before_backward():
    lab = run(X, "x ** 2", "x * y", "z.sum()")
    assert lab.grad is None and lab.warning is None


def test_tutorial_code_gives_ones_because_requires_grad_comes_late():
    lab = run(TUTORIAL_X, **TUTORIAL, backward=True)
    assert lab.grad == [[1.0, 1.0], [1.0, 1.0]]
    x, y, z, out = lab.steps
    assert y.value == [[3.0, 4.0], [5.0, 6.0]] and z.value == [[11.0, 17.0], [25.0, 39.0]] and out.value == 10.0
    assert (y.grad_fn, y.requires_grad, z.grad_fn, out.grad_fn) == (None, False, None, "SumBackward0")
    assert "never recorded" in lab.explanation and "all ones" in lab.explanation
    late = run(TUTORIAL_X, "x + 2", "x.mm(y.T)", "z.sum()", False, backward=True)
    assert late.grad is None and "no grad_fn" in late.explanation
    early = run(TUTORIAL_X, "x + 2", "x.mm(y.T)", "z.sum()", True, backward=True)
    assert early.grad == [[12.0, 16.0], [12.0, 16.0]]  # G.mm(y) directly plus G.T.mm(x) through y
    assert early.steps[2].grad_fn == "MmBackward0"


def test_classic_example_gives_four_and_a_half():
    lab = run([[1, 1], [1, 1]], "x + 2", "y * y * 3", "z.mean()", True, backward=True)
    assert lab.steps[3].value == 27.0
    assert lab.grad == [[4.5, 4.5], [4.5, 4.5]]


@pytest.mark.parametrize("kwargs, message", [
    (dict(y_op="x + 3"), "x + 2, x * 3"),
    (dict(z_op="eval('1')"), "x.mm(y.T), x * y"),
    (dict(out_op="z.max()"), "z.sum(), z.mean()"),
])
def test_unknown_operations_list_the_valid_ones(kwargs, message):
    with pytest.raises(ValueError, match="unknown operation") as e:
        run(X, **kwargs)
    assert message in str(e.value)


@pytest.mark.parametrize("x_values, message", [
    ([[1, 2, 3], [4, 5, 6]], "2x2"),
    ([[1, 2]], "2x2"),
    ("1 2 3 4", "2x2"),
    ([[1, None], [3, 4]], "x[0, 1] is empty"),
    ([[1, 2], ["3", 4]], "is not a number"),
    ([[1, 2], [3, True]], "is not a number"),
    ([[1, 2], [3, math.nan]], "not a finite number"),
    ([[math.inf, 2], [3, 4]], "not a finite number"),
    ([[1, 2], [3, -2e6]], "between -1e6 and 1e6"),
])
def test_bad_x_is_refused_with_a_clear_message(x_values, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        run(x_values)
    with pytest.raises(ValueError, match=re.escape(message)):
        code(x_values)


def test_overflow_is_reported_not_raised():
    lab = run([[100, 1], [1, 1]], "x.exp()", "x.mm(y.T)", "z.sum()", True, backward=True)
    assert math.isinf(lab.steps[1].value[0][0])
    assert "overflowed" in lab.warning and "y" in lab.warning
    assert lab.grad is not None


@pytest.mark.parametrize("y_op, z_op, out_op, from_start", COMBINATIONS[::7] + [(*TUTORIAL.values(),)])
def test_generated_code_runs_and_gives_the_same_grad(y_op, z_op, out_op, from_start):
    source = code(X, y_op, z_op, out_op, from_start)
    assert f"y = {y_op}\n" in source and f"out = {out_op}\n" in source
    lab = run(X, y_op, z_op, out_op, from_start, backward=True)
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        if lab.grad is None:
            assert "RuntimeError" in source
            with pytest.raises(RuntimeError):
                exec(source, namespace)
            return
        exec(source, namespace)
    assert torch.equal(namespace["x"].grad, torch.tensor(lab.grad))
    assert printed.getvalue().startswith("tensor(")


def test_tutorial_code_is_reproduced():
    assert code(TUTORIAL_X, **TUTORIAL) == (
        "import torch\n\n"
        "x = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float32)\n"
        "y = x + 2\n"
        "z = x.mm(y.T)  # matrix multiplication\n"
        "x.requires_grad = True  # set after y and z: autograd did not record them\n"
        "out = x.sum()\n"
        "out.backward()\n"
        "print(x.grad)\n")


# The page


def page() -> AppTest:
    return app("views/tensors.py")


def grad_shown(at: AppTest) -> list[str]:
    return [t.value.strip("$\n") for t in at.latex if "x.grad" in t.value]


def test_page_shows_the_tutorial_and_ones_after_backward():
    at = page()
    assert any(t.value == "Tensors and autograd" for t in at.title)
    assert any("grad_fn **SumBackward0**" in c.value for c in at.caption)
    assert not grad_shown(at)
    assert "x.requires_grad = True" in at.code[0].value
    at.button(key="tensors.backward").click().run()
    assert not at.exception
    assert grad_shown(at) == [r"\texttt{x.grad} = \begin{bmatrix} 1 & 1 \\ 1 & 1 \end{bmatrix}"]
    assert any("all ones" in i.value for i in at.info)


def test_page_classic_example_and_any_change_hides_the_grad():
    at = page()
    for i in range(2):
        for j in range(2):
            at.number_input(key=f"tensors.x{i}{j}").set_value(1.0)
    at.selectbox(key="tensors.z_op").set_value("y * y * 3")
    at.selectbox(key="tensors.out_op").set_value("z.mean()")
    at.toggle(key="tensors.from_start").set_value(True)
    at.run()
    at.button(key="tensors.backward").click().run()
    assert not at.exception
    assert grad_shown(at) == [r"\texttt{x.grad} = \begin{bmatrix} 4.5 & 4.5 \\ 4.5 & 4.5 \end{bmatrix}"]
    assert any("MeanBackward0" in c.value for c in at.caption)
    at.number_input(key="tensors.x00").set_value(2.0).run()
    assert not grad_shown(at) and not at.info
    assert any("Press **backward()**" in c.value for c in at.caption)
    at.button(key="tensors.backward").click().run()
    assert grad_shown(at) and not at.exception


def test_page_explains_why_backward_fails_when_requires_grad_comes_late():
    at = page()
    at.selectbox(key="tensors.out_op").set_value("z.sum()").run()
    at.button(key="tensors.backward").click().run()
    assert not at.exception and not grad_shown(at)
    assert any("cannot run" in w.value for w in at.warning)
    assert any("never recorded" in i.value for i in at.info)


def test_page_bad_input_shows_an_error_not_a_traceback():
    at = page()
    at.number_input(key="tensors.x11").set_value(5e6).run()
    at.button(key="tensors.backward").click().run()
    assert not at.exception
    assert any("between -1e6 and 1e6" in e.value for e in at.error)
    assert not grad_shown(at) and not at.code
