"""`nas-cntk benchmark nb201` and `nas-cntk search --space nasbench201` end to end.

On real CIFAR-10 with real SQLite MLflow and Optuna stores. The development table
(tests/data/nb201_cifar10_dev.csv) reads whole; samples are seeded and a larger one extends a
smaller; bad rows are named by line, a missing file or column is one error line before anything is
written. A four-architecture run prints every score's Kendall and Spearman, and those of the trained
network's FLOPs, parameter count, NASWOT and synflow, equal to scipy's on the CSV it writes, beside the
published proxies, and logs a parent MLflow run (correlation metrics, four artifacts)
with one nested run per architecture; run again, it takes every score and baseline from the cache. A search of
the cell space names each trial by its genotype and takes its data settings from the space file.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
from commands import nas_cntk_command, one_error_line
from mlflow import MlflowClient
from scipy import stats

from nas_cntk import cli
from nas_cntk.description import nasbench201
from nas_cntk.errors import NasCntkError
from nas_cntk.scoring.measures import SCORE_NAMES, direction, ranking_label
from nas_cntk.search.objectives import REFERENCE_CELLS, Objective, objective_keys
from nas_cntk.search.space import load_space
from nas_cntk.trained.baselines import TrainedNetwork, naswot, synflow
from nas_cntk.trained.benchmark import BASELINES, EXPERIMENT, OBJECTIVE, read_table, sample_table

# The NAS-Bench-201 development table (1,000 cells with their trained accuracy; see tests/data/README.md).
TABLE = Path(__file__).resolve().parent / "data" / "nb201_cifar10_dev.csv"
GENOTYPE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
# Four rows of the real table, chosen to differ: a disconnected cell (a constant network, trained to
# 10%), two conv-rich cells and a skip-only one. At this tiny setting most cells score at chance, and
# a random sample of four often ties on every score, which leaves the rank correlation undefined.
PICKED = ["|none~0|+|none~0|nor_conv_3x3~1|+|none~0|nor_conv_3x3~1|none~2|",
          "|nor_conv_1x1~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_1x1~1|none~2|",
          "|none~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|nor_conv_1x1~0|none~1|nor_conv_1x1~2|",
          "|none~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"]
TINY = ["--cells-per-stage", "1", "--train-size", "40", "--val-size", "20", "--resolution", "4", "--device", "cpu"]


def write_table(directory: Path, rows: list[str], header: str = "arch,cifar10_test_acc_200ep,n_seeds") -> Path:
    path = directory / "table.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_the_dev_table_reads_whole() -> None:
    table = read_table(TABLE)
    assert len(table) == 1000 and table["cifar10_test_acc_200ep"].max() <= 94.37


def test_the_sample_is_seeded_and_a_larger_one_extends_it() -> None:
    table = read_table(TABLE)
    small, large = sample_table(table, 5, seed=0), sample_table(table, 20, seed=0)
    assert list(large["arch"][:5]) == list(small["arch"]) and large["arch"].is_unique
    assert list(sample_table(table, 5, seed=1)["arch"]) != list(small["arch"])
    assert len(sample_table(table, None, seed=0)) == 1000
    with pytest.raises(NasCntkError, match="--sample: expected 3 to 1000"):
        sample_table(table, 1001, seed=0)


@pytest.mark.parametrize("rows, message", [
    ([f"{GENOTYPE},93.1,1", "|nor_conv_3x3~0|+|bad_op~0|none~1|+|none~0|none~1|none~2|,90.0,1"],
     "line 3: arch: unknown op 'bad_op'"),
    ([f"{GENOTYPE},93.1,1", "|nor_conv_3x3~0|+|none~0|+|none~0|none~1|none~2|,90.0,1"], "line 3: arch: node 2 needs 2"),
    ([f"{GENOTYPE},n/a,1"], "line 2: cifar10_test_acc_200ep: expected a number, got 'n/a'"),
    ([f"{GENOTYPE},93.1,"], "line 2: n_seeds: expected an integer >= 1, got ''"),
    ([f"{GENOTYPE},93.1,1", f"{GENOTYPE},92.0,1"], "line 3: " + re.escape(GENOTYPE) + " is listed again"),
    ([], "the table has no rows"),
])
def test_a_bad_row_is_named_by_its_line(tmp_path: Path, rows: list[str], message: str) -> None:
    path = write_table(tmp_path, rows)
    with pytest.raises(NasCntkError, match=message) as error:
        read_table(path)
    assert str(error.value).startswith(str(path))


def test_a_missing_table_or_column_is_one_line_before_anything_is_written(tmp_path: Path, capsys) -> None:
    trials = tmp_path / "trials"
    line = one_error_line(nas_cntk_command("benchmark", "nb201", "--table", str(tmp_path / "missing.csv"),
                                           "--trials-dir", str(trials), data_dir=tmp_path / "unused"))
    assert "missing.csv: no such benchmark table" in line
    # The same path in this process: a second console script would only add seconds of imports.
    table = write_table(tmp_path, [f"{GENOTYPE},93.1"], header="arch,accuracy")
    assert cli.main(["benchmark", "nb201", "--table", str(table), "--trials-dir", str(trials)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "no column 'cifar10_test_acc_200ep'" in lines[0] and "columns there: arch, accuracy" \
        in lines[0]
    assert not trials.exists()


@pytest.fixture(scope="module")
def benchmarked(tmp_path_factory: pytest.TempPathFactory, cifar_dir: Path):
    """One tiny benchmark run and the same command again, each writing its own CSV:
    (trials dir, table, (first CSV, second CSV), first, second)."""
    root = tmp_path_factory.mktemp("benchmark")
    table, out = root / "picked.csv", (root / "first.csv", root / "second.csv")
    dev = pd.read_csv(TABLE, dtype={"cifar10_test_acc_200ep": str})
    dev.set_index("arch").loc[PICKED].reset_index().to_csv(table, index=False)
    command = ["benchmark", "nb201", "--table", str(table), "--sample", "4", "--seed", "0", *TINY,
               "--trials-dir", str(root / "trials")]
    first = nas_cntk_command(*command, "--out", str(out[0]), data_dir=cifar_dir)
    assert first.returncode == 0, first.stderr
    second = nas_cntk_command(*command, "--out", str(out[1]), data_dir=cifar_dir)
    assert second.returncode == 0, second.stderr
    return root / "trials", table, out, first, second


def printed(stdout: str, label: str) -> tuple[float, ...]:
    """Kendall and Spearman (value, low, high each) of a report row."""
    line = next(line for line in stdout.splitlines() if line.strip().startswith(label))
    return tuple(map(float, re.findall(r"-?\d+\.\d+", line)))


def ranked(scores: pd.DataFrame, name: str) -> pd.Series:
    """A CSV column oriented so that higher is better, as the report ranks it."""
    return scores[name] if name in (*BASELINES, OBJECTIVE) else direction(name) * scores[name]


def default_column() -> str:
    """The CSV column of the nasbench201 space's objective: a score's own, or the sum's."""
    return objective_keys([Objective.parse(load_space("nasbench201").objectives[0])])[0]


@pytest.mark.integration
def test_benchmark_reports_every_score_and_the_size_baselines_beside_the_published_proxies(benchmarked) -> None:
    _, table, (out, _), first, _ = benchmarked
    scores = pd.read_csv(out)
    assert list(scores["arch"]) == list(sample_table(read_table(table), 4, seed=0)["arch"])  # one row each
    assert list(scores["connected"]) == [g != PICKED[0] for g in scores["arch"]]  # the constant network scored too
    trained = scores["cifar10_test_acc_200ep"]
    for name in (*SCORE_NAMES, *BASELINES):
        values = printed(first.stdout, name if name in BASELINES else ranking_label(name))
        assert len(values) == 6 and all(-1 <= v <= 1 for v in values), name
        kendall, spearman = values[0], values[3]
        assert kendall == pytest.approx(stats.kendalltau(ranked(scores, name), trained).statistic, abs=5e-4)
        assert spearman == pytest.approx(stats.spearmanr(ranked(scores, name), trained).statistic, abs=5e-4)
    costs = [nasbench201.trained_network_cost(g) for g in scores["arch"]]
    assert list(scores["flops"]) == [f for f, _ in costs] and list(scores["parameters"]) == [n for _, n in costs]
    with_flops = next(line for line in first.stdout.splitlines() if "with FLOPs" in line)
    assert float(re.findall(r"-?\d+\.\d+", with_flops)[0]) == pytest.approx(
        stats.kendalltau(ranked(scores, default_column()), scores["flops"]).statistic, abs=5e-4)
    assert printed(first.stdout, "VKDNW") == (0.75, 0.92) and printed(first.stdout, "FLOPs") == (0.62, 0.80)
    assert "published, whole space" in first.stdout and "4 scored now, 0 from the cache" in first.stdout
    assert (scores["kernel_seconds"] > 0).all() and not scores["cached"].any()


@pytest.mark.integration
def test_benchmark_logs_a_parent_run_with_metrics_artifacts_and_one_run_per_architecture(benchmarked) -> None:
    trials_dir, _, (out, _), first, _ = benchmarked
    client = MlflowClient(f"sqlite:///{trials_dir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id],
                              order_by=["attributes.start_time ASC"])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 2 and all(p.info.status == "FINISHED" for p in parents)  # the run and its rerun
    parent = parents[0]
    assert parent.info.run_id in first.stdout
    assert (parent.data.params["cells_per_stage"], parent.data.params["sample"], parent.data.params["train_size"],
            parent.data.params["resolution"]) == ("1", "4", "40", "4")
    metrics = parent.data.metrics
    for name in (*SCORE_NAMES, *BASELINES):
        for statistic in ("kendall", "spearman"):
            assert {f"correlation.{name}.{statistic}{end}" for end in ("", "_low", "_high")} <= set(metrics)
        assert metrics[f"correlation.{name}.kendall"] == pytest.approx(
            printed(first.stdout, name if name in BASELINES else ranking_label(name))[0], abs=5e-4)
    assert metrics["kernel_seconds_mean"] > 0 and metrics["computed"] == 4
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {
        "scores.csv", "report.txt",
        *(f"correlation_{name}.png" for name in (default_column(), "cntk_val_accuracy", "flops"))}
    logged = pd.read_csv(client.download_artifacts(parent.info.run_id, "scores.csv"))
    assert not logged["cached"].any()
    pd.testing.assert_frame_equal(logged.drop(columns="cached"), pd.read_csv(out).drop(columns="cached"))
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.params["arch"] for r in nested) == sorted(logged["arch"])
    finite = {a: {k for k in BASELINES if math.isfinite(v[k])} for a, v in logged.set_index("arch").iterrows()}
    assert all({*SCORE_NAMES, *finite[r.data.params["arch"]], "cifar10_test_acc_200ep"} <= set(r.data.metrics)
               for r in nested)
    assert finite[PICKED[0]] == {"flops", "parameters", "synflow"}  # the constant network's NASWOT is -inf


@pytest.mark.integration
def test_running_again_takes_every_score_from_the_cache(benchmarked) -> None:
    trials_dir, _, (first_csv, second_csv), first, second = benchmarked
    assert "0 scored now, 4 from the cache" in second.stdout
    again = pd.read_csv(second_csv)
    assert again["cached"].all()
    pd.testing.assert_frame_equal(again.drop(columns="cached"), pd.read_csv(first_csv).drop(columns="cached"))
    for name in SCORE_NAMES:
        assert printed(second.stdout, ranking_label(name)) == printed(first.stdout, ranking_label(name))
    assert len(list((trials_dir / "cache" / "v2").rglob("*.json"))) == 4
    assert len(list((trials_dir / "cache" / "baselines").rglob("*.json"))) == 4  # NASWOT and synflow too


@pytest.mark.integration
def test_search_of_the_nasbench201_space_end_to_end(cifar_dir: Path, tmp_path: Path, capsys) -> None:
    result = nas_cntk_command("search", "--space", "nasbench201", "--trials", "3", "--train-size", "20",
                              "--val-size", "10", "--resolution", "4", "--device", "cpu", "--trials-dir", str(tmp_path),
                              data_dir=cifar_dir)
    assert result.returncode == 0, result.stderr
    name = "nasbench201-n1-t20-v10-r4-s0"  # cells per stage from the space file
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    # The space's objective sums standardised terms: its reference networks are the study's first trials,
    # so a 3-trial search runs them all.
    assert study.user_attrs["objective"] == load_space("nasbench201").objectives[0]
    assert Objective.parse(study.user_attrs["objective"]).combined and len(trials) == REFERENCE_CELLS
    for trial in trials:
        genotype = nasbench201.parse_genotype(trial.user_attrs["name"])
        assert genotype == tuple(tuple(trial.params[f"edge_{i}to{j}"] for i in range(j)) for j in (1, 2, 3))
    assert study.best_trial.user_attrs["name"] in result.stdout  # the leaderboard shows the genotype
    # Without data options the space file's fidelity applies, and resuming this study with it is refused.
    # (In this process: it stops before any kernel, and a second console script would only add imports.)
    assert cli.main(["search", "--space", "nasbench201", "--study", name, "--trials-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert f"study {name!r} was run with data 't20-v10-r4-s0', not 't300-v150-r8-s0'" in error


def test_the_trained_network_has_the_counted_parameters_and_the_proxies_order_it() -> None:
    """The torch network NASWOT and synflow score has exactly the parameters trained_network_cost counts;
    a constant network (a disconnected cell) gets NASWOT's -inf and synflow's 0, a conv cell finite
    scores, and a seed gives the same scores again (another seed, other ones)."""
    images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for genotype in (GENOTYPE, PICKED[0], PICKED[3]):
        network = TrainedNetwork(genotype)
        assert sum(p.numel() for p in network.parameters()) == nasbench201.trained_network_cost(genotype)[1]
        assert network(images).shape == (8, 10)
    assert naswot(PICKED[0], images) == -math.inf and synflow(PICKED[0]) == 0.0
    assert math.isfinite(naswot(GENOTYPE, images)) and synflow(GENOTYPE) > 0
    # A seed gives the same scores again, and another seed other initial weights and so other scores.
    for proxy in (lambda seed: naswot(GENOTYPE, images, seed=seed), lambda seed: synflow(GENOTYPE, seed=seed)):
        assert proxy(1) == proxy(1) != proxy(0)


def test_the_trained_networks_cost_spans_the_benchmarks_published_range() -> None:
    """NAS-Bench-201's networks span 7.78-220.11 MFLOPs and 0.07-1.53 M parameters (Dong and Yang, 2020);
    each 3x3 conv edge adds the same multiply-adds in every stage (C^2 HW is constant across them)."""
    empty = nasbench201.trained_network_cost("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    full = nasbench201.trained_network_cost(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    assert empty[0] == pytest.approx(7.78e6, rel=0.01) and full[0] == pytest.approx(220.11e6, rel=0.01)
    assert empty[1] == pytest.approx(0.073e6, rel=0.01) and full[1] == pytest.approx(1.53e6, rel=0.01)
    one = nasbench201.trained_network_cost("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert one[0] - empty[0] == 5 * 3 * 9 * 16**2 * 32**2 and (full[0] - empty[0]) == 6 * (one[0] - empty[0])
