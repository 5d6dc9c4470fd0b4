"""Score an architecture: kernel ridge regression with its exact NNGP and NTK.

As in Arora et al. (2019): one-hot targets of 0.9 for the true class and -0.1 elsewhere,
prediction ``argmax K_eval,train (K_train + ridge I)^-1 Y``. The ridge is chosen on the training
subset alone, by closed-form leave-one-out over a grid scaled by the kernel's mean diagonal, so
the evaluation labels never influence the score.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from nas_cntk import checks
from nas_cntk.data import DataSplits, load_splits
from nas_cntk.description.architecture import Architecture, load
from nas_cntk.errors import KernelError
from nas_cntk.kernels import kernel, plan

RELATIVE_RIDGES = (0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


@dataclass(frozen=True)
class RegressionResult:
    accuracy: float        # on the evaluation subset
    ridge: float           # chosen regulariser (absolute)
    relative_ridge: float  # the same, as a fraction of the kernel's mean diagonal
    loo_accuracy: float    # leave-one-out accuracy on the training subset at that ridge


def targets(labels: np.ndarray, classes: int = 10) -> np.ndarray:
    y = np.full((len(labels), classes), -0.1)
    y[np.arange(len(labels)), labels] = 0.9
    return y


def kernel_regression(k_train: np.ndarray, y_train: np.ndarray, k_eval: np.ndarray, y_eval: np.ndarray,
                      relative_ridges: tuple[float, ...] = RELATIVE_RIDGES) -> RegressionResult:
    """Fit on ``k_train`` (n x n), choose the ridge by leave-one-out, report accuracy on ``k_eval`` (m x n)."""
    k_train, k_eval = np.asarray(k_train, np.float64), np.asarray(k_eval, np.float64)
    y = targets(y_train)
    if not k_train.any():
        # A network whose output ignores its input (a NAS-Bench-201 cell cut off from its input):
        # the kernel is zero and so is every prediction; argmax then picks class 0 for every image.
        zero = np.zeros(len(y_eval), dtype=int)
        return RegressionResult(float(np.mean(zero == y_eval)), 0.0, 0.0, float(np.mean(y_train == 0)))
    # One eigendecomposition serves every ridge: (K + r I)^-1 = U diag(1 / (e + r)) U^T.
    eigenvalues, u = np.linalg.eigh(k_train)
    uy = u.T @ y
    scale = float(np.mean(np.diag(k_train)))
    best = None
    for relative in relative_ridges:
        ridge = relative * scale
        shifted = eigenvalues + ridge
        if shifted.min() <= 1e-10 * eigenvalues.max():  # singular: leave-one-out undefined
            continue
        alpha = u @ (uy / shifted[:, None])
        inverse_diagonal = (u**2) @ (1 / shifted)
        loo_prediction = y - alpha / inverse_diagonal[:, None]  # closed-form leave-one-out
        loo_accuracy = float(np.mean(loo_prediction.argmax(1) == y_train))
        loo_error = float(np.mean((loo_prediction - y) ** 2))
        if best is None or (loo_accuracy, -loo_error) > (best[0], -best[1]):
            best = loo_accuracy, loo_error, relative, ridge, alpha
    if best is None:
        raise KernelError("the training kernel is singular at every ridge of the grid: the network cannot tell "
                          "the training images apart")
    loo_accuracy, _, relative, ridge, alpha = best
    accuracy = float(np.mean((k_eval @ alpha).argmax(1) == y_eval))
    return RegressionResult(accuracy, ridge, relative, loo_accuracy)


@dataclass(frozen=True)
class Score:
    """The score of one architecture on one data setting."""

    arch_hash: str
    ntk: RegressionResult   # CNTK kernel regression: the score the search maximises
    nngp: RegressionResult
    seconds: float          # kernel computation, wall clock
    pairs: int              # image pairs computed
    device: str

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / self.seconds

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Score:
        return cls(**{**values, "ntk": RegressionResult(**values["ntk"]), "nngp": RegressionResult(**values["nngp"])})


def score(arch: Architecture, data: DataSplits, *, dtype: torch.dtype = torch.float32,
          device: torch.device | str | None = None, progress: bool | None = None,
          save_kernels: str | Path | None = None) -> Score:
    """Score ``arch`` on ``data`` (on the GPU when there is one).

    ``save_kernels`` writes the kernel matrices to an ``.npz`` file as soon as they exist, so they
    survive anything that goes wrong afterwards.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    start = time.perf_counter()
    train = kernel(arch, data.x_train, dtype=dtype, device=device, progress=progress)
    evaluation = kernel(arch, data.x_eval, data.x_train, dtype=dtype, device=device, progress=progress)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    n, m = len(data.x_train), len(data.x_eval)
    y_train, y_eval = data.y_train.numpy(), data.y_eval.numpy()
    if save_kernels is not None:
        np.savez_compressed(save_kernels, architecture=arch.to_json(), eval_split=data.eval_split,
                            train_indices=data.train_indices, eval_indices=data.eval_indices,
                            y_train=y_train, y_eval=y_eval,
                            **{f"{part}_{name}": getattr(k, name).cpu().numpy()
                               for part, k in (("train", train), ("eval", evaluation)) for name in ("nngp", "ntk")})
    results = {name: kernel_regression(getattr(train, name).cpu().numpy(), y_train,
                                       getattr(evaluation, name).cpu().numpy(), y_eval)
               for name in ("ntk", "nngp")}
    return Score(arch.hash, results["ntk"], results["nngp"], seconds, n * (n + 1) // 2 + m * n, str(device))


def run_score(arch_source: str | Path, eval_split: Literal["val", "test"], *, train_size: int, eval_size: int,
              seed: int, resolution: int, zca: bool, data_dir: str | None, dtype: torch.dtype,
              device: str | None, save_kernels: str | Path | None = None) -> tuple[Architecture, DataSplits, Score]:
    """Score one described architecture on fresh stratified subsets (``nas-cntk score`` and ``evaluate``)."""
    checks.device(device)
    arch = load(arch_source)
    plan(arch, resolution, resolution)  # a bad architecture fails before any data is read
    splits = load_splits(train_size, eval_size, eval_split=eval_split, seed=seed, resolution=resolution, zca=zca,
                         data_dir=data_dir)
    return arch, splits, score(arch, splits, dtype=dtype, device=device, save_kernels=save_kernels)
