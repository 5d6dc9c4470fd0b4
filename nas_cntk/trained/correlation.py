"""Does the kernel ranking predict the trained ranking? Rank correlations, precision@k and regret.

Ties are broken the same way everywhere: higher score first, then the smaller id (string order).
Intervals are paired percentile bootstraps over architectures (BCa fails on degenerate resamples).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy import stats

from nas_cntk.errors import NasCntkError


@dataclass(frozen=True)
class Estimate:
    value: float  # on all architectures
    low: float    # bootstrap interval at the result's confidence
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f}  [{self.low:.3f}, {self.high:.3f}]"


@dataclass(frozen=True)
class Correlation:
    n: int                       # architectures with both scores
    spearman: Estimate
    kendall: Estimate            # tau-b
    top_k: int
    precision_at_k: Estimate     # |kernel top-k ∩ trained top-k| / k
    regret: float                # best trained accuracy - trained accuracy of the kernel's pick, units of `trained`
    kernel_pick: str             # id with the highest kernel score
    trained_best: str            # id with the highest trained score
    confidence: float

    def rows(self) -> list[tuple[str, str]]:
        """(statistic, "value  [low, high]") rows; the brackets are bootstrap intervals at `confidence`."""
        return [("architectures with both scores", str(self.n)),
                ("Spearman rho", str(self.spearman)),
                ("Kendall tau", str(self.kendall)),
                (f"precision@{self.top_k} (top-{self.top_k})", str(self.precision_at_k)),
                ("regret of the kernel's pick",
                 f"{self.regret:.4g} (kernel picks {self.kernel_pick}; best trained is {self.trained_best})")]

    def to_dict(self) -> dict[str, float]:
        """Flat metrics for MLflow."""
        metrics = {"n": float(self.n), "top_k": float(self.top_k), "regret": self.regret,
                   "confidence": self.confidence}
        for name in ("spearman", "kendall", "precision_at_k"):
            estimate = getattr(self, name)
            metrics |= {name: estimate.value, f"{name}_low": estimate.low, f"{name}_high": estimate.high}
        return metrics


def _aligned(kernel: pd.Series, trained: pd.Series) -> pd.DataFrame:
    """Both scores for the ids that have both, sorted by id so that position order is the tie order."""
    for series in (kernel, trained):
        if series.index.has_duplicates:
            repeated = series.index[series.index.duplicated()].unique().tolist()
            raise NasCntkError(f"duplicate architecture ids: {repeated}")
    both = pd.DataFrame({"kernel": kernel, "trained": trained}).dropna()
    if len(both) < 3:
        raise NasCntkError(f"only {len(both)} architectures have both a kernel and a trained score; "
                           "at least 3 are needed")
    for name in both:
        if both[name].nunique() == 1:
            raise NasCntkError(f"all {name} scores are equal: rank correlation is undefined")
    both.index = both.index.astype(str)
    return both.sort_index()


def _order(values: np.ndarray) -> np.ndarray:
    """Positions best first; a stable sort keeps equal values in position (= id) order."""
    return np.argsort(-values, kind="stable")


def _precision(kernel: np.ndarray, trained: np.ndarray, k: int) -> float:
    return len(np.intersect1d(_order(kernel)[:k], _order(trained)[:k])) / k


def _statistics(kernel: np.ndarray, trained: np.ndarray, k: int) -> np.ndarray:
    """Spearman, Kendall tau-b and precision@k of each row of (resamples, n) arrays, vectorised over the
    rows. A resample constant in either score (possible when it draws one architecture over and over)
    orders nothing, so it counts as no agreement (0) rather than NaN."""
    if kernel.ndim == 1:
        return _statistics(kernel[None], trained[None], k)[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        rx, ry = (stats.rankdata(a, axis=-1) for a in (kernel, trained))
        rx, ry = rx - rx.mean(-1, keepdims=True), ry - ry.mean(-1, keepdims=True)
        rho = np.sum(rx * ry, -1) / np.sqrt(np.sum(rx**2, -1) * np.sum(ry**2, -1))
        # tau-b = sum over pairs of sign(dx) sign(dy) / sqrt(pairs untied in x * pairs untied in y)
        sx, sy = (np.sign(a[:, :, None] - a[:, None, :]).astype(np.int8) for a in (kernel, trained))
        agreement = np.einsum("rij,rij->r", sx, sy, dtype=np.int64)
        tau = agreement / np.sqrt(np.einsum("rij,rij->r", sx, sx, dtype=np.int64).astype(float)
                                  * np.einsum("rij,rij->r", sy, sy, dtype=np.int64))
    top = np.zeros(kernel.shape, dtype=bool), np.zeros(kernel.shape, dtype=bool)
    for mask, values in zip(top, (kernel, trained)):
        np.put_along_axis(mask, np.argsort(-values, axis=-1, kind="stable")[:, :k], True, axis=-1)
    precision = np.sum(top[0] & top[1], -1) / k
    return np.nan_to_num(np.stack([rho, tau, precision]), nan=0.0)


def correlate(kernel: pd.Series, trained: pd.Series, *, top_k: int | None = None, confidence: float = 0.95,
              resamples: int = 2000, seed: int = 0) -> Correlation:
    """Agreement of kernel and trained scores (higher = better for both) over the ids present in both."""
    both = _aligned(kernel, trained)
    n = len(both)
    k = max(1, n // 10) if top_k is None else top_k
    if not 1 <= k <= n:
        raise NasCntkError(f"top_k={top_k} is outside 1..{n} (the architectures with both scores)")
    x, y = both["kernel"].to_numpy(float), both["trained"].to_numpy(float)
    boot = stats.bootstrap((x, y), lambda a, b, axis: _statistics(a, b, k), paired=True, vectorized=True,
                           method="percentile", n_resamples=resamples, confidence_level=confidence,
                           batch=max(1, 2**22 // n**2),  # resamples at once: each holds two n x n sign tables
                           rng=np.random.default_rng(seed))
    values = [stats.spearmanr(x, y).statistic, stats.kendalltau(x, y).statistic, _precision(x, y, k)]
    low, high = boot.confidence_interval
    spearman, kendall, precision = (Estimate(float(v), float(lo), float(hi)) for v, lo, hi in zip(values, low, high))
    pick, best = both.index[_order(x)[0]], both.index[_order(y)[0]]
    return Correlation(n=n, spearman=spearman, kendall=kendall, top_k=k, precision_at_k=precision,
                       regret=float(y.max() - both.at[pick, "trained"]), kernel_pick=pick, trained_best=best,
                       confidence=confidence)


def format_correlation(result: Correlation) -> str:
    """The rows as an aligned plain-text table."""
    rows = [("statistic", f"value  [{result.confidence * 100:g}% bootstrap interval]"), *result.rows()]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {text}" for name, text in rows)


def correlation_figure(kernel: pd.Series, trained: pd.Series, result: Correlation, *,
                       kernel_label: str = "CNTK validation accuracy",
                       trained_label: str = "trained test accuracy") -> Figure:
    """Scores (left) and ranks (right, 1 = best, top right) of kernel vs trained; no pyplot, so it works headless."""
    both = _aligned(kernel, trained)
    figure = Figure(figsize=(11, 5), layout="constrained")
    scores, ranks = figure.subplots(1, 2)
    scores.scatter(both["kernel"], both["trained"], color="tab:blue", alpha=0.7)
    for name, label, color in ((result.kernel_pick, "kernel pick", "tab:red"),
                               (result.trained_best, "best trained", "tab:green")):
        point = both.loc[name]
        scores.scatter(point["kernel"], point["trained"], s=160, facecolors="none", edgecolors=color, linewidths=2,
                       label=f"{label}: {name}")
    scores.legend(loc="best", fontsize=8)  # a legend stays inside the panel, where a label by the point may not
    scores.set(xlabel=kernel_label, ylabel=trained_label, title="scores")
    # average ranks for ties, as Spearman uses
    kernel_rank, trained_rank = stats.rankdata(-both["kernel"]), stats.rankdata(-both["trained"])
    ranks.scatter(kernel_rank, trained_rank, color="tab:blue", alpha=0.7)
    ranks.plot([1, result.n], [1, result.n], color="gray", linestyle="--", linewidth=1)
    for axis in (ranks.xaxis, ranks.yaxis):
        axis.set_major_locator(MaxNLocator(integer=True))  # ranks are whole numbers
    ranks.invert_xaxis()
    ranks.invert_yaxis()
    ranks.set(xlabel=f"rank by {kernel_label}", ylabel=f"rank by {trained_label}", title="ranks (1 = best)")
    figure.suptitle(f"n = {result.n}:  Spearman ρ = {result.spearman}   Kendall τ = {result.kendall}   "
                    f"({result.confidence * 100:g}% bootstrap intervals)")
    return figure
