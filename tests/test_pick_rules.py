"""benchmarks/pick_rules.py on a committed benchmark CSV: one row per score, baseline and objective, no rule's
pick better than the best of its top 3, nor that better than the best of the draw; Kendall and one-edge shares
as the package computes them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from nas_cntk.scoring.measures import SCORE_NAMES, ranking_label
from nas_cntk.trained.edge_pairs import agreement, one_edge_pairs

TRAINED = "cifar10_test_acc_200ep"

ROOT = Path(__file__).resolve().parents[1]


def test_every_rule_picks_no_better_than_its_top_three_nor_the_draws_best() -> None:
    csv = ROOT / "benchmarks" / "results" / "nb201-n1-t200-v100-r8-s0-k200.csv"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pick_rules.py"), str(csv), "--cells", "50",
                             "--draws", "200", "--objective", "cntk_val_accuracy+1.5*flops"],
                            capture_output=True, text=True, check=True)
    header, _, table = result.stdout.partition("\n\n")
    best_of_draw = float(header.split("best of a draw ")[1].split()[0])
    # rule, pick, pick sd, best of top 3, kendall, one-edge
    rows = {rule: [float(v) for v in rest] for rule, *rest in (line.split() for line in table.splitlines()[1:])}
    assert {ranking_label(name) for name in SCORE_NAMES} | {"flops", "parameters", "naswot", "synflow",
                                                            "cntk_val_accuracy+1.5*flops"} == set(rows)
    assert all(pick <= top3 <= best_of_draw for pick, _, top3, *_ in rows.values())
    frame = pd.read_csv(csv)
    assert rows["flops"][3] == pytest.approx(stats.kendalltau(frame["flops"], frame[TRAINED]).statistic, abs=0.006)
    pairs = one_edge_pairs(list(frame["arch"]))
    share = agreement(frame["flops"].to_numpy(float), frame[TRAINED].to_numpy(float), pairs).share.value
    assert rows["flops"][4] == pytest.approx(share, abs=0.006)
