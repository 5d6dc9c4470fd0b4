"""Shared test setup: the plain references on the import path, Triton's interpreter, real CIFAR-10.

Puts tests/ on sys.path (plain_cntk.py, plain_nb201.py, commands.py); where there is no GPU, sets
TRITON_INTERPRET=1 before any test imports the Triton kernels, so they run in Triton's interpreter.
The `cifar_dir` fixture finds real CIFAR-10 through NAS_CNTK_DATA_DIR as users do (the
`cifar-10-batches-py` folder or the folder holding it) and gives the batches' folder: tests that
need it are skipped where it is unset, and fail where it names a folder without the batches.
`--screenshots DIR` keeps the browser test's screenshots there (`--screenshots docs` refreshes the
documentation's); without it they go to a temporary folder, so the suite changes no tracked file.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # the plain reference implementation lives beside the tests

import os

import pytest
import torch

# Triton kernels run in Triton's interpreter where there is no GPU. Triton reads the setting when a
# kernel is decorated with @triton.jit, that is when a test imports nas_cntk's Triton modules: set it
# before the test modules are collected.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--screenshots", metavar="DIR", help="keep the MLflow UI test's screenshots in DIR "
                     "(--screenshots docs refreshes the documentation's); default: a temporary folder")


@pytest.fixture
def screenshots(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Where the browser test writes its screenshots."""
    chosen = request.config.getoption("--screenshots")
    if not chosen:
        return tmp_path
    Path(chosen).mkdir(parents=True, exist_ok=True)
    return Path(chosen)


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    """The folder of real CIFAR-10's batches, found as users' settings find it; skipped only where it is unset."""
    from nas_cntk.data import DATA_DIR_ENV, resolve_data_dir
    from nas_cntk.errors import DataError

    value = os.environ.get(DATA_DIR_ENV)
    if not value:
        pytest.skip(f"{DATA_DIR_ENV} is not set: no real CIFAR-10 for this test")
    try:
        return resolve_data_dir(value, download=False)
    except DataError as error:
        pytest.fail(f"{DATA_DIR_ENV}={value}: {error}")
