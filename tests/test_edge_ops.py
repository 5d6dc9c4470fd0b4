"""benchmarks/edge_ops.py on a committed benchmark CSV: every edge's ops split each top set whole, rows
come largest gap first, and an unknown score is one line naming it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SCRIPT, CSV = ROOT / "benchmarks" / "edge_ops.py", ROOT / "benchmarks" / "results" / "nb201-n1-t200-v100-r8-s0-k200.csv"
COLUMNS = ["trained", "cntk_alignment", "flops"]


def test_each_edges_ops_share_every_top_set_whole_largest_gap_first() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), str(CSV), "--scores", "cntk_alignment,flops",
                             "--rows", "100"], capture_output=True, text=True, check=True)
    lines = result.stdout.split("\n\n", 1)[1].splitlines()
    report = pd.DataFrame([line.split() for line in lines[1:]], columns=lines[0].split()).astype(
        {"cells": int} | {c: float for c in COLUMNS})
    connected = int(pd.read_csv(CSV)["connected"].sum())
    assert len(report) == 6 * 5  # in 200 random cells, every op is on every edge somewhere
    for _, ops in report.groupby("edge"):
        assert ops["cells"].sum() == connected
        assert ops[COLUMNS].sum().round(2).eq(1).all()
    gap = report[COLUMNS[1:]].sub(report["trained"], axis=0).abs().max(axis=1)
    assert gap.is_monotonic_decreasing


def test_an_unknown_score_is_one_line_naming_it() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), str(CSV), "--scores", "cntk_alignment,depth"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].endswith("--scores: 'depth' is not a score or baseline column of " + str(CSV))
