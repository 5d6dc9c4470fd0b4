"""CIFAR-10: find (or download) the files, read them safely, and build the subsets that are scored.

The files are the standard python-pickle batches (``cifar-10-batches-py``). Pickle can run
arbitrary code, so the batches are read with an unpickler that admits only the few numpy names a
batch needs. The subsets are stratified and deterministic for a seed; the images are standardised
per channel with statistics of the training subset alone (Arora et al., 2019), optionally
downsampled and ZCA-whitened.

May import: :mod:`nas_cntk.errors`, :mod:`nas_cntk.checks`.
"""
from __future__ import annotations

import codecs
import functools
import hashlib
import http.client
import os
import pickle
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from tqdm import tqdm

from nas_cntk.errors import DataError

if TYPE_CHECKING:  # torch is imported where tensors are made: the CLI starts without it
    import torch

DATA_DIR_ENV = "NAS_CNTK_DATA_DIR"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
CLASSES = 10
IMAGE_SIZE = 32

# ZCA regulariser, as a fraction of the mean eigenvalue of the training covariance: the value used
# in the CNTK / infinite-network literature (Lee et al. 2020, "Finite versus infinite neural
# networks"; neural-tangents' ``zca_reg=0.1``). It keeps the near-zero directions of a small
# subset's covariance from being blown up into noise.
ZCA_REGULARISATION = 0.1


# ------------------------------------------------------------------------------------------------ files

def default_data_dir() -> Path:
    """Where CIFAR-10 is kept when neither ``--data-dir`` nor ``$NAS_CNTK_DATA_DIR`` says otherwise."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "nas-cntk"


def _where_to_put(folder: Path) -> str:
    return (f"put the extracted {FOLDER} folder at {folder} (so that {folder / TRAIN_FILES[0]} exists), "
            f"or pass --data-dir DIR / set {DATA_DIR_ENV}=DIR to a folder that holds it")


def resolve_data_dir(data_dir: str | Path | None = None, *, download: bool = True) -> Path:
    """The folder holding ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``.

    ``data_dir``, else ``$NAS_CNTK_DATA_DIR``, else :func:`default_data_dir`; either the
    ``cifar-10-batches-py`` folder itself or a folder containing it. When it is absent and
    ``download`` is true, the official archive is downloaded there, checked and extracted.
    """
    base = Path(data_dir or os.environ.get(DATA_DIR_ENV) or default_data_dir()).expanduser()
    if base.name == FOLDER or any((base / name).exists() for name in TRAIN_FILES + TEST_FILES):
        folder = base
    else:
        folder = base / FOLDER
    if not folder.is_dir():
        if not download:
            raise DataError(f"no CIFAR-10 at {folder}: {_where_to_put(folder)}")
        _download_and_extract(folder)
    for name in TRAIN_FILES + TEST_FILES:
        if not (folder / name).is_file():
            raise DataError(f"CIFAR-10 file {folder / name} is missing: the folder is incomplete; replace it "
                            f"with a full copy of {FOLDER} (or delete it to download it again)")
    return folder


def _download_and_extract(folder: Path) -> None:
    """Download the archive next to ``folder``, check its md5 and extract it, or raise DataError."""
    parent = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        # A temporary name, so that an interrupted download never passes for a complete archive.
        handle, name = tempfile.mkstemp(dir=parent, prefix="cifar-10-python.", suffix=".tar.gz.part")
        os.close(handle)
    except OSError as error:
        raise DataError(f"cannot write to {parent} ({error}); {_where_to_put(folder)}") from None
    archive = Path(name)
    try:
        md5 = _download(CIFAR10_URL, archive, folder)
        if md5 != CIFAR10_MD5:
            raise DataError(f"the archive downloaded from {CIFAR10_URL} has md5 {md5}, not {CIFAR10_MD5}: "
                            f"it is corrupt or not CIFAR-10 and was removed; try again, or {_where_to_put(folder)}")
        _extract(archive, folder)
    finally:
        archive.unlink(missing_ok=True)


def _download(url: str, archive: Path, folder: Path) -> str:
    """Stream ``url`` into ``archive`` with a progress bar; return the md5 of what was written."""
    md5 = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="Downloading CIFAR-10") as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    md5.update(chunk)
                    bar.update(len(chunk))
    except (OSError, http.client.HTTPException) as error:  # URLError, timeouts and resets are OSErrors
        if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
            error = error.reason  # "[Errno 111] Connection refused", not "<urlopen error [Errno 111] ...>"
        reason = " ".join(str(error).split())
        raise DataError(f"could not download CIFAR-10 from {url} ({reason}); {_where_to_put(folder)}") from None
    return md5.hexdigest()


def _extract(archive: Path, folder: Path) -> None:
    """Extract the archive's ``cifar-10-batches-py`` to ``folder``, refusing members that would land elsewhere."""
    # Extract into a scratch folder beside the target and rename at the end: a half-extracted
    # folder must never look like a complete one to the next run.
    scratch = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".cifar-10-extract."))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                inside = (scratch / member.name).resolve().is_relative_to(scratch.resolve())
                if not inside or not (member.isfile() or member.isdir()):
                    raise DataError(f"the CIFAR-10 archive has an unsafe member {member.name!r} and was not "
                                    f"extracted; {_where_to_put(folder)}")
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: the library's own guard as well
                tar.extractall(scratch, filter="data")
            else:  # pragma: no cover - older Pythons rely on the check above
                tar.extractall(scratch)
        if not (scratch / FOLDER).is_dir():
            raise DataError(f"the CIFAR-10 archive holds no {FOLDER} folder; {_where_to_put(folder)}")
        try:
            (scratch / FOLDER).rename(folder)
        except OSError:
            if not folder.is_dir():  # else another process extracted it first, which is just as good
                raise
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        reason = " ".join(str(error).split())
        raise DataError(f"could not extract the CIFAR-10 archive into {folder.parent} ({reason}); "
                        f"{_where_to_put(folder)}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- pickles

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


# ---------------------------------------------------------------------------------------------- subsets

def _check_size(size: int, what: str) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0 or size % CLASSES:
        raise DataError(f"{what} {size!r} is not a positive multiple of {CLASSES} (the subsets hold equally many "
                        f"images of every class); use e.g. 2000 or 1000")


def stratified_indices(labels: np.ndarray, size: int, seed: int | Sequence[int],
                       exclude: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of ``size // 10`` images of every class, drawn without replacement.

    Deterministic for ``seed`` (anything ``np.random.default_rng`` accepts); indices in ``exclude``
    are never drawn.
    """
    _check_size(size, "subset size")
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
    _check_resolution(resolution)
    _check_size(train_size, "training size")  # before reading 180 MB of files
    _check_size(eval_size, "evaluation size")

    train_images, train_labels = load_cifar10("train", data_dir)
    if eval_split == "val":
        train_indices, eval_indices = validation_split(train_labels, train_size, eval_size, seed)
        eval_images, eval_labels = train_images, train_labels
    else:
        train_indices = stratified_indices(train_labels, train_size, seed)
        eval_images, eval_labels = load_cifar10("test", data_dir)
        eval_indices = stratified_indices(eval_labels, eval_size, [seed, 1])
    x_train, x_eval = _preprocess(train_images[train_indices], eval_images[eval_indices], resolution, zca)
    return DataSplits(x_train=x_train, y_train=torch.from_numpy(train_labels[train_indices]),
                      x_eval=x_eval, y_eval=torch.from_numpy(eval_labels[eval_indices]),
                      train_indices=train_indices, eval_indices=eval_indices, eval_split=eval_split)


def validation_split(train_labels: np.ndarray, train_size: int, val_size: int,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The training and validation subsets of the CIFAR-10 training split that a search scores on."""
    train_indices = stratified_indices(train_labels, train_size, seed)
    # The validation subset draws from a stream of its own, so that its size never changes the training subset.
    return train_indices, stratified_indices(train_labels, val_size, [seed, 1], exclude=train_indices)


def _preprocess(train: np.ndarray, other: np.ndarray, resolution: int,
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


def _check_resolution(resolution: int) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) \
            or resolution < 2 or IMAGE_SIZE % resolution:
        raise DataError(f"resolution {resolution!r} does not divide {IMAGE_SIZE} into equal blocks; "
                        f"use 32, 16, 8, 4 or 2")


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
        _check_size(self.train_size, "training size")
        _check_size(self.val_size, "validation size")
        _check_resolution(self.resolution)

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


def load_training_data(held_out: DataSettings, train_size: int | None = None, test_size: int = 10000, *,
                       resolution: int = 32, seed: int = 0, data_dir: str | Path | None = None) -> DataSplits:
    """Data to train finite networks on: the CIFAR-10 training split without a search's validation images.

    ``train_size`` stratified images (all that remain when None) from the training split minus the
    validation subset of ``held_out``, and ``test_size`` stratified images of the test split (10000:
    all of it); standardised per channel with the training images' statistics.
    """
    import torch

    _check_resolution(resolution)
    if train_size is not None:
        _check_size(train_size, "training size")
    _check_size(test_size, "test size")
    train_images, train_labels = load_cifar10("train", data_dir)
    _, val_indices = validation_split(train_labels, held_out.train_size, held_out.val_size, held_out.seed)
    if train_size is None:
        train_indices = np.setdiff1d(np.arange(len(train_labels)), val_indices)
    else:
        train_indices = stratified_indices(train_labels, train_size, [seed, 2], exclude=val_indices)
    test_images, test_labels = load_cifar10("test", data_dir)
    test_indices = stratified_indices(test_labels, test_size, [seed, 3])  # 10000: all of them
    x_train, x_test = _preprocess(train_images[train_indices], test_images[test_indices], resolution)
    return DataSplits(x_train=x_train, y_train=torch.from_numpy(train_labels[train_indices]),
                      x_eval=x_test, y_eval=torch.from_numpy(test_labels[test_indices]),
                      train_indices=train_indices, eval_indices=test_indices, eval_split="test")
