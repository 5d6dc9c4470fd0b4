"""benchmarks/edge_ops.py on a committed benchmark CSV: every edge's ops split each top set whole, rows
come largest gap first, and an unknown score, or a CSV that is not a benchmark's (for pick_rules.py too), is
one line naming it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT, CSV = ROOT / "benchmarks" / "edge_ops.py", ROOT / "benchmarks" / "results" / "nb201-n1-t200-v100-r8-s0-k200.csv"
SHARES = ["trained", "cntk_alignment", "flops"]  # the report's share columns


def test_each_edges_ops_share_every_top_set_whole_largest_gap_first() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), str(CSV), "--scores", "cntk_alignment,flops",
                             "--rows", "100"], capture_output=True, text=True, check=True)
    lines = result.stdout.split("\n\n", 1)[1].splitlines()
    report = pd.DataFrame([line.split() for line in lines[1:]], columns=lines[0].split()).astype(
        {"cells": int} | {c: float for c in SHARES})
    connected = int(pd.read_csv(CSV)["connected"].sum())
    assert len(report) == 6 * 5  # in 200 random cells, every op is on every edge somewhere
    for _, ops in report.groupby("edge"):
        assert ops["cells"].sum() == connected
        assert ops[SHARES].sum().round(2).eq(1).all()
    gap = report[SHARES[1:]].sub(report["trained"], axis=0).abs().max(axis=1)
    assert gap.is_monotonic_decreasing


def test_an_unknown_score_is_one_line_naming_it() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), str(CSV), "--scores", "cntk_alignment,depth"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].endswith("--scores: 'depth' is not a score or baseline column of " + str(CSV))


@pytest.mark.parametrize("script", ["edge_ops.py", "pick_rules.py"])
def test_a_table_that_is_not_a_benchmark_csv_is_one_line_naming_what_it_lacks(script: str) -> None:
    table = ROOT / "tests" / "data" / "nb201_cifar10_dev.csv"  # trained accuracies, no scores
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), str(table)],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == f"{table}: not a `nas-cntk benchmark nb201` CSV (no connected column)\n"
