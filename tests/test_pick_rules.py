"""benchmarks/pick_rules.py on a committed benchmark CSV: one row per score, baseline and rank average, and
no rule's pick better than the best of its top 3, nor that better than the best of the draw."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from nas_cntk.scoring.measures import SCORE_NAMES, ranking_label

ROOT = Path(__file__).resolve().parents[1]


def test_every_rule_picks_no_better_than_its_top_three_nor_the_draws_best() -> None:
    csv = ROOT / "benchmarks" / "results" / "nb201-n1-t200-v100-r8-s0-k200.csv"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pick_rules.py"), str(csv), "--cells", "50",
                             "--draws", "200"], capture_output=True, text=True, check=True)
    header, _, table = result.stdout.partition("\n\n")
    best_of_draw = float(header.split("best of a draw ")[1].split()[0])
    rows = [line.rsplit(maxsplit=3) for line in table.splitlines()[1:]]  # rule, pick, pick sd, best of top 3
    rules = {rule.strip() for rule, *_ in rows}
    assert {ranking_label(name) for name in SCORE_NAMES} | {"flops", "parameters", "naswot", "synflow"} <= rules
    assert "cntk_alignment + flops" in rules
    assert all(float(pick) <= float(top3) <= best_of_draw for _, pick, _, top3 in rows)
