"""Checks for values read from files, links and old records, where a number may be anything.

Python counts ``True`` as the integer 1, so ``isinstance(v, (int, float))`` alone lets a boolean
pass for an accuracy or a learning rate; these say what a number means here once.
"""

from __future__ import annotations

import math


def is_number(value) -> bool:
    """An int or a float (NumPy's included), never a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite(value) -> bool:
    """A number that is neither infinite nor NaN (every int is finite, however large: math.isfinite would overflow)."""
    return is_number(value) and (isinstance(value, int) or math.isfinite(value))


def is_fraction(value) -> bool:
    """A number from 0 to 1, as an accuracy is (NaN is not)."""
    return is_number(value) and 0 <= value <= 1
