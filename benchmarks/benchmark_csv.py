"""The per-architecture CSV `nas-cntk benchmark nb201` writes, as the scripts beside it read it: checked
on reading, and each score or baseline column oriented so that higher is better."""
from __future__ import annotations

import pandas as pd

from nas_cntk.scoring.measures import SCORE_NAMES, direction, ranking_label

TRAINED = "cifar10_test_acc_200ep"  # as nas_cntk.trained.benchmark names it (that module imports torch)
BASELINES = ("flops", "parameters", "naswot", "synflow")
COLUMNS = (*SCORE_NAMES, *BASELINES)  # what can rank the architectures


def read(path: str) -> pd.DataFrame:
    """The CSV, or exit with one line naming what is wrong with it."""
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise SystemExit(f"{path}: cannot read it as a CSV ({error})") from None
    missing = [column for column in ("arch", TRAINED, "connected") if column not in table]
    if missing:
        raise SystemExit(f"{path}: not a `nas-cntk benchmark nb201` CSV (no {', '.join(missing)} column)")
    return table


def oriented(table: pd.DataFrame, name: str) -> tuple[str, pd.Series]:
    """(label, column with higher better) of a score or baseline: the label is -NAME where lower is better."""
    if name in SCORE_NAMES:
        return ranking_label(name), direction(name) * table[name]
    return name, table[name]
