"""Reading CIFAR-10's pickled batches safely, and the splits they make.

Pickle can run arbitrary code, so the batches are read with an unpickler that admits only the few
numpy names a batch needs, and what it returns is checked before use: a tampered, truncated or
malformed file is one error naming it.
"""
from __future__ import annotations

import codecs
import functools
import pickle
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nas_cntk.data.files import FOLDER, TEST_FILES, TRAIN_FILES, resolve_data_dir
from nas_cntk.errors import DataError

CLASSES = 10
IMAGE_SIZE = 32
TEST_IMAGES = 10000  # the whole test split


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """What ``_codecs.encode`` does in a protocol-2 pickle written by Python 3, and nothing more."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _numpy_names() -> dict[tuple[str, str], Any]:
    """The globals a pickled numpy array refers to, under their numpy 1 and numpy 2 module names."""
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2 (and 1.26's forward-compatible alias)
    except ImportError:  # pragma: no cover - numpy < 1.26
        from numpy.core import multiarray, numeric
    names: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                         ("_codecs", "encode"): _latin1_encode}
    for package in ("numpy.core", "numpy._core"):
        names[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct  # pickle protocols 0-4
        names[(f"{package}.multiarray", "scalar")] = multiarray.scalar              # numpy scalars
        names[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer          # pickle protocol 5
    return names


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays, lists, dicts and strings, and imports nothing else.

    Every other global (``os.system``, ``builtins.exec``, ...) is refused before it is imported, so
    a tampered batch cannot run code. The objects are returned directly rather than imported by
    name, which also avoids numpy 2's deprecation warning for ``numpy.core``.
    """

    allowed = _numpy_names()

    def __init__(self, file, path: Path) -> None:
        super().__init__(file, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise DataError(f"nas-cntk refuses to load {self.path}: it asks to import {module}.{name}, which a "
                            f"CIFAR-10 batch never does; replace the file with one from the official archive") from None


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 3072) uint8 and labels (n,) int64 of one batch file, validated."""
    def corrupt(problem: str) -> DataError:
        return DataError(f"CIFAR-10 file {path} is corrupt ({problem}); replace the {FOLDER} folder with a "
                         f"fresh copy (or delete it to download it again)")

    try:
        with open(path, "rb") as file:
            batch = _BatchUnpickler(file, path).load()
    except DataError:
        raise
    except OSError as error:
        raise DataError(f"cannot read CIFAR-10 file {path} ({error.strerror or error})") from None
    except Exception as error:  # a truncated or garbage pickle fails with any of a dozen exception types
        raise corrupt(f"truncated or not a pickle: {type(error).__name__}") from None
    if not isinstance(batch, dict):
        raise corrupt(f"it holds a {type(batch).__name__}, not a dict")
    # Python 2 pickles read with latin1 give str keys; ones written with Python 3 bytes keys give bytes.
    batch = {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise corrupt("no 'data' or no 'labels' entry")
    images, labels = batch["data"], np.asarray(batch["labels"])
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 \
            or images.shape[1] != 3 * IMAGE_SIZE * IMAGE_SIZE:
        raise corrupt(f"'data' is {getattr(images, 'dtype', type(images).__name__)} "
                      f"{getattr(images, 'shape', '')}, not uint8 (n, 3072)")
    if labels.ndim != 1 or len(labels) != len(images):
        raise corrupt(f"{labels.size} labels for {len(images)} images")
    if labels.size and (labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= CLASSES):
        raise corrupt("labels are not integers in 0..9")
    return images, labels.astype(np.int64)


@functools.lru_cache(maxsize=4)
def _read_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    # Cached because tests and the CLI load the same split repeatedly; the arrays are made read-only
    # so that no caller can corrupt what the next caller gets.
    batches = [_read_batch(folder / name) for name in (TRAIN_FILES if split == "train" else TEST_FILES)]
    images = np.concatenate([b[0] for b in batches]).reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE)
    labels = np.concatenate([b[1] for b in batches])
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def load_cifar10(split: Literal["train", "test"], data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 of a CIFAR-10 split (read-only, cached in-process)."""
    if split not in ("train", "test"):
        raise DataError(f"unknown CIFAR-10 split {split!r}; use 'train' or 'test'")
    return _read_split(resolve_data_dir(data_dir).resolve(), split)
