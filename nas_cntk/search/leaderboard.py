"""The leaderboard of a study: its distinct architectures, best CNTK validation accuracy first."""
from __future__ import annotations

from typing import TYPE_CHECKING

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from nas_cntk.description.architecture import Architecture

COLUMNS = ["rank", "trial", "cntk_acc", "nngp_acc", "network", "hash", "kernel_s", "name"]


def distinct_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The first completed trial of each architecture, best CNTK score first (later samples of an
    architecture only repeat its cached score)."""
    trials = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                    key=lambda t: (-t.value, t.number))
    seen: set[str] = set()
    return [t for t in trials if not (t.user_attrs["arch_hash"] in seen or seen.add(t.user_attrs["arch_hash"]))]


def trial_architecture(trial: FrozenTrial) -> Architecture:
    """The network a completed trial scored, rebuilt from its description."""
    from nas_cntk.description import architecture  # torch: the leaderboard itself does without

    name = trial.user_attrs.get("name")
    return architecture.parse({**trial.user_attrs["architecture"], **({"name": name} if name else {})})


def leaderboard(study: optuna.Study, top: int | None = None) -> pd.DataFrame:
    rows = [{"rank": rank, "trial": t.number, "cntk_acc": t.value, "nngp_acc": t.user_attrs["nngp_val_accuracy"],
             "network": t.user_attrs["summary"], "hash": t.user_attrs["arch_hash"],
             "kernel_s": t.user_attrs["kernel_seconds"], "name": t.user_attrs.get("name") or ""}
            for rank, t in enumerate(distinct_trials(study), 1)]
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table if top is None else table.head(top)


def format_table(table: pd.DataFrame) -> str:
    """The table as text; the name column only where some architecture has a name (list and cell spaces)."""
    if not table["name"].astype(bool).any():
        table = table.drop(columns="name")
    return table.to_string(index=False, formatters={"cntk_acc": "{:.4f}".format, "nngp_acc": "{:.4f}".format,
                                                    "kernel_s": "{:.1f}".format})
