"""Trained accuracies of a study's architectures: which to train, where results are kept, how they pair
with the kernel scores.

Optuna refuses to change the attributes of a finished trial, so a trained result is a study user
attribute ``trained:LABEL:TRIAL`` (LABEL names the training settings, see
:attr:`TrainSettings.label`), and metrics prefixed ``trained.LABEL.`` in the trial's MLflow run.
Training with other settings adds results under another label; nothing is overwritten.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from tqdm.auto import tqdm

from nas_cntk.architecture import Architecture
from nas_cntk.data import DataSplits
from nas_cntk.errors import NasCntkError
from nas_cntk.leaderboard import distinct_trials
from nas_cntk.tracking import Tracker
from nas_cntk.train import TrainingDiverged, TrainResult, TrainSettings, train

PREFIX = "trained:"
KERNELS = {"cntk": "cntk_val_accuracy", "nngp": "nngp_val_accuracy"}


def select(study: optuna.Study, *, top: int | None = None, trials: list[int] | None = None,
           sample: int | None = None, seed: int = 0) -> list[FrozenTrial]:
    """The kernel's best ``top``, the trials numbered ``trials``, or a random ``sample`` (unbiased for correlation)."""
    candidates = distinct_trials(study)
    if not candidates:
        raise NasCntkError(f"study {study.study_name!r} has no completed trial yet")
    if trials is not None:
        by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
        for number in trials:
            if number not in by_number or by_number[number].state != TrialState.COMPLETE:
                state = by_number[number].state.name if number in by_number else "not in the study"
                raise NasCntkError(f"--trials: trial {number} of study {study.study_name!r} has no kernel score "
                                   f"({state})")
        return [by_number[number] for number in dict.fromkeys(trials)]
    if sample is not None:
        rng = np.random.default_rng(seed)
        chosen = rng.choice(len(candidates), min(sample, len(candidates)), replace=False)
        return [candidates[i] for i in sorted(chosen)]
    return candidates[:top]


def train_trials(study: optuna.Study, networks: dict[int, Architecture], trials: list[FrozenTrial],
                 settings: TrainSettings, data: DataSplits, tracker: Tracker, *, device: str | None = None) -> list[int]:
    """Train each trial's network, keeping each result as soon as it exists; return the trials that diverged."""
    diverged = []
    with tqdm(total=len(trials), desc="networks", unit="net", dynamic_ncols=True) as bar:
        for trial in trials:
            arch = networks[trial.number]
            try:
                result = train(arch, data, settings, device=device)
            except TrainingDiverged as error:
                diverged.append(trial.number)
                tqdm.write(f"trial {trial.number:>4}  {error}")
            else:
                record(study, trial, settings, result)
                if "mlflow_run_id" in trial.user_attrs:
                    tracker.log_trained(trial.user_attrs["mlflow_run_id"], settings.label, asdict(settings),
                                        result.to_dict())
                tqdm.write(f"trial {trial.number:>4}  test {result.test_accuracy:.4f}  CNTK {trial.value:.4f}  "
                           f"{result.seconds:6.0f} s  {arch.name or arch.summary()}")
            bar.update()
    return diverged


def key(label: str, trial_number: int) -> str:
    return f"{PREFIX}{label}:{trial_number}"


def record(study: optuna.Study, trial: FrozenTrial, settings: TrainSettings, result: TrainResult) -> None:
    study.set_user_attr(key(settings.label, trial.number), {"settings": asdict(settings), **result.to_dict()})


def results(study: optuna.Study) -> dict[str, dict[int, dict]]:
    """Trained results by label, then by trial number."""
    found: dict[str, dict[int, dict]] = {}
    for name, value in study.user_attrs.items():
        if name.startswith(PREFIX):
            label, number = name[len(PREFIX):].rsplit(":", 1)
            found.setdefault(label, {})[int(number)] = value
    return found


def architecture_id(trial: FrozenTrial) -> str:
    """What a plot and a table call an architecture: its name when it has one, else its hash."""
    return trial.user_attrs.get("name") or trial.user_attrs["arch_hash"]


def kernel_scores(study: optuna.Study, kernel: str = "cntk") -> pd.DataFrame:
    """One row per distinct architecture: id, hash, name, trial and its kernel validation accuracy."""
    return pd.DataFrame([{"id": architecture_id(t), "hash": t.user_attrs["arch_hash"], "name": t.user_attrs.get("name"),
                          "trial": t.number, "kernel": t.user_attrs[KERNELS[kernel]]} for t in distinct_trials(study)],
                        columns=["id", "hash", "name", "trial", "kernel"])


def choose_label(study: optuna.Study, label: str | None) -> str:
    """The label asked for, else the one with the most trained architectures."""
    found = results(study)
    if not found:
        raise NasCntkError(f"study {study.study_name!r} has no trained results; run `nas-cntk train "
                           f"--study {study.study_name}` or pass --trained-csv")
    if label is None:
        return max(found, key=lambda name: len(found[name]))
    if label not in found:
        raise NasCntkError(f"--label {label!r}: no trained results under it (there: {', '.join(found)})")
    return label


def study_trained(study: optuna.Study, label: str) -> pd.Series:
    """Trained test accuracies under ``label``, by architecture hash."""
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    return pd.Series({by_number[n].user_attrs["arch_hash"]: r["test_accuracy"] for n, r in results(study)[label].items()},
                     dtype=float, name="hash")


def external_trained(path: str | Path, column: str | None = None) -> pd.Series:
    """Trained accuracies from a CSV keyed by architecture ``hash`` or ``name``, by that key.

    ``column`` names the accuracy column; by default the table's only numeric column besides the key.
    """
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise NasCntkError(f"--trained-csv {path}: cannot read it as CSV ({str(error).splitlines()[0]})") from None
    keys = [name for name in ("hash", "name") if name in table.columns]
    if not keys:
        raise NasCntkError(f"--trained-csv {path}: needs a 'hash' or 'name' column to match architectures; "
                           f"it has {', '.join(table.columns)}")
    if column is None:
        numeric = [c for c in table.select_dtypes("number").columns if c not in keys]
        if len(numeric) != 1:
            raise NasCntkError(f"--trained-csv {path}: say which column holds the accuracies with --column "
                               f"(numeric columns: {', '.join(numeric) or 'none'})")
        column = numeric[0]
    elif column not in table.columns:
        raise NasCntkError(f"--column {column!r}: not a column of {path} ({', '.join(table.columns)})")
    return pd.Series(pd.to_numeric(table[column], errors="coerce").to_numpy(), index=table[keys[0]].astype(str),
                     name=keys[0], dtype=float)


def pair(scores: pd.DataFrame, trained: pd.Series) -> pd.DataFrame:
    """``scores`` (see :func:`kernel_scores`) with a ``trained`` column, for the architectures that have one.

    ``trained`` is indexed by the column its name says: ``hash`` or ``name``.
    """
    return scores.assign(trained=scores[trained.name].map(trained)).dropna(subset=["trained"])
