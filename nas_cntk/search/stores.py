"""Where a study's results live: the Optuna storage and the MLflow store, local under the trials folder
unless given, and opening them. MLflow is imported only when a tracker is made: the leaderboard needs
Optuna alone.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from nas_cntk.errors import NasCntkError

if TYPE_CHECKING:
    from nas_cntk.search.tracking import Tracker


def local_tracking_uri(trials_dir: Path) -> str:
    return f"sqlite:///{(trials_dir / 'mlflow.db').resolve()}"


@dataclass(frozen=True)
class Stores:
    """Where results live: the Optuna storage and the MLflow store (local under ``trials_dir`` unless
    given), the score cache and MLflow's local artifacts (always under ``trials_dir``)."""

    trials_dir: Path
    storage_url: str | None = None      # e.g. postgresql://host/db; default sqlite:///DIR/optuna.db
    tracking_uri_given: str | None = None  # e.g. http://host:5000; default sqlite:///DIR/mlflow.db

    @property
    def storage(self) -> str:
        return self.storage_url or f"sqlite:///{(self.trials_dir / 'optuna.db').resolve()}"

    @property
    def tracking_uri(self) -> str:
        return self.tracking_uri_given or local_tracking_uri(self.trials_dir)

    @property
    def cache(self) -> Path:
        return self.trials_dir / "cache"

    def tracker(self, experiment: str) -> Tracker:
        from nas_cntk.search.tracking import Tracker  # MLflow takes seconds to import; most commands need none

        return Tracker(self.tracking_uri, experiment, self.trials_dir / "mlartifacts")

    def study(self, name: str | None = None) -> optuna.Study:
        """A study by name, or the most recently created one."""
        return load_study(self.storage, name)


def open_storage(url: str, heartbeat: int | None = None) -> RDBStorage:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # SQLite serialises writers: wait for the lock instead of failing when several workers write at once.
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    try:
        with warnings.catch_warnings():  # heartbeats are marked experimental, unchanged since Optuna 2.8
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(url, engine_kwargs=engine, heartbeat_interval=heartbeat,
                              grace_period=None if heartbeat is None else 3 * heartbeat,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3)
                              if heartbeat else None)
    except Exception as error:  # SQLAlchemy and driver errors: bad URL, unreachable server, missing driver
        raise NasCntkError(f"Optuna storage {url}: {str(error).splitlines()[0]}") from None


def load_study(storage: str, study: str | None = None) -> optuna.Study:
    """A study by name, or the most recently created one in ``storage`` (a local store must exist already)."""
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).is_file():
        raise NasCntkError(f"no Optuna store at {storage.removeprefix('sqlite:///')}; run `nas-cntk search` first, "
                           "or point --trials-dir at the folder that holds optuna.db")
    names = optuna.get_all_study_names(open_storage(storage))
    if not names:
        raise NasCntkError(f"no study in {storage}; run `nas-cntk search` first")
    if study is not None and study not in names:
        raise NasCntkError(f"no study named {study!r} in {storage} (there: {', '.join(names)})")
    return optuna.load_study(study_name=study or names[-1], storage=open_storage(storage))
