"""Errors that teach.

A `UserError` is bad input: its message is one line that names the problem and the fix.
The command line prints it without a traceback and exits with code 2
(``LOSSLAB_DEBUG=1`` shows the traceback). Anything else is an internal failure (exit 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = [
    "UserError",
    "check_choice",
    "check_each",
    "check_float",
    "check_int",
]


class UserError(ValueError):
    """Bad input. The message is one line: what was wrong and what to write instead."""


def _fail(name: str, owner: str, expectation: str, value: Any) -> UserError:
    return UserError(f"The '{name}' parameter of {owner} must be {expectation}. Got {value!r}.")


def check_int(value: Any, name: str, owner: str, *, low: int | None = None, high: int | None = None) -> int:
    """Validate an integer parameter in [low, high] (bounds optional)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(name, owner, _bounds("an int", low, high), value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise _fail(name, owner, _bounds("an int", low, high), value)
    return value


def check_float(
    value: Any,
    name: str,
    owner: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> float:
    """Validate a finite real parameter in [low, high] ((low, high] with ``low_open``)."""
    expectation = _bounds("a finite number", low, high, low_open=low_open)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(name, owner, expectation, value)
    value = float(value)
    if not math.isfinite(value):
        raise _fail(name, owner, expectation, value)
    too_low = low is not None and (value <= low if low_open else value < low)
    if too_low or (high is not None and value > high):
        raise _fail(name, owner, expectation, value)
    return value


def check_choice(value: Any, name: str, owner: str, choices: Iterable[str]) -> str:
    """Validate a string option against its allowed values."""
    choices = list(choices)
    if value not in choices:
        raise _fail(name, owner, "one of " + ", ".join(repr(c) for c in choices), value)
    return value


def check_each(
    values: Any, name: str, owner: str, what: str, example: str, check: Any = check_int, **bounds: Any
) -> None:
    """Validate a non-empty list parameter, each item by ``check(item, name, owner, **bounds)``.

    >>> check_each((2, 8), "depths", "the depth study", "depth", "2,8,32", low=1)
    >>> check_each((), "ds", "a study", "depth", "2,8", low=1)
    Traceback (most recent call last):
    ...
    losslab.errors.UserError: The 'ds' parameter of a study must list at least one depth, as in ds=2,8. Got none.
    """
    if not values:
        raise UserError(
            f"The '{name}' parameter of {owner} must list at least one {what}, as in {name}={example}. Got none."
        )
    for value in values:
        check(value, name, owner, **bounds)


def _bounds(kind: str, low: Any, high: Any, *, low_open: bool = False) -> str:
    if low is not None and high is not None:
        return f"{kind} with {low} {'<' if low_open else '≤'} value ≤ {high}"
    if low is not None:
        return f"{kind} {'>' if low_open else '≥'} {low}"
    if high is not None:
        return f"{kind} ≤ {high}"
    return kind
