"""Argument checks shared by the whole package: one rule per kind of argument, one message format.

Every check raises ValueError naming the argument and the value received (`Received: name=value`), the
format the command line translates to its own flags (`Received: --flag value`).
"""

from __future__ import annotations

import math
from typing import Any, Iterable


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def check_positive_int(name: str, value: Any) -> int:
    """Return `value` if it is a positive int (not bool), else raise ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return value


def check_positive_number(name: str, value: Any) -> float:
    """Return `value` if it is a finite number > 0 (not NaN, not inf, not bool), else raise naming `name`."""
    if not _is_number(value) or value <= 0:
        raise ValueError(f"`{name}` must be a finite positive number. Received: {name}={value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return `value` if it is one of `choices`, else raise ValueError naming `name`."""
    choices = tuple(choices)
    if value not in choices or (isinstance(value, bool) and not any(c is value for c in choices)):
        raise ValueError(f"`{name}` must be one of {choices}. Received: {name}={value!r}")
    return value


def check_fraction(name: str, value: Any, low: float = 0.0, high: float = 1.0) -> float:
    """A finite number in the open-closed interval (low, high]."""
    if not _is_number(value) or not (low < value <= high):
        raise ValueError(f"`{name}` must be a number in ({low}, {high}]. Received: {name}={value!r}")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    """Return `value` if it is True or False (not 0/1 or None), else raise ValueError naming `name`."""
    if value is not True and value is not False:
        raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return value
