"""What each score, baseline and objective would pick: a benchmark CSV's cells, drawn T at a time, each draw's
pick by each rule and its trained accuracy; beside it each rule's Kendall tau over all the cells and the
share of one-edge pairs it orders as training does.

    python benchmarks/pick_rules.py benchmarks/results/nb201-n1-t200-v100-r8-s0-k200.csv --cells 100 \\
        --objective cntk_val_accuracy+1.5*flops

A search that scores T cells at random hands over the best of them by its score; this is that pick's
trained accuracy, averaged over --draws random sets of T. "best of top K" is the best trained
accuracy among the score's top K: what a user who trains the K first rows of the leaderboard gets.
An objective that sums standardised terms (`nas-cntk search --objective`) is standardised as a search
standardises it: over a fixed reference of the cells (the CSV's first rows of a seeded permutation, as
many as a search's reference networks). Reads the per-architecture CSV `nas-cntk benchmark nb201`
writes; computes no kernel.
"""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from scipy.stats import kendalltau, rankdata

from nas_cntk.errors import NasCntkError
from nas_cntk.search.objectives import REFERENCE_CELLS, Objective, reference
from nas_cntk.trained.edge_pairs import agreement, one_edge_pairs

from benchmark_csv import COLUMNS, TRAINED, oriented, read

OBJECTIVES = ("cntk_alignment+flops", "cntk_val_accuracy+flops", "-nngp_loo_sq_error+flops")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("--cells", type=int, default=100, help="cells a search scores (default 100)")
    parser.add_argument("--draws", type=int, default=3000, help="random sets of --cells cells (default 3000)")
    parser.add_argument("--top", type=int, default=3, help="K of 'best of top K' (default 3)")
    parser.add_argument("--objective", action="append", metavar="OBJECTIVE",
                        help=f"an objective as `nas-cntk search --objective` takes it; repeatable (default: "
                             f"{', '.join(OBJECTIVES)})")
    args = parser.parse_args()
    table = read(args.csv)
    try:
        objectives = [Objective.parse(text) for text in args.objective or OBJECTIVES]
    except NasCntkError as error:
        parser.error(str(error))
    accuracy = table[TRAINED].to_numpy()
    rng = np.random.default_rng(0)
    values = {}  # by label (-NAME where lower is better), higher better
    for name in COLUMNS:
        if name in table and table[name].notna().all():
            label, column = oriented(table, name)
            values[label] = column.to_numpy(float)
    rows = table.to_dict("records")
    fixed = [rows[i] for i in rng.permutation(len(rows))[:REFERENCE_CELLS]]
    for objective in objectives:
        statistics = reference([objective], fixed) if objective.combined else None
        values[objective.text] = np.array([objective.value(row, statistics) for row in rows])
    tie_break = rng.random(len(table)) * 1e-9  # shared by every rule
    draws = np.stack([rng.choice(len(table), args.cells, replace=False) for _ in range(args.draws)])
    pairs = one_edge_pairs(list(table["arch"]))
    report = []
    for name, value in values.items():
        rank = rankdata(value) + tie_break
        top = np.take_along_axis(draws, np.argsort(-rank[draws], axis=1)[:, :args.top], axis=1)
        picks, best = accuracy[top[:, 0]], accuracy[top].max(axis=1)
        report.append({"rule": name, "pick": picks.mean(), "pick sd": picks.std(),
                       f"best of top {args.top}": best.mean(), "kendall": kendalltau(value, accuracy).statistic,
                       "one-edge": agreement(value, accuracy, pairs).share.value if len(pairs) else np.nan})
    report = pd.DataFrame(report).sort_values("pick", ascending=False)
    print(f"{len(table)} architectures, {args.draws} draws of {args.cells}; best of a draw "
          f"{accuracy[draws].max(axis=1).mean():.2f} on average, the table's best {accuracy.max():.2f}; "
          f"{len(pairs)} one-edge pairs\n")
    print(report.to_string(index=False, float_format="{:.2f}".format))


if __name__ == "__main__":
    main()
