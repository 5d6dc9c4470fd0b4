"""The search: an Optuna study that maximises the space's ``objective`` (or ``--objective``): a score of a
proposed network's kernel, its cost, or a sum of standardised ones (:mod:`nas_cntk.search.objectives`);
with several objectives, their Pareto front. Every score and both costs are recorded either way. A sum is
standardised over a fixed set of reference networks of the space, scored before the first trial and then
run as the study's first trials, so their kernels are not computed twice.

Storage is a plain Optuna RDB storage (SQLite under the trials folder by default, any RDB URL
otherwise) with heartbeats: a trial whose process died (kill -9, a lost machine) is marked failed
once its heartbeat is older than the grace period, and re-queued with the same choices; so is one
stopped by Ctrl-C. Several worker processes, on this machine or others, share one study through the
storage (opened in :mod:`nas_cntk.search.stores`). Scores are cached by architecture hash and data
setting, and every trial has an MLflow run from its start to its end. A trial claims its architecture
in the storage's database (:mod:`nas_cntk.search.claims`): a proposal that repeats an architecture the
study has scored, or that another worker is scoring, is pruned and not counted, until the sampler has
run out of new ones.
"""
from __future__ import annotations

import multiprocessing
import os
import socket
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import TrialState
from tqdm.auto import tqdm

from nas_cntk import checks
from nas_cntk.data import DataSettings, DataSplits
from nas_cntk.description.architecture import Architecture
from nas_cntk.errors import ArchitectureError, InvalidCandidate, KernelError, NasCntkError
from nas_cntk.kernels import kernel
from nas_cntk.scoring.regression import Score, score
from nas_cntk.scoring.rungs import Rungs, RungScorer, check_rungs
from nas_cntk.search.cache import ScoreCache
from nas_cntk.search.claims import Claims
from nas_cntk.search.leaderboard import leaderboard, study_objective
from nas_cntk.search.objectives import (
    REFERENCE_CELLS,
    REFERENCE_SEED,
    Objective,
    Reference,
    objective_keys,
    objectives_label,
    orientation,
    parse_objectives,
    reference,
)
from nas_cntk.search.samplers import SeededByFirstTrial, make_sampler
from nas_cntk.search.settings import SearchSettings
from nas_cntk.search.space import CellSpace, ListSpace, SearchSpace, check_candidate, load_space
from nas_cntk.search.stores import GRACE_HEARTBEATS, RETRY, load_study, masked, open_storage
from nas_cntk.search.tracking import Tracker

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class Search:
    """A search's settings resolved against its space file: the space, the data and the study's name."""

    settings: SearchSettings
    space: SearchSpace
    data: DataSettings
    study_name: str
    objectives: tuple[Objective, ...]  # what the study maximises; several: their Pareto front
    rungs: Rungs | None  # multi-fidelity: nested subsets of ``data``, scored in turn; None: ``data`` alone

    @classmethod
    def resolve(cls, settings: SearchSettings) -> Search:
        space = load_space(settings.space)
        if settings.cells is not None:
            if not isinstance(space, CellSpace):
                raise NasCntkError(f"search space {space.path} is not a cell space: it cannot be restricted to cells")
            space = space.restricted(settings.cells)
        data_seed = settings.seed if settings.data_seed is None else settings.data_seed
        sizes, option = (settings.rungs, "--rungs") if settings.rungs is not None else (space.rungs, "fidelity.rungs")
        train_size = settings.train_size if settings.train_size is not None or sizes is None else sizes[-1]
        data = space.data_settings(train_size, settings.val_size, settings.resolution, data_seed, settings.zca)
        rungs = None if sizes is None else Rungs(data, check_rungs(sizes, data.train_size, option))
        make_sampler(settings.sampler, space, settings.seed)  # one that cannot search the space fails first
        objectives = parse_objectives(settings.objectives or space.objectives)
        if len(objectives) > 1 and rungs is not None:
            raise NasCntkError(f"{option}: a search of several objectives has no rungs (Optuna prunes only "
                               "single-objective studies); give one --objective, or no rungs")
        label = objectives_label(objectives)
        name = (f"{space.label}-{data.label if rungs is None else rungs.label}"
                + ("" if label == objectives_label(parse_objectives(space.objectives)) else f"-{label}"))
        return cls(settings, space, data, settings.study or name, objectives, rungs)

    @property
    def standardised(self) -> bool:
        """Whether some objective is a sum of terms standardised over reference networks."""
        return any(o.combined for o in self.objectives)

    def tracker(self) -> Tracker:
        return self.settings.stores.tracker(self.study_name)


def open_study(search: Search, worker: int = 0) -> tuple[optuna.Study, Claims]:
    """Create the study, or resume it after checking it searches the same space on the same data; with the
    claims on its architectures.

    The sampler's seed is drawn from the search's seed, the worker and the number of its first trial
    (the trials the study already had, where this process is alone): a seeded sampler replays its
    sequence, so a resumed study (or a second worker) with the bare seed would propose the architectures
    of the first trials again.
    """
    settings = search.settings
    storage = open_storage(settings.stores.storage, settings.heartbeat)
    study = optuna.create_study(storage=storage, study_name=search.study_name,
                                directions=["maximize"] * len(search.objectives), load_if_exists=True,
                                pruner=make_pruner(settings, search.rungs))
    study.sampler = SeededByFirstTrial(lambda number: make_sampler(settings.sampler, search.space, int(
        np.random.SeedSequence([settings.seed, worker, number]).generate_state(1)[0])))
    expected = {"space": search.space.name, "space_digest": search.space.digest, "data": search.data.label,
                "objective": objectives_label(search.objectives),
                "rungs": None if search.rungs is None else search.rungs.label}
    if "space" not in study.user_attrs:  # a new study; "space" last: a worker that sees it sees them all
        for key in sorted(expected, key="space".__eq__):
            study.set_user_attr(key, expected[key])
    attrs = study.user_attrs  # as the first of workers that started together set them
    found = {**{key: attrs.get(key) for key in expected}, "objective": study_objective(study)}  # older: no rungs
    if found != expected:
        key = next(k for k in expected if found[k] != expected[k])
        raise NasCntkError(f"study {search.study_name!r} was run with {key} {found[key]!r}, not "
                           f"{expected[key]!r}; resume it with its own settings or choose another --study")
    return study, Claims(storage, storage.get_study_id_from_name(search.study_name))


def make_pruner(settings: SearchSettings, rungs: Rungs | None) -> optuna.pruners.BasePruner | None:
    """Which trials earn the next rung; a rung's step is its training images, the resource. Without rungs,
    Optuna's default (no trial reports, so none is pruned)."""
    if rungs is None:
        return None
    low, high, factor = rungs.train_sizes[0], rungs.train_sizes[-1], settings.reduction_factor
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=low, max_resource=high, reduction_factor=factor)
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=low, reduction_factor=factor)


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
        if holder != trial.number and not _exhausted(trial.study):
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
            max([values[self.keys[0]], *_completed_values(trial.study)]))}
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


# A sampler that has proposed this many repeats has run out of new architectures (or of those it still reaches).
EXHAUSTED_AFTER = 20


def _completed_values(study: optuna.Study) -> list[float]:
    return [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]


def _exhausted(study: optuna.Study) -> bool:
    """Whether the sampler has proposed :data:`EXHAUSTED_AFTER` repeats: the space is used up, and from now
    on repeats are scored again (from the cache) and counted."""
    repeats = sum("repeat_of" in t.user_attrs for t in study.get_trials(deepcopy=False, states=FINISHED))
    return repeats >= EXHAUSTED_AFTER


def _trial_record(result: Score, cached: bool) -> dict:
    """What a trial keeps about its score (Optuna user attributes; the numbers are also MLflow metrics)."""
    return {**result.metrics(), "cntk_ridge": result.ntk.ridge, "cntk_relative_ridge": result.ntk.relative_ridge,
            "nngp_ridge": result.nngp.ridge, "nngp_relative_ridge": result.nngp.relative_ridge,
            "kernel_seconds": result.seconds, "pairs": result.pairs, "pairs_per_second": result.pairs_per_second,
            "device": result.device, "cached": cached}


# ------------------------------------------------------------------------------------------------ running

def finished_trials(study: optuna.Study) -> int:
    """Completed and pruned trials, but not the proposals that only repeated a scored architecture."""
    return sum("repeat_of" not in t.user_attrs for t in study.get_trials(deepcopy=False, states=FINISHED))


def _device(device: str | None, worker: int) -> str:
    """The device of a worker: the one asked for, else one GPU per worker in turn, else the CPU."""
    if device is not None:
        return device
    return f"cuda:{worker % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu"


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


def _work(search: Search, worker: int, parent_run_id: str) -> None:
    """A spawned worker process: open its own study, tracker and data, then work on the study."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our lines say what happened to each trial
    study, claims = open_study(search, worker)
    try:
        scorer = TrialScorer(search, claims, search.data.load(search.settings.data_dir), search.tracker(),
                             parent_run_id, _device(search.settings.device, worker))
        load_references(search, study, scorer)
        _optimize(search, study, scorer, worker)
    except KeyboardInterrupt:  # Ctrl-C reaches every worker: the search process reports it, once
        pass


def _optimize(search: Search, study: optuna.Study, scorer: TrialScorer, worker: int, bar: tqdm | None = None) -> None:
    """Run trials on the shared study until it has ``settings.trials`` finished trials and no trial waits to
    be run again; then see to the trials that other processes left running (:func:`_fail_dead_trials`)."""
    settings = search.settings
    parent_pid = os.getppid()

    def orphaned() -> bool:  # the search process was killed: stop after this trial
        return worker > 0 and os.getppid() != parent_pid

    def pending() -> bool:
        return finished_trials(study) < settings.trials or bool(study.get_trials(deepcopy=False,
                                                                                 states=(TrialState.WAITING,)))

    def show_progress(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if bar is not None:
            bar.n = finished_trials(study)
            if any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
                if len(search.objectives) == 1:
                    best = search.objectives[0].shown(study.best_value)
                    bar.set_postfix_str(f"best {scorer.keys[0]} {best:.4g}", refresh=False)
                else:
                    bar.set_postfix_str(f"Pareto front {len(study.best_trials)}", refresh=False)
            bar.refresh()

    def stop_when_done(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if orphaned() or not pending():
            study.stop()

    while True:
        if pending() and not orphaned():
            study.optimize(scorer, catch=(KernelError,), callbacks=[stop_when_done, show_progress])
        if orphaned() or not _fail_dead_trials(study, settings.heartbeat, say=worker == 0):
            return


def _fail_dead_trials(study: optuna.Study, heartbeat: int, say: bool) -> bool:
    """Once this process has no trial to run: wait while other processes' trials run, for at most the grace
    period and a heartbeat, failing each whose heartbeat stops (its process died) and queuing it to run
    again. Returns whether trials wait to be run."""
    deadline = time.monotonic() + (GRACE_HEARTBEATS + 1) * heartbeat
    while True:
        with warnings.catch_warnings():  # experimental since Optuna 2.9, unchanged since
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
        if any(t.state == TrialState.WAITING for t in trials):
            return True
        if not trials or time.monotonic() > deadline:
            return False
        if say:
            tqdm.write(f"trial(s) {', '.join(str(t.number) for t in trials)} still running in other processes: "
                       f"waiting up to {duration(deadline - time.monotonic())} for them to finish, or to fail "
                       "them and run them again if their process has stopped")
            say = False
        time.sleep(1)


def estimate_trial_seconds(space: SearchSpace, data: DataSettings, device: str, samples: int = 5,
                           seed: int = 0) -> float:
    """Kernel seconds of one trial on ``device``, timed on a few networks of the space on random images.

    Timed without torch.compile, so for large trials it is an upper bound (compiled runs are faster).
    """
    sampler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    pairs = data.train_size * (data.train_size + 1) // 2 + data.val_size * data.train_size
    seconds = []
    for _ in range(10 * samples):  # invalid candidates do not count
        trial = sampler.ask()
        try:
            arch = space.suggest(trial)
            check_candidate(arch, data.resolution)
        except (InvalidCandidate, ArchitectureError):
            continue
        seconds.append(pairs / _pairs_per_second(arch, data.resolution, device))
        if len(seconds) == samples:
            break
    return sum(seconds) / max(len(seconds), 1)


def _pairs_per_second(arch: Architecture, resolution: int, device: str) -> float:
    warm_up = torch.randn(2, 3, resolution, resolution, device=device)
    kernel(arch, warm_up, progress=False, torch_compile=False)
    n = 4
    while True:  # grow the block until the timing means something
        x = torch.randn(n, 3, resolution, resolution, device=device)
        start = time.perf_counter()
        kernel(arch, x, device=device, progress=False, torch_compile=False)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
        if elapsed > 0.5 or n >= 64:
            return n * (n + 1) / 2 / elapsed
        n *= 2


def duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.2g} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def run_search(settings: SearchSettings, *, dry_run: bool = False) -> tuple[Search, optuna.Study | None]:
    """Run (or resume) the study until it has ``settings.trials`` finished trials; return it.

    Every input is checked (settings, space, data files, stores) before the study or its MLflow
    experiment is created, so a bad input leaves nothing behind. A dry run creates nothing (its study
    is None when there is none yet).
    """
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # one line per trial is ours to print
    checks.device(settings.device)
    search = Search.resolve(settings)
    space, data = search.space, search.data
    if dry_run:
        study = _existing_study(search)
    else:
        splits = data.load(settings.data_dir)
        tracker = search.tracker()  # an unreachable server fails here
        study, claims = open_study(search)
    done, device = (0 if study is None else finished_trials(study)), _device(settings.device, 0)
    remaining = max(settings.trials - done, 0)
    if isinstance(space, ListSpace):
        remaining = min(remaining, len(space.architectures))
    print(f"study {search.study_name}: {done} trials finished, {remaining} to run, {settings.workers} worker(s); "
          f"space {space.name}, data {data.label}")
    per_trial = estimate_trial_seconds(space, data, device, seed=settings.seed)
    total = per_trial * remaining / settings.workers
    print(f"estimated kernel time on {device}: about {duration(per_trial)} per trial, {duration(total)} in all "
          "(timed uncompiled on a few sampled networks)")
    if total > 3600:
        print("that is long; cheaper, lower-fidelity settings: --train-size 500 --val-size 200 --resolution 16 "
              f"(or 8){'' if dry_run else '; going on'}")
    # A trial left running, or queued to run again, by a process that stopped: see to it, even with none to run.
    unfinished = study is not None and study.get_trials(deepcopy=False, states=(TrialState.RUNNING,
                                                                                 TrialState.WAITING))
    if dry_run or (remaining == 0 and not unfinished):
        return search, study
    parent_run_id = tracker.start_search(
        params={"space": space.name, "sampler": settings.sampler, "seed": settings.seed, "trials": settings.trials,
                "workers": settings.workers, "objective": objectives_label(search.objectives), **vars(data)},
        tags={"storage": masked(settings.stores.storage), "space_file": str(space.path)},
        objectives=[(key, not o.combined and orientation(o.text) < 0)
                    for key, o in zip(objective_keys(search.objectives), search.objectives)])
    context = multiprocessing.get_context("spawn")  # CUDA and fork do not mix
    workers = [context.Process(target=_work, args=(search, k, parent_run_id), daemon=False)
               for k in range(1, settings.workers)]
    with tracker.ending(parent_run_id):
        try:
            scorer = TrialScorer(search, claims, splits, tracker, parent_run_id, device)
            load_references(search, study, scorer)  # before the workers start, which read them from the study
            for process in workers:
                process.start()
            with tqdm(total=done + remaining, initial=done, desc="trials", unit="trial", smoothing=0,
                      dynamic_ncols=True) as bar:
                _optimize(search, study, scorer, 0, bar)
                for process in workers:
                    process.join()
            failed = [k for k, process in enumerate(workers, 1) if process.exitcode]
            if failed:
                raise NasCntkError(f"worker(s) {', '.join(map(str, failed))} stopped with an error (see above); "
                                   "finished trials are kept, run the same command again to resume")
        finally:
            for process in workers:
                if process.is_alive():
                    process.terminate()
            _log_summary(tracker, parent_run_id, study, search.objectives)
    return search, study


def _existing_study(search: Search) -> optuna.Study | None:
    """The search's study if it exists already; nothing is created."""
    storage = search.settings.stores.storage
    try:
        return load_study(storage, search.study_name)
    except NasCntkError:  # no store, or no such study in it
        return None


def _log_summary(tracker: Tracker, parent_run_id: str, study: optuna.Study, objectives: tuple[Objective, ...]) -> None:
    """The parent run's summary: the leaderboard as CSV, and the optimisation history (one objective) or the
    Pareto front (several) as a plot, whose trials' runs are tagged ``pareto_front``."""
    import matplotlib.pyplot as plt  # only here: a second or two of import that scoring never needs
    from optuna.visualization.matplotlib import plot_optimization_history, plot_pareto_front

    table = leaderboard(study)
    metrics = {"finished_trials": finished_trials(study)}
    figures = {}
    keys = objective_keys(objectives)
    if len(table):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if len(objectives) == 1:
                # at the last trial's step: the latest value of the per-trial series is the study's best
                tracker.log(parent_run_id, metrics={f"best_{keys[0]}": float(table[keys[0]].iloc[0])},
                            step=study.get_trials(deepcopy=False)[-1].number)
                figures["optimization_history.png"] = plot_optimization_history(study).figure
            else:
                metrics["pareto_front"] = int(table["front"].eq(1).sum())
                tracker.tag([t.user_attrs["mlflow_run_id"] for t in study.best_trials], "pareto_front", "true")
                if len(objectives) <= 3:  # what Optuna plots
                    figures["pareto_front.png"] = plot_pareto_front(study, target_names=keys).figure
    tracker.log_search_summary(parent_run_id, table, figures, metrics)
    for figure in figures.values():
        plt.close(figure)
