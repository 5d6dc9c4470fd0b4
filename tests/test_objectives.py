"""Objectives: a score, a cost, or a sum of standardised terms; their values, keys and reference statistics."""
from __future__ import annotations

import math

import pytest

from nas_cntk.errors import NasCntkError
from nas_cntk.search.objectives import (
    Objective,
    file_label,
    objective_keys,
    objectives_label,
    parse_objectives,
    reference,
)

VALUES = [{"cntk_val_accuracy": a, "cntk_val_sq_error": e, "flops": f}
          for a, e, f in ((0.30, 0.90, 1e6), (0.40, 0.80, 4e6), (0.35, 0.85, 16e6))]


def test_a_plain_objective_is_its_score_or_cost_in_its_own_direction() -> None:
    accuracy, error, flops = (Objective.parse(t) for t in ("cntk_val_accuracy", "cntk_val_sq_error", "flops"))
    assert not (accuracy.combined or error.combined or flops.combined)
    assert accuracy.value(VALUES[1]) == 0.40 and error.value(VALUES[1]) == -0.80 and flops.value(VALUES[1]) == -4e6
    assert error.shown(error.value(VALUES[1])) == 0.80  # users read the error, not its negative


def test_a_sum_standardises_each_term_over_the_reference_and_costs_by_their_logarithm() -> None:
    objective = Objective.parse("cntk_val_accuracy + 2*flops")
    assert objective.combined and objective.terms == ((1.0, "cntk_val_accuracy"), (2.0, "flops"))
    statistics = reference([objective], VALUES)
    assert statistics["cntk_val_accuracy"] == pytest.approx((0.35, 0.05))
    assert statistics["flops"] == pytest.approx((math.log(4e6), math.log(4)))  # logs 1, 4, 16 Mflops: one step each
    assert objective.value(VALUES[1], statistics) == pytest.approx(1.0 + 2 * 0.0)
    assert objective.value(VALUES[2], statistics) == pytest.approx(0.0 + 2 * 1.0)
    assert Objective.parse("-cntk_val_sq_error").value(VALUES[1], statistics | reference(
        [Objective.parse("-cntk_val_sq_error")], VALUES)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="reference"):
        objective.value(VALUES[0])


@pytest.mark.parametrize("text, message", [
    ("cntk_accuracy", "unknown score or cost 'cntk_accuracy'"),
    ("cntk_val_accuracy flops", "expected a score"),
    ("cntk_val_accuracy+flops+flops", "flops appears twice"),
    ("cntk_val_accuracy+0*flops", "the weight of flops"),
    ("", "expected a score"),
])
def test_a_bad_objective_is_one_line_naming_it(text: str, message: str) -> None:
    with pytest.raises(NasCntkError, match=message):
        Objective.parse(text)


def test_keys_labels_and_file_names() -> None:
    objectives = parse_objectives(["cntk_alignment", "flops"])
    assert objective_keys(objectives) == ["cntk_alignment", "flops"]
    assert objectives_label(objectives) == "cntk_alignment,flops"
    sums = parse_objectives(["cntk_alignment+flops", "-flops+nngp_alignment"])
    assert objective_keys(sums) == ["objective_1", "objective_2"]
    assert objective_keys(parse_objectives(["cntk_alignment+1.5*flops"])) == ["objective"]
    assert file_label("cntk_alignment+1.5*flops,flops") == "cntk_alignment+1.5xflops_flops"
    with pytest.raises(NasCntkError, match="given twice"):
        parse_objectives(["flops", "flops"])


def test_a_term_that_does_not_vary_over_the_reference_cannot_be_standardised() -> None:
    same = [{"cntk_alignment": a, "flops": 1e6} for a in (0.1, 0.2, 0.3)]
    with pytest.raises(NasCntkError, match="flops takes one value on all 3 reference networks"):
        reference([Objective.parse("cntk_alignment+flops")], same)
