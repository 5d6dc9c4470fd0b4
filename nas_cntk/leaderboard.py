"""The leaderboard of a study: its distinct architectures, best CNTK validation accuracy first."""
from __future__ import annotations

import optuna
import pandas as pd
from optuna.trial import TrialState

COLUMNS = ["rank", "trial", "cntk_acc", "nngp_acc", "network", "hash", "kernel_s", "name"]


def leaderboard(study: optuna.Study, top: int | None = None) -> pd.DataFrame:
    """One row per architecture (its first trial: later samples of it only repeat the cached score)."""
    trials = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                    key=lambda t: (-t.value, t.number))
    rows, seen = [], set()
    for t in trials:
        attrs = t.user_attrs
        if attrs["arch_hash"] in seen:
            continue
        seen.add(attrs["arch_hash"])
        rows.append({"rank": len(rows) + 1, "trial": t.number, "cntk_acc": t.value,
                     "nngp_acc": attrs["nngp_val_accuracy"], "network": attrs["summary"], "hash": attrs["arch_hash"],
                     "kernel_s": attrs["kernel_seconds"], "name": attrs.get("name") or ""})
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table if top is None else table.head(top)


def format_table(table: pd.DataFrame) -> str:
    return table.to_string(index=False, formatters={"cntk_acc": "{:.4f}".format, "nngp_acc": "{:.4f}".format,
                                                    "kernel_s": "{:.1f}".format})
