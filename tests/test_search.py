"""`nas-cntk search` end to end: real CIFAR-10, SQLite Optuna and MLflow stores, an MLflow server.

Every trial has its MLflow run (params, metrics, tags, the architecture artifact, its scores at the
trial's number as the step), lasting as long as the trial, and trial and run point at each other;
the search run holds each trial's scores at the trial's step; the experiment opens in MLflow's
training view; `nas-cntk ui` prints the study's runs page first and serves them over MLflow's REST
API and, in headless Chromium, shows the trials (not the search run) with their score columns, a
chart view that plots them against the step, and the search's charts (the screenshots in docs/ are
taken here with `--screenshots docs`); leaderboard and export read the study,
and the exported file runs without nas_cntk; a search killed with kill -9 mid-trial, resumed with no
trial left to run, fails the dead trial by its stale heartbeat and reruns it with the same choices; a
resumed search proposes no architecture it has scored; Ctrl-C is one line, keeps the finished trials,
ends the open runs as KILLED and queues the interrupted trial, which the resumed search reruns with
the same choices (several workers: tests/test_scale_out.py); a search space with one architecture
repeats it from the cache once the sampler finds nothing new; invalid combinations are pruned with
their reason; resuming with other data settings, an unreachable tracking server, a bad space file,
grid on a continuous space and bad data sizes are one error line and leave no store.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import optuna
import pandas as pd
import pytest
from commands import (
    SLOW,
    SLOW_SPACE,
    SMALL_SPACE,
    TINY,
    free_port,
    nas_cntk_command,
    one_error_line,
    wait_for_server,
    wait_for_trials,
    write_space,
)
from mlflow import MlflowClient
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

import nas_cntk
from nas_cntk.scoring.measures import SCORE_NAMES
from nas_cntk.search.claims import Claims
from nas_cntk.search.leaderboard import leaderboard
from nas_cntk.search.space import load_space
from nas_cntk.search.stores import open_storage
from nas_cntk.search.study import EXHAUSTED_AFTER


def stores(trials_dir: Path) -> tuple[str, str]:
    return f"sqlite:///{trials_dir / 'optuna.db'}", f"sqlite:///{trials_dir / 'mlflow.db'}"


def load(trials_dir: Path, study: str) -> optuna.Study:
    return optuna.load_study(study_name=study, storage=stores(trials_dir)[0])


def a_running_trial_after_a_finished_one(trials: list[optuna.trial.FrozenTrial]) -> bool:
    """A trial has finished and the next one scores its architecture, all its choices made (then the search is
    stopped)."""
    return any(t.state == TrialState.COMPLETE for t in trials) and any(
        t.state == TrialState.RUNNING and "arch_hash" in t.user_attrs for t in trials)


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory, cifar_dir: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """One small search, shared by the tests that read its results."""
    root = tmp_path_factory.mktemp("search")
    result = nas_cntk_command("search", "--space", str(write_space(root, SMALL_SPACE)), "--trials", "4", *TINY,
                              "--study", "small", "--trials-dir", str(root / "trials"), data_dir=cifar_dir)
    assert result.returncode == 0, result.stderr
    return root / "trials", result


@pytest.mark.integration
def test_search_records_every_trial_in_optuna_and_mlflow(searched) -> None:
    trials_dir, result = searched
    assert "top five of 4 finished trials" in result.stdout and "nas-cntk export --study small" in result.stdout
    study = load(trials_dir, "small")
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 4

    client = MlflowClient(stores(trials_dir)[1])
    experiment = client.get_experiment_by_name("small")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the training view
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "trial_number" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert parent.data.metrics["best_cntk_val_accuracy"] == study.best_value
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"leaderboard.csv",
                                                                          "optimization_history.png"}
    # The search run's charts: each trial's scores at its step.
    for metric, value in (("cntk_val_accuracy", lambda t: t.value),
                          ("nngp_val_accuracy", lambda t: t.user_attrs["nngp_val_accuracy"])):
        history = {m.step: m.value for m in client.get_metric_history(parent.info.run_id, metric)}
        assert history == {t.number: value(t) for t in trials}
    best = {m.step: m.value for m in client.get_metric_history(parent.info.run_id, "best_cntk_val_accuracy")}
    assert best[trials[-1].number] == study.best_value and list(best.values()) == sorted(best.values())
    by_run = {r.info.run_id: r for r in runs if r.data.tags.get("search_run_id") == parent.info.run_id}
    assert len(by_run) == 4 and not any("mlflow.parentRunId" in r.data.tags for r in runs)  # listed, not nested
    # The runs page's shared view shows the trials' runs alone: its filter selects exactly them.
    view = json.loads(experiment.tags["mlflow.sharedViewState.trials"])
    filtered = client.search_runs([experiment.experiment_id], filter_string=view["searchFilter"])
    assert sorted(r.info.run_id for r in filtered) == sorted(by_run)
    for trial in trials:
        run = by_run[trial.user_attrs["mlflow_run_id"]]  # the trial finds its run ...
        assert run.data.tags["trial_number"] == str(trial.number)  # ... and the run its trial
        # The run lasts as long as its trial: it starts as the trial starts and spans the kernel's time.
        start, end = run.info.start_time / 1000, run.info.end_time / 1000
        assert trial.datetime_start.timestamp() - 1 <= start and end <= trial.datetime_complete.timestamp() + 1
        assert end - start >= trial.user_attrs["kernel_seconds"]
        assert run.data.tags["arch_hash"] == trial.user_attrs["arch_hash"]
        assert run.data.metrics["cntk_val_accuracy"] == trial.value
        assert run.data.metrics["nngp_val_accuracy"] == trial.user_attrs["nngp_val_accuracy"]
        # At the trial's number as the step: the runs page's chart view plots each trial there.
        history = client.get_metric_history(run.info.run_id, "cntk_val_accuracy")
        assert [(m.step, m.value) for m in history] == [(trial.number, trial.value)]
        assert {"cntk_ridge", "kernel_seconds", "pairs_per_second"} <= set(run.data.metrics)
        assert run.data.params["readout"] == trial.params["readout"] and run.data.params["train_size"] == "20"
        assert run.data.tags["device"] == "cpu"
        description = json.loads(Path(client.download_artifacts(run.info.run_id, "architecture.json")).read_text())
        assert nas_cntk.load(description).hash == trial.user_attrs["arch_hash"]


def chromium(*args: str) -> str:
    """Headless Chromium on a page: its DOM (``--dump-dom``) or a screenshot; returns stdout."""
    browser = shutil.which("chromium")
    if browser is None:  # a failure, not a skip: CI installs it (.ci/run)
        pytest.fail("Chromium is not installed: apt-get install chromium (the MLflow UI is checked in a real browser)")
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                                 "--disable-sync", f"--user-data-dir={profile}", "--window-size=1920,1000",
                                 "--run-all-compositor-stages-before-draw", "--virtual-time-budget=30000", *args],
                                capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.integration
def test_mlflow_ui_serves_the_runs_and_shows_them_in_a_browser(searched, screenshots: Path) -> None:
    trials_dir, _ = searched
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).with_name("nas-cntk")), "ui", "--trials-dir", str(trials_dir),
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)  # its own process group: the server's workers stop with it
    base = f"http://127.0.0.1:{port}"
    try:
        page = server.stdout.readline().strip()  # the study's runs page, first: the bare address is GenAI's home
        assert page.startswith(f"small: {base}/#/experiments/")
        assert page.endswith("runs?viewStateShareKey=trials&workflowType=machine_learning")
        line = server.stdout.readline()
        assert line.startswith("MLflow UI on sqlite:///") and f": {base} " in line
        runs_page = page.removeprefix("small: ")
        wait_for_server(server, base)

        def api(path: str, body: dict | None = None) -> dict:
            request = urllib.request.Request(f"{base}/api/2.0/mlflow/{path}",
                                             data=None if body is None else json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())

        experiment = api("experiments/get-by-name?experiment_name=small")["experiment"]
        runs = api("runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
        tags = [{t["key"]: t["value"] for t in run["data"].get("tags", [])} for run in runs]
        searches = [run["info"]["run_id"] for run, t in zip(runs, tags) if "trial_number" not in t]
        assert len(searches) == 1 and len(runs) == 5
        trial_runs = [run for run, t in zip(runs, tags) if "trial_number" in t]
        assert sorted(int(t["trial_number"]) for t in tags if "trial_number" in t) == [0, 1, 2, 3]
        assert all(t["search_run_id"] == searches[0] for t in tags if "trial_number" in t)
        artifacts = api(f"artifacts/list?run_id={trial_runs[0]['info']['run_id']}")["files"]
        assert [a["path"] for a in artifacts] == ["architecture.json"]

        # The runs page in a browser: the model-training layout (no GenAI menu), every trial and not the search
        # run, the score columns.
        dom = chromium("--dump-dom", runs_page)
        assert "Model registry" in dom and "Evaluation runs" not in dom
        for text in ("trial 0", "trial 1", "trial 2", "trial 3", "cntk_val_accuracy", "nngp_val_accuracy",
                     "kernel_seconds", "network", "tags.trial_number IS NOT NULL"):
            assert text in dom, text
        search_run = next(run for run in runs if run["info"]["run_id"] == searches[0])
        assert search_run["info"]["run_name"] not in dom
        chromium(f"--screenshot={screenshots / 'mlflow-runs.png'}", runs_page)
        # Its chart view: line charts against the step, which runs to the last trial's number (at step 0 alone,
        # the UI draws bar charts, one bar per run, with no step axis).
        dom = chromium("--dump-dom", f"{runs_page}&compareRunsMode=CHART")
        assert 'class="xtitle"' in dom and 'data-unformatted="Step"' in dom
        assert re.search(r'class="xtick"><text[^>]*data-unformatted="3"', dom)
        # The search run's charts: the scores of each trial against its number, the optimisation history.
        charts = (f"{base}/#/experiments/{experiment['experiment_id']}/runs/{searches[0]}/model-metrics"
                  "?workflowType=machine_learning")
        dom = chromium("--dump-dom", charts)
        assert "best_cntk_val_accuracy" in dom and "Step" in dom
        chromium(f"--screenshot={screenshots / 'mlflow-charts.png'}", charts)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.integration
def test_leaderboard_and_export_of_the_best(searched, tmp_path: Path) -> None:
    trials_dir, _ = searched
    csv = tmp_path / "board.csv"
    result = nas_cntk_command("leaderboard", "--trials-dir", str(trials_dir), "--top", "2", "--csv", str(csv))
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(csv)
    study = load(trials_dir, "small")
    assert list(table["rank"]) == [1, 2] and table["cntk_acc"].iloc[0] == study.best_value
    assert table["cntk_acc"].is_monotonic_decreasing
    assert str(table["hash"].iloc[0]) in result.stdout

    out = tmp_path / "export"
    result = nas_cntk_command("export", "--trials-dir", str(trials_dir), "--top", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    files = sorted(out.glob("rank*.py"))
    assert len(files) == 2 and files[0].name.startswith(f"rank1_trial{table['trial'].iloc[0]}_")
    assert nas_cntk.load(files[0].with_suffix(".json")).hash == table["hash"].iloc[0]
    # The exported file runs where nas_cntk cannot be imported.
    check = ("import sys, runpy, torch; sys.modules['nas_cntk'] = None; "
             f"net = runpy.run_path({str(files[0])!r})['Network'](width=8); "
             "print(tuple(net(torch.randn(2, 3, 32, 32)).shape))")
    run = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "(2, 10)"


@pytest.mark.integration
def test_resuming_with_other_data_settings_is_refused(searched) -> None:
    trials_dir, _ = searched
    line = one_error_line(nas_cntk_command("search", "--space", str(trials_dir.parent / "space.yaml"), "--study",
                                           "small", "--trials", "5", "--train-size", "30", "--val-size", "10",
                                           "--resolution", "8", "--trials-dir", str(trials_dir)))
    assert "study 'small'" in line and "t30-v10-r8-s0" in line


@pytest.mark.integration
def test_an_exhausted_space_repeats_from_the_cache(cifar_dir: Path, tmp_path: Path) -> None:
    """A space of one architecture, which another worker is scoring (trial 0, running): the sampler's repeats
    are refused (pruned, not counted) until it has proposed nothing new EXHAUSTED_AFTER times; then repeats
    count, scored once and then from the cache."""
    space = write_space(tmp_path, "name: one\nstages: 1\nlayers: 2\nkernel: 3\nreadout: gap\n")
    (tmp_path / "trials").mkdir()
    storage = open_storage(stores(tmp_path / "trials")[0])
    study = optuna.create_study(storage=storage, study_name="one", direction="maximize")
    other = study.ask()
    Claims(storage, storage.get_study_id_from_name("one")).claim(load_space(space).suggest(other).hash, other.number)
    for _ in range(EXHAUSTED_AFTER - 2):  # the repeats of earlier workers: the search proposes the last two
        repeat = study.ask()
        repeat.set_user_attr("repeat_of", other.number)
        study.tell(repeat, state=TrialState.PRUNED)
    # --heartbeat 1: at the end the search waits out the grace period for trial 0, which never beats, 4 s
    result = nas_cntk_command("search", "--space", str(space), "--trials", "3", *TINY, "--study", "one",
                              "--heartbeat", "1", "--trials-dir", str(tmp_path / "trials"), data_dir=cifar_dir)
    assert result.returncode == 0, result.stderr
    trials = load(tmp_path / "trials", "one").get_trials()
    assert trials[0].state == TrialState.RUNNING
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert [t.user_attrs["cached"] for t in complete] == [False, True, True]
    assert len({t.value for t in complete}) == 1
    repeats = [t for t in trials if t.state == TrialState.PRUNED]
    assert len(repeats) == EXHAUSTED_AFTER and all(t.user_attrs["repeat_of"] == 0 for t in repeats)
    assert result.stdout.count("repeats trial 0") == 2 and result.stdout.count("cached") == 2
    assert "top five of 3 finished trials" in result.stdout


@pytest.mark.integration
def test_the_objective_is_any_recorded_score_and_a_study_keeps_its_own(cifar_dir: Path, tmp_path: Path) -> None:
    """--objective cntk_loo_sq_error: the study maximises minus the error, records every score, ranks by
    the error (lowest first) and is named for its objective; resumed with another objective, it refuses."""
    space = write_space(tmp_path, "name: small\nstages: 1\nlayers: [1, 2]\nkernel: [1, 3]\nreadout: [gap, flatten]\n")
    common = ["search", "--space", str(space), *TINY, "--trials-dir", str(tmp_path / "trials")]
    result = nas_cntk_command(*common, "--trials", "3", "--objective", "cntk_loo_sq_error", data_dir=cifar_dir)
    assert result.returncode == 0, result.stderr
    name = "small-t20-v10-r8-s0-cntk_loo_sq_error"
    study = load(tmp_path / "trials", name)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert study.user_attrs["objective"] == "cntk_loo_sq_error" and len(complete) == 3
    assert all(t.value == -t.user_attrs["cntk_loo_sq_error"] and set(SCORE_NAMES) <= set(t.user_attrs)
               for t in complete)
    table = leaderboard(study)
    assert table.attrs["objectives"] == ["cntk_loo_sq_error"] and table["cntk_loo_sq_error"].is_monotonic_increasing
    lines = result.stdout.splitlines()
    assert "cntk_loo_sq_error" in lines[lines.index("top five of 3 finished trials:") + 1]  # the table's header
    line = one_error_line(nas_cntk_command(*common, "--trials", "4", "--study", name, "--objective",
                                           "cntk_val_accuracy", data_dir=cifar_dir))
    assert f"study {name!r} was run with objective 'cntk_loo_sq_error'" in line


@pytest.mark.integration
def test_invalid_combinations_are_pruned_with_their_reason(cifar_dir: Path, tmp_path: Path) -> None:
    space = write_space(tmp_path, "stages: 3\nlayers: 1\nkernel: 3\nreadout: flatten\n")
    result = nas_cntk_command("search", "--space", str(space), "--trials", "2", "--train-size", "20", "--val-size",
                              "10", "--resolution", "2", "--study", "pooled", "--trials-dir",
                              str(tmp_path / "trials"), data_dir=cifar_dir)
    assert result.returncode == 0, result.stderr
    trials = load(tmp_path / "trials", "pooled").get_trials()
    assert [t.state for t in trials] == [TrialState.PRUNED] * 2
    assert all("below one pixel" in t.user_attrs["pruned_reason"] for t in trials)
    assert "pruned" in result.stdout


@pytest.mark.integration
def test_a_killed_search_resumes_and_retries_the_running_trial(cifar_dir: Path, tmp_path: Path) -> None:
    space, trials_dir = write_space(tmp_path, SLOW_SPACE), tmp_path / "trials"
    command = [str(Path(sys.executable).with_name("nas-cntk")), "search", "--space", str(space), "--trials", "4",
               *SLOW, "--study", "slow", "--heartbeat", "1", "--trials-dir", str(trials_dir)]
    env = {**os.environ, "NAS_CNTK_DATA_DIR": str(cifar_dir)}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_for_trials(process, stores(trials_dir)[0], "slow", a_running_trial_after_a_finished_one)
    process.kill()
    process.wait()
    running = next(t for t in load(trials_dir, "slow").get_trials() if t.state == TrialState.RUNNING)  # left so
    resume_finishes_the_interrupted_trial(command, env, trials_dir, "slow", running)  # failed by its heartbeat


def resume_finishes_the_interrupted_trial(command: list[str], env: dict[str, str], trials_dir: Path, study: str,
                                          interrupted: optuna.trial.FrozenTrial) -> None:
    """Resumed with as many trials as the study has finished (none left to run), the search still fails the
    interrupted trial and runs it again with its choices; the finished trials are kept, no architecture is
    scored twice, and no trial is left running or waiting."""
    before = {t.number: t.value for t in load(trials_dir, study).get_trials() if t.state == TrialState.COMPLETE}
    at = command.index("--trials") + 1
    result = subprocess.run([*command[:at], str(len(before)), *command[at + 1:]], capture_output=True, text=True,
                            env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    trials = load(trials_dir, study).get_trials()
    assert trials[interrupted.number].state == TrialState.FAIL
    retries = [t for t in trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == interrupted.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE and retries[0].params == interrupted.params
    assert {t.number: t.value for t in trials if t.number in before} == before
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    counted = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(counted) == len(before) + 1 and len({t.user_attrs["arch_hash"] for t in counted}) == len(counted)


@pytest.mark.integration
def test_a_resumed_search_proposes_no_architecture_it_has_scored(cifar_dir: Path, tmp_path: Path) -> None:
    space, trials_dir = write_space(tmp_path, SMALL_SPACE), tmp_path / "trials"
    for trials in ("3", "6"):  # the second run resumes the study of the first
        result = nas_cntk_command("search", "--space", str(space), "--trials", trials, *TINY, "--study", "resumed",
                                  "--trials-dir", str(trials_dir), data_dir=cifar_dir)
        assert result.returncode == 0, result.stderr
    assert "study resumed: 3 trials finished, 3 to run" in result.stdout
    trials = load(trials_dir, "resumed").get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 6 and len({t.user_attrs["arch_hash"] for t in complete}) == 6
    assert all(t.state == TrialState.COMPLETE or "repeat_of" in t.user_attrs for t in trials)


@pytest.mark.integration
def test_ctrl_c_is_one_line_keeps_the_finished_trials_kills_the_open_runs_and_resumes_the_trial(
        cifar_dir: Path, tmp_path: Path) -> None:
    space, trials_dir = write_space(tmp_path, SLOW_SPACE), tmp_path / "trials"
    command = [str(Path(sys.executable).with_name("nas-cntk")), "search", "--space", str(space), "--trials", "20",
               *SLOW, "--study", "stopped", "--trials-dir", str(trials_dir)]
    env = {**os.environ, "NAS_CNTK_DATA_DIR": str(cifar_dir)}
    # Ctrl-C as in a terminal: SIGINT at its default, even where the suite was started in the background
    # (a shell's background job ignores SIGINT, and so would the search it starts).
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for_trials(process, stores(trials_dir)[0], "stopped", a_running_trial_after_a_finished_one)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "Trial" not in err, err
    ours = [line for line in err.splitlines() if line.startswith("nas-cntk:")]
    assert ours == ["nas-cntk: interrupted; finished trials are kept, run the same command again to resume"]
    trials = load(trials_dir, "stopped").get_trials()
    assert any(t.state == TrialState.COMPLETE for t in trials)  # kept
    client = MlflowClient(stores(trials_dir)[1])
    runs = client.search_runs([client.get_experiment_by_name("stopped").experiment_id])
    status = {r.data.tags.get("trial_number", "search"): r.info.status for r in runs}
    assert status.pop("search") == "KILLED"
    interrupted, queued = ([t for t in trials if t.state == state] for state in (TrialState.FAIL, TrialState.WAITING))
    assert len(interrupted) == 1 and status.pop(str(interrupted[0].number)) == "KILLED"
    assert all(status[str(t.number)] == "FINISHED" for t in trials if t.state == TrialState.COMPLETE)
    # Queued to run again with its choices, as a killed search's trial is: the resumed search runs it.
    assert len(queued) == 1 and queued[0].params == interrupted[0].params
    resume_finishes_the_interrupted_trial(command, env, trials_dir, "stopped", interrupted[0])


def test_bad_data_settings_fail_before_anything_is_created(tmp_path: Path) -> None:
    result = nas_cntk_command("search", "--train-size", "0", "--trials-dir", str(tmp_path / "trials"))
    assert "training size: expected a positive multiple of 10" in one_error_line(result)
    assert result.stdout == "" and not (tmp_path / "trials").exists()  # no header, no study, no experiment


@pytest.mark.integration
def test_leaderboard_of_a_study_without_completed_trials_is_one_line(cifar_dir: Path, tmp_path: Path) -> None:
    space = write_space(tmp_path, "stages: 3\nlayers: 1\nkernel: 3\nreadout: flatten\n")  # all pruned at 2x2
    result = nas_cntk_command("search", "--space", str(space), "--trials", "1", "--train-size", "20", "--val-size",
                              "10", "--resolution", "2", "--study", "pooled", "--trials-dir",
                              str(tmp_path / "trials"), data_dir=cifar_dir)
    assert result.returncode == 0, result.stderr
    line = one_error_line(nas_cntk_command("leaderboard", "--trials-dir", str(tmp_path / "trials")))
    assert "study 'pooled' has no completed trial yet" in line


def test_unreachable_tracking_server_fails_before_any_trial(tmp_path: Path) -> None:
    space = write_space(tmp_path, SMALL_SPACE)
    line = one_error_line(nas_cntk_command("search", "--space", str(space), *TINY, "--trials-dir",
                                           str(tmp_path / "trials"), "--tracking-uri",
                                           f"http://127.0.0.1:{free_port()}", data_dir=tmp_path / "unused"))
    assert "unreachable" in line
    assert not (tmp_path / "trials" / "optuna.db").exists()


def test_bad_space_file_is_one_line_naming_file_and_key(tmp_path: Path) -> None:
    space = write_space(tmp_path, SMALL_SPACE.replace("kernel: [1, 3]", "kernel: [1, 4]"))
    line = one_error_line(nas_cntk_command("search", "--space", str(space), "--trials-dir", str(tmp_path)))
    assert str(space) in line and "kernel[1]" in line and "odd" in line


def test_grid_needs_a_finite_space(tmp_path: Path) -> None:
    line = one_error_line(nas_cntk_command("search", "--space", "default", "--sampler", "grid", *TINY,
                                           "--trials-dir", str(tmp_path / "trials")))
    assert "--sampler grid" in line and "continuous" in line
