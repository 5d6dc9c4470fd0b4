"""The leaderboard of a study: its distinct architectures, best objective first (the study's score:
``score``, beside the CNTK validation accuracy, ``cntk_acc``). In a multi-fidelity study, the highest rung
reached comes first (``rung``), and each score is that rung's."""
from __future__ import annotations

from typing import TYPE_CHECKING

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from nas_cntk.scoring.measures import DEFAULT_OBJECTIVE

if TYPE_CHECKING:
    from nas_cntk.description.architecture import Architecture

COLUMNS = ["rank", "trial", "rung", "score", "cntk_acc", "nngp_acc", "network", "hash", "kernel_s", "name"]


def scored(trial: FrozenTrial) -> bool:
    """Whether a finished trial scored its architecture: it completed, or it was stopped at a rung below the
    top after reporting its score there. (Not its user attributes: a retried trial starts with its failed
    original's.)"""
    return trial.state == TrialState.COMPLETE or (trial.state == TrialState.PRUNED and bool(trial.intermediate_values))


def _scored_trials(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)) if scored(t)]


def _rank_key(trial: FrozenTrial) -> tuple[int, float, int]:
    """Highest rung first, then the (oriented) objective there, then the earlier trial."""
    value = trial.value if trial.value is not None else trial.intermediate_values[max(trial.intermediate_values)]
    return -trial.user_attrs.get("rung", 0), -value, trial.number


def distinct_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The first scored trial of each architecture, best first (later samples of an architecture only
    repeat its cached score)."""
    trials = sorted(_scored_trials(study), key=_rank_key)
    seen: set[str] = set()
    return [t for t in trials if not (t.user_attrs["arch_hash"] in seen or seen.add(t.user_attrs["arch_hash"]))]


def trial_architecture(trial: FrozenTrial) -> Architecture:
    """The network a completed trial scored, rebuilt from its description."""
    from nas_cntk.description import architecture  # torch: the leaderboard itself does without

    name = trial.user_attrs.get("name")
    return architecture.parse({**trial.user_attrs["architecture"], **({"name": name} if name else {})})


def study_objective(study: optuna.Study) -> str:
    """The score a study maximises."""
    return study.user_attrs.get("objective", DEFAULT_OBJECTIVE)  # older studies had only this one


def leaderboard(study: optuna.Study, top: int | None = None) -> pd.DataFrame:
    """The table; ``table.attrs["objective"]`` names the score of its ``score`` column."""
    name = study_objective(study)
    rows = [{"rank": rank, "trial": t.number, "rung": t.user_attrs.get("rung", 0), "score": t.user_attrs[name],
             "cntk_acc": t.user_attrs["cntk_val_accuracy"], "nngp_acc": t.user_attrs["nngp_val_accuracy"],
             "network": t.user_attrs["summary"],
             "hash": t.user_attrs["arch_hash"], "kernel_s": t.user_attrs["kernel_seconds"],
             "name": t.user_attrs.get("name") or ""}
            for rank, t in enumerate(distinct_trials(study), 1)]
    table = pd.DataFrame(rows, columns=COLUMNS)
    table = table if top is None else table.head(top)
    table.attrs["objective"] = name
    return table


def format_table(table: pd.DataFrame) -> str:
    """The table as text; the name column only where some architecture has a name (list and cell spaces)."""
    if not table["name"].astype(bool).any():
        table = table.drop(columns="name")
    if not table["rung"].any():  # a single-fidelity study
        table = table.drop(columns="rung")
    if table.attrs.get("objective") == "cntk_val_accuracy":  # the score column already says it
        table = table.drop(columns="cntk_acc")
    return table.rename(columns={"score": table.attrs.get("objective", "score")}).to_string(
        index=False, float_format="{:.4f}".format, formatters={"kernel_s": "{:.1f}".format})
