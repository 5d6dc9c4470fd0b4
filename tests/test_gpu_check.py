"""The GPU check's scripts (benchmarks/gpu_check.sh, tools/device/): they parse, and the CIFAR-10 they carry.

The check itself needs the lent GPU (tools/device/rehearse.sh runs it on a CPU in a few minutes:
docs/benchmark.md#the-gpu-check). Here: every script is valid bash, and CIFAR-10 packed by
tools/device/carry_cifar.py gives exactly the subsets it was packed for, real labels throughout,
black images elsewhere (which its `check` reports) and an empty test split (which fails a run).
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from nas_cntk.data import load_cifar10, load_splits
from nas_cntk.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["benchmarks/gpu_check.sh", "tools/device/carry_wheels.sh", "tools/device/rehearse.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_parses(script: str) -> None:
    result = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def carry_cifar():
    spec = importlib.util.spec_from_file_location("carry_cifar", ROOT / "tools" / "device" / "carry_cifar.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.integration
def test_packed_cifar10_holds_the_subsets_it_was_packed_for(cifar_dir, tmp_path, monkeypatch, capsys) -> None:
    tool = carry_cifar()
    images, labels = load_cifar10("train", cifar_dir)
    keep = tool.kept(labels, [(20, 10)], seed=0, first=5)
    tool.pack(tmp_path / "cifar.tar.gz", keep, images, labels)
    with tarfile.open(tmp_path / "cifar.tar.gz") as tar:
        tar.extractall(tmp_path / "data", filter="data")
    packed = tmp_path / "data"

    want = load_splits(20, 10, seed=0, resolution=8, data_dir=cifar_dir)
    got = load_splits(20, 10, seed=0, resolution=8, data_dir=packed)
    for name in ("x_train", "y_train", "x_eval", "y_eval"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    packed_images, packed_labels = load_cifar10("train", packed)
    assert np.array_equal(packed_labels, labels)
    assert np.array_equal(packed_images[:5], images[:5])
    assert packed_images.reshape(len(labels), -1).any(axis=1).sum() == keep.sum()
    with pytest.raises(DataError, match="only 0 images"):
        load_splits(20, 10, eval_split="test", data_dir=packed)

    def check(subset: str) -> int:
        monkeypatch.setattr(sys, "argv", ["carry_cifar.py", "check", "--data-dir", str(packed), "--subset", subset,
                                          "--first", "5"])
        return tool.main()

    assert check("20,10") == 0
    assert check("40,20") == 1
    assert "images these runs read are black" in capsys.readouterr().err
