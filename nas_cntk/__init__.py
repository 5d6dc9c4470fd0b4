"""nas-cntk: neural architecture search scored by exact CNTK kernel regression.

Layers, each importing only those before it (each package's docstring says what it may import):

    data          CIFAR-10: files, download, stratified subsets, preprocessing
    description   what a network is: ops (finite module and kernel rule side by side), grid, architecture
    kernels       the exact NNGP and NTK: plan, the plain path, fused backends, batching
    scoring       kernel ridge regression: the score of one architecture
    search        search spaces, the Optuna study, score cache, MLflow tracking, leaderboard, export
    trained       checks against trained networks: training, results, correlation, NAS-Bench-201 benchmark
    cli           the ``nas-cntk`` command line

``errors`` (every exception type), ``checks`` (shared validators) and ``lazy`` (public names imported
on first use) serve all layers.

The names below are imported on first use, so that importing any part (the CLI, to print its help)
does not load torch.
"""
from nas_cntk.errors import ArchitectureError, DataError, KernelError, NasCntkError
from nas_cntk.lazy import LazyNames

_public = LazyNames(__name__, {
    "Architecture": "description", "load": "description", "parse": "description",
    "Kernels": "kernels", "kernel": "kernels",
})
__getattr__ = _public
__all__ = ["ArchitectureError", "DataError", "KernelError", "NasCntkError", *_public.names]
