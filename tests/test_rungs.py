"""Multi-fidelity search: nested rungs of one data setting, scored in turn, and the study that prunes on them.

On real CIFAR-10. Each rung's images hold the one below's, stratified; a rung's kernel, built from the
rows the rungs below computed and its own new rows, equals the kernel computed whole on its images, and
so do its scores; the rungs' pairs add up to the top rung's; a scorer started again from its store
computes no row twice. A search with rungs reports each rung to the pruner (successive halving or
Hyperband), stops some trials below the top, ranks by rung reached, logs each rung's score with the rung
as its step, and keeps every rung's scores in the cache, so a second study with the same rungs computes
nothing; killed (-9) between rungs and resumed, it retries the trial without computing a kept rung or
kernel row again.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from commands import nas_cntk_command, one_error_line, wait_for_trials
from mlflow import MlflowClient
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from nas_cntk import cli
from nas_cntk.data import DataSettings
from nas_cntk.description.architecture import nasbench201_network
from nas_cntk.errors import NasCntkError
from nas_cntk.kernels import kernel
from nas_cntk.scoring.regression import kernels_score
from nas_cntk.scoring.rungs import Rungs, RungScorer, check_rungs
from nas_cntk.search.leaderboard import leaderboard

CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
RUNG_OPTIONS = ["--rungs", "20,40,80", "--val-size", "40", "--resolution", "4", "--device", "cpu"]


def test_rungs_are_nested_stratified_and_in_proportion(cifar_dir: Path) -> None:
    rungs = Rungs(DataSettings(train_size=80, val_size=40, resolution=4), (20, 40, 80))
    splits = rungs.data.load(cifar_dir)
    labels = np.concatenate([splits.y_train.numpy(), splits.y_eval.numpy()])
    positions = [set(rungs.positions(k, splits)) for k in range(3)]
    assert positions[0] < positions[1] < positions[2] == set(range(120))  # the top rung is the data itself
    for k, (train, val) in enumerate(((20, 10), (40, 20), (80, 40))):
        assert rungs.val_size(k) == val
        chosen = np.array(sorted(positions[k]))
        assert np.all(np.bincount(labels[chosen[chosen < 80]], minlength=10) == train // 10)
        assert np.all(np.bincount(labels[chosen[chosen >= 80]], minlength=10) == val // 10)
    assert rungs.label == "t80-v40-r4-s0-rungs20-40-80"


def test_each_rung_equals_the_kernel_computed_whole_and_a_kept_store_computes_no_row_twice(
        cifar_dir: Path, tmp_path: Path) -> None:
    rungs = Rungs(DataSettings(train_size=40, val_size=20, resolution=4), (10, 20, 40))
    splits = rungs.data.load(cifar_dir)
    arch = nasbench201_network(CELL, 1)
    images = torch.cat([splits.x_train, splits.x_eval])
    labels = np.concatenate([splits.y_train.numpy(), splits.y_eval.numpy()])
    scorer = RungScorer(arch, splits, rungs, "cpu", tmp_path / "kernels.npz")
    pairs = []
    for k in range(len(rungs)):
        result = scorer.score(k)
        pairs.append(result.pairs)
        chosen = rungs.positions(k, splits)
        whole = kernel(arch, images[chosen], progress=False)
        n_train = int(np.sum(chosen < len(splits.y_train)))
        expected = kernels_score(arch.hash, whole.ntk.numpy(), whole.nngp.numpy(), labels[chosen], n_train, 0.0, 0,
                                 "cpu")
        for name, value in expected.metrics().items():
            assert result.metrics()[name] == pytest.approx(value, rel=1e-4, abs=1e-6), (k, name)
    assert sum(pairs) == 60 * 61 // 2 and pairs[0] == 20 * 21 // 2  # each pair once; rung 0: 10 + 10 images
    again = RungScorer(arch, splits, rungs, "cpu", tmp_path / "kernels.npz")  # a restarted process
    assert [again.score(k).pairs for k in range(len(rungs))] == [0, 0, 0]
    assert again.score(2).metrics() == result.metrics()


@pytest.mark.parametrize("sizes, message", [((10, 25, 40), "multiple of 10"), ((20, 10, 40), "ascending"),
                                            ((10, 20), "the last rung is the search's data, 40 training images")])
def test_bad_rungs_are_named(sizes: tuple[int, ...], message: str) -> None:
    with pytest.raises(NasCntkError, match=message):
        check_rungs(sizes, 40)


def search(trials_dir: Path, study: str, pruner: str) -> optuna.Study:
    """A search of the cell space with three rungs, in this process (a console script adds only imports)."""
    assert cli.main(["search", "--space", "nasbench201", "--objective", "cntk_alignment", "--trials", "8",
                     *RUNG_OPTIONS, "--pruner", pruner, "--study", study, "--trials-dir", str(trials_dir)]) == 0
    return optuna.load_study(study_name=study, storage=f"sqlite:///{trials_dir / 'optuna.db'}")


@pytest.mark.integration
@pytest.mark.parametrize("pruner", ["sh", "hyperband"])
def test_a_search_with_rungs_prunes_on_them_and_ranks_by_rung(cifar_dir: Path, tmp_path: Path, pruner: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAS_CNTK_DATA_DIR", str(cifar_dir))
    trials_dir = tmp_path / "trials"
    study = search(trials_dir, "rungs", pruner)
    assert study.user_attrs["rungs"] == "t80-v40-r4-s0-rungs20-40-80"
    scored = [t for t in study.trials if "rung" in t.user_attrs]
    stopped = [t for t in scored if t.state == TrialState.PRUNED]
    complete = [t for t in scored if t.state == TrialState.COMPLETE]
    assert stopped and complete  # the pruner stopped some trials below the top rung, not all
    for t in scored:
        rung = t.user_attrs["rung"]
        assert sorted(t.intermediate_values) == [20, 40, 80][:rung + 1]
        assert (rung == 2) == (t.state == TrialState.COMPLETE)
        assert t.user_attrs["cntk_alignment"] == pytest.approx(t.intermediate_values[[20, 40, 80][rung]])
    board = leaderboard(study)
    assert list(board["rung"]) == sorted(board["rung"], reverse=True) and len(board) == len(scored)
    assert board["cntk_alignment"].iloc[0] == max(t.value for t in complete)
    client = MlflowClient(f"sqlite:///{trials_dir / 'mlflow.db'}")
    run = client.get_run(stopped[0].user_attrs["mlflow_run_id"])
    history = client.get_metric_history(run.info.run_id, "cntk_alignment_by_rung")
    assert [m.step for m in history] == list(range(stopped[0].user_attrs["rung"] + 1))
    assert run.data.tags["rung"] == str(stopped[0].user_attrs["rung"]) and run.data.tags["state"] == "PRUNED"
    cache = trials_dir / "cache" / "v2" / "t80-v40-r4-s0-rungs20-40-80"
    assert {p.parent.name for p in cache.rglob("*.json")} == {"rung0", "rung1", "rung2"}
    assert len(list((cache / "kernels").glob("*.npz"))) == len({t.user_attrs["arch_hash"] for t in scored})
    if pruner == "sh":  # (Hyperband's brackets depend on the study's name: another study prunes otherwise)
        redone = search(trials_dir, "again", pruner)  # the same proposals and decisions, every rung from the cache
        assert [t.user_attrs.get("rung") for t in redone.trials] == [t.user_attrs.get("rung") for t in study.trials]
        assert all(t.user_attrs["cached"] for t in redone.trials if "rung" in t.user_attrs)


def test_rungs_that_do_not_end_at_the_searchs_data_are_one_line(tmp_path: Path) -> None:
    line = one_error_line(nas_cntk_command("search", "--space", "nasbench201", "--rungs", "20,40",
                                           "--train-size", "80", "--trials-dir", str(tmp_path / "trials")))
    assert "--rungs: the last rung is the search's data, 80 training images; got 40" in line
    assert not (tmp_path / "trials").exists()


@pytest.mark.integration
def test_a_search_killed_between_rungs_resumes_without_computing_a_kept_rung_again(cifar_dir: Path,
                                                                                   tmp_path: Path) -> None:
    trials_dir = tmp_path / "trials"
    # One score as the objective: a sum's reference networks would be scored at every rung before trial 0.
    command = [str(Path(sys.executable).with_name("nas-cntk")), "search", "--space", "nasbench201", "--trials", "1",
               "--objective", "cntk_alignment", "--rungs", "20,40,80", "--val-size", "40", "--resolution", "16",
               "--device", "cpu", "--study", "killed",
               "--heartbeat", "1", "--trials-dir", str(trials_dir)]  # 16x16: a few seconds a rung
    env = {**os.environ, "NAS_CNTK_DATA_DIR": str(cifar_dir)}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    storage = f"sqlite:///{trials_dir / 'optuna.db'}"
    wait_for_trials(process, storage, "killed",  # trial 0 has finished a rung below the top, computes the next
                    lambda trials: bool(trials) and trials[0].user_attrs.get("rung", 2) < 2)
    process.kill()
    process.wait()
    killed = optuna.load_study(study_name="killed", storage=storage).get_trials()[0]
    rungs = trials_dir / "cache" / "v2" / "t80-v40-r16-s0-rungs20-40-80"
    kept_files = [rungs / f"rung{k}" / f"{killed.user_attrs['arch_hash']}.json"
                  for k in range(killed.user_attrs["rung"] + 1)]
    kept = [(f.stat().st_ino, f.stat().st_mtime_ns) for f in kept_files]

    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    trials = optuna.load_study(study_name="killed", storage=storage).get_trials()
    assert trials[0].state == TrialState.FAIL and trials[1].state == TrialState.COMPLETE
    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(trials[1]) == 0
    assert trials[1].params == killed.params
    assert all(trials[1].intermediate_values[step] == value for step, value in killed.intermediate_values.items())
    assert [(f.stat().st_ino, f.stat().st_mtime_ns) for f in kept_files] == kept  # not rewritten
    assert trials[1].user_attrs["pairs"] == 120 * 121 // 2  # every pair of the top rung's images once, kill or not
