"""Scoring: what an architecture's exact NNGP and NTK on CIFAR-10 subsets say about it.

``measures`` names the scores and which way is better (light: the command line reads it before
anything heavy is imported); ``regression`` computes them all from one kernel: kernel regression's
validation accuracy, leave-one-out over all scored images, alignment, conditioning; ``rungs`` scores
an architecture on nested subsets in turn (multi-fidelity search), each rung computing only its new
kernel rows. The names
below are the package's public face, each imported from its module on first use.

May import: :mod:`nas_cntk.kernels`, :mod:`nas_cntk.description`, :mod:`nas_cntk.data`,
:mod:`nas_cntk.errors`, :mod:`nas_cntk.checks`, :mod:`nas_cntk.lazy`.
"""
from nas_cntk.lazy import LazyNames

_public = LazyNames(__name__, {
    "DEFAULT_OBJECTIVE": "measures", "MEASURES": "measures", "SCORE_NAMES": "measures", "oriented": "measures",
    "KernelScores": "regression", "Regression": "regression", "Score": "regression",
    "kernel_regression": "regression", "kernel_scores": "regression", "kernels_score": "regression",
    "run_score": "regression", "score": "regression",
    "Rungs": "rungs", "RungScorer": "rungs",
})
__getattr__, __all__ = _public, _public.names
