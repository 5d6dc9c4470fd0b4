"""The study: an Optuna study in a plain RDB storage (SQLite under the trials folder by default, any RDB
URL otherwise), with heartbeats: a trial whose process died (kill -9, a lost machine) is marked failed
once its heartbeat is older than the grace period, and re-queued with the same choices; so is one
stopped by Ctrl-C. Several worker processes, on this machine or others, share one study through the
storage (opened in :mod:`nas_cntk.search.stores`); a resumed or shared study must search the same space
on the same data for the same objectives. A trial claims its architecture in the storage's database
(:mod:`nas_cntk.search.claims`): a proposal that repeats an architecture the study has scored, or that
another worker is scoring, is pruned and not counted, until the sampler has run out of new ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import TrialState

from nas_cntk.data import DataSettings
from nas_cntk.errors import NasCntkError
from nas_cntk.scoring.rungs import Rungs, check_rungs
from nas_cntk.search.claims import Claims
from nas_cntk.search.leaderboard import study_objective
from nas_cntk.search.objectives import Objective, objectives_label, parse_objectives
from nas_cntk.search.samplers import SeededByFirstTrial, make_sampler
from nas_cntk.search.settings import SearchSettings
from nas_cntk.search.space import CellSpace, SearchSpace, load_space
from nas_cntk.search.stores import load_study, open_storage
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


# A sampler that has proposed this many repeats has run out of new architectures (or of those it still reaches).
EXHAUSTED_AFTER = 20


def completed_values(study: optuna.Study) -> list[float]:
    return [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]


def exhausted(study: optuna.Study) -> bool:
    """Whether the sampler has proposed :data:`EXHAUSTED_AFTER` repeats: the space is used up, and from now
    on repeats are scored again (from the cache) and counted."""
    repeats = sum("repeat_of" in t.user_attrs for t in study.get_trials(deepcopy=False, states=FINISHED))
    return repeats >= EXHAUSTED_AFTER


def finished_trials(study: optuna.Study) -> int:
    """Completed and pruned trials, but not the proposals that only repeated a scored architecture."""
    return sum("repeat_of" not in t.user_attrs for t in study.get_trials(deepcopy=False, states=FINISHED))


def existing_study(search: Search) -> optuna.Study | None:
    """The search's study if it exists already; nothing is created."""
    storage = search.settings.stores.storage
    try:
        return load_study(storage, search.study_name)
    except NasCntkError:  # no store, or no such study in it
        return None
