"""Scoring: kernel ridge regression with an architecture's exact NNGP and NTK on CIFAR-10 subsets.

May import: :mod:`nas_cntk.kernels`, :mod:`nas_cntk.description`, :mod:`nas_cntk.data`,
:mod:`nas_cntk.errors`, :mod:`nas_cntk.checks`.
"""
from nas_cntk.scoring.regression import RegressionResult, Score, kernel_regression, run_score, score

__all__ = ["RegressionResult", "Score", "kernel_regression", "run_score", "score"]
