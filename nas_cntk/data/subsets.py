"""Which images are scored: stratified subsets, deterministic for a seed, and the search's split."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nas_cntk import checks
from nas_cntk.data.batches import CLASSES
from nas_cntk.errors import DataError


def check_size(size: int, what: str) -> None:
    """A subset size that holds equally many images of every class."""
    checks.multiple(size, what, CLASSES, why=" (equally many images of every class), e.g. 2000 or 1000",
                    error=DataError)


def stratified_indices(labels: np.ndarray, size: int, seed: int | Sequence[int],
                       exclude: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of ``size // 10`` images of every class, drawn without replacement.

    Deterministic for ``seed`` (anything ``np.random.default_rng`` accepts); indices in ``exclude``
    are never drawn.
    """
    check_size(size, "subset size")
    per_class = size // CLASSES
    available = np.ones(len(labels), dtype=bool)
    if exclude is not None:
        available[np.asarray(exclude, dtype=np.int64)] = False
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(CLASSES):
        candidates = np.flatnonzero((labels == label) & available)
        if len(candidates) < per_class:
            raise DataError(f"class {label} has only {len(candidates)} images left to draw, but a subset of {size} "
                            f"needs {per_class} of each class; use a smaller subset")
        chosen.append(rng.choice(candidates, per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def validation_split(train_labels: np.ndarray, train_size: int, val_size: int,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The training and validation subsets of the CIFAR-10 training split that a search scores on."""
    train_indices = stratified_indices(train_labels, train_size, seed)
    # The validation subset draws from a stream of its own, so that its size never changes the training subset.
    return train_indices, stratified_indices(train_labels, val_size, [seed, 1], exclude=train_indices)
