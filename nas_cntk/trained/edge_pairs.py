"""Does a score order two cells that differ in one edge as training orders them?

A search moves one edge at a time, so what it meets at every step is a pair of NAS-Bench-201 cells that
differ in a single edge op. For each score this module reports the share of such pairs it orders as the
trained accuracies do: over all pairs, per edge, and per swap of two ops, with percentile bootstrap
intervals over the pairs. A score that ties a pair (FLOPs cannot tell a skip from a pool) orders it half
right. Pairs whose trained accuracies are closer than :data:`CLOSE` are about as far apart as two
training seeds of one cell, so no score can be right or wrong about them: they are counted apart.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nas_cntk.description import nasbench201
from nas_cntk.trained.correlation import Estimate

CLOSE = 0.3  # points of trained accuracy: about the spread of NAS-Bench-201's training seeds
EDGE_NAMES = tuple(f"{i}->{j}" for j in range(1, nasbench201.NODES) for i in range(j))  # genotype order
SWAPS = tuple(f"{a} / {b}" for a, b in itertools.combinations(nasbench201.EDGE_OPS, 2))  # the ops' order


def one_edge_pairs(genotypes: Sequence[str]) -> pd.DataFrame:
    """Every pair of ``genotypes`` that differs in exactly one edge: positions ``first`` < ``second``, the
    ``edge`` (``i->j``) and the ``swap`` of ops on it (the two op names in the space's order)."""
    edges = [[op for node in nasbench201.parse_genotype(g) for op in node] for g in genotypes]
    by_rest: dict[tuple[int, tuple[str, ...]], list[int]] = {}
    for position, ops in enumerate(edges):
        for k in range(len(EDGE_NAMES)):
            by_rest.setdefault((k, tuple(ops[:k] + ops[k + 1:])), []).append(position)
    order = nasbench201.EDGE_OPS.index
    rows = [{"first": a, "second": b, "edge": EDGE_NAMES[k],
             "swap": " / ".join(sorted((edges[a][k], edges[b][k]), key=order))}
            for (k, _), positions in by_rest.items() for a, b in itertools.combinations(positions, 2)]
    return pd.DataFrame(rows, columns=["first", "second", "edge", "swap"]).sort_values(["first", "second"],
                                                                                        ignore_index=True)


@dataclass(frozen=True)
class PairAgreement:
    """How one score orders the pairs that training tells apart (and, apart, those it does not)."""

    pairs: int                        # trained accuracies at least CLOSE apart
    share: Estimate                   # of those, ordered as training orders them (a tie counts half)
    ties: float                       # share of those the score ties
    close_pairs: int                  # trained accuracies less than CLOSE apart
    close_share: float                # of those, ordered as training orders them (NaN if none)
    by_edge: dict[str, tuple[int, Estimate]]  # edge -> (pairs, share)
    by_swap: dict[str, tuple[int, Estimate]]  # "op / op" -> (pairs, share)

    def to_dict(self) -> dict[str, float]:
        """Flat metrics for MLflow (names of edges and swaps as MLflow allows them)."""
        metrics = {"pairs": float(self.pairs), "share": self.share.value, "share_low": self.share.low,
                   "share_high": self.share.high, "ties": self.ties, "close_pairs": float(self.close_pairs),
                   "close_share": self.close_share}
        for kind, groups in (("edge", self.by_edge), ("swap", self.by_swap)):
            for name, (_, estimate) in groups.items():
                key = name.replace("->", "to").replace(" / ", "-")
                metrics[f"{kind}.{key}"] = estimate.value
        return metrics


def agreement(score: np.ndarray, trained: np.ndarray, pairs: pd.DataFrame, *, confidence: float = 0.95,
              resamples: int = 2000, seed: int = 0) -> PairAgreement:
    """How ``score`` (higher better, one value per cell, in the positions ``pairs`` refer to) orders
    ``pairs`` against ``trained``."""
    a, b = pairs["first"].to_numpy(), pairs["second"].to_numpy()
    gap = trained[a] - trained[b]
    with np.errstate(invalid="ignore"):
        difference = np.nan_to_num(score[a] - score[b], nan=0.0)  # equal infinities (NASWOT's -inf) tie
    right = (np.sign(difference) * np.sign(gap) + 1) / 2  # 1 ordered as training, 1/2 tied, 0 reversed
    apart = np.abs(gap) >= CLOSE
    rng = np.random.default_rng(seed)

    def estimate(values: np.ndarray) -> Estimate:
        if not len(values):
            return Estimate(float("nan"), float("nan"), float("nan"))
        means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
        low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
        return Estimate(float(values.mean()), float(low), float(high))

    def groups(column: str, order: Sequence[str]) -> dict[str, tuple[int, Estimate]]:
        labels = pairs[column].to_numpy()[apart]
        return {name: (int((labels == name).sum()), estimate(right[apart][labels == name]))
                for name in order if (labels == name).any()}

    close = right[~apart]
    return PairAgreement(pairs=int(apart.sum()), share=estimate(right[apart]),
                         ties=float((right[apart] == 0.5).mean()) if apart.any() else float("nan"),
                         close_pairs=int((~apart).sum()), close_share=float(close.mean()) if len(close) else
                         float("nan"), by_edge=groups("edge", EDGE_NAMES), by_swap=groups("swap", SWAPS))


def format_agreements(agreements: Mapping[str, PairAgreement], pairs: pd.DataFrame) -> str:
    """A table: one row per score, the overall share with its interval, then the share per edge and per swap."""
    first = next(iter(agreements.values()))
    edges, swaps = list(first.by_edge), list(first.by_swap)
    lines = [f"one-edge pairs: {len(pairs)} pairs of cells that differ in one edge; {first.pairs} with trained "
             f"accuracies at least {CLOSE} points apart (counted below), {first.close_pairs} closer (the last "
             "column); a tie counts half",
             "per edge: " + ", ".join(f"{e} {first.by_edge[e][0]}" for e in edges),
             "per swap: " + ", ".join(f"{s} ({first.by_swap[s][0]})" for s in swaps), ""]
    width = max(len(name) for name in agreements)
    header = f"{'':<{width}}  {'ordered as training [interval]':<30}  ties  " + "  ".join(f"{e:>5}" for e in edges)
    lines += [header + "  " + "  ".join(f"s{k + 1:<4}" for k in range(len(swaps))) + "  close"]
    for name, result in agreements.items():
        cells = [f"{result.by_edge[e][1].value:5.2f}" for e in edges]
        cells += [f"{result.by_swap[s][1].value:5.2f}" for s in swaps]
        lines.append(f"{name:<{width}}  {str(result.share):<30}  {result.ties:4.2f}  " + "  ".join(cells)
                     + f"  {result.close_share:5.2f}")
    lines += ["", "swaps: " + ", ".join(f"s{k + 1} {s}" for k, s in enumerate(swaps))]
    return "\n".join(lines)
