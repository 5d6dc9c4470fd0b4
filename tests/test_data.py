"""CIFAR-10 loading, safety, subsets and preprocessing: tiny fake batches, a few real files.

Lookup order (--data-dir, NAS_CNTK_DATA_DIR, the XDG cache; a folder or its parent); batches read
back exactly; tampered pickles refused before they run anything, and truncated, garbage or malformed
batches named in one line; stratified subsets exact, disjoint and seeded; standardisation on the
training subset, pooling to lower resolutions and ZCA checked against independent numpy; download
from a local HTTP server with its md5 check, refusing unsafe archive members and unreachable URLs
without leftovers; `train`'s data keeps the search's validation images out; data labels round-trip.
"""
from __future__ import annotations

import builtins
import functools
import hashlib
import http.server
import io
import os
import pickle
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from nas_cntk import data
from nas_cntk.errors import DataError

PER_BATCH = 100  # 10 images of each class per fake training batch: 500 training images, 50 per class
TEST_IMAGES = 200


# ------------------------------------------------------------------------------------------ fake data

def write_batch(path: Path, images: np.ndarray, labels: np.ndarray, *, protocol: int = 2,
                bytes_keys: bool = False) -> None:
    """A batch in the standard layout: a pickled dict with data (n, 3072) uint8 and labels (list of int)."""
    batch = {"batch_label": "fake", "labels": [int(v) for v in labels], "data": images.reshape(len(images), -1),
             "filenames": [f"{i}.png" for i in range(len(images))]}
    if bytes_keys:
        batch = {key.encode(): value for key, value in batch.items()}
    path.write_bytes(pickle.dumps(batch, protocol=protocol))


def balanced_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % 10)


def make_fake_cifar(parent: Path, seed: int = 0, **write_options) -> dict:
    """A tiny ``cifar-10-batches-py`` in ``parent``; returns the folder and what it holds."""
    rng = np.random.default_rng(seed)
    folder = parent / data.FOLDER
    folder.mkdir(parents=True)
    train_images = rng.integers(0, 256, (5 * PER_BATCH, 3, 32, 32), dtype=np.uint8)
    train_labels = np.concatenate([balanced_labels(PER_BATCH, rng) for _ in range(5)])
    test_images = rng.integers(0, 256, (TEST_IMAGES, 3, 32, 32), dtype=np.uint8)
    test_labels = balanced_labels(TEST_IMAGES, rng)
    for i in range(5):
        part = slice(i * PER_BATCH, (i + 1) * PER_BATCH)
        write_batch(folder / f"data_batch_{i + 1}", train_images[part], train_labels[part], **write_options)
    write_batch(folder / "test_batch", test_images, test_labels, **write_options)
    return {"folder": folder, "train": (train_images, train_labels), "test": (test_images, test_labels)}


@pytest.fixture
def fake(tmp_path) -> dict:
    return make_fake_cifar(tmp_path)


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, "the CLI prints DataError messages on one line"
    return message


def standardise_like_train(train: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel standardisation with the training set's statistics, written independently of nas_cntk.data."""
    mean = train.mean(axis=(0, 2, 3), keepdims=True)
    std = train.std(axis=(0, 2, 3), keepdims=True)
    return (train - mean) / std, (other - mean) / std


def pool(images: np.ndarray, factor: int) -> np.ndarray:
    n, c, h, w = images.shape
    return images.reshape(n, c, h // factor, factor, w // factor, factor).mean(axis=(3, 5))


# --------------------------------------------------------------------------------------- finding files

def test_default_data_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert data.default_data_dir() == tmp_path / "nas-cntk"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.default_data_dir() == Path.home() / ".cache" / "nas-cntk"


def test_resolve_order_argument_then_env_then_cache(monkeypatch, tmp_path):
    argument = make_fake_cifar(tmp_path / "argument")["folder"]
    env = make_fake_cifar(tmp_path / "env")["folder"]
    cached = make_fake_cifar(tmp_path / "xdg" / "nas-cntk")["folder"]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv(data.DATA_DIR_ENV, str(env.parent))
    assert data.resolve_data_dir(argument.parent, download=False) == argument
    assert data.resolve_data_dir(download=False) == env
    monkeypatch.delenv(data.DATA_DIR_ENV)
    assert data.resolve_data_dir(download=False) == cached


def test_resolve_accepts_the_folder_itself_or_its_parent(fake):
    assert data.resolve_data_dir(fake["folder"], download=False) == fake["folder"]
    assert data.resolve_data_dir(fake["folder"].parent, download=False) == fake["folder"]
    renamed = fake["folder"].rename(fake["folder"].parent / "my-cifar")  # batches directly in any folder
    assert data.resolve_data_dir(renamed, download=False) == renamed


def test_missing_batch_is_named(fake):
    (fake["folder"] / "data_batch_3").unlink()
    with pytest.raises(DataError) as excinfo:
        data.load_cifar10("train", fake["folder"])
    assert "data_batch_3" in one_line_error(excinfo)


def test_absent_data_without_download_says_where_to_put_it(tmp_path):
    with pytest.raises(DataError) as excinfo:
        data.resolve_data_dir(tmp_path / "empty", download=False)
    message = one_line_error(excinfo)
    assert str(tmp_path / "empty" / data.FOLDER) in message and data.DATA_DIR_ENV in message


# --------------------------------------------------------------------------------------------- reading

@pytest.mark.parametrize("protocol, bytes_keys", [(2, False), (4, True), (5, False)])
def test_load_returns_exactly_what_was_written(tmp_path, protocol, bytes_keys):
    fake = make_fake_cifar(tmp_path, protocol=protocol, bytes_keys=bytes_keys)
    for split in ("train", "test"):
        images, labels = data.load_cifar10(split, fake["folder"])
        assert images.dtype == np.uint8 and images.shape[1:] == (3, 32, 32) and labels.dtype == np.int64
        np.testing.assert_array_equal(images, fake[split][0])
        np.testing.assert_array_equal(labels, fake[split][1])
    with pytest.raises(ValueError):  # the cached arrays are shared, so nobody may write into them
        images[0, 0, 0, 0] = 1


class RunsCode:
    """A payload that would run code on unpickling, as a tampered batch might."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.mark.parametrize("payload", ["os.system", "builtins.exec", "builtins.open"])
def test_tampered_pickle_is_refused_before_it_runs_anything(fake, tmp_path, payload):
    marker = tmp_path / "pwned"
    action = {"os.system": RunsCode(os.system, f"touch {marker}"),
              "builtins.exec": RunsCode(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
              "builtins.open": RunsCode(builtins.open, str(marker), "w")}[payload]
    path = fake["folder"] / "test_batch"
    path.write_bytes(pickle.dumps({"data": action, "labels": [0]}, protocol=2))
    with pytest.raises(DataError) as excinfo:
        data.load_cifar10("test", fake["folder"])
    assert not marker.exists()
    message = one_line_error(excinfo)
    assert "refuses to load" in message and str(path) in message and payload.split(".")[1] in message


def test_truncated_batch_is_named(fake):
    path = fake["folder"] / "data_batch_2"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError) as excinfo:
        data.load_cifar10("train", fake["folder"])
    assert str(path) in one_line_error(excinfo)


def test_garbage_batch_is_named(fake):
    path = fake["folder"] / "test_batch"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(DataError) as excinfo:
        data.load_cifar10("test", fake["folder"])
    assert str(path) in one_line_error(excinfo)


@pytest.mark.parametrize("images, labels", [
    (np.zeros((4, 3072), np.uint8), [0, 1, 2, 10]),       # a label out of range
    (np.zeros((4, 3072), np.uint8), [0, 1, 2]),           # fewer labels than images
    (np.zeros((4, 1024), np.uint8), [0, 1, 2, 3]),        # not 3 x 32 x 32
    (np.zeros((4, 3072), np.float32), [0, 1, 2, 3]),      # not uint8
])
def test_malformed_batch_contents_are_refused(fake, images, labels):
    path = fake["folder"] / "test_batch"
    path.write_bytes(pickle.dumps({"data": images, "labels": labels}))
    with pytest.raises(DataError) as excinfo:
        data.load_cifar10("test", fake["folder"])
    assert str(path) in one_line_error(excinfo)


# -------------------------------------------------------------------------------------------- subsets

@pytest.fixture(scope="module")
def cifar_like_labels() -> np.ndarray:
    return np.random.default_rng(1).permutation(np.arange(50000) % 10)


def test_stratified_indices_are_exact_sorted_and_deterministic(cifar_like_labels):
    indices = data.stratified_indices(cifar_like_labels, 2000, seed=0)
    assert len(np.unique(indices)) == 2000 and np.all(np.diff(indices) > 0)
    np.testing.assert_array_equal(np.bincount(cifar_like_labels[indices], minlength=10), [200] * 10)
    np.testing.assert_array_equal(indices, data.stratified_indices(cifar_like_labels, 2000, seed=0))
    assert len(np.intersect1d(indices, data.stratified_indices(cifar_like_labels, 2000, seed=1))) < 200


def test_stratified_indices_respect_exclude(cifar_like_labels):
    exclude = data.stratified_indices(cifar_like_labels, 2000, seed=0)
    indices = data.stratified_indices(cifar_like_labels, 1000, seed=0, exclude=exclude)
    assert len(np.intersect1d(indices, exclude)) == 0
    np.testing.assert_array_equal(np.bincount(cifar_like_labels[indices], minlength=10), [100] * 10)


@pytest.mark.parametrize("size", [0, 15, -10, 2000.0])
def test_stratified_size_must_be_a_positive_multiple_of_ten(cifar_like_labels, size):
    with pytest.raises(DataError) as excinfo:
        data.stratified_indices(cifar_like_labels, size, seed=0)
    assert "multiple of 10" in one_line_error(excinfo)


def test_stratified_too_few_images_of_a_class():
    labels = np.arange(100) % 10  # 10 of each class
    with pytest.raises(DataError) as excinfo:
        data.stratified_indices(labels, 110, seed=0)
    assert "class" in one_line_error(excinfo)
    assert len(data.stratified_indices(labels, 100, seed=0)) == 100  # all of them is fine


# -------------------------------------------------------------------------------------- load_splits

def test_val_split_is_disjoint_stratified_and_standardised_on_train(fake):
    splits = data.load_splits(200, 100, seed=3, data_dir=fake["folder"])
    images, labels = fake["train"]
    assert splits.eval_split == "val"
    assert len(np.intersect1d(splits.train_indices, splits.eval_indices)) == 0
    np.testing.assert_array_equal(np.bincount(labels[splits.train_indices]), [20] * 10)
    np.testing.assert_array_equal(np.bincount(labels[splits.eval_indices]), [10] * 10)
    assert torch.equal(splits.y_train, torch.from_numpy(labels[splits.train_indices]))
    assert torch.equal(splits.y_eval, torch.from_numpy(labels[splits.eval_indices]))
    assert splits.x_train.dtype == splits.x_eval.dtype == torch.float32 and splits.y_train.dtype == torch.int64
    assert splits.x_train.shape == (200, 3, 32, 32) and splits.x_eval.shape == (100, 3, 32, 32)
    x = splits.x_train.double()
    torch.testing.assert_close(x.mean((0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std((0, 2, 3), unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0)
    # The evaluation images are standardised with the training subset's statistics, not their own.
    expected_train, expected_eval = standardise_like_train(images[splits.train_indices] / 255,
                                                           images[splits.eval_indices] / 255)
    np.testing.assert_allclose(splits.x_train.numpy(), expected_train, atol=1e-5)
    np.testing.assert_allclose(splits.x_eval.numpy(), expected_eval, atol=1e-5)


def test_splits_are_deterministic_and_change_with_the_seed(fake):
    first = data.load_splits(100, 50, seed=0, data_dir=fake["folder"])
    again = data.load_splits(100, 50, seed=0, data_dir=fake["folder"])
    other = data.load_splits(100, 50, seed=1, data_dir=fake["folder"])
    np.testing.assert_array_equal(first.train_indices, again.train_indices)
    np.testing.assert_array_equal(first.eval_indices, again.eval_indices)
    assert torch.equal(first.x_train, again.x_train)
    assert not np.array_equal(first.train_indices, other.train_indices)
    # The training subset does not depend on how many evaluation images are asked for.
    np.testing.assert_array_equal(first.train_indices, data.load_splits(100, 70, data_dir=fake["folder"]).train_indices)


def test_test_split_comes_from_the_test_batch(fake):
    splits = data.load_splits(100, TEST_IMAGES, eval_split="test", data_dir=fake["folder"])
    assert splits.eval_split == "test"
    np.testing.assert_array_equal(splits.eval_indices, np.arange(TEST_IMAGES))  # the whole test split
    test_images, test_labels = fake["test"]
    assert torch.equal(splits.y_eval, torch.from_numpy(test_labels))
    _, expected = standardise_like_train(fake["train"][0][splits.train_indices] / 255, test_images / 255)
    np.testing.assert_allclose(splits.x_eval.numpy(), expected, atol=1e-5)


def test_resolution_16_is_a_2x2_mean_before_standardisation(fake):
    splits = data.load_splits(100, 50, resolution=16, data_dir=fake["folder"])
    assert splits.x_train.shape == (100, 3, 16, 16) and splits.x_eval.shape == (50, 3, 16, 16)
    images = fake["train"][0]
    expected_train, expected_eval = standardise_like_train(pool(images[splits.train_indices] / 255, 2),
                                                           pool(images[splits.eval_indices] / 255, 2))
    np.testing.assert_allclose(splits.x_train.numpy(), expected_train, atol=1e-5)
    np.testing.assert_allclose(splits.x_eval.numpy(), expected_eval, atol=1e-5)


@pytest.mark.parametrize("resolution", [0, 1, 3, 12, 33, 64, True, 16.0])
def test_bad_resolution_is_refused(fake, resolution):
    with pytest.raises(DataError) as excinfo:
        data.load_splits(100, 50, resolution=resolution, data_dir=fake["folder"])
    assert "resolution" in one_line_error(excinfo)


def test_bad_eval_split_and_sizes_are_refused(fake):
    with pytest.raises(DataError):
        data.load_splits(100, 50, eval_split="train", data_dir=fake["folder"])
    with pytest.raises(DataError):
        data.load_splits(105, 50, data_dir=fake["folder"])
    with pytest.raises(DataError):  # 50 per class exist; 40 training + 20 validation do not fit
        data.load_splits(400, 200, data_dir=fake["folder"])


def test_zca_equals_the_regularised_whitening_fitted_on_train(fake):
    plain = data.load_splits(200, 100, resolution=8, data_dir=fake["folder"])
    white = data.load_splits(200, 100, resolution=8, zca=True, data_dir=fake["folder"])
    train, other = plain.x_train.double().flatten(1).numpy(), plain.x_eval.double().flatten(1).numpy()
    mean = train.mean(0)
    covariance = np.cov(train, rowvar=False, bias=True)
    epsilon = 0.1 * np.trace(covariance) / len(covariance)
    # Whitened training covariance = C (C + eps I)^-1, the analytic form of regularised ZCA.
    white_train = white.x_train.double().flatten(1).numpy()
    expected_covariance = covariance @ np.linalg.inv(covariance + epsilon * np.eye(len(covariance)))
    np.testing.assert_allclose(np.cov(white_train, rowvar=False, bias=True), expected_covariance, atol=1e-4)
    # Both sets go through the same symmetric transform (C + eps I)^-1/2, fitted on training images only.
    values, vectors = np.linalg.eigh(covariance + epsilon * np.eye(len(covariance)))
    transform = vectors @ np.diag(values ** -0.5) @ vectors.T
    np.testing.assert_allclose(white_train, (train - mean) @ transform, atol=1e-4)
    np.testing.assert_allclose(white.x_eval.double().flatten(1).numpy(), (other - mean) @ transform, atol=1e-4)
    assert white.x_train.shape == (200, 3, 8, 8) and white.x_train.dtype == torch.float32


# ------------------------------------------------------------------------------------------- download

class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A local HTTP server serving tmp_path/www; proxies are turned off so that urllib talks to it directly."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def serve_archive(monkeypatch, root: Path, url: str, archive_bytes: bytes, md5: str | None = None) -> None:
    (root / "cifar-10-python.tar.gz").write_bytes(archive_bytes)
    monkeypatch.setattr(data.files, "CIFAR10_URL", f"{url}/cifar-10-python.tar.gz")
    monkeypatch.setattr(data.files, "CIFAR10_MD5", md5 or hashlib.md5(archive_bytes).hexdigest())


def fake_archive(tmp_path: Path) -> tuple[bytes, dict]:
    fake = make_fake_cifar(tmp_path / "source")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(fake["folder"], arcname=data.FOLDER)
    return buffer.getvalue(), fake


def test_download_extracts_and_loads(server, tmp_path, monkeypatch):
    root, url = server
    archive, fake = fake_archive(tmp_path)
    serve_archive(monkeypatch, root, url, archive)
    target = tmp_path / "cache"
    folder = data.resolve_data_dir(target)
    assert folder == target / data.FOLDER
    images, labels = data.load_cifar10("test", target)
    np.testing.assert_array_equal(images, fake["test"][0])
    np.testing.assert_array_equal(labels, fake["test"][1])
    assert sorted(p.name for p in target.iterdir()) == [data.FOLDER]  # no archive or scratch folder left behind


def test_download_with_wrong_md5_is_refused_and_removed(server, tmp_path, monkeypatch):
    root, url = server
    serve_archive(monkeypatch, root, url, fake_archive(tmp_path)[0], md5="0" * 32)
    target = tmp_path / "cache"
    with pytest.raises(DataError) as excinfo:
        data.resolve_data_dir(target)
    assert "md5" in one_line_error(excinfo)
    assert list(target.iterdir()) == []


def test_archive_with_a_member_outside_the_target_is_refused(server, tmp_path, monkeypatch):
    root, url = server
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        payload = b"escaped"
        member = tarfile.TarInfo(f"{data.FOLDER}/../../escaped.txt")
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))
    serve_archive(monkeypatch, root, url, buffer.getvalue())
    target = tmp_path / "deep" / "cache"
    with pytest.raises(DataError) as excinfo:
        data.resolve_data_dir(target)
    assert "unsafe" in one_line_error(excinfo)
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (target / data.FOLDER).exists()


def test_unreachable_url_says_where_to_put_the_files(tmp_path, monkeypatch):
    with socket.socket() as probe:  # a port that was free a moment ago, and is closed now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(data.files, "CIFAR10_URL", f"http://127.0.0.1:{port}/cifar-10-python.tar.gz")
    target = tmp_path / "cache"
    with pytest.raises(DataError) as excinfo:
        data.resolve_data_dir(target)
    message = one_line_error(excinfo)
    assert data.files.CIFAR10_URL in message and str(target / data.FOLDER) in message
    assert "--data-dir" in message and data.DATA_DIR_ENV in message
    assert list(target.iterdir()) == []  # no partial download left behind


# ------------------------------------------------------------------------------------------ real data

@pytest.mark.integration
def test_real_cifar10_splits(cifar_dir):
    train_images, train_labels = data.load_cifar10("train", cifar_dir)
    test_images, test_labels = data.load_cifar10("test", cifar_dir)
    assert train_images.shape == (50000, 3, 32, 32) and test_images.shape == (10000, 3, 32, 32)
    np.testing.assert_array_equal(np.bincount(train_labels), [5000] * 10)
    np.testing.assert_array_equal(np.bincount(test_labels), [1000] * 10)
    # Per-channel means of CIFAR-10 (125.3, 123.0, 113.9): catches a wrong plane order or reshape.
    np.testing.assert_allclose(train_images.mean(axis=(0, 2, 3)), [125.3, 123.0, 113.9], atol=1.0)


@pytest.mark.integration
def test_real_cifar10_folder_or_parent(cifar_dir):
    folder = data.resolve_data_dir(cifar_dir, download=False)
    assert data.resolve_data_dir(folder.parent, download=False) == folder


@pytest.mark.integration
def test_real_default_splits(cifar_dir, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(cifar_dir))
    splits = data.load_splits()  # the CLI's defaults, found through the environment variable
    _, labels = data.load_cifar10("train")
    assert splits.x_train.shape == (2000, 3, 32, 32) and splits.x_eval.shape == (1000, 3, 32, 32)
    np.testing.assert_array_equal(np.bincount(labels[splits.train_indices]), [200] * 10)
    np.testing.assert_array_equal(np.bincount(labels[splits.eval_indices]), [100] * 10)
    assert len(np.intersect1d(splits.train_indices, splits.eval_indices)) == 0
    x = splits.x_train.double()
    torch.testing.assert_close(x.mean((0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std((0, 2, 3), unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0)

    whole = data.load_splits(eval_size=10000, eval_split="test")
    np.testing.assert_array_equal(whole.eval_indices, np.arange(10000))
    np.testing.assert_array_equal(whole.train_indices, splits.train_indices)


@pytest.mark.integration
def test_real_zca_whitens(cifar_dir):
    plain = data.load_splits(2000, 100, resolution=8, data_dir=cifar_dir)
    white = data.load_splits(2000, 100, resolution=8, zca=True, data_dir=cifar_dir)

    def distance_from_scaled_identity(x: torch.Tensor) -> float:
        covariance = np.cov(x.double().flatten(1).numpy(), rowvar=False)
        scaled = covariance / np.trace(covariance) * len(covariance)
        return float(np.linalg.norm(scaled - np.eye(len(covariance))) / np.sqrt(len(covariance)))

    before, after = distance_from_scaled_identity(plain.x_train), distance_from_scaled_identity(white.x_train)
    assert after < 0.2 * before, (before, after)  # neighbouring pixels are strongly correlated before, barely after


# ------------------------------------------------------------------------------ training finite networks

def test_training_data_keeps_the_search_validation_images_out(fake):
    held_out = data.DataSettings(train_size=100, val_size=50, seed=2)
    search = held_out.load(fake["folder"])
    everything = data.load_training_data(held_out, None, 100, resolution=16, data_dir=fake["folder"])
    _, labels = fake["train"]
    assert len(np.intersect1d(everything.train_indices, search.eval_indices)) == 0
    assert len(everything.train_indices) == len(labels) - 50  # all the rest, the kernel's training images too
    assert len(np.intersect1d(everything.train_indices, search.train_indices)) == 100
    assert everything.x_train.shape[-2:] == (16, 16) and everything.eval_split == "test"
    subset = data.load_training_data(held_out, 200, 100, seed=1, data_dir=fake["folder"])
    assert len(np.intersect1d(subset.train_indices, search.eval_indices)) == 0
    np.testing.assert_array_equal(np.bincount(labels[subset.train_indices]), [20] * 10)
    test_images, _ = fake["test"]
    _, expected = standardise_like_train(fake["train"][0][subset.train_indices] / 255,
                                         test_images[subset.eval_indices] / 255)
    np.testing.assert_allclose(subset.x_eval.numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("settings", [data.DataSettings(), data.DataSettings(500, 250, 8, 3, True)])
def test_a_data_label_names_its_settings(settings):
    assert data.DataSettings.from_label(settings.label) == settings


def test_a_bad_data_label_is_named():
    with pytest.raises(DataError, match="'t2000-v1000' is not of the form"):
        data.DataSettings.from_label("t2000-v1000")
