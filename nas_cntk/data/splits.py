"""The data a score or a trained network sees: subsets drawn and preprocessed, and the settings naming them."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from nas_cntk.data.batches import TEST_IMAGES, load_cifar10
from nas_cntk.data.preprocessing import check_resolution, preprocess
from nas_cntk.data.subsets import check_size, stratified_indices, validation_split
from nas_cntk.errors import DataError

if TYPE_CHECKING:  # torch is imported where tensors are made: the CLI starts without it
    import torch


@dataclass(frozen=True, eq=False)  # eq=False: tensors and arrays have no single truth value to compare by
class DataSplits:
    """Preprocessed training and evaluation subsets, and where in CIFAR-10 they came from."""

    x_train: torch.Tensor       # (n, 3, H, W) float32
    y_train: torch.Tensor       # (n,) int64
    x_eval: torch.Tensor        # (m, 3, H, W) float32
    y_eval: torch.Tensor        # (m,) int64
    train_indices: np.ndarray   # into the CIFAR-10 training split
    eval_indices: np.ndarray    # into the training split ("val") or the test split ("test")
    eval_split: str             # "val" or "test"


def load_splits(train_size: int = 2000, eval_size: int = 1000, *, eval_split: Literal["val", "test"] = "val",
                seed: int = 0, resolution: int = 32, zca: bool = False,
                data_dir: str | Path | None = None) -> DataSplits:
    """Stratified training and evaluation subsets of CIFAR-10, preprocessed for kernel regression.

    The training subset comes from the training split. The evaluation subset is a disjoint subset
    of the training split (``"val"``, for architecture search) or of the test split (``"test"``;
    10000 is the whole of it). Images are scaled to [0, 1], average-pooled to ``resolution``
    (a cheaper, lower-fidelity score), standardised per channel with the training subset's mean and
    std, and optionally ZCA-whitened with a transform fitted on the training subset.
    """
    import torch

    if eval_split not in ("val", "test"):
        raise DataError(f"unknown evaluation split {eval_split!r}; use 'val' or 'test'")
    check_resolution(resolution)
    check_size(train_size, "training size")  # before reading 180 MB of files
    check_size(eval_size, "evaluation size")

    train_images, train_labels = load_cifar10("train", data_dir)
    if eval_split == "val":
        train_indices, eval_indices = validation_split(train_labels, train_size, eval_size, seed)
        eval_images, eval_labels = train_images, train_labels
    else:
        train_indices = stratified_indices(train_labels, train_size, seed)
        eval_images, eval_labels = load_cifar10("test", data_dir)
        eval_indices = stratified_indices(eval_labels, eval_size, [seed, 1])
    x_train, x_eval = preprocess(train_images[train_indices], eval_images[eval_indices], resolution, zca)
    return DataSplits(x_train=x_train, y_train=torch.from_numpy(train_labels[train_indices]),
                      x_eval=x_eval, y_eval=torch.from_numpy(eval_labels[eval_indices]),
                      train_indices=train_indices, eval_indices=eval_indices, eval_split=eval_split)


@dataclass(frozen=True)
class DataSettings:
    """What a score depends on besides the architecture: the subsets and their preprocessing."""

    train_size: int = 2000
    val_size: int = 1000
    resolution: int = 32
    seed: int = 0
    zca: bool = False

    def __post_init__(self) -> None:
        """Settings that name no valid subsets are refused here, before any file is read or store created."""
        check_size(self.train_size, "training size")
        check_size(self.val_size, "validation size")
        check_resolution(self.resolution)

    @property
    def label(self) -> str:
        """A short name, e.g. ``t2000-v1000-r32-s0``: scores are comparable only under one label."""
        return (f"t{self.train_size}-v{self.val_size}-r{self.resolution}-s{self.seed}"
                f"{'-zca' if self.zca else ''}")

    def load(self, data_dir: str | Path | None = None) -> DataSplits:
        """The training subset and a disjoint validation subset, both from the CIFAR-10 training split."""
        return load_splits(self.train_size, self.val_size, eval_split="val", seed=self.seed,
                           resolution=self.resolution, zca=self.zca, data_dir=data_dir)

    @classmethod
    def from_label(cls, label: str) -> DataSettings:
        """The settings a :attr:`label` names (a study records its data setting by label)."""
        match = re.fullmatch(r"t(\d+)-v(\d+)-r(\d+)-s(-?\d+)(-zca)?", label)
        if match is None:
            raise DataError(f"data label {label!r} is not of the form t2000-v1000-r32-s0[-zca]")
        return cls(*map(int, match.groups()[:4]), zca=match[5] is not None)


def load_training_data(held_out: DataSettings, train_size: int | None = None, test_size: int = TEST_IMAGES, *,
                       resolution: int = 32, seed: int = 0, data_dir: str | Path | None = None) -> DataSplits:
    """Data to train finite networks on: the CIFAR-10 training split without a search's validation images.

    ``train_size`` stratified images (all that remain when None) from the training split minus the
    validation subset of ``held_out``, and ``test_size`` stratified images of the test split (10000:
    all of it); standardised per channel with the training images' statistics.
    """
    import torch

    check_resolution(resolution)
    if train_size is not None:
        check_size(train_size, "training size")
    check_size(test_size, "test size")
    train_images, train_labels = load_cifar10("train", data_dir)
    _, val_indices = validation_split(train_labels, held_out.train_size, held_out.val_size, held_out.seed)
    if train_size is None:
        train_indices = np.setdiff1d(np.arange(len(train_labels)), val_indices)
    else:
        train_indices = stratified_indices(train_labels, train_size, [seed, 2], exclude=val_indices)
    test_images, test_labels = load_cifar10("test", data_dir)
    test_indices = stratified_indices(test_labels, test_size, [seed, 3])  # 10000: all of them
    x_train, x_test = preprocess(train_images[train_indices], test_images[test_indices], resolution)
    return DataSplits(x_train=x_train, y_train=torch.from_numpy(train_labels[train_indices]),
                      x_eval=x_test, y_eval=torch.from_numpy(test_labels[test_indices]),
                      train_indices=train_indices, eval_indices=test_indices, eval_split="test")
