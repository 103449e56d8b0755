"""The tutorial's §4.1 (tensors and autograd) as a lab: a 2x2 tensor x, three steps picked from fixed menus.

The menus hold real functions, never text to evaluate, so whatever a student picks is safe to run.
Each menu name is also the Python expression it computes, which is what ``code`` writes out.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

LIMIT = 1e6  # keeps sums and products of typed-in numbers far from float32's ~3.4e38, except through exp

Y_OPS = {  # name -> (label shown, function of x)
    "x + 2": ("x + 2  (the tutorial's)", lambda x: x + 2),
    "x * 3": ("x * 3", lambda x: x * 3),
    "x ** 2": ("x ** 2", lambda x: x ** 2),
    "x.exp()": ("x.exp()", lambda x: x.exp()),
    "x.relu()": ("x.relu()", lambda x: x.relu()),
    "x.sigmoid()": ("x.sigmoid()", lambda x: x.sigmoid()),
    "x - x.mean()": ("x - x.mean()", lambda x: x - x.mean()),
}
Z_OPS = {  # name -> function of (x, y)
    "x.mm(y.T)": lambda x, y: x.mm(y.T),
    "x * y": lambda x, y: x * y,
    "y.mm(x)": lambda x, y: y.mm(x),
    "y * y * 3": lambda x, y: y * y * 3,
    "x.mm(x)": lambda x, y: x.mm(x),
}
OUT_OPS = {  # name -> function of (x, y, z)
    "z.sum()": lambda x, y, z: z.sum(),
    "z.mean()": lambda x, y, z: z.mean(),
    "x.sum()": lambda x, y, z: x.sum(),
    "(z ** 2).sum()": lambda x, y, z: (z ** 2).sum(),
    "y.sum()": lambda x, y, z: y.sum(),
}

TUTORIAL_X = [[1.0, 2.0], [3.0, 4.0]]
TUTORIAL = dict(y_op="x + 2", z_op="x.mm(y.T)", out_op="x.sum()", requires_grad_from_start=False)

# One chain-rule phrase per menu item, joined into the explanation of x.grad.
_OUT_WHY = {
    "z.sum()": "out = z.sum(), so d out/d z = 1 for every entry (call it G)",
    "z.mean()": "out = z.mean() of 4 entries, so d out/d z = 1/4 for every entry (call it G)",
    "(z ** 2).sum()": "out = (z ** 2).sum(), so d out/d z = 2·z (call it G)",
    "y.sum()": "out = y.sum() ignores z, so y's share of the gradient is 1 everywhere",
}
_Z_WHY = {
    "x.mm(y.T)": "z = x.mm(y.T) sends G.mm(y) to x directly and G.T.mm(x) to y",
    "x * y": "z = x * y sends G * y to x directly and G * x to y",
    "y.mm(x)": "z = y.mm(x) sends y.T.mm(G) to x directly and G.mm(x.T) to y",
    "y * y * 3": "z = y * y * 3 sends G * 6 * y to y (x reaches z only through y)",
    "x.mm(x)": "z = x.mm(x) uses x twice and y not at all, so x.grad = G.mm(x.T) + x.T.mm(G)",
}
_Y_WHY = {
    "x + 2": "y = x + 2 hands y's share to x unchanged (d y/d x = 1)",
    "x * 3": "y = x * 3 hands y's share to x times 3",
    "x ** 2": "y = x ** 2 hands y's share to x times 2·x",
    "x.exp()": "y = x.exp() hands y's share to x times exp(x), which is y itself",
    "x.relu()": "y = x.relu() hands y's share to x where x > 0 and 0 elsewhere (relu is flat there)",
    "x.sigmoid()": "y = x.sigmoid() hands y's share to x times y·(1 - y)",
    "x - x.mean()": "y = x - x.mean() hands y's share to x minus its mean (adding one number to all of x leaves y unchanged)",
}
_BOTH_PATHS = {"x.mm(y.T)", "x * y", "y.mm(x)"}
_MM = "  # matrix multiplication"


@dataclass
class Step:
    name: str
    expression: str
    value: list[list[float]] | float
    shape: tuple[int, ...]
    grad_fn: str | None  # the name of the backward node autograd recorded, None for a leaf or an unrecorded result
    requires_grad: bool


@dataclass
class Lab:
    steps: list[Step]  # x, y, z, out
    grad: list[list[float]] | None  # x.grad after backward(); None before it, or when out has no graph
    explanation: str
    warning: str | None = None  # overflow to inf/nan, or why backward() cannot run


def _check(x_values, y_op: str, z_op: str, out_op: str) -> None:
    for what, name, menu in (("y", y_op, Y_OPS), ("z", z_op, Z_OPS), ("out", out_op, OUT_OPS)):
        if name not in menu:
            raise ValueError(f"unknown operation for {what}: {name!r}; choose one of: {', '.join(menu)}")
    if not (isinstance(x_values, (list, tuple)) and len(x_values) == 2
            and all(isinstance(row, (list, tuple)) and len(row) == 2 for row in x_values)):
        raise ValueError("x must be a 2x2 table of numbers, like [[1, 2], [3, 4]]")
    for i, row in enumerate(x_values):
        for j, v in enumerate(row):
            if v is None:
                raise ValueError(f"x[{i}, {j}] is empty: type a number")
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise ValueError(f"x[{i}, {j}] = {v!r} is not a number")
            if not math.isfinite(v):
                raise ValueError(f"x[{i}, {j}] = {v} is not a finite number")
            if abs(v) > LIMIT:
                raise ValueError(f"x[{i}, {j}] = {v:g} is too large: keep every entry between -1e6 and 1e6")


def _step(name: str, expression: str, t: torch.Tensor) -> Step:
    value = t.item() if t.dim() == 0 else t.detach().tolist()
    grad_fn = type(t.grad_fn).__name__ if t.grad_fn is not None else None
    return Step(name, expression, value, tuple(t.shape), grad_fn, t.requires_grad)


def explain(y_op: str, z_op: str, out_op: str, requires_grad_from_start: bool = True) -> str:
    """Why x.grad is what it is: the chain rule, one menu item at a time, from out back to x."""
    late = "x.requires_grad was set after y and z were computed, so autograd never recorded them"
    if out_op == "x.sum()":
        why = "out = x.sum() adds each x[i, j] once, so d out/d x = 1 and x.grad is all ones, whatever y and z are."
        return why if requires_grad_from_start else f"{late}; {why}"
    if not requires_grad_from_start:
        return (f"{late}: out = {out_op} has no grad_fn, so out.backward() fails. "
                "Set requires_grad before computing y to let the gradient flow back through y and z.")
    parts = [_OUT_WHY[out_op]]
    if out_op != "y.sum()":
        parts.append(_Z_WHY[z_op])
    if out_op == "y.sum()" or z_op != "x.mm(x)":
        parts.append(_Y_WHY[y_op])
    end = "; x.grad adds the two paths." if out_op != "y.sum()" and z_op in _BOTH_PATHS else "."
    return "; ".join(parts) + end


def run(x_values, y_op: str = "x + 2", z_op: str = "x.mm(y.T)", out_op: str = "z.sum()",
        requires_grad_from_start: bool = True, *, backward: bool = False) -> Lab:
    """x, y, z and out as the menus say, in float32 like the tutorial; x.grad only when ``backward``.

    With ``requires_grad_from_start`` off, x.requires_grad is set after y and z, in the tutorial's order.
    """
    _check(x_values, y_op, z_op, out_op)
    x = torch.tensor([[float(v) for v in row] for row in x_values], dtype=torch.float32,
                     requires_grad=requires_grad_from_start)
    y = Y_OPS[y_op][1](x)
    z = Z_OPS[z_op](x, y)
    if not requires_grad_from_start:
        x.requires_grad = True
    out = OUT_OPS[out_op](x, y, z)
    x_expr = "x = torch.tensor(...)" + ("" if requires_grad_from_start else "; later x.requires_grad = True")
    steps = [_step("x", x_expr, x), _step("y", f"y = {y_op}", y), _step("z", f"z = {z_op}", z),
             _step("out", f"out = {out_op}", out)]
    lab = Lab(steps, None, explain(y_op, z_op, out_op, requires_grad_from_start))
    problems = [s.name for s in steps if not torch.isfinite(torch.tensor(s.value)).all()]
    if backward:
        if out.requires_grad:
            out.backward()
            lab.grad = x.grad.tolist()
            if not torch.isfinite(x.grad).all():
                problems.append("x.grad")
        else:
            lab.warning = "out.backward() cannot run: out does not require grad and has no grad_fn."
    if problems:
        overflow = (f"{', '.join(problems)} overflowed float32 (largest about 3.4e38) and hold inf or nan: "
                    "try smaller numbers in x.")
        lab.warning = f"{lab.warning} {overflow}" if lab.warning else overflow
    return lab


def code(x_values, y_op: str = "x + 2", z_op: str = "x.mm(y.T)", out_op: str = "z.sum()",
         requires_grad_from_start: bool = True) -> str:
    """The same computation as plain PyTorch, so it can be pasted into Python and explored further."""
    _check(x_values, y_op, z_op, out_op)
    rows = ", ".join("[" + ", ".join(repr(float(v)) for v in row) + "]" for row in x_values)
    grad_arg = ", requires_grad=True" if requires_grad_from_start else ""
    lines = ["import torch", "", f"x = torch.tensor([{rows}], dtype=torch.float32{grad_arg})",
             f"y = {y_op}", f"z = {z_op}" + (_MM if ".mm(" in z_op else "")]
    if not requires_grad_from_start:
        lines.append("x.requires_grad = True  # set after y and z: autograd did not record them")
    lines.append(f"out = {out_op}")
    no_graph = not requires_grad_from_start and out_op != "x.sum()"
    lines += ["out.backward()" + ("  # RuntimeError: out has no grad_fn" if no_graph else ""), "print(x.grad)"]
    return "\n".join(lines) + "\n"
