"""MLflow tracking: one experiment per study, one parent run per search, one nested run per trial.

Everything goes through an explicit ``MlflowClient`` (no global active run), so worker processes
log into the same parent run by its id. A trial's run is found from the trial (Optuna user
attribute ``mlflow_run_id``) and from the run (tags ``study`` and ``trial_number``); later results
for the same trial (trained networks) are added to that run.
"""
from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException

from nas_cntk.errors import TrackingError

for _name in ("mlflow", "alembic"):  # table creation and migration chatter on every new store
    logging.getLogger(_name).setLevel(logging.WARNING)


def local_tracking_uri(trials_dir: Path) -> str:
    return f"sqlite:///{(trials_dir / 'mlflow.db').resolve()}"


class Tracker:
    """One MLflow experiment. Creating one checks the store is reachable, before any work starts."""

    def __init__(self, uri: str, experiment: str, artifact_root: Path | None = None):
        self.uri, self.experiment = uri, experiment
        if uri.startswith(("http://", "https://")):
            _check_server(uri)
        elif uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(uri)
        try:
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = found.experiment_id if found else self.client.create_experiment(
                experiment,
                artifact_location=None if artifact_root is None else (artifact_root / experiment).resolve().as_uri())
        except MlflowException as error:
            raise TrackingError(f"MLflow tracking store {uri}: {error.message.splitlines()[0]}") from None

    # ------------------------------------------------------------------------------------ any run

    def start_run(self, name: str, *, parent: str | None = None, params: Mapping[str, Any] = {},
                  metrics: Mapping[str, float] = {}, tags: Mapping[str, str] = {}) -> str:
        """A new run (nested under ``parent`` if given) with its first values; returns its id."""
        tags = {**({"mlflow.parentRunId": parent} if parent else {}), **tags}
        run_id = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
        self.log(run_id, params=params, metrics=metrics)
        return run_id

    def log(self, run_id: str, *, params: Mapping[str, Any] = {}, metrics: Mapping[str, float] = {}) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                              params=[Param(k, str(v)) for k, v in params.items()])

    def log_text(self, run_id: str, text: str, path: str) -> None:
        self.client.log_text(run_id, text, path)

    def log_figure(self, run_id: str, figure: Any, path: str) -> None:
        self.client.log_figure(run_id, figure, path)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    @contextmanager
    def ending(self, run_id: str) -> Iterator[None]:
        """Ends the run as FINISHED when the block completes, KILLED on Ctrl-C, FAILED on any error."""
        status = "FAILED"
        try:
            yield
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            self.end_run(run_id, status)

    # ------------------------------------------------------------------------------------ a study's runs

    def start_search(self, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        return self.start_run(f"search {time.strftime('%Y-%m-%d %H:%M:%S')}", params=params,
                              tags={"study": self.experiment, **tags})

    def log_trial(self, parent_run_id: str, trial_number: int, *, params: Mapping[str, Any],
                  metrics: Mapping[str, float], tags: Mapping[str, str], architecture_json: str | None,
                  status: str = "FINISHED") -> str:
        """A finished trial as a nested run of the search's parent run; returns its run id."""
        run_id = self.start_run(f"trial {trial_number}", parent=parent_run_id, params=params, metrics=metrics,
                                tags={"study": self.experiment, "trial_number": str(trial_number), **tags})
        if architecture_json is not None:
            self.log_text(run_id, architecture_json, "architecture.json")
        self.end_run(run_id, status)
        return run_id

    def log_search_summary(self, run_id: str, leaderboard: pd.DataFrame, history_figure: Any | None,
                           metrics: Mapping[str, float]) -> None:
        self.log(run_id, metrics=metrics)
        self.log_text(run_id, leaderboard.to_csv(index=False), "leaderboard.csv")
        if history_figure is not None:
            self.log_figure(run_id, history_figure, "optimization_history.png")

    def log_trained(self, run_id: str, label: str, settings: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        """A trained network's result in its trial's run, under ``trained.LABEL.``: other labels are kept."""
        prefix = f"trained.{label}."
        now = int(time.time() * 1000)
        curves = [Metric(f"{prefix}{name}", float(value), now, epoch)
                  for name in ("train_loss", "train_accuracy") for epoch, value in enumerate(result[name], 1)]
        self.log(run_id, params={f"{prefix}{k}": v for k, v in settings.items()},
                 metrics={f"{prefix}{k}": result[k] for k in ("test_accuracy", "seconds", "parameters")})
        self.client.log_batch(run_id, metrics=curves)
        self.client.set_tag(run_id, f"{prefix}device", result["device"])

    def latest_search_run(self) -> str:
        """The study's most recent search run (a run without a parent): where study-wide results go."""
        for run in self.client.search_runs([self.experiment_id], order_by=["attributes.start_time DESC"],
                                           max_results=50000):
            if "mlflow.parentRunId" not in run.data.tags:
                return run.info.run_id
        raise TrackingError(f"no search run of study {self.experiment!r} in {self.uri}")

    def log_correlation(self, run_id: str, label: str, metrics: Mapping[str, float], table: pd.DataFrame,
                        report: str, figure: Any) -> None:
        prefix = f"correlation.{label}"
        self.log(run_id, metrics={f"{prefix}.{k}": v for k, v in metrics.items()})
        self.log_text(run_id, table.to_csv(index=False), f"{prefix}/scores.csv")
        self.log_text(run_id, report, f"{prefix}/correlation.txt")
        self.log_figure(run_id, figure, f"{prefix}/correlation.png")


def _check_server(uri: str) -> None:
    """Fail fast: MLflow's own client retries an unreachable server for minutes."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10) as response:
            response.read()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingError(f"MLflow tracking server {uri} is unreachable ({reason}); start it, or leave out "
                            "--tracking-uri to log to the local store under the trials folder") from None
