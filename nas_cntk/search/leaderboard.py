"""The leaderboard of a study: its distinct network structures, best first, each with its objectives'
values, the CNTK and NNGP validation accuracies, and what the trained network costs.

Best first means: in a multi-fidelity study, the highest rung reached first (each score is that rung's);
with several objectives, the Pareto front first (``front`` 1, then the front of what is left, ...), each
front by its first objective. Architectures that differ only in their initial weight and bias scales
(``weight_std``, ``bias_std``) are one structure: the best of them stands for it, and ``variants``
counts them, so ten rows are ten different networks.
"""
from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from nas_cntk.scoring.measures import DEFAULT_OBJECTIVE
from nas_cntk.search.objectives import Objective, objective_keys, parse_objectives

if TYPE_CHECKING:
    from nas_cntk.description.architecture import Architecture

SCALES = ("weight_std", "bias_std")  # initial scales: a kernel hyperparameter, not part of a network's structure


def scored(trial: FrozenTrial) -> bool:
    """Whether a finished trial scored its architecture: it completed, or it was stopped at a rung below the
    top after reporting its score there. (Not its user attributes: a retried trial starts with its failed
    original's.)"""
    return trial.state == TrialState.COMPLETE or (trial.state == TrialState.PRUNED and bool(trial.intermediate_values))


def _scored_trials(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)) if scored(t)]


def _values(trial: FrozenTrial) -> tuple[float, ...]:
    """The trial's objective values (higher is better) at its highest rung."""
    if trial.values is not None:
        return tuple(trial.values)
    return (trial.intermediate_values[max(trial.intermediate_values)],)


def _fronts(values: np.ndarray) -> np.ndarray:
    """Each row's Pareto front (1: dominated by no row, 2: by none but those of front 1, ...); higher is better."""
    front, left, k = np.zeros(len(values), dtype=int), np.arange(len(values)), 1
    while len(left):
        v = values[left]
        dominated = ((v[None, :, :] >= v[:, None, :]).all(-1) & (v[None, :, :] > v[:, None, :]).any(-1)).any(1)
        front[left[~dominated]] = k
        left, k = left[dominated], k + 1
    return front


def distinct_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The first scored trial of each architecture, best first (later samples of an architecture only
    repeat its cached score)."""
    trials = _scored_trials(study)
    if not trials:
        return []
    values = np.array([_values(t) for t in trials])
    fronts = _fronts(values) if values.shape[1] > 1 else np.ones(len(trials), dtype=int)
    order = sorted(range(len(trials)), key=lambda i: (-trials[i].user_attrs.get("rung", 0), fronts[i],
                                                     *(-values[i]), trials[i].number))
    seen: set[str] = set()
    return [trials[i] for i in order
            if not (trials[i].user_attrs["arch_hash"] in seen or seen.add(trials[i].user_attrs["arch_hash"]))]


def structure(trial: FrozenTrial) -> str:
    """A digest of the trial's network without its initial scales."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in SCALES}
        return [strip(v) for v in value] if isinstance(value, list) else value

    return hashlib.sha256(json.dumps(strip(trial.user_attrs["architecture"]), sort_keys=True).encode()).hexdigest()[:16]


def trial_architecture(trial: FrozenTrial) -> Architecture:
    """The network a completed trial scored, rebuilt from its description."""
    from nas_cntk.description import architecture  # torch: the leaderboard itself does without

    name = trial.user_attrs.get("name")
    return architecture.parse({**trial.user_attrs["architecture"], **({"name": name} if name else {})})


def study_objectives(study: optuna.Study) -> tuple[Objective, ...]:
    """What a study maximises (older studies recorded one score, or none: the default then)."""
    return parse_objectives(study_objective(study).split(","))


def study_objective(study: optuna.Study) -> str:
    """The study's objectives as it records them: texts separated by commas."""
    return study.user_attrs.get("objective", DEFAULT_OBJECTIVE)


def leaderboard(study: optuna.Study, top: int | None = None) -> pd.DataFrame:
    """The table, one row per structure; ``table.attrs["objectives"]`` names its objective columns."""
    objectives = study_objectives(study)
    keys = objective_keys(objectives)
    best: dict[str, FrozenTrial] = {}
    variants: dict[str, int] = {}
    for t in distinct_trials(study):
        key = structure(t)
        best.setdefault(key, t)
        variants[key] = variants.get(key, 0) + 1
    trials = list(best.values())
    fronts = _fronts(np.array([_values(t) for t in trials])) if len(objectives) > 1 and trials else [1] * len(trials)
    rows = [{"rank": rank, "trial": t.number, "rung": t.user_attrs.get("rung", 0), "front": front,
             **{k: t.user_attrs.get(k, np.nan) for k in keys},
             "cntk_acc": t.user_attrs["cntk_val_accuracy"], "nngp_acc": t.user_attrs["nngp_val_accuracy"],
             "flops": t.user_attrs.get("flops", np.nan), "parameters": t.user_attrs.get("parameters", np.nan),
             "network": t.user_attrs["summary"], "variants": variants[structure(t)],
             "hash": t.user_attrs["arch_hash"], "kernel_s": t.user_attrs["kernel_seconds"],
             "name": t.user_attrs.get("name") or ""}
            for rank, (t, front) in enumerate(zip(trials, fronts), 1)]
    columns = ["rank", "trial", "rung", "front", *dict.fromkeys([*keys, "cntk_acc", "nngp_acc", "flops", "parameters"]),
               "network", "variants", "hash", "kernel_s", "name"]
    table = pd.DataFrame(rows, columns=list(dict.fromkeys(columns)))
    table = table if top is None else table.head(top)
    table.attrs["objectives"] = keys
    return table


def format_table(table: pd.DataFrame) -> str:
    """The table as text, without the columns that say nothing here (one rung, one front, one variant each,
    no names) and the accuracy column an objective column already shows."""
    keys = table.attrs.get("objectives", [])
    drop = [c for c, empty in (("name", not table["name"].astype(bool).any()), ("rung", not table["rung"].any()),
                               ("front", len(keys) < 2), ("variants", not (table["variants"] > 1).any()),
                               ("cntk_acc", "cntk_val_accuracy" in keys), ("nngp_acc", "nngp_val_accuracy" in keys))
            if empty]
    table = table.drop(columns=drop)
    big = {c: _count for c in ("flops", "parameters") if c in table}
    return table.to_string(index=False, float_format="{:.4f}".format, formatters={"kernel_s": "{:.1f}".format, **big})


def _count(value: float) -> str:
    """A count as people read it: 115.3M, 802.4k."""
    if not np.isfinite(value):
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.0f}"
