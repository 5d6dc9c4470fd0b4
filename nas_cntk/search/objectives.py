"""What a search maximises: one score of the kernel, one cost of the network, or a weighted sum of
standardised ones; several objectives make a multi-objective search, whose result is a Pareto front.

* ``cntk_val_accuracy`` (any of :data:`nas_cntk.scoring.measures.SCORE_NAMES`): that score, in its own
  direction (errors are minimised).
* ``flops`` or ``parameters`` (:data:`COSTS`): the trained network's cost, minimised. Beside a score
  (``--objective cntk_alignment --objective flops``) the search finds the best score at each cost.
* ``cntk_val_accuracy+1.5*flops``: a sum of terms ``[+|-][WEIGHT*]NAME``, maximised. Each term is
  standardised over a fixed reference set of the space's networks scored on the same data (a cost by its
  logarithm), so ``+1.5*flops`` adds 1.5 for each standard deviation of log FLOPs over that set: larger
  networks score higher, as the capacity an infinitely wide kernel cannot see. Being fixed, the reference
  keeps a trial's value from changing as the study grows.

Light on purpose (no torch, no Optuna): the command line and the space files check objectives with it.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from nas_cntk.errors import NasCntkError
from nas_cntk.scoring.measures import SCORE_NAMES, direction

COSTS = {"flops": "multiply-adds of one forward pass of the trained network at 32 x 32",
         "parameters": "weights and biases of the trained network"}
NAMES = (*SCORE_NAMES, *COSTS)
REFERENCE_CELLS = 20  # networks of the space that standardise a sum's terms; the sd of 20 is within ~16%
REFERENCE_SEED = 0    # the same reference for every study of a space on the same data
_TERM = re.compile(r"\s*([+-]?)\s*(?:(\d+(?:\.\d*)?|\.\d+)\s*\*\s*)?([A-Za-z_]\w*)\s*")

SUM_KEY = "objective"  # where a sum's value is recorded: the trial's attribute, the benchmark's column

Reference = Mapping[str, tuple[float, float]]  # term -> (mean, standard deviation) over the reference networks


@dataclass(frozen=True)
class Objective:
    """One objective of a search, from its text; :meth:`value` is what the study maximises."""

    text: str
    terms: tuple[tuple[float, str], ...]  # (weight, name); a plain objective is ((1.0, name),)
    combined: bool                        # a sum of standardised terms, not one value in its own direction

    @classmethod
    def parse(cls, text: str, option: str = "--objective") -> Objective:
        expected = (f"{option}: expected a score ({', '.join(SCORE_NAMES)}), a cost ({', '.join(COSTS)}), or a "
                    f"sum of them such as cntk_val_accuracy+1.5*flops")
        terms, position, text = [], 0, str(text).strip()
        while position < len(text):
            match = _TERM.match(text, position)
            if match is None or (terms and not match.group(1)):
                raise NasCntkError(f"{expected}; got {text!r}")
            sign, weight, name = match.groups()
            if name not in NAMES:
                raise NasCntkError(f"{option}: unknown score or cost {name!r} in {text!r} "
                                   f"(expected one of {', '.join(NAMES)})")
            if any(name == seen for _, seen in terms):
                raise NasCntkError(f"{option}: {name} appears twice in {text!r}")
            value = (-1.0 if sign == "-" else 1.0) * float(weight or 1)
            if value == 0:
                raise NasCntkError(f"{option}: the weight of {name} in {text!r} is zero")
            terms.append((value, name))
            position = match.end()
        if not terms:
            raise NasCntkError(f"{expected}; got {text!r}")
        combined = len(terms) > 1 or text[0] in "+-" or "*" in text
        return cls(text.replace(" ", ""), tuple(terms), combined)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for _, name in self.terms)

    def value(self, values: Mapping[str, float], reference: Reference | None = None) -> float:
        """Higher is better: a plain objective in its own direction; a sum over its standardised terms."""
        if not self.combined:
            (_, name), = self.terms
            return orientation(name) * values[name]
        if reference is None:
            raise ValueError(f"{self.text} is standardised over reference networks, and none were given")
        return sum(weight * (_scale(name, values[name]) - reference[name][0]) / reference[name][1]
                   for weight, name in self.terms)

    def shown(self, value: float) -> float:
        """The value as users read it: a plain objective in its own units, a sum as maximised."""
        return value if self.combined else orientation(self.names[0]) * value


def orientation(name: str) -> int:
    """+1 where higher is better, -1 where lower is (errors, costs)."""
    return -1 if name in COSTS else direction(name)


def parse_objectives(texts: Sequence[str], option: str = "--objective") -> tuple[Objective, ...]:
    objectives = tuple(Objective.parse(text, option) for text in texts)
    if len({o.text for o in objectives}) < len(objectives):
        raise NasCntkError(f"{option}: the same objective is given twice ({', '.join(texts)})")
    return objectives


def objectives_label(objectives: Sequence[Objective]) -> str:
    """The objectives as one string: what a study records, and the suffix of its default name."""
    return ",".join(o.text for o in objectives)


def reference(objectives: Iterable[Objective], values: Sequence[Mapping[str, float]]) -> dict[str, tuple[float, float]]:
    """Mean and standard deviation of each standardised term over the reference networks' ``values``."""
    found = {}
    for name in sorted({name for o in objectives if o.combined for name in o.names}):
        scaled = [_scale(name, v[name]) for v in values]
        mean = sum(scaled) / len(scaled)
        sd = math.sqrt(sum((x - mean) ** 2 for x in scaled) / max(len(scaled) - 1, 1))
        if not (math.isfinite(mean) and sd > 0):
            raise NasCntkError(f"{name} takes one value on all {len(scaled)} reference networks of the space, so "
                               "it cannot be standardised; leave it out of the objective")
        found[name] = (mean, sd)
    return found


def _scale(name: str, value: float) -> float:
    """Costs by their logarithm: a network twice as large is one step more, whatever its size."""
    return math.log(value) if name in COSTS else value


def objective_keys(objectives: Sequence[Objective]) -> list[str]:
    """Where each objective's value is recorded: a plain one under its score's or cost's name, a sum as
    ``objective`` (``objective_1``, ``objective_2``, ... where several are sums)."""
    sums = [o for o in objectives if o.combined]
    return [o.names[0] if not o.combined else SUM_KEY if len(sums) == 1 else f"{SUM_KEY}_{sums.index(o) + 1}"
            for o in objectives]


def file_label(text: str) -> str:
    """Objectives as a file name takes them: ``cntk_val_accuracy+1.5*flops`` -> ``cntk_val_accuracy+1.5xflops``."""
    return text.replace("*", "x").replace(",", "_")
