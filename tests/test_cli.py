"""The installed `nas-cntk` script, run as a user runs it, on real CIFAR-10 at a tiny setting.

`score` prints accuracies, ridge, time and speed; its `--json` line and `--save-kernel` file agree
(the saved kernels refit to the printed accuracy; training and validation indices are disjoint);
`evaluate` scores on the test split. A bad description, an even kernel size, a corrupt batch and a
subset size that is not a multiple of 10 each give one error line naming the problem; `train
--batch-norm` reaches the training settings. Building the parser imports no heavy module (torch,
MLflow, Optuna, pandas, ...), and the leaderboard needs only Optuna and pandas.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from commands import nas_cntk_command, one_error_line

import nas_cntk
from nas_cntk.cli import Train, build_parser
from nas_cntk.scoring.regression import KernelScores, kernel_scores

EXAMPLES = Path(__file__).resolve().parents[1] / "search_spaces" / "examples"
TINY = ["--train-size", "40", "--resolution", "8", "--device", "cpu"]


@pytest.mark.integration
def test_score_prints_every_score_ridge_time_and_speed(cifar_dir: Path) -> None:
    result = nas_cntk_command("score", "--arch", str(EXAMPLES / "cntk_v_3.json"), *TINY, "--val-size", "20",
                              data_dir=cifar_dir)
    assert result.returncode == 0, result.stderr
    for text in ("cntk_v_3", "40 training images, 20 validation (training split), 8x8", "CNTK accuracy",
                 "NNGP accuracy", "ridge", "leave-one-out over all images: accuracy", "alignment",
                 "log10 condition", "pairs/s", "1,830 image pairs"):
        assert text in result.stdout


@pytest.mark.integration
def test_score_json_and_saved_kernels_agree(cifar_dir: Path, tmp_path: Path) -> None:
    saved = tmp_path / "kernels.npz"
    arch = EXAMPLES / "cntk_gap_3.json"
    result = nas_cntk_command("score", "--arch", str(arch), *TINY, "--val-size", "20", "--json",
                              "--save-kernel", str(saved), data_dir=cifar_dir)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["hash"] == nas_cntk.load(arch).hash
    assert (report["train_size"], report["eval_size"], report["eval_split"]) == (40, 20, "val")
    assert report["pairs"] == 60 * 61 // 2  # one kernel over the training images, then the validation images
    assert 0 <= report["ntk"]["val_accuracy"] <= 1 and 0 <= report["nngp"]["val_accuracy"] <= 1

    kernels = np.load(saved)
    assert kernels["ntk"].shape == (60, 60) and int(kernels["train_size"]) == 40
    np.testing.assert_allclose(kernels["ntk"], kernels["ntk"].T)
    # The saved kernels reproduce the printed scores.
    assert kernel_scores(kernels["ntk"], kernels["labels"], 40) == KernelScores(**report["ntk"])
    assert set(kernels["train_indices"]).isdisjoint(kernels["eval_indices"])


@pytest.mark.integration
def test_evaluate_scores_on_the_test_split(cifar_dir: Path) -> None:
    result = nas_cntk_command("evaluate", "--arch", str(EXAMPLES / "cntk_v_3.json"), *TINY, "--test-size", "30",
                              "--json", data_dir=cifar_dir)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["eval_split"], report["eval_size"]) == ("test", 30)


def test_bad_architecture_is_one_line_naming_the_field(tmp_path: Path) -> None:
    arch = tmp_path / "bad.json"
    arch.write_text(json.dumps({"readout": "gap", "layers": [{"op": "conv", "kernel": 3}, {"op": "softmax"}]}))
    line = one_error_line(nas_cntk_command("score", "--arch", str(arch), data_dir=tmp_path / "unused"))
    assert "layers[1].op" in line and "softmax" in line


def test_even_kernel_size_is_refused(tmp_path: Path) -> None:
    arch = tmp_path / "even.yaml"
    arch.write_text("readout: flatten\nlayers:\n  - {op: conv, kernel: 4}\n  - {op: relu}\n")
    line = one_error_line(nas_cntk_command("score", "--arch", str(arch), data_dir=tmp_path / "unused"))
    assert "layers[0].kernel" in line


@pytest.mark.integration
def test_corrupt_batch_is_one_line_naming_the_file(cifar_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "cifar-10-batches-py"
    shutil.copytree(cifar_dir, broken)
    (broken / "data_batch_3").write_bytes((cifar_dir / "data_batch_3").read_bytes()[:1000])
    for data_dir in (broken, tmp_path):  # the batches' folder, or the folder holding it
        line = one_error_line(nas_cntk_command("score", "--arch", str(EXAMPLES / "cntk_v_3.json"), *TINY,
                                               "--val-size", "20", "--data-dir", str(data_dir)))
        assert str(broken / "data_batch_3") in line


@pytest.mark.integration
def test_bad_subset_size_is_one_line(cifar_dir: Path) -> None:
    line = one_error_line(nas_cntk_command("score", "--arch", str(EXAMPLES / "cntk_v_3.json"), "--train-size", "45",
                                           "--resolution", "8", data_dir=cifar_dir))
    assert "45" in line and "multiple of 10" in line


def test_train_batch_norm_flag_reaches_the_settings() -> None:
    parser = build_parser()
    assert Train.settings(parser.parse_args(["train", "--batch-norm"])).batch_norm is True
    assert Train.settings(parser.parse_args(["train", "--preset", "cpu"])).batch_norm is False


HEAVY = ("torch", "mlflow", "optuna", "pandas", "matplotlib", "scipy", "numba")


def imported_heavy(code: str) -> list[str]:
    """The heavy modules a fresh interpreter has imported after running ``code``."""
    check = f"import sys\n{code}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().replace("'", '"'))


def test_the_parser_is_built_without_heavy_imports() -> None:
    """`nas-cntk --help` starts fast: building every command's options imports none of the heavy modules."""
    assert imported_heavy("from nas_cntk.cli import build_parser\nbuild_parser()") == []


def test_the_leaderboard_needs_neither_torch_nor_mlflow(tmp_path: Path) -> None:
    code = ("from nas_cntk import cli\n"
            f"assert cli.main(['leaderboard', '--trials-dir', {str(tmp_path)!r}]) == 2  # no store: an error line")
    assert set(imported_heavy(code)) <= {"optuna", "pandas"}
