"""Where a score disagrees with training at the top: for each edge of the NAS-Bench-201 cell and each op
on it, the share of the best cells by trained accuracy, and by each score, that have that op there.

    python benchmarks/edge_ops.py benchmarks/results/nb201-n1-t300-v150-r8-s0-k200.csv

A search hands over its top cell, so what matters is which cells a score puts at the top. Rows are
sorted by the largest gap between a score's share and the trained share. Reads the per-architecture
CSV `nas-cntk benchmark nb201` writes; computes no kernel.
"""
from __future__ import annotations

import argparse

import pandas as pd

from nas_cntk.description.nasbench201 import parse_genotype

from benchmark_csv import COLUMNS, TRAINED, oriented, read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("--scores", default="cntk_alignment,cntk_val_accuracy,flops",
                        help="comma-separated score or baseline columns (default %(default)s)")
    parser.add_argument("--top", type=float, default=0.1, help="the best cells, as a fraction (default %(default)s)")
    parser.add_argument("--rows", type=int, default=6, help="rows to print (default %(default)s)")
    args = parser.parse_args()
    if not 0 < args.top <= 1:
        parser.error(f"--top: expected a fraction in (0, 1], got {args.top}")
    table = read(args.csv)
    table = table[table["connected"]].reset_index(drop=True)  # a disconnected cell has no kernel to score
    best = max(1, round(args.top * len(table)))
    tops = {"trained": table[TRAINED].nlargest(best).index}
    for name in args.scores.split(","):
        if name not in COLUMNS or name not in table:
            parser.error(f"--scores: {name!r} is not a score or baseline column of {args.csv}")
        label, column = oriented(table, name)
        tops[label] = column.nlargest(best).index
    # Each cell's op on edge "i->j", in the genotype's order of nodes and sources.
    ops = pd.DataFrame([{f"{i}->{j}": op for j, node in enumerate(parse_genotype(arch), start=1)
                         for i, op in enumerate(node)} for arch in table["arch"]])
    rows = [{"edge": edge, "op": op, "cells": int((ops[edge] == op).sum())}
            | {label: (ops.loc[top, edge] == op).mean() for label, top in tops.items()}
            for edge in ops for op in ops[edge].unique()]
    report = pd.DataFrame(rows)
    gap = report[list(tops)[1:]].sub(report["trained"], axis=0).abs().max(axis=1)
    report = report.loc[gap.sort_values(ascending=False).index].head(args.rows)
    print(f"{len(table)} connected cells; share of the best {best} by trained accuracy and by each score with "
          f"the row's op on the row's edge\n")
    print(report.to_string(index=False, float_format="{:.2f}".format))


if __name__ == "__main__":
    main()
