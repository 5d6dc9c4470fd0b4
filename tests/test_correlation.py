"""The rank statistics behind `correlate` and the benchmark, on hand-made series.

Spearman and Kendall equal scipy's (ties included) and are +-1 on monotone data, and so do the
vectorised statistics each bootstrap resample gets, on resamples with repeats; the paired
bootstrap intervals contain the estimate, are reproducible by seed, widen with the confidence level
and count constant resamples as zero without warnings; precision@k, regret, ties (to the smaller id)
and the default top k on hand cases; series are aligned on their common ids; too few ids, a top k
out of range, duplicate ids and constant scores are errors; the printed table, the metrics and the
two-panel plot.
"""
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from scipy import stats

from nas_cntk.errors import NasCntkError
from nas_cntk.trained.correlation import Correlation, _statistics, correlate, correlation_figure, format_correlation

IDS = list("abcdef")
# a tie in each column (b/c in the kernel, a/f in the trained accuracies)
KERNEL = pd.Series([0.61, 0.55, 0.55, 0.70, 0.48, 0.66], index=IDS)
TRAINED = pd.Series([91.0, 89.5, 90.2, 93.1, 88.0, 91.0], index=IDS)


def test_the_resamples_statistics_equal_scipys_row_by_row():
    rng = np.random.default_rng(0)
    draws = rng.integers(0, 12, (40, 12))  # resamples repeat architectures, as the bootstrap's do
    kernel, trained = np.round(rng.normal(size=12), 1)[draws], rng.integers(0, 5, 12)[draws].astype(float)
    kernel[0] = 1.0  # a constant resample counts as 0
    rho, tau, precision = _statistics(kernel, trained, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        expected = np.nan_to_num([[stats.spearmanr(a, b).statistic, stats.kendalltau(a, b).statistic]
                                  for a, b in zip(kernel, trained)])
    assert rho == pytest.approx(expected[:, 0], abs=1e-12) and tau == pytest.approx(expected[:, 1], abs=1e-12)
    assert rho[0] == tau[0] == 0 and np.count_nonzero(tau) > 30
    order = [(np.argsort(-a, kind="stable")[:3], np.argsort(-b, kind="stable")[:3]) for a, b in zip(kernel, trained)]
    assert list(precision) == [len(np.intersect1d(a, b)) / 3 for a, b in order]


def noisy(n: int = 30, seed: int = 1) -> tuple[pd.Series, pd.Series]:
    rng = np.random.default_rng(seed)
    ids = [f"arch{i:02d}" for i in range(n)]
    kernel = rng.normal(size=n)
    return pd.Series(kernel, index=ids), pd.Series(kernel + rng.normal(size=n), index=ids)


def test_point_estimates_are_scipys_on_a_table_with_ties():
    result = correlate(KERNEL, TRAINED, resamples=200)
    assert result.n == 6
    assert result.spearman.value == pytest.approx(stats.spearmanr(KERNEL, TRAINED).statistic)
    assert result.kendall.value == pytest.approx(stats.kendalltau(KERNEL, TRAINED).statistic)
    assert result.kernel_pick == result.trained_best == "d"
    assert result.regret == 0.0


@pytest.mark.parametrize("sign", [1, -1])
def test_monotone_and_reversed_give_plus_or_minus_one(sign):
    kernel = pd.Series(np.arange(8.0), index=list("abcdefgh"))
    result = correlate(kernel, sign * 10 * kernel + 50, resamples=200)
    assert result.spearman.value == pytest.approx(sign)
    assert result.kendall.value == pytest.approx(sign)


def test_bootstrap_interval_is_sound_and_reproducible():
    kernel, trained = noisy()
    result = correlate(kernel, trained, resamples=500, seed=3)
    for estimate in (result.spearman, result.kendall, result.precision_at_k):
        assert -1 <= estimate.low <= estimate.value <= estimate.high <= 1
    assert result.spearman.low > 0  # clearly correlated, so the interval excludes 0
    assert result.spearman.high - result.spearman.low > 0.05  # 30 noisy points leave real uncertainty
    assert correlate(kernel, trained, resamples=500, seed=3) == result
    assert correlate(kernel, trained, resamples=500, seed=4).spearman != result.spearman


def test_wider_confidence_gives_a_wider_interval():
    kernel, trained = noisy()
    narrow = correlate(kernel, trained, confidence=0.8, resamples=500)
    wide = correlate(kernel, trained, confidence=0.99, resamples=500)
    for name in ("spearman", "kendall", "precision_at_k"):
        n, w = getattr(narrow, name), getattr(wide, name)
        assert w.low <= n.low and w.high >= n.high
    assert wide.spearman.high - wide.spearman.low > narrow.spearman.high - narrow.spearman.low


def test_constant_resamples_count_as_zero_without_warnings():
    # with n=3 about 1 resample in 9 draws one architecture thrice: constant input to Spearman and Kendall
    kernel = pd.Series([1.0, 2.0, 3.0], index=list("abc"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = correlate(kernel, kernel * 10, resamples=500)
    for estimate in (result.spearman, result.kendall, result.precision_at_k):
        assert all(math.isfinite(v) for v in (estimate.value, estimate.low, estimate.high))
    # every other resample of monotone data agrees perfectly, so the lower end is those zeros
    assert (result.spearman.low, result.spearman.value, result.spearman.high) == (0.0, 1.0, 1.0)
    assert (result.kendall.low, result.kendall.high) == (0.0, 1.0)


def hand_case() -> tuple[pd.Series, pd.Series]:
    """Kernel top-3 is a, b, c; trained top-3 is b, a, d; the kernel picks a, 2.5 below the best trained b."""
    ids = list("abcdefghij")
    kernel = pd.Series([10, 9, 8, 7, 6, 5, 4, 3, 2, 1], index=ids, dtype=float)
    trained = pd.Series([92.5, 95.0, 80.0, 91.0, 85.0, 84.0, 83.0, 82.0, 81.0, 79.0], index=ids)
    return kernel, trained


def test_precision_at_k_and_regret_on_a_hand_case():
    result = correlate(*hand_case(), top_k=3, resamples=200)
    assert result.precision_at_k.value == pytest.approx(2 / 3)
    assert result.regret == pytest.approx(2.5)
    assert (result.kernel_pick, result.trained_best) == ("a", "b")
    assert correlate(*hand_case(), top_k=1, resamples=200).precision_at_k.value == 0.0
    assert correlate(*hand_case(), top_k=10, resamples=200).precision_at_k.value == 1.0


def test_ties_go_to_the_smaller_id():
    kernel = pd.Series([1.0, 3.0, 3.0, 2.0], index=["a", "z", "m", "b"])
    trained = pd.Series([1.0, 2.0, 5.0, 5.0], index=["a", "z", "m", "b"])
    result = correlate(kernel, trained, top_k=1, resamples=200)
    assert (result.kernel_pick, result.trained_best) == ("m", "b")
    assert result.regret == 0.0  # m is tied for the best trained accuracy
    assert result.precision_at_k.value == 0.0


def test_default_top_k_is_a_tenth_but_at_least_one():
    assert correlate(*noisy(25), resamples=100).top_k == 2
    assert correlate(KERNEL, TRAINED, resamples=100).top_k == 1


def test_series_are_aligned_on_their_common_ids():
    kernel, trained = hand_case()
    shuffled = kernel.sample(frac=1, random_state=0)
    extra_kernel = pd.concat([shuffled, pd.Series({"only_kernel": 99.0, "nan_trained": 50.0})])
    extra_trained = pd.concat([trained.iloc[::-1], pd.Series({"only_trained": 99.0, "nan_trained": np.nan})])
    aligned = correlate(kernel, trained, top_k=3, resamples=500)
    assert correlate(extra_kernel, extra_trained, top_k=3, resamples=500) == aligned


def test_too_few_common_ids_is_an_error_naming_the_count():
    kernel = pd.Series([1.0, 2.0, 3.0], index=list("abc"))
    trained = pd.Series([1.0, 2.0, np.nan, 4.0], index=list("abcx"))
    with pytest.raises(NasCntkError, match="only 2 architectures.*at least 3"):
        correlate(kernel, trained)


@pytest.mark.parametrize("top_k", [0, 7])
def test_top_k_outside_one_to_n_is_an_error(top_k):
    with pytest.raises(NasCntkError, match=rf"top_k={top_k} is outside 1\.\.6"):
        correlate(KERNEL, TRAINED, top_k=top_k)


def test_duplicate_ids_are_an_error():
    with pytest.raises(NasCntkError, match=r"duplicate architecture ids: \['b'\]"):
        correlate(pd.concat([KERNEL, KERNEL[["b"]]]), TRAINED)


def test_constant_scores_are_an_error():
    with pytest.raises(NasCntkError, match="all trained scores are equal"):
        correlate(KERNEL, pd.Series(90.0, index=IDS))


def test_table_and_metrics():
    result = correlate(*hand_case(), top_k=3, resamples=200)
    text = format_correlation(result)
    lines = text.splitlines()
    assert "95% bootstrap interval" in lines[0]
    assert len(lines) == 1 + len(result.rows())
    assert len({line.index(value) for line, (_, value) in zip(lines[1:], result.rows())}) == 1  # one value column
    assert "precision@3" in text and "kernel picks a; best trained is b" in text
    assert f"{result.spearman.value:.3f}  [{result.spearman.low:.3f}, {result.spearman.high:.3f}]" in text
    metrics = result.to_dict()
    assert metrics["spearman"] == result.spearman.value and metrics["kendall_low"] == result.kendall.low
    assert metrics["precision_at_k_high"] == result.precision_at_k.high
    assert metrics["regret"] == pytest.approx(2.5) and metrics["n"] == 10
    assert all(isinstance(v, float) for v in metrics.values())


def test_figure_has_two_panels_and_saves_as_png(tmp_path):
    kernel, trained = hand_case()
    result: Correlation = correlate(kernel, trained, top_k=3, resamples=200)
    figure = correlation_figure(kernel, trained, result)
    assert len(figure.axes) == 2
    assert "ρ" in figure.get_suptitle() and "τ" in figure.get_suptitle()
    path = tmp_path / "correlation.png"
    figure.savefig(path)
    scores, ranks = figure.axes
    for ticks in (ranks.get_xticks(), ranks.get_yticks()):
        assert all(float(t).is_integer() for t in ticks)  # ranks have whole-number ticks
    # The picks are named in a legend drawn inside the scores panel.
    legend = scores.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [f"kernel pick: {result.kernel_pick}",
                                                          f"best trained: {result.trained_best}"]
    renderer = FigureCanvasAgg(figure).get_renderer()
    box, panel = legend.get_window_extent(renderer), scores.get_window_extent(renderer)
    assert panel.x0 <= box.x0 and box.x1 <= panel.x1 and panel.y0 <= box.y0 and box.y1 <= panel.y1
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
