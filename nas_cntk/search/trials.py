"""One trial: propose a network, claim it, score it (rung by rung, from the score cache where it can) and
record everything about it on the trial and in its MLflow run.

What the study maximises is the space's ``objective`` (or ``--objective``): a score of the network's
kernel, its cost, or a sum of standardised ones (:mod:`nas_cntk.search.objectives`); with several
objectives, their Pareto front. Every score and both costs are recorded either way. A sum is
standardised over a fixed set of reference networks of the space, scored before the first trial and
then run as the study's first trials, so their kernels are not computed twice.
"""
from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import optuna
from tqdm.auto import tqdm

from nas_cntk.data import DataSplits
from nas_cntk.description.architecture import Architecture
from nas_cntk.errors import ArchitectureError, InvalidCandidate, KernelError, NasCntkError
from nas_cntk.scoring.regression import Score, score
from nas_cntk.scoring.rungs import RungScorer
from nas_cntk.search.cache import ScoreCache
from nas_cntk.search.claims import Claims
from nas_cntk.search.objectives import (
    REFERENCE_CELLS,
    REFERENCE_SEED,
    Reference,
    objective_keys,
    objectives_label,
    reference,
)
from nas_cntk.search.samplers import make_sampler
from nas_cntk.search.space import check_candidate
from nas_cntk.search.stores import RETRY
from nas_cntk.search.study import Search, completed_values, exhausted
from nas_cntk.search.tracking import Tracker


class TrialScorer:
    """Score one proposed network; record everything about it on the trial and in MLflow."""

    def __init__(self, search: Search, claims: Claims, splits: DataSplits, tracker: Tracker, parent_run_id: str,
                 device: str):
        self.space, self.data, self.splits, self.objectives = search.space, search.data, splits, search.objectives
        self.claims, self.tracker, self.parent_run_id, self.device = claims, tracker, parent_run_id, device
        self.keys = objective_keys(self.objectives)
        self.references: list[Reference] | None = None  # per rung, where an objective is standardised
        self.rungs, cache = search.rungs, search.settings.stores.cache
        self.caches = [ScoreCache(cache, search.data.label)] if self.rungs is None else \
            [ScoreCache(cache, self.rungs.rung_label(k)) for k in range(len(self.rungs))]
        if self.rungs is not None:
            self.kernels = ScoreCache(cache, self.rungs.label).directory / "kernels"

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        run_id = self.tracker.start_trial(self.parent_run_id, trial.number)
        trial.set_user_attr("mlflow_run_id", run_id)
        try:
            with self.tracker.ending(run_id, finished=(optuna.TrialPruned,)):
                return self._score(trial, run_id)
        except KeyboardInterrupt:  # Optuna fails the trial; it is run again on resume, as a killed one is
            if trial.params:
                RETRY(trial.study, next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number))
            raise

    def rung_scores(self, arch: Architecture) -> Iterator[tuple[Score, bool]]:
        """The network's score at each rung (one without rungs), from the cache where it has them, and
        whether it had; lazily, so that a pruned trial computes no higher rung."""
        scorer: RungScorer | None = None

        def compute(k: int) -> Score:
            nonlocal scorer
            if self.rungs is None:
                return score(arch, self.splits, device=self.device)
            scorer = scorer or RungScorer(arch, self.splits, self.rungs, self.device, self.kernels / f"{arch.hash}.npz")
            return scorer.score(k)

        for k, cache in enumerate(self.caches):
            found = cache.get(arch.hash)
            if found is None:
                found = compute(k)
                cache.put(found)
                yield found, False
            else:
                yield found, True

    def values(self, metrics: dict[str, float], rung: int) -> dict[str, float]:
        """Each objective's value (higher is better), by its key."""
        reference = None if self.references is None else self.references[rung]
        return {key: o.value(metrics, reference) for key, o in zip(self.keys, self.objectives)}

    def _score(self, trial: optuna.Trial, run_id: str) -> float | list[float]:
        try:
            arch = self.space.suggest(trial)
            check_candidate(arch, self.data.resolution)
        except (InvalidCandidate, ArchitectureError) as error:
            self._prune(trial, run_id, str(error))
        holder = self.claims.claim(arch.hash, trial.number)
        if holder != trial.number and not exhausted(trial.study):
            trial.set_user_attr("repeat_of", holder)
            self._prune(trial, run_id, f"repeats trial {holder}, not counted", arch)
        for key, value in {"arch_hash": arch.hash, "summary": arch.summary(), "name": arch.name,
                           "architecture": dict(arch.spec)}.items():
            trial.set_user_attr(key, value)
        cost = self.space.cost(arch)
        seconds = pairs = 0.0
        scores = self.rung_scores(arch)
        for k in range(len(self.caches)):
            try:
                result, cached = next(scores)
            except KernelError as error:
                self._log(trial, run_id, "FAIL", arch, tags={"error": str(error)})
                tqdm.write(f"trial {trial.number:>4}  failed: {error}")
                raise
            seconds, pairs = seconds + result.seconds, pairs + result.pairs
            values = self.values({**result.metrics(), **cost}, k)
            # a sum's value is recorded beside the scores; a plain objective is one of them already
            combined = {key: values[key] for key, o in zip(self.keys, self.objectives) if o.combined}
            record = {**_trial_record(result, cached), **cost, **combined}
            if self.rungs is not None:
                record |= {"kernel_seconds": seconds, "pairs": int(pairs),
                           "pairs_per_second": pairs / seconds if seconds else 0.0, "rung": k}
            for key, value in record.items():
                trial.set_user_attr(key, value)
            if self.rungs is not None:
                key, train_size = self.keys[0], self.rungs.train_sizes[k]
                self.tracker.log(run_id, metrics={f"{key}_by_rung": record[key]}, step=k)
                trial.report(values[key], train_size)
                if k < len(self.rungs) - 1 and trial.should_prune():
                    self._prune(trial, run_id, f"stopped at rung {k} ({train_size} training images): "
                                f"{key} {record[key]:.4f}", arch, record)
        self._log(trial, run_id, "COMPLETE", arch, record)
        best = {} if len(self.objectives) > 1 else {f"best_{self.keys[0]}": self.objectives[0].shown(
            max([values[self.keys[0]], *completed_values(trial.study)]))}
        self.tracker.log(self.parent_run_id, step=trial.number,
                         metrics={**result.metrics(), **cost, **combined, **best})
        columns = dict.fromkeys([*self.keys, "cntk_val_accuracy"])
        tqdm.write(f"trial {trial.number:>4}  " + "  ".join(f"{name} {record[name]:.4g}" for name in columns) +
                   f"  {'cached' if cached else f'{seconds:6.1f} s'}  {arch.name or arch.summary()}")
        return values[self.keys[0]] if len(self.objectives) == 1 else list(values.values())

    def _prune(self, trial: optuna.Trial, run_id: str, reason: str, arch: Architecture | None = None,
               record: dict | None = None) -> None:
        trial.set_user_attr("pruned_reason", reason)
        self._log(trial, run_id, "PRUNED", arch, record, tags={"pruned_reason": reason})
        tqdm.write(f"trial {trial.number:>4}  pruned: {reason}")
        raise optuna.TrialPruned(reason)

    def _log(self, trial: optuna.Trial, run_id: str, state: str, arch: Architecture | None = None,
             record: dict | None = None, tags: dict[str, str] | None = None) -> None:
        data = self.data
        params = {**trial.params, "train_size": data.train_size, "val_size": data.val_size,
                  "resolution": data.resolution, "data_seed": data.seed, "zca": data.zca}
        tags = {"state": state, **{k: v[:5000] for k, v in (tags or {}).items()}}
        metrics = {}
        if arch is not None:
            params["network"] = arch.summary()[:6000]
            tags["arch_hash"] = arch.hash
        if record is not None:
            tags.update(device=record["device"], cached=str(record["cached"]).lower())
            if "rung" in record:
                tags["rung"] = str(record["rung"])
            metrics = {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.tracker.log_trial(run_id, params=params, metrics=metrics, tags=tags,
                               architecture_json=None if arch is None else arch.to_json())


def _trial_record(result: Score, cached: bool) -> dict:
    """What a trial keeps about its score (Optuna user attributes; the numbers are also MLflow metrics)."""
    return {**result.metrics(), "cntk_ridge": result.ntk.ridge, "cntk_relative_ridge": result.ntk.relative_ridge,
            "nngp_ridge": result.nngp.ridge, "nngp_relative_ridge": result.nngp.relative_ridge,
            "kernel_seconds": result.seconds, "pairs": result.pairs, "pairs_per_second": result.pairs_per_second,
            "device": result.device, "cached": cached}


REFERENCE_DRAWS = 50 * REFERENCE_CELLS  # proposals drawn at most to find them (invalid ones are passed over)


def _reference_cells(search: Search) -> list[tuple[dict[str, Any], Architecture]]:
    """Up to :data:`REFERENCE_CELLS` distinct valid networks of the space, with their choices, drawn at random
    with a fixed seed: the same for every study of the space."""
    draw = optuna.create_study(sampler=make_sampler("random", search.space, REFERENCE_SEED))
    cells: dict[str, tuple[dict[str, Any], Architecture]] = {}
    for _ in range(REFERENCE_DRAWS):
        trial = draw.ask()
        try:
            arch = search.space.suggest(trial)
            check_candidate(arch, search.data.resolution)
        except (InvalidCandidate, ArchitectureError):
            continue
        cells.setdefault(arch.hash, (trial.params, arch))
        if len(cells) == REFERENCE_CELLS:
            break
    if len(cells) < 3:
        raise NasCntkError(f"search space {search.space.path} has {len(cells)} valid network(s) at resolution "
                           f"{search.data.resolution}: too few to standardise {objectives_label(search.objectives)}")
    return list(cells.values())


def load_references(search: Search, study: optuna.Study, scorer: TrialScorer) -> None:
    """Give ``scorer`` the reference networks' statistics, per rung: from the study, where an earlier run or
    another worker stored them, else scored now. Scored now, in a new study, they are queued as its first
    trials, which then find their scores in the cache."""
    if not search.standardised:
        return
    stored = study.user_attrs.get("reference")
    if stored is None:
        cells = _reference_cells(search)
        values: list[list[dict[str, float]]] = [[] for _ in scorer.caches]
        for _, arch in tqdm(cells, desc="reference networks", unit="network", smoothing=0, dynamic_ncols=True):
            cost = search.space.cost(arch)
            for k, (result, _) in enumerate(scorer.rung_scores(arch)):
                values[k].append({**result.metrics(), **cost})
        stored = {"networks": [arch.hash for _, arch in cells],
                  "statistics": [reference(search.objectives, v) for v in values]}
        if not study.get_trials(deepcopy=False):
            for params, _ in cells:
                study.enqueue_trial(params)
        study.set_user_attr("reference", stored)
    scorer.references = stored["statistics"]
