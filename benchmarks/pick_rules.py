"""What each score would pick: a benchmark CSV's architectures, drawn T at a time, each draw's pick by
each score (and by rank averages of two), and its trained accuracy.

    python benchmarks/pick_rules.py benchmarks/results/nb201-n1-t200-v100-r8-s0-k200.csv --cells 100

A search that scores T cells at random hands over the best of them by its score; this is that pick's
trained accuracy, averaged over --draws random sets of T. "best of top K" is the best trained
accuracy among the score's top K: what a user who trains the K first rows of the leaderboard gets.
Reads the per-architecture CSV `nas-cntk benchmark nb201` writes; computes no kernel.
"""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from benchmark_csv import COLUMNS, TRAINED, oriented, read

PAIRS = [("cntk_alignment", "flops"), ("cntk_alignment", "synflow"), ("cntk_val_accuracy", "flops"),
         ("flops", "naswot")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("--cells", type=int, default=100, help="cells a search scores (default 100)")
    parser.add_argument("--draws", type=int, default=3000, help="random sets of --cells cells (default 3000)")
    parser.add_argument("--top", type=int, default=3, help="K of 'best of top K' (default 3)")
    args = parser.parse_args()
    table = read(args.csv)
    accuracy = table[TRAINED].to_numpy()
    rng = np.random.default_rng(0)
    # Ranks (higher better) by label (-NAME where lower is better), a random tie-break shared by every rule.
    ranks = {}
    for name in COLUMNS:
        if name in table and table[name].notna().all():
            label, column = oriented(table, name)
            ranks[label] = rankdata(column) + rng.random(len(table)) * 1e-6
    ranks |= {f"{a} + {b}": ranks[a] + ranks[b] for a, b in PAIRS if a in ranks and b in ranks}
    draws = np.stack([rng.choice(len(table), args.cells, replace=False) for _ in range(args.draws)])
    rows = []
    for name, rank in ranks.items():
        top = np.take_along_axis(draws, np.argsort(-rank[draws], axis=1)[:, :args.top], axis=1)
        picks, best = accuracy[top[:, 0]], accuracy[top].max(axis=1)
        rows.append({"rule": name, "pick": picks.mean(), "pick sd": picks.std(),
                     f"best of top {args.top}": best.mean()})
    report = pd.DataFrame(rows).sort_values("pick", ascending=False)
    print(f"{len(table)} architectures, {args.draws} draws of {args.cells}; best of a draw "
          f"{accuracy[draws].max(axis=1).mean():.2f} on average, the table's best {accuracy.max():.2f}\n")
    print(report.to_string(index=False, float_format="{:.2f}".format))


if __name__ == "__main__":
    main()
