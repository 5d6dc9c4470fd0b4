"""How the images are prepared for the kernel: scaled, downsampled, standardised, optionally ZCA-whitened.

Every statistic comes from the training subset alone (Arora et al., 2019), so the evaluation images
are transformed exactly as unseen images would be.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from nas_cntk.data.batches import IMAGE_SIZE
from nas_cntk.errors import DataError

if TYPE_CHECKING:  # torch is imported where tensors are made: the CLI starts without it
    import torch

# ZCA regulariser, as a fraction of the mean eigenvalue of the training covariance: the value used
# in the CNTK / infinite-network literature (Lee et al. 2020, "Finite versus infinite neural
# networks"; neural-tangents' ``zca_reg=0.1``). It keeps the near-zero directions of a small
# subset's covariance from being blown up into noise.
ZCA_REGULARISATION = 0.1


def check_resolution(resolution: int) -> None:
    """A resolution that average pooling reaches from 32x32 in equal blocks."""
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) \
            or resolution < 2 or IMAGE_SIZE % resolution:
        raise DataError(f"resolution {resolution!r} does not divide {IMAGE_SIZE} into equal blocks; "
                        f"use 32, 16, 8, 4 or 2")


def preprocess(train: np.ndarray, other: np.ndarray, resolution: int,
               zca: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale to [0, 1], downsample, standardise per channel (and ZCA) with statistics of ``train`` alone."""
    import torch
    import torch.nn.functional as F

    def prepare(images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(images).to(torch.float64) / 255  # float64 until the end: ZCA needs it
        return F.avg_pool2d(x, IMAGE_SIZE // resolution) if resolution < IMAGE_SIZE else x

    x_train, x_other = prepare(train), prepare(other)
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True, unbiased=False).clamp_min(1e-12)  # a constant channel stays 0
    x_train, x_other = (x_train - mean) / std, (x_other - mean) / std
    if zca:
        x_train, x_other = _zca(x_train, x_other)
    return x_train.float(), x_other.float()


def _zca(train: torch.Tensor, other: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ZCA-whiten both sets with a transform fitted on ``train`` (float64, flattened images)."""
    import torch

    flat_train, flat_other = train.flatten(1), other.flatten(1)
    mean = flat_train.mean(0)
    centred = flat_train - mean
    covariance = centred.T @ centred / len(centred)
    # numpy's eigh: about twice as fast as torch's on CPU for the 3072 x 3072 covariance of 32x32 images.
    eigenvalues, eigenvectors = (torch.from_numpy(a) for a in np.linalg.eigh(covariance.numpy()))
    eigenvalues = eigenvalues.clamp_min(0)  # round-off makes some of a rank-deficient covariance's negative
    eigenvalues = eigenvalues + ZCA_REGULARISATION * eigenvalues.mean()
    whitening = eigenvectors @ torch.diag(eigenvalues.rsqrt()) @ eigenvectors.T
    return (centred @ whitening).view_as(train), ((flat_other - mean) @ whitening).view_as(other)
