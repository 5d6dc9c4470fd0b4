"""Score an architecture: kernel regression with its exact NNGP and NTK, and what else the kernel tells.

One symmetric kernel over all scored images (the training subset, then the evaluation subset)
gives every score of :data:`nas_cntk.scoring.measures.MEASURES`, for the NTK and the NNGP alike,
so no score costs kernel time of its own:

- As in Arora et al. (2019): one-hot targets of 0.9 for the true class and -0.1 elsewhere,
  prediction ``K_eval,train (K_train + ridge I)^-1 Y``, the ridge chosen on the training subset
  alone, by closed-form leave-one-out over a grid scaled by the kernel's mean diagonal, so the
  evaluation labels never influence it. Its accuracy and squared error on the evaluation subset.
- Closed-form leave-one-out over all scored images: every image predicted by a fit on all the
  others, at the ridge with the least leave-one-out squared error. Many more predictions than the
  evaluation subset alone gives, so much less noise.
- The centred kernel-target alignment (Cortes et al., 2012) and the kernel's condition number
  (TE-NAS's trainability measure), over all scored images: properties of the kernel, not predictions.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from nas_cntk import checks
from nas_cntk.data import CLASSES, DataSplits, load_splits
from nas_cntk.description.architecture import Architecture, load
from nas_cntk.errors import KernelError
from nas_cntk.kernels import kernel, plan
from nas_cntk.scoring.measures import KERNELS, MEASURES

RELATIVE_RIDGES = (0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
MAX_LOG_CONDITION = 12.0  # a kernel this ill-conditioned (or singular) counts as singular
# A ridged kernel whose smallest eigenvalue is below this fraction of its largest is singular in float64
# for the fit: that ridge of the grid is skipped.
SINGULAR_EIGENVALUE_RATIO = 1e-10
# Arora et al.'s one-hot targets: the true class's, and every other class's.
TRUE_CLASS_TARGET, OTHER_CLASS_TARGET = 0.9, -0.1


@dataclass(frozen=True)
class Regression:
    """Kernel regression fitted on the training subset, evaluated on the evaluation subset."""

    accuracy: float        # on the evaluation subset
    sq_error: float        # mean over its images of the squared error summed over the targets
    ridge: float           # chosen regulariser (absolute)
    relative_ridge: float  # the same, as a fraction of the kernel's mean diagonal
    loo_accuracy: float    # leave-one-out accuracy on the training subset at that ridge


@dataclass(frozen=True)
class KernelScores:
    """Every score of one kernel (the NTK or the NNGP) on one data setting; see :data:`MEASURES`."""

    val_accuracy: float
    val_sq_error: float
    loo_accuracy: float
    loo_sq_error: float
    alignment: float
    log_condition: float
    ridge: float               # of the evaluation prediction (absolute)
    relative_ridge: float      # the same, as a fraction of the training kernel's mean diagonal
    train_loo_accuracy: float  # leave-one-out accuracy on the training subset at that ridge
    loo_relative_ridge: float  # of the leave-one-out over all images


def targets(labels: np.ndarray, classes: int = CLASSES) -> np.ndarray:
    y = np.full((len(labels), classes), OTHER_CLASS_TARGET)
    y[np.arange(len(labels)), labels] = TRUE_CLASS_TARGET
    return y


@dataclass(frozen=True)
class _Fit:
    relative_ridge: float
    alpha: np.ndarray     # dual coefficients
    accuracy: float       # leave-one-out
    sq_error: float       # leave-one-out


def _fits(k: np.ndarray, labels: np.ndarray, relative_ridges: tuple[float, ...], what: str) -> list[_Fit]:
    """The closed-form leave-one-out fit at each ridge of the grid (scaled by the mean diagonal) where
    ``k`` + ridge is not singular; one eigendecomposition serves them all."""
    y = targets(labels)
    eigenvalues, u = np.linalg.eigh(k)
    uy = u.T @ y
    scale = float(np.mean(np.diag(k)))
    fits = []
    for relative in relative_ridges:
        shifted = eigenvalues + relative * scale
        if shifted.min() <= SINGULAR_EIGENVALUE_RATIO * eigenvalues.max():
            continue
        alpha = u @ (uy / shifted[:, None])
        prediction = y - alpha / ((u**2) @ (1 / shifted))[:, None]  # (K + r I)^-1 Y without each image's own term
        fits.append(_Fit(relative, alpha, float(np.mean(prediction.argmax(1) == labels)),
                         float(np.mean(np.sum((prediction - y) ** 2, 1)))))
    if not fits:
        raise KernelError(f"the {what} kernel is singular at every ridge of the grid: the network cannot tell the "
                          "images apart")
    return fits


def kernel_regression(k_train: np.ndarray, y_train: np.ndarray, k_eval: np.ndarray, y_eval: np.ndarray,
                      relative_ridges: tuple[float, ...] = RELATIVE_RIDGES) -> Regression:
    """Fit on ``k_train`` (n x n), choose the ridge by leave-one-out, report accuracy on ``k_eval`` (m x n)."""
    k_train, k_eval = np.asarray(k_train, np.float64), np.asarray(k_eval, np.float64)
    y_true = targets(y_eval)
    if not k_train.any():
        # A network whose output ignores its input (a NAS-Bench-201 cell cut off from its input):
        # the kernel is zero and so is every prediction; argmax then picks class 0 for every image.
        return Regression(float(np.mean(y_eval == 0)), float(np.mean(np.sum(y_true**2, 1))), 0.0, 0.0,
                          float(np.mean(y_train == 0)))
    best = max(_fits(k_train, y_train, relative_ridges, "training"), key=lambda f: (f.accuracy, -f.sq_error))
    prediction = k_eval @ best.alpha
    return Regression(float(np.mean(prediction.argmax(1) == y_eval)),
                      float(np.mean(np.sum((prediction - y_true) ** 2, 1))),
                      best.relative_ridge * float(np.mean(np.diag(k_train))), best.relative_ridge, best.accuracy)


def leave_one_out(k: np.ndarray, labels: np.ndarray,
                  relative_ridges: tuple[float, ...] = RELATIVE_RIDGES) -> tuple[float, float, float]:
    """Leave-one-out over all of ``k``'s images at the ridge with the least squared error: (accuracy,
    squared error, relative ridge). A zero kernel predicts 0, as :func:`kernel_regression` does."""
    if not k.any():
        return float(np.mean(labels == 0)), float(np.mean(np.sum(targets(labels) ** 2, 1))), 0.0
    best = min(_fits(k, labels, relative_ridges, "scored images'"), key=lambda f: f.sq_error)
    return best.accuracy, best.sq_error, best.relative_ridge


def alignment(k: np.ndarray, labels: np.ndarray) -> float:
    """Centred kernel-target alignment <Kc, Yc Yc^T> / (|Kc| |Yc Yc^T|), in [-1, 1]; 0 for a constant kernel."""
    y = targets(labels)
    kc = k - k.mean(0, keepdims=True) - k.mean(1, keepdims=True) + k.mean()
    yc = y - y.mean(0, keepdims=True)
    norm = np.linalg.norm(kc) * np.linalg.norm(yc @ yc.T)
    return float(np.sum((yc.T @ kc) * yc.T) / norm) if norm > 0 else 0.0


def log_condition(k: np.ndarray) -> float:
    """log10 of the condition number, at most :data:`MAX_LOG_CONDITION` (a singular kernel's)."""
    eigenvalues = np.linalg.eigvalsh(k)
    largest = eigenvalues[-1]
    if largest <= 0:
        return MAX_LOG_CONDITION
    return float(min(math.log10(largest / max(eigenvalues[0], largest * 10**-MAX_LOG_CONDITION)), MAX_LOG_CONDITION))


def kernel_scores(k: np.ndarray, labels: np.ndarray, n_train: int) -> KernelScores:
    """Every score of one kernel over all scored images, the first ``n_train`` of them the training subset."""
    k = np.asarray(k, np.float64)
    regression = kernel_regression(k[:n_train, :n_train], labels[:n_train], k[n_train:, :n_train], labels[n_train:])
    loo_accuracy, loo_error, loo_ridge = leave_one_out(k, labels)
    return KernelScores(regression.accuracy, regression.sq_error, loo_accuracy, loo_error, alignment(k, labels),
                        log_condition(k), regression.ridge, regression.relative_ridge, regression.loo_accuracy,
                        loo_ridge)


@dataclass(frozen=True)
class Score:
    """The scores of one architecture on one data setting."""

    arch_hash: str
    ntk: KernelScores   # the CNTK's: cntk_* scores
    nngp: KernelScores  # nngp_* scores
    seconds: float      # kernel computation, wall clock
    pairs: int          # image pairs computed
    device: str

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / self.seconds

    def metrics(self) -> dict[str, float]:
        """Every score by name (:data:`nas_cntk.scoring.measures.SCORE_NAMES`)."""
        return {f"{prefix}_{measure}": getattr(getattr(self, field), measure)
                for prefix, field in KERNELS.items() for measure in MEASURES}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Score:
        return cls(**{**values, "ntk": KernelScores(**values["ntk"]), "nngp": KernelScores(**values["nngp"])})


def score(arch: Architecture, data: DataSplits, *, dtype: torch.dtype = torch.float32,
          device: torch.device | str | None = None, progress: bool | None = None,
          save_kernels: str | Path | None = None) -> Score:
    """Score ``arch`` on ``data`` (on the GPU when there is one): one kernel over the training images,
    then the evaluation images.

    ``save_kernels`` writes the kernel matrices (all images, training first; ``train_size`` says where
    the evaluation images start) to an ``.npz`` file as soon as they exist, so they survive anything
    that goes wrong afterwards.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    start = time.perf_counter()
    k = kernel(arch, torch.cat([data.x_train, data.x_eval]), dtype=dtype, device=device, progress=progress)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    n, m = len(data.x_train), len(data.x_eval)
    labels = torch.cat([data.y_train, data.y_eval]).numpy()
    if save_kernels is not None:
        np.savez_compressed(save_kernels, architecture=arch.to_json(), eval_split=data.eval_split,
                            train_indices=data.train_indices, eval_indices=data.eval_indices, labels=labels,
                            train_size=n, ntk=k.ntk.cpu().numpy(), nngp=k.nngp.cpu().numpy())
    return kernels_score(arch.hash, k.ntk.cpu().numpy(), k.nngp.cpu().numpy(), labels, n, seconds,
                         (n + m) * (n + m + 1) // 2, str(device))


def kernels_score(arch_hash: str, ntk: np.ndarray, nngp: np.ndarray, labels: np.ndarray, n_train: int,
                  seconds: float, pairs: int, device: str) -> Score:
    """The :class:`Score` of kernel matrices over all scored images, the first ``n_train`` the training ones."""
    return Score(arch_hash, kernel_scores(ntk, labels, n_train), kernel_scores(nngp, labels, n_train), seconds,
                 pairs, device)


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
