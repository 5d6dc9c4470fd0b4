"""nas-cntk: neural architecture search scored by exact CNTK kernel regression.

Layers, each importing only those before it (each package's docstring says what it may import):

    data          CIFAR-10: files, download, stratified subsets, preprocessing
    description   what a network is: ops (finite module and kernel rule side by side), grid, architecture
    kernels       the exact NNGP and NTK: plan, the plain path, fused backends, batching
    scoring       kernel ridge regression: the score of one architecture
    search        search spaces, the Optuna study, score cache, MLflow tracking, leaderboard, export
    trained       checks against trained networks: training, results, correlation, NAS-Bench-201 benchmark
    cli           the ``nas-cntk`` command line

``errors`` (every exception type) and ``checks`` (shared validators) serve all layers.

The names below are imported on first use, so that importing any part (the CLI, to print its help)
does not load torch.
"""
import importlib

from nas_cntk.errors import ArchitectureError, DataError, KernelError, NasCntkError

_LAZY = {"Architecture": "nas_cntk.description", "load": "nas_cntk.description", "parse": "nas_cntk.description",
         "Kernels": "nas_cntk.kernels", "kernel": "nas_cntk.kernels"}

__all__ = ["Architecture", "ArchitectureError", "DataError", "KernelError", "Kernels", "NasCntkError", "kernel",
           "load", "parse"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nas_cntk' has no attribute {name!r}")
