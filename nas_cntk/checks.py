"""The checks that settings and descriptions share: whole numbers, their multiples, non-negative numbers,
one of a few choices.

Each raises the caller's error type (a :class:`~nas_cntk.errors.NasCntkError`) with one line that
names the setting, what was expected and what was given. ``bool`` is rejected wherever a number is
expected: YAML's ``yes`` and JSON's ``true`` are not 1.

May import: :mod:`nas_cntk.errors`.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

from nas_cntk.errors import NasCntkError


def is_integer(value: Any, minimum: int = 1, *, odd: bool = False) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool) and value >= minimum
            and not (odd and value % 2 == 0))


def is_number(value: Any, minimum: float = 0.0) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and value >= minimum)


def integer(value: Any, what: str, minimum: int = 1, *, odd: bool = False,
            error: type[NasCntkError] = NasCntkError) -> int:
    """``value`` if it is an integer >= ``minimum`` (and odd, with ``odd``); else ``error``."""
    if not is_integer(value, minimum, odd=odd):
        raise error(f"{what}: expected {'an odd' if odd else 'an'} integer >= {minimum}, got {value!r}")
    return value


def multiple(value: Any, what: str, factor: int, *, why: str = "", error: type[NasCntkError] = NasCntkError) -> int:
    """``value`` if it is a positive whole multiple of ``factor`` (numpy integers too); else ``error``,
    with ``why`` (e.g. " (equally many images of every class)") after the expectation."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0 or value % factor:
        raise error(f"{what}: expected a positive multiple of {factor}{why}, got {value!r}")
    return int(value)


def one_of(value: Any, choices: Iterable[str], what: str, *, error: type[NasCntkError] = NasCntkError) -> str:
    """``value`` if it is one of ``choices``; else ``error`` listing them."""
    choices = tuple(choices)  # a tuple compares by ==, so an unhashable value is refused, not a TypeError
    if value not in choices:
        raise error(f"{what}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def number(value: Any, what: str, minimum: float = 0.0, *, error: type[NasCntkError] = NasCntkError) -> float:
    """``value`` as a float if it is a finite number >= ``minimum``; else ``error``."""
    if not is_number(value, minimum):
        raise error(f"{what}: expected a finite number >= {minimum:g}, got {value!r}")
    return float(value)


def device(name: str | None) -> None:
    """A ``--device`` that exists here (None: the default, a GPU when there is one)."""
    import torch  # here: the CLI's start-up does not pay for torch when no device is named

    if not name:
        return
    try:
        found = torch.device(name)
    except RuntimeError:
        raise NasCntkError(f"--device {name}: not a device name; use cpu, cuda or cuda:N") from None
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if found.type == "cuda" and (found.index or 0) >= gpus:
        raise NasCntkError(f"--device {name}: no such CUDA device here ({gpus} available); use --device cpu")
    if found.type not in ("cpu", "cuda"):
        raise NasCntkError(f"--device {name}: only cpu and cuda devices are supported")
