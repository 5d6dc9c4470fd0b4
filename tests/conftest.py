"""Shared test setup: the plain references on the import path, Triton's interpreter, real CIFAR-10.

Puts tests/ on sys.path (plain_cntk.py, plain_nb201.py, commands.py); where there is no GPU, sets
TRITON_INTERPRET=1 before any test imports the Triton kernels, so they run in Triton's interpreter. The `cifar_dir` fixture finds real CIFAR-10 through NAS_CNTK_DATA_DIR, as users do:
tests that need it are skipped where it is unset, and fail where it names a folder without the
batches.
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


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    """Real CIFAR-10, found through the same setting users have; skipped only where it is unset."""
    value = os.environ.get("NAS_CNTK_DATA_DIR")
    if not value:
        pytest.skip("NAS_CNTK_DATA_DIR is not set: no real CIFAR-10 for this test")
    path = Path(value)
    if not (path / "data_batch_1").exists() and not (path / "cifar-10-batches-py" / "data_batch_1").exists():
        pytest.fail(f"NAS_CNTK_DATA_DIR={value} holds no CIFAR-10 batches")
    return path
