"""The scores one kernel gives, by name, and which way is better. Light on purpose (no torch): the
command line builds its choices from these.

Every score exists for both kernels: ``cntk_*`` from the NTK, ``nngp_*`` from the NNGP.
"""
from __future__ import annotations

from nas_cntk import checks
from nas_cntk.errors import NasCntkError

# measure -> (+1: higher is better, -1: lower is better; what it is)
MEASURES = {
    "val_accuracy": (+1, "accuracy on the validation images, ridge chosen on the training images alone"),
    "val_sq_error": (-1, "squared error of those predictions (per image, summed over the 10 targets)"),
    "loo_accuracy": (+1, "leave-one-out accuracy over all scored images, training and validation"),
    "loo_sq_error": (-1, "leave-one-out squared error over all scored images"),
    "alignment": (+1, "centred kernel-target alignment over all scored images (not a prediction)"),
    "log_condition": (-1, "log10 of the kernel's condition number over all scored images (not a prediction)"),
}
KERNELS = {"cntk": "ntk", "nngp": "nngp"}  # score prefix -> the kernel's field of a Score
SCORE_NAMES = tuple(f"{prefix}_{measure}" for prefix in KERNELS for measure in MEASURES)
DEFAULT_OBJECTIVE = "cntk_val_accuracy"


def check_score_name(name: str, option: str = "--objective", error: type[NasCntkError] = NasCntkError) -> str:
    checks.one_of(name, SCORE_NAMES, option, error=error)
    return name


def direction(name: str) -> int:
    """+1 where a higher score is better, -1 where a lower one is."""
    return MEASURES[check_score_name(name).split("_", 1)[1]][0]


def ranking_label(name: str) -> str:
    """What a ranking by the oriented score is a ranking by: ``-name`` where lower is better."""
    return name if direction(name) > 0 else f"-{name}"


def oriented(name: str, value: float) -> float:
    """The score with higher always better: what a search maximises and a ranking sorts by."""
    return direction(name) * value
