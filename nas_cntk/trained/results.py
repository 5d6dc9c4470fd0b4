"""Trained accuracies of a study's architectures: which to train, where results are kept, how they pair
with the kernel scores.

Optuna refuses to change the attributes of a finished trial, so a trained result is a study user
attribute ``trained:LABEL:TRIAL`` (LABEL names the training settings, see
:attr:`TrainSettings.label`), and metrics prefixed ``trained.LABEL.`` in the trial's MLflow run.
Training with other settings adds results under another label; nothing is overwritten.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from nas_cntk import checks
from nas_cntk.data import DataSettings, DataSplits, load_training_data
from nas_cntk.description.architecture import Architecture
from nas_cntk.errors import NasCntkError, TrainingDiverged
from nas_cntk.search.leaderboard import distinct_trials, study_objectives, trial_architecture
from nas_cntk.search.objectives import NAMES, SUM_KEY, objective_keys, orientation
from nas_cntk.search.stores import Stores
from nas_cntk.search.tracking import Tracker
from nas_cntk.trained.correlation import correlate, correlation_figure, format_correlation
from nas_cntk.trained.settings import TrainSettings
from nas_cntk.trained.training import TrainResult, train

PREFIX = "trained:"
# Below this many paired networks a rank correlation says little: correlate warns.
FEW_FOR_A_RANKING = 10


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
                raise NasCntkError(f"--trial-numbers: trial {number} of study {study.study_name!r} has no kernel score "
                                   f"({state})")
        return [by_number[number] for number in dict.fromkeys(trials)]
    if sample is not None:
        rng = np.random.default_rng(seed)
        chosen = rng.choice(len(candidates), min(sample, len(candidates)), replace=False)
        return [candidates[i] for i in sorted(chosen)]
    return candidates[:top]


def train_trials(study: optuna.Study, networks: dict[int, Architecture], trials: list[FrozenTrial],
                 settings: TrainSettings, data: DataSplits, tracker: Tracker, *,
                 device: str | None = None) -> list[int]:
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
                tqdm.write(f"trial {trial.number:>4}  test {result.test_accuracy:.4f}  "
                           f"CNTK {trial.user_attrs['cntk_val_accuracy']:.4f}  "
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


def study_scores(study: optuna.Study, score: str) -> pd.DataFrame:
    """One row per distinct architecture: id, hash, name, trial and its score (a kernel score, a cost or the
    value of a sum the study maximised), oriented so that higher is better."""
    sign = orientation(score) if score in NAMES else 1
    rows = []
    for t in distinct_trials(study):
        if score not in t.user_attrs:
            raise NasCntkError(f"trial {t.number} of study {study.study_name!r} has no {score} (scored before it was "
                               "recorded); correlate another score with --score")
        rows.append({"id": architecture_id(t), "hash": t.user_attrs["arch_hash"], "name": t.user_attrs.get("name"),
                     "trial": t.number, "kernel": sign * t.user_attrs[score]})
    return pd.DataFrame(rows, columns=["id", "hash", "name", "trial", "kernel"])


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
    return pd.Series({by_number[n].user_attrs["arch_hash"]: r["test_accuracy"]
                      for n, r in results(study)[label].items()}, dtype=float, name="hash")


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
    """``scores`` (see :func:`study_scores`) with a ``trained`` column, for the architectures that have one.

    ``trained`` is indexed by the column its name says: ``hash`` or ``name``.
    """
    return scores.assign(trained=scores[trained.name].map(trained)).dropna(subset=["trained"])


# ------------------------------------------------------------------------------------------------ commands

@dataclass(frozen=True)
class TrainingRun:
    """What ``nas-cntk train`` did: one row per chosen trial with a result, and the trials that diverged."""

    table: pd.DataFrame
    diverged: list[int]

    def raise_if_diverged(self) -> None:
        if self.diverged:
            raise TrainingDiverged(f"training diverged for trial(s) {', '.join(map(str, self.diverged))}; the "
                                   "others are kept; run again with a lower --lr to train those")


def run_training(stores: Stores, settings: TrainSettings, *, study: str | None = None, top: int | None = None,
                 trials: list[int] | None = None, sample: int | None = None, data_dir: str | None = None,
                 device: str | None = None) -> TrainingRun:
    """Train the chosen trials' networks (``nas-cntk train``), skipping those already trained with these
    settings; each new result is kept as soon as it exists."""
    checks.device(device)
    for option, value in (("--top", top), ("--sample", sample)):
        if value is not None:
            checks.integer(value, option)
    found = stores.study(study)
    chosen = select(found, top=top or 5, trials=trials, sample=sample, seed=settings.seed)
    done = results(found).get(settings.label, {})
    todo = [t for t in chosen if t.number not in done]
    networks = {t.number: trial_architecture(t) for t in todo}
    for number, arch in networks.items():  # a network that does not fit fails now, not after hours of training
        try:
            arch.sizes(settings.resolution, settings.resolution)
        except NasCntkError as error:
            raise NasCntkError(f"trial {number} at --resolution {settings.resolution}: {error}") from None
    print(f"study {found.study_name}: {len(todo)} network(s) to train, {len(chosen) - len(todo)} already trained "
          f"with these settings (label {settings.label})")
    tracker = stores.tracker(found.study_name)
    data = load_training_data(DataSettings.from_label(found.user_attrs["data"]), settings.train_size,
                              settings.test_size, resolution=settings.resolution, seed=settings.seed,
                              data_dir=data_dir)
    diverged = train_trials(found, networks, todo, settings, data, tracker, device=device)
    kept = results(found).get(settings.label, {})
    table = pd.DataFrame([{"trial": t.number, "cntk_acc": t.user_attrs["cntk_val_accuracy"],
                           "test_acc": kept[t.number]["test_accuracy"],
                           "train_s": kept[t.number]["seconds"],
                           "network": t.user_attrs.get("name") or t.user_attrs["summary"]}
                          for t in chosen if t.number in kept])
    return TrainingRun(table, diverged)


@dataclass(frozen=True)
class CorrelationRun:
    """What ``nas-cntk correlate`` found: the paired scores, the report, where the plot and the run are."""

    table: pd.DataFrame
    report: str
    plot: Path
    run_id: str
    study: str


def run_correlation(stores: Stores, *, study: str | None = None, label: str | None = None,
                    trained_csv: str | None = None, column: str | None = None, score: str | None = None,
                    top_k: int | None = None, resamples: int = 2000, seed: int = 0,
                    out: str | None = None) -> CorrelationRun:
    """Correlate a study's kernel scores with its trained accuracies (or a CSV's); plot and log it."""
    if score is not None and score not in NAMES and not score.startswith(SUM_KEY):
        raise NasCntkError(f"--score: expected one of {', '.join(NAMES)} or the study's objective, got {score!r}")
    found = stores.study(study)
    keys = objective_keys(study_objectives(found))
    if score is not None and score not in (*NAMES, *keys):
        raise NasCntkError(f"--score: study {found.study_name!r} has no {score!r} (its objectives: {', '.join(keys)})")
    if trained_csv:
        trained_scores, label = external_trained(trained_csv, column), f"csv-{Path(trained_csv).stem}"
    else:
        label = choose_label(found, label)
        trained_scores = study_trained(found, label)
    score = score or keys[0]
    table = pair(study_scores(found, score), trained_scores)
    by_id = table.set_index("id")
    result = correlate(by_id["kernel"], by_id["trained"], top_k=top_k, resamples=resamples, seed=seed)
    kernel_label = score if score not in NAMES or orientation(score) > 0 else f"-{score}"
    report = (f"study {found.study_name}, {kernel_label} vs trained test accuracy ({label})\n"
              f"{format_correlation(result)}")
    if result.n < FEW_FOR_A_RANKING:
        report += (f"\nwarning: {result.n} networks are too few for a ranking claim (the intervals say how little "
                   f"is known); train at least {FEW_FOR_A_RANKING}, e.g. nas-cntk train --sample "
                   f"{FEW_FOR_A_RANKING}")
    figure = correlation_figure(by_id["kernel"], by_id["trained"], result, kernel_label=kernel_label)
    plot = Path(out or stores.trials_dir / "correlation" / f"{found.study_name}-{score}-{label}.png")
    plot.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(plot, dpi=120)
    tracker = stores.tracker(found.study_name)
    run_id = tracker.latest_search_run()
    tracker.log_correlation(run_id, f"{score}.{label}", result.to_dict(), table, report, figure)
    return CorrelationRun(table, report, plot, run_id, found.study_name)
