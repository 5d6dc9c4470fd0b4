"""`nas-cntk train` and `nas-cntk correlate` end to end: real CIFAR-10, Optuna and MLflow stores.

A trained result lands in its trial's MLflow run (found from the run's own tags) beside the kernel
score, with its loss curve, and on the search run at the trial's step; the runs page's shared view
gains a column per label; training again skips finished networks, and other settings add a second
label and keep the first; the train table names networks, not hashes; `correlate` prints the
Spearman and Kendall scipy computes on the same pairs, warns that 4 networks are too few for a
ranking claim, and logs them with the plot to the search run; `--trained-csv` takes accuracies
keyed by hash or name; bad input is one error line.
"""
from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
from commands import nas_cntk_command, one_error_line
from mlflow import MlflowClient
from scipy import stats

from nas_cntk.trained import results as trained

# Four small networks, each quick to score and to train at 4x4.
CONV3, CONV1, RELU = {"op": "conv", "kernel": 3}, {"op": "conv", "kernel": 1}, {"op": "relu"}
NETWORKS = {"v1": {"readout": "flatten", "layers": [CONV3, RELU]},
            "gap1": {"readout": "gap", "layers": [CONV3, RELU]},
            "v2": {"readout": "flatten", "layers": [CONV3, RELU, CONV3, RELU]},
            "gap2": {"readout": "gap", "layers": [CONV1, RELU, CONV3, RELU]}}
TRAIN = ["--width", "8", "--epochs", "2", "--train-size", "200", "--test-size", "100", "--resolution", "4",
         "--device", "cpu"]


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory, cifar_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("correlate")
    for name, network in NETWORKS.items():
        (root / f"{name}.json").write_text(json.dumps(network))
    (root / "space.yaml").write_text("name: four\narchitectures: [v1.json, gap1.json, v2.json, gap2.json]\n")
    result = nas_cntk_command("search", "--space", str(root / "space.yaml"), "--study", "four", "--train-size",
                              "20", "--val-size", "10", "--resolution", "4", "--device", "cpu", "--trials-dir",
                              str(root / "trials"), data_dir=cifar_dir)
    assert result.returncode == 0, result.stderr
    result = nas_cntk_command("train", "--top", "4", *TRAIN, "--trials-dir", str(root / "trials"), data_dir=cifar_dir)
    assert result.returncode == 0, result.stderr
    return root / "trials"


def load(trials_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name="four", storage=f"sqlite:///{trials_dir / 'optuna.db'}")


def mlflow(trials_dir: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{trials_dir / 'mlflow.db'}")


@pytest.mark.integration
def test_a_trained_result_lands_in_its_trials_mlflow_run(study_dir: Path) -> None:
    study = load(study_dir)
    (label, results), = trained.results(study).items()
    assert label.startswith("w8-e2-n200-r4-s0-")
    assert sorted(results) == [t.number for t in study.trials]  # all four trained
    client = mlflow(study_dir)
    experiment = client.get_experiment_by_name("four")
    for trial in study.trials:
        result = results[trial.number]
        assert 0 <= result["test_accuracy"] <= 1 and result["settings"]["width"] == 8
        # The trial's run, found from the run's side: the study and trial_number tags.
        run, = client.search_runs([experiment.experiment_id],
                                  f"tags.study = 'four' and tags.trial_number = '{trial.number}'")
        assert run.info.run_id == trial.user_attrs["mlflow_run_id"]
        metrics = run.data.metrics
        assert metrics[f"trained.{label}.test_accuracy"] == pytest.approx(result["test_accuracy"])
        assert metrics["cntk_val_accuracy"] == pytest.approx(trial.value)  # side by side with the kernel score
        # ... at the trial's number, as its kernel scores are: the runs page's charts plot the trial there.
        assert [m.step for m in client.get_metric_history(run.info.run_id, f"trained.{label}.test_accuracy")] \
            == [trial.number]
        assert run.data.params[f"trained.{label}.epochs"] == "2"
        curve = client.get_metric_history(run.info.run_id, f"trained.{label}.train_loss")
        assert [m.step for m in curve] == [1, 2]
        assert [m.value for m in curve] == pytest.approx(result["train_loss"])
    # On the search run, each trained accuracy at its trial's step, beside the kernel scores: the scatter's data.
    search = run.data.tags["search_run_id"]
    trained_at = {m.step: m.value for m in client.get_metric_history(search, f"trained.{label}.test_accuracy")}
    kernel_at = {m.step: m.value for m in client.get_metric_history(search, "cntk_val_accuracy")}
    assert trained_at == pytest.approx({t.number: results[t.number]["test_accuracy"] for t in study.trials})
    assert kernel_at == pytest.approx({t.number: t.value for t in study.trials})
    view = json.loads(experiment.tags["mlflow.sharedViewState.trials"])  # the runs page shows the trained column
    assert f"metrics.`trained.{label}.test_accuracy`" in view["selectedColumns"]
    assert view["searchFilter"] == "tags.trial_number IS NOT NULL"  # still the trials alone


@pytest.mark.integration
def test_training_again_adds_a_labelled_result_and_skips_what_is_done(study_dir: Path, cifar_dir: Path) -> None:
    before = trained.results(load(study_dir))
    again = nas_cntk_command("train", "--top", "4", *TRAIN, "--trials-dir", str(study_dir), data_dir=cifar_dir)
    assert again.returncode == 0, again.stderr
    assert "0 network(s) to train, 4 already trained" in again.stdout
    for trial in load(study_dir).trials:  # the table names each network, not its hash
        assert trial.user_attrs["name"] in again.stdout and trial.user_attrs["arch_hash"] not in again.stdout
    sample = nas_cntk_command("train", "--sample", "2", *TRAIN, "--trials-dir", str(study_dir), data_dir=cifar_dir)
    assert sample.returncode == 0, sample.stderr
    assert "0 network(s) to train, 2 already trained" in sample.stdout
    other = nas_cntk_command("train", "--trial-numbers", "0,2", *TRAIN[:2], "--epochs", "1", *TRAIN[4:],
                             "--trials-dir", str(study_dir), data_dir=cifar_dir)
    assert other.returncode == 0, other.stderr
    after = trained.results(load(study_dir))
    (old_label,) = before
    new_label, = set(after) - {old_label}
    assert after[old_label] == before[old_label]  # kept, not overwritten
    assert sorted(after[new_label]) == [0, 2]
    run_id = load(study_dir).trials[0].user_attrs["mlflow_run_id"]
    metrics = mlflow(study_dir).get_run(run_id).data.metrics
    assert {f"trained.{old_label}.test_accuracy", f"trained.{new_label}.test_accuracy"} <= set(metrics)
    view = json.loads(mlflow(study_dir).get_experiment_by_name("four").tags["mlflow.sharedViewState.trials"])
    assert {f"metrics.`trained.{old_label}.test_accuracy`", f"metrics.`trained.{new_label}.test_accuracy`",
            "metrics.`cntk_val_accuracy`", "metrics.`nngp_val_accuracy`"} <= set(view["selectedColumns"])


@pytest.mark.integration
def test_correlate_reports_scipy_statistics_and_logs_to_the_search_run(study_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "plot.png"
    result = nas_cntk_command("correlate", "--study", "four", "--label", _first_label(study_dir), "--out", str(out),
                              "--trials-dir", str(study_dir))
    assert result.returncode == 0, result.stderr
    study = load(study_dir)
    results = trained.results(study)[_first_label(study_dir)]
    kernel = [t.value for t in study.trials]
    accuracy = [results[t.number]["test_accuracy"] for t in study.trials]
    rho = stats.spearmanr(kernel, accuracy).statistic
    tau = stats.kendalltau(kernel, accuracy).statistic
    assert f"Spearman rho                    {rho:.3f}" in result.stdout
    assert f"Kendall tau                     {tau:.3f}" in result.stdout
    assert "warning: 4 networks are too few for a ranking claim" in result.stdout
    assert out.read_bytes().startswith(b"\x89PNG")

    client = mlflow(study_dir)
    experiment = client.get_experiment_by_name("four")
    parent, = [r for r in client.search_runs([experiment.experiment_id]) if "trial_number" not in r.data.tags]
    prefix = f"correlation.cntk_val_accuracy.{_first_label(study_dir)}"  # the study's objective
    assert parent.data.metrics[f"{prefix}.spearman"] == pytest.approx(rho)
    assert parent.data.metrics[f"{prefix}.kendall"] == pytest.approx(tau)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, prefix)}
    assert {f"{prefix}/correlation.png", f"{prefix}/correlation.txt", f"{prefix}/scores.csv"} <= artifacts


@pytest.mark.integration
def test_correlate_takes_an_external_table(study_dir: Path, tmp_path: Path) -> None:
    study = load(study_dir)
    trials = sorted(study.trials, key=lambda t: t.number)
    accuracy = [90.0, 60.0, 80.0, 70.0]  # made up, keyed by hash
    csv = tmp_path / "trained.csv"
    pd.DataFrame({"hash": [t.user_attrs["arch_hash"] for t in trials], "acc": accuracy,
                  "note": ["a", "b", "c", "d"]}).to_csv(csv, index=False)
    result = nas_cntk_command("correlate", "--trained-csv", str(csv), "--trials-dir", str(study_dir))
    assert result.returncode == 0, result.stderr
    rho = stats.spearmanr([t.value for t in trials], accuracy).statistic
    assert f"Spearman rho                    {rho:.3f}" in result.stdout
    # The kernel's pick: best kernel score, ties to the smaller id (here the name).
    pick = min(range(4), key=lambda i: (-trials[i].value, trials[i].user_attrs["name"]))
    assert f"regret of the kernel's pick     {90.0 - accuracy[pick]:.4g} (kernel picks " \
           f"{trials[pick].user_attrs['name']}; best trained is {trials[0].user_attrs['name']})" in result.stdout

    by_name = tmp_path / "by_name.csv"
    pd.DataFrame({"name": ["v1", "gap1", "v2"], "top1": [60.0, 70.0, 80.0]}).to_csv(by_name, index=False)
    result = nas_cntk_command("correlate", "--trained-csv", str(by_name), "--trials-dir", str(study_dir))
    assert result.returncode == 0, result.stderr
    assert "architectures with both scores  3" in result.stdout


@pytest.mark.integration
@pytest.mark.parametrize("args, message", [
    (["train", "--trial-numbers", "0,99"], "trial 99 of study 'four' has no kernel score (not in the study)"),
    (["train", "--trial-numbers", "0,x"], "--trial-numbers '0,x': expected trial numbers"),
    (["train", "--lr", "-1"], "--lr: expected a finite number > 0"),
    (["correlate", "--label", "nope"], "--label 'nope': no trained results under it"),
    (["correlate", "--trained-csv", "missing.csv"], "--trained-csv missing.csv: cannot read it"),
])
def test_bad_input_gets_one_line(study_dir: Path, args: list[str], message: str) -> None:
    error = one_error_line(nas_cntk_command(*args, "--trials-dir", str(study_dir)))
    assert message in error


def _first_label(trials_dir: Path) -> str:
    """The label of the fixture's training run (w8-e2-...); later tests may add others."""
    return next(label for label in trained.results(load(trials_dir)) if label.startswith("w8-e2-"))
