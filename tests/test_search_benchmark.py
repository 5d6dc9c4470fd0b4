"""`nas-cntk search-benchmark nb201` end to end, on real CIFAR-10 with real SQLite Optuna and MLflow stores.

Two searches of three trials over an eight-cell table: each search's trials are cells of the table;
its pick is its leaderboard's first, looked up in the table, beside the best cell it scored, the
FLOPs-guided pick and a random one; its cost is the kernel time its trials record. The report's means
are the CSV's, and MLflow holds one parent run with a nested run per search. Bad settings are one
error line before anything is written.
"""
from __future__ import annotations

import re
from pathlib import Path

import optuna
import pandas as pd
import pytest
from commands import nas_cntk_command, one_error_line
from mlflow import MlflowClient

from nas_cntk import cli
from nas_cntk.description import nasbench201
from nas_cntk.search.leaderboard import leaderboard
from nas_cntk.trained.search_benchmark import EXPERIMENT

DEV_TABLE = Path(__file__).resolve().parent / "data" / "nb201_cifar10_dev.csv"
TINY = ["--train-size", "40", "--val-size", "20", "--resolution", "4", "--device", "cpu"]


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory, cifar_dir: Path):
    root = tmp_path_factory.mktemp("search-benchmark")
    table = root / "cells.csv"
    pd.read_csv(DEV_TABLE, dtype=str).iloc[:8].to_csv(table, index=False)
    out = root / "searches.csv"
    # One score as the objective: the default's sum would first score its reference networks, here the whole table.
    result = nas_cntk_command("search-benchmark", "nb201", "--table", str(table), "--trials", "3", "--seeds", "2",
                              "--objective", "cntk_alignment", *TINY, "--trials-dir", str(root / "trials"),
                              "--out", str(out), data_dir=cifar_dir)
    assert result.returncode == 0, result.stderr
    return root / "trials", pd.read_csv(table), pd.read_csv(out), result.stdout


@pytest.mark.integration
def test_each_search_picks_its_leaderboards_first_cell_of_the_table(searched) -> None:
    trials_dir, table, searches, _ = searched
    accuracy = dict(zip(table["arch"], table["cifar10_test_acc_200ep"]))
    assert list(searches["seed"]) == [0, 1]
    for row in searches.itertuples():
        study = optuna.load_study(study_name=row.study, storage=f"sqlite:///{trials_dir / 'optuna.db'}")
        board = leaderboard(study)
        assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 3
        assert set(board["name"]) <= set(table["arch"]) and row.scored == len(board)
        assert row.search_pick == board["name"].iloc[0] and row.search_accuracy == accuracy[row.search_pick]
        assert row.best_scored_accuracy == max(accuracy[cell] for cell in board["name"]) >= row.search_accuracy
        assert row.kernel_seconds == pytest.approx(board["kernel_s"].sum()) and row.kernel_seconds > 0
        assert row.flops_pick in accuracy and row.random_pick in accuracy
        flops = {cell: nasbench201.trained_network_cost(cell)[0] for cell in (row.flops_pick, row.random_pick)}
        assert flops[row.flops_pick] >= flops[row.random_pick]
        assert row.flops_accuracy == accuracy[row.flops_pick] and row.random_accuracy == accuracy[row.random_pick]
    assert searches["study"].is_unique  # one study per seed


@pytest.mark.integration
def test_the_report_and_mlflow_hold_the_searches_means(searched) -> None:
    trials_dir, table, searches, stdout = searched
    line = next(line for line in stdout.splitlines() if line.startswith("the search's pick"))
    mean, sd = map(float, re.findall(r"\d+\.\d+", line)[:2])
    assert mean == pytest.approx(searches["search_accuracy"].mean(), abs=0.005)
    assert sd == pytest.approx(searches["search_accuracy"].std(), abs=0.005)
    assert f"best {table['cifar10_test_acc_200ep'].max():.2f}" in stdout and "TE-NAS" in stdout
    client = MlflowClient(f"sqlite:///{trials_dir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED" and parents[0].info.run_id in stdout
    parent = parents[0].data.metrics
    assert parent["search_accuracy_mean"] == pytest.approx(searches["search_accuracy"].mean())
    assert parent["flops_regret_mean"] == pytest.approx(table["cifar10_test_acc_200ep"].max()
                                                        - searches["flops_accuracy"].mean())
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.data.params["study"] for r in nested) == sorted(searches["study"])
    assert all(r.data.metrics["search_accuracy"] == searches.set_index("study").loc[r.data.params["study"],
                                                                                    "search_accuracy"] for r in nested)


def test_bad_settings_are_one_line_before_anything_is_written(tmp_path: Path, capsys) -> None:
    trials = tmp_path / "trials"
    line = one_error_line(nas_cntk_command("search-benchmark", "nb201", "--table", str(DEV_TABLE), "--seeds", "0",
                                           "--trials-dir", str(trials)))
    assert "--seeds: expected an integer >= 1, got 0" in line
    # The same path in this process: a second console script would only add seconds of imports.
    assert cli.main(["search-benchmark", "nb201", "--table", str(tmp_path / "none.csv"),
                     "--trials-dir", str(trials)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "none.csv: no such benchmark table" in lines[0]
    assert not trials.exists()
