"""Multi-fidelity scoring: an architecture scored on nested subsets of one data setting, rung by rung,
each rung computing only the kernel rows of the images the rung below lacked.

The top rung is the data setting itself. Rung k takes the first ``train_sizes[k] // 10`` of each
class's training images and the first ``val_size(k) // 10`` of each class's validation images, in one
seeded order of the top rung's, preprocessed as the top rung is (with its statistics). So each rung's
images hold the one below's, and a rung's kernel is a block of the next one's. A rung's kernel time and
pairs count only its new rows.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nas_cntk import checks
from nas_cntk.data import CLASSES, DataSettings, DataSplits
from nas_cntk.description.architecture import Architecture
from nas_cntk.errors import NasCntkError
from nas_cntk.kernels import kernel
from nas_cntk.scoring.regression import Score, kernels_score


def check_rungs(train_sizes: tuple[int, ...], train_size: int, option: str = "--rungs") -> tuple[int, ...]:
    """Ascending training sizes, each a whole number of images per class, the last the data's own."""
    sizes = tuple(train_sizes)
    if not sizes:
        raise NasCntkError(f"{option}: expected one training size or more, got none")
    for n in sizes:
        checks.multiple(n, option, CLASSES, why=" (whole images per class)")
    if any(a >= b for a, b in zip(sizes, sizes[1:])):
        raise NasCntkError(f"{option}: expected ascending training sizes, got {list(sizes)}")
    if sizes[-1] != train_size:
        raise NasCntkError(f"{option}: the last rung is the search's data, {train_size} training images; got "
                           f"{sizes[-1]}")
    return sizes


@dataclass(frozen=True)
class Rungs:
    data: DataSettings            # the top rung
    train_sizes: tuple[int, ...]  # ascending; the last is data.train_size

    def __post_init__(self) -> None:
        check_rungs(self.train_sizes, self.data.train_size)

    def __len__(self) -> int:
        return len(self.train_sizes)

    def val_size(self, k: int) -> int:
        """The top rung's validation share: in proportion to the training images, whole images per class."""
        share = self.data.val_size * self.train_sizes[k] / self.data.train_size
        return max(CLASSES, CLASSES * round(share / CLASSES))

    @property
    def label(self) -> str:
        """E.g. ``t200-v100-r8-s0-rungs50-100-200``: the rungs' scores and kernels are kept under it."""
        return f"{self.data.label}-rungs{'-'.join(map(str, self.train_sizes))}"

    def rung_label(self, k: int) -> str:
        return f"{self.label}/rung{k}"

    def positions(self, k: int, splits: DataSplits) -> np.ndarray:
        """Rung k's images among the top rung's training images then validation images."""
        def first(labels: np.ndarray, per_class: int, stream: int) -> np.ndarray:
            rng = np.random.default_rng([self.data.seed, stream])
            return np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class]
                                           for c in range(CLASSES)]))

        train = first(splits.y_train.numpy(), self.train_sizes[k] // CLASSES, 4)
        val = first(splits.y_eval.numpy(), self.val_size(k) // CLASSES, 5)
        return np.concatenate([train, len(splits.y_train) + val])


class RungScorer:
    """Scores one architecture at each rung in turn, keeping the kernel rows computed so far.

    With ``store``, the rows are also kept in that ``.npz`` file (written whole, atomically, after each
    rung) and read back first, so a trial that is run again after a kill computes no row twice.
    """

    def __init__(self, arch: Architecture, splits: DataSplits, rungs: Rungs, device: str | torch.device,
                 store: Path | None = None):
        self.arch, self.splits, self.rungs, self.device, self.store = arch, splits, rungs, device, store
        self.x = torch.cat([splits.x_train, splits.x_eval])
        self.labels = torch.cat([splits.y_train, splits.y_eval]).numpy()
        n = len(self.x)
        self.ntk, self.nngp, self.known = np.zeros((n, n)), np.zeros((n, n)), np.zeros(n, dtype=bool)
        if store is not None and store.exists():
            with np.load(store) as kept:
                self.ntk, self.nngp, self.known = kept["ntk"], kept["nngp"], kept["known"]

    def score(self, k: int) -> Score:
        positions = self.rungs.positions(k, self.splits)
        new, old = positions[~self.known[positions]], positions[self.known[positions]]
        start = time.perf_counter()
        if len(new):
            blocks = [(new, new, kernel(self.arch, self.x[new], device=self.device, progress=False))]
            if len(old):
                blocks.append((new, old, kernel(self.arch, self.x[new], self.x[old], device=self.device,
                                                progress=False)))
            if torch.device(self.device).type == "cuda":
                torch.cuda.synchronize(self.device)
            for rows, columns, k_block in blocks:
                for matrix, block in ((self.ntk, k_block.ntk), (self.nngp, k_block.nngp)):
                    block = block.cpu().double().numpy()
                    matrix[np.ix_(rows, columns)] = block
                    matrix[np.ix_(columns, rows)] = block.T
            self.known[new] = True
            self._keep()
        seconds = time.perf_counter() - start
        n_train = int(np.sum(positions < len(self.splits.y_train)))
        block = np.ix_(positions, positions)
        return kernels_score(self.arch.hash, self.ntk[block], self.nngp[block], self.labels[positions], n_train,
                             seconds, len(new) * len(old) + len(new) * (len(new) + 1) // 2, str(self.device))

    def _keep(self) -> None:
        if self.store is None:
            return
        self.store.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.store.parent, suffix=".tmp.npz", delete=False) as file:
            np.savez(file, ntk=self.ntk, nngp=self.nngp, known=self.known)
        os.replace(file.name, self.store)
