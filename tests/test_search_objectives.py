"""What a search maximises, end to end on real CIFAR-10 and SQLite stores: a sum of standardised terms (its
reference networks scored first, stored on the study and run as its first trials; every trial's value the
sum over its own recorded scores and costs), several objectives (the Pareto front first in the leaderboard,
tagged in MLflow, exported), costs recorded on every trial, and one leaderboard row per network structure."""
from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
from commands import nas_cntk_command, one_error_line
from mlflow import MlflowClient
from optuna.trial import TrialState

from nas_cntk.description import nasbench201
from nas_cntk.search.leaderboard import leaderboard
from nas_cntk.search.objectives import REFERENCE_CELLS, Objective

TINY = ["--train-size", "20", "--val-size", "10", "--resolution", "8", "--device", "cpu"]


def search(tmp_path: Path, cifar_dir: Path, *args: str) -> tuple[optuna.Study, str]:
    result = nas_cntk_command("search", *args, *TINY, "--study", "s", "--trials-dir", str(tmp_path / "trials"),
                              data_dir=cifar_dir)
    assert result.returncode == 0, result.stderr
    return (optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'trials' / 'optuna.db'}"),
            result.stdout + result.stderr)


@pytest.mark.integration
def test_a_sum_is_standardised_over_reference_networks_that_are_the_first_trials(cifar_dir: Path,
                                                                                 tmp_path: Path) -> None:
    text = "cntk_val_accuracy+1.5*flops"
    study, stdout = search(tmp_path, cifar_dir, "--space", "nasbench201", "--objective", text,
                           "--trials", str(REFERENCE_CELLS + 2))
    stored = study.user_attrs["reference"]
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == REFERENCE_CELLS + 2 and "reference networks" in stdout
    # the reference networks ran as the first trials, each from the cache its scoring filled
    assert [t.user_attrs["arch_hash"] for t in trials[:REFERENCE_CELLS]] == stored["networks"]
    assert all(t.user_attrs["cached"] for t in trials[:REFERENCE_CELLS])
    (statistics,) = stored["statistics"]
    accuracies = [t.user_attrs["cntk_val_accuracy"] for t in trials[:REFERENCE_CELLS]]
    mean = sum(accuracies) / len(accuracies)
    assert statistics["cntk_val_accuracy"][0] == pytest.approx(mean)
    objective = Objective.parse(text)
    for t in trials:
        flops, parameters = nasbench201.trained_network_cost(t.user_attrs["name"])
        assert (t.user_attrs["flops"], t.user_attrs["parameters"]) == (flops, parameters)
        assert t.value == pytest.approx(objective.value(t.user_attrs, statistics)) == t.user_attrs["objective"]
    table = leaderboard(study)
    assert table.attrs["objectives"] == ["objective"] and table["objective"].is_monotonic_decreasing
    run = MlflowClient(f"sqlite:///{tmp_path / 'trials' / 'mlflow.db'}").get_run(trials[-1].user_attrs["mlflow_run_id"])
    assert run.data.metrics["objective"] == pytest.approx(trials[-1].value)
    assert run.data.metrics["flops"] == trials[-1].user_attrs["flops"]


@pytest.mark.integration
def test_several_objectives_make_a_pareto_front(cifar_dir: Path, tmp_path: Path) -> None:
    study, stdout = search(tmp_path, cifar_dir, "--space", "nasbench201", "--objective", "cntk_alignment",
                           "--objective", "flops", "--trials", "8", "--sampler", "random")
    assert study.user_attrs["objective"] == "cntk_alignment,flops"
    table = leaderboard(study)
    front = table[table["front"] == 1]
    points = [(t.user_attrs["cntk_alignment"], -t.user_attrs["flops"]) for t in study.best_trials]
    assert sorted(front["trial"]) == sorted(t.number for t in study.best_trials)
    assert list(table["front"]) == sorted(table["front"])  # the front first
    rows = list(zip(table["cntk_alignment"], -table["flops"]))
    for a, f in points:  # nothing in the table dominates a point of the front
        assert not any(x >= a and y >= f and (x > a or y > f) for x, y in rows)
    client = MlflowClient(f"sqlite:///{tmp_path / 'trials' / 'mlflow.db'}")
    tagged = {t.number for t in study.get_trials(states=(TrialState.COMPLETE,))
              if client.get_run(t.user_attrs["mlflow_run_id"]).data.tags.get("pareto_front") == "true"}
    assert tagged == set(front["trial"])
    view = json.loads(client.get_experiment_by_name("s").tags["mlflow.sharedViewState.trials"])
    assert view["selectedColumns"][:2] == ["metrics.`cntk_alignment`", "metrics.`flops`"]
    assert "tags.`pareto_front`" in view["selectedColumns"] and view["orderByKey"] == "metrics.`cntk_alignment`"
    out = tmp_path / "export"
    result = nas_cntk_command("export", "--trials-dir", str(tmp_path / "trials"), "--top", str(len(front)),
                              "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert len(list(out.glob("rank*.py"))) == len(front)
    assert "cntk_alignment" in result.stdout and "flops" in result.stdout
    line = one_error_line(nas_cntk_command("search", "--space", "nasbench201", "--objective", "cntk_alignment",
                                           "--objective", "flops", "--rungs", "10,20", *TINY,
                                           "--trials-dir", str(tmp_path / "other"), data_dir=cifar_dir))
    assert "several objectives has no rungs" in line and not (tmp_path / "other").exists()


@pytest.mark.integration
def test_the_leaderboard_has_one_row_per_structure(cifar_dir: Path, tmp_path: Path) -> None:
    """Four networks, two structures, each at two initial weight scales: two rows of two variants each."""
    space = tmp_path / "space.yaml"
    space.write_text("name: scales\nstages: 1\nlayers: 1\nkernel: [1, 3]\nreadout: gap\nweight_std: [1.0, 2.0]\n")
    study, _ = search(tmp_path, cifar_dir, "--space", str(space), "--trials", "4", "--sampler", "grid")
    table = leaderboard(study)
    assert len(table) == 2 and list(table["variants"]) == [2, 2]
    trials = {t.number: t for t in study.get_trials(states=(TrialState.COMPLETE,))}
    for number in table["trial"]:  # each row is the best of the networks of its kernel size
        kernel = trials[number].params["kernel"]
        assert trials[number].value == max(t.value for t in trials.values() if t.params["kernel"] == kernel)
    assert set(trials[n].params["kernel"] for n in table["trial"]) == {1, 3}
    assert all(math.isfinite(f) and f > 0 for f in table["flops"])
