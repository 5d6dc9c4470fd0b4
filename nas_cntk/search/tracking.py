"""MLflow tracking: one experiment per study, one run per search, one run per trial.

Everything goes through an explicit ``MlflowClient`` (no global active run), so worker processes
log into the same search run by its id. A trial's run is found from the trial (Optuna user
attribute ``mlflow_run_id``) and from the run (tags ``study``, ``trial_number`` and
``search_run_id``); later results for the same trial (trained networks) are added to that run.

What the MLflow UI needs to show a study without digging: the experiment is tagged as model
training (MLflow 3 opens untagged experiments as GenAI traces); trial runs are not nested under the
search run, so the runs page lists every trial; each trial run lasts as long as its trial (it is
created when the trial starts) and logs its scores with the trial number as the step, so the runs
page's chart view plots each trial at its number; the search run holds every trial's scores the same
way, so its own charts are the optimisation history; and a shared view of the runs page
(:data:`RUNS_VIEW`) shows the trials alone (:data:`TRIAL_RUNS`) with the score columns, best first.
"""
from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import DBAPIError

from nas_cntk.errors import TrackingError
from nas_cntk.search.stores import created_safely, masked

EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # MLflow's training view
RUNS_VIEW = "trials"  # the key of the shared runs-page view: http://HOST/#/experiments/ID/runs?viewStateShareKey=trials
# The UI's own switch between its GenAI and model-training layouts, which it keeps per browser, not per experiment.
TRAINING_LAYOUT = "workflowType=machine_learning"
# The runs page's columns in that view, best CNTK score first; trained accuracies are added as they appear.
VIEW_METRICS = ("cntk_val_accuracy", "nngp_val_accuracy", "flops", "kernel_seconds")
VIEW_PARAMS = ("network",)
TRIAL_RUNS = "tags.trial_number IS NOT NULL"  # the view's filter: the trials' runs, not the search's

for _name in ("mlflow", "alembic"):  # table creation and migration chatter on every new store
    logging.getLogger(_name).setLevel(logging.WARNING)
# MLflow prints a run's and its experiment's address on a tracking server as each run ends: between our trial
# lines, and with the server's password if its URI has one.
os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"


class Tracker:
    """One MLflow experiment. Creating one checks a tracking server is reachable, before any work starts; a
    store's tables are created on first use (after the study's, so that a bad storage leaves no store)."""

    def __init__(self, uri: str, experiment: str, artifact_root: Path | None = None):
        self.uri, self.experiment, self.artifact_root = uri, experiment, artifact_root
        if uri.startswith(("http://", "https://")):
            _check_server(uri)
        self._experiment_id: str | None = None

    @cached_property
    def client(self) -> MlflowClient:
        return MlflowClient(self.uri)  # creates a database store's tables

    @property
    def experiment_id(self) -> str:
        """The study's experiment, created (with its local store) on first use, tagged for the training view.
        Workers that start together create the store's tables, and the experiment, once."""
        if self._experiment_id is None:
            if self.uri.startswith("sqlite:///"):
                Path(self.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            try:
                self._experiment_id = created_safely(self._experiment)
            except (MlflowException, DBAPIError) as error:
                reason = str(getattr(error, "message", error)).splitlines()[0]
                raise TrackingError(f"MLflow tracking store {masked(self.uri)}: {reason}") from None
        return self._experiment_id

    def _experiment(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is None:
            root = self.artifact_root
            try:
                return self.client.create_experiment(
                    self.experiment, tags=EXPERIMENT_KIND,
                    artifact_location=None if root is None else (root / self.experiment).resolve().as_uri())
            except MlflowException as error:
                if error.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            found = self.client.get_experiment_by_name(self.experiment)  # created by another worker just now
        for key, value in EXPERIMENT_KIND.items():
            if found.tags.get(key) != value:
                self.client.set_experiment_tag(found.experiment_id, key, value)
        return found.experiment_id

    # ------------------------------------------------------------------------------------ any run

    def start_run(self, name: str, *, parent: str | None = None, params: Mapping[str, Any] = {},
                  metrics: Mapping[str, float] = {}, tags: Mapping[str, str] = {}) -> str:
        """A new run (nested under ``parent`` if given) with its first values; returns its id."""
        tags = {**({"mlflow.parentRunId": parent} if parent else {}), **tags}
        run_id = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
        self.log(run_id, params=params, metrics=metrics)
        return run_id

    def log(self, run_id: str, *, params: Mapping[str, Any] = {}, metrics: Mapping[str, float] = {},
            step: int = 0) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()],
                              params=[Param(k, str(v)) for k, v in params.items()])

    def log_text(self, run_id: str, text: str, path: str) -> None:
        self.client.log_text(run_id, text, path)

    def log_figure(self, run_id: str, figure: Any, path: str) -> None:
        self.client.log_figure(run_id, figure, path)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    @contextmanager
    def ending(self, run_id: str, finished: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
        """Ends the run as FINISHED when the block completes (or raises one of ``finished``), KILLED on
        Ctrl-C, FAILED on any other error."""
        status = "FAILED"
        try:
            yield
            status = "FINISHED"
        except finished:
            status = "FINISHED"
            raise
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            self.end_run(run_id, status)

    # ------------------------------------------------------------------------------------ a study's runs

    def start_search(self, params: Mapping[str, Any], tags: Mapping[str, str],
                     objectives: Sequence[tuple[str, bool]]) -> str:
        """The search's run. The runs view leads with the objectives' metrics, ordered by the first, best first
        (``(metric, ascending)``: lowest first if ascending); with several, the Pareto front's tag beside."""
        self.share_runs_view(metrics=tuple(key for key, _ in objectives[1:]), objective=objectives[0],
                             tags=("pareto_front",) if len(objectives) > 1 else ())
        return self.start_run(f"search {time.strftime('%Y-%m-%d %H:%M:%S')}", params=params,
                              tags={"study": self.experiment, **tags})

    def start_trial(self, search_run_id: str, trial_number: int) -> str:
        """A trial's run, started as the trial starts; returns its id."""
        return self.start_run(f"trial {trial_number}", tags={"study": self.experiment, "search_run_id": search_run_id,
                                                              "trial_number": str(trial_number)})

    def log_trial(self, run_id: str, *, params: Mapping[str, Any], metrics: Mapping[str, float],
                  tags: Mapping[str, str], architecture_json: str | None) -> None:
        """What a trial found, in its run at the trial's number as the step (the caller ends the run)."""
        step = int(self.client.get_run(run_id).data.tags["trial_number"])
        self.log(run_id, params=params, metrics=metrics, step=step)
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)
        if architecture_json is not None:
            self.log_text(run_id, architecture_json, "architecture.json")

    def tag(self, run_ids: list[str], key: str, value: str) -> None:
        for run_id in run_ids:
            self.client.set_tag(run_id, key, value)

    def share_runs_view(self, metrics: tuple[str, ...] = (), objective: tuple[str, bool] | None = None,
                        tags: tuple[str, ...] = ()) -> None:
        """The runs page as :data:`RUNS_VIEW` shows it: the objective and score columns, those it showed
        already (trained accuracies), ``metrics`` and ``tags``, best objective first (the view's own order
        where none is given). MLflow keeps a shared view as an experiment tag that a ``viewStateShareKey``
        link opens."""
        key = f"mlflow.sharedViewState.{RUNS_VIEW}"
        text = self.client.get_experiment(self.experiment_id).tags.get(key)
        shown = None if text is None else json.loads(text)
        leading = () if objective is None else (objective[0],)
        columns = dict.fromkeys([*(f"metrics.`{m}`" for m in (*leading, *metrics, *VIEW_METRICS)),
                                 *(f"tags.`{t}`" for t in tags),
                                 *([] if shown is None else shown["selectedColumns"]),
                                 *(f"params.`{p}`" for p in VIEW_PARAMS)])
        order = ((f"metrics.`{objective[0]}`", objective[1]) if objective is not None
                 else (shown["orderByKey"], shown["orderByAsc"]) if shown is not None
                 else (f"metrics.`{VIEW_METRICS[0]}`", False))
        view = {"searchFilter": TRIAL_RUNS, "orderByKey": order[0], "orderByAsc": order[1],
                "selectedColumns": list(columns), "runsHiddenMode": "SHOW_ALL"}
        self.client.set_experiment_tag(self.experiment_id, key, json.dumps(view))

    def log_search_summary(self, run_id: str, leaderboard: pd.DataFrame, figures: Mapping[str, Any],
                           metrics: Mapping[str, float]) -> None:
        """The leaderboard as ``leaderboard.csv``, ``figures`` by file name, and the study's ``metrics``."""
        self.log(run_id, metrics=metrics)
        self.log_text(run_id, leaderboard.to_csv(index=False), "leaderboard.csv")
        for path, figure in figures.items():
            self.log_figure(run_id, figure, path)

    def log_trained(self, run_id: str, label: str, settings: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        """A trained network's result in its trial's run, under ``trained.LABEL.``: other labels are kept.
        Its test accuracy also goes to the search run at the trial's step, beside the trial's kernel scores
        (charted against them, the kernel-against-trained scatter), and into the shared runs view."""
        prefix = f"trained.{label}."
        now = int(time.time() * 1000)
        curves = [Metric(f"{prefix}{name}", float(value), now, epoch)
                  for name in ("train_loss", "train_accuracy") for epoch, value in enumerate(result[name], 1)]
        tags = self.client.get_run(run_id).data.tags
        step = int(tags.get("trial_number", 0))
        self.log(run_id, params={f"{prefix}{k}": v for k, v in settings.items()},
                 metrics={f"{prefix}{k}": result[k] for k in ("test_accuracy", "seconds", "parameters")}, step=step)
        self.client.log_batch(run_id, metrics=curves)
        self.client.set_tag(run_id, f"{prefix}device", result["device"])
        if "search_run_id" in tags:
            self.log(tags["search_run_id"], metrics={f"{prefix}test_accuracy": result["test_accuracy"]}, step=step)
        self.share_runs_view((f"{prefix}test_accuracy",))

    def latest_search_run(self) -> str:
        """The study's most recent search run (a run that is not a trial's): where study-wide results go."""
        for run in self.client.search_runs([self.experiment_id], order_by=["attributes.start_time DESC"],
                                           max_results=50000):
            if "trial_number" not in run.data.tags:
                return run.info.run_id
        raise TrackingError(f"no search run of study {self.experiment!r} in {masked(self.uri)}")

    def log_correlation(self, run_id: str, label: str, metrics: Mapping[str, float], table: pd.DataFrame,
                        report: str, figure: Any) -> None:
        prefix = f"correlation.{label}"
        self.log(run_id, metrics={f"{prefix}.{k}": v for k, v in metrics.items()})
        self.log_text(run_id, table.to_csv(index=False), f"{prefix}/scores.csv")
        self.log_text(run_id, report, f"{prefix}/correlation.txt")
        self.log_figure(run_id, figure, f"{prefix}/correlation.png")


def study_runs_pages(uri: str, ui: str) -> dict[str, str]:
    """Each study's runs page in the shared view, on the MLflow UI at ``ui``, for the store at ``uri``;
    the most recently created study first."""
    client = MlflowClient(uri)
    try:
        experiments = client.search_experiments(order_by=["creation_time DESC"])
    except MlflowException as error:
        raise TrackingError(f"MLflow tracking store {masked(uri)}: {error.message.splitlines()[0]}") from None
    return {e.name: f"{ui}/#/experiments/{e.experiment_id}/runs?viewStateShareKey={RUNS_VIEW}&{TRAINING_LAYOUT}"
            for e in experiments if f"mlflow.sharedViewState.{RUNS_VIEW}" in e.tags}


def _check_server(uri: str) -> None:
    """Fail fast: MLflow's own client retries an unreachable server for minutes."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10) as response:
            response.read()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingError(f"MLflow tracking server {masked(uri)} is unreachable ({reason}); start it, or leave out "
                            "--tracking-uri to log to the local store under the trials folder") from None
