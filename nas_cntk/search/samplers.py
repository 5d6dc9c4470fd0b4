"""Samplers: what proposes a search's architectures. Optuna's own, and for a cell space restricted to
given cells (a benchmark table's), a wrapper that proposes those cells only; each seeded by the number of
the first trial it samples."""
from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

from nas_cntk.errors import NasCntkError
from nas_cntk.search.space import CellSpace, ListSpace, SearchSpace


def make_sampler(name: str, space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    if name == "auto":
        name = "grid" if isinstance(space, ListSpace) else "tpe"
    restricted = isinstance(space, CellSpace) and space.genotypes is not None
    if name == "grid":
        if restricted:
            raise NasCntkError("--sampler grid: a search restricted to a table's cells takes tpe or random")
        if not space.finite:
            raise NasCntkError(f"--sampler grid: search space {space.path} has continuous ranges; give them a "
                               "`step` or use --sampler tpe")
        # Every combination once, conditional choices included; the study stops when all are done.
        with warnings.catch_warnings():  # experimental since Optuna 3.1, unchanged since
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.BruteForceSampler(seed=seed)
    # TPE models the choices jointly (multivariate, Optuna's default since 5.0): a cell edge's op matters
    # through the paths it lies on.
    base = optuna.samplers.RandomSampler(seed=seed) if name == "random" else optuna.samplers.TPESampler(seed=seed)
    return RestrictedCellSampler(base, space, seed) if restricted else base


class SamplerWrapper(optuna.samplers.BaseSampler):
    """A sampler that hands every call to the sampler it wraps (``_base``); subclasses change some."""

    _base: optuna.samplers.BaseSampler

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._base.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._base.sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._base.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: optuna.trial.TrialState,
                    values: list[float] | None) -> None:
        self._base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._base.reseed_rng()


class SeededByFirstTrial(SamplerWrapper):
    """A sampler made on the first trial it samples, seeded by that trial's number (``make(number)``).

    Optuna numbers a study's trials in its storage, each number once, so worker processes that start on
    one study at the same instant seed their samplers apart and do not propose the same architectures in
    step; a process alone is seeded as reproducibly as by a fixed seed (its first trial's number is the
    number of trials the study had).
    """

    def __init__(self, make: Callable[[int], optuna.samplers.BaseSampler]):
        self._make = make
        self._base: optuna.samplers.BaseSampler | None = None

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self._base is None:
            self._base = self._make(trial.number)
        self._base.before_trial(study, trial)

    def reseed_rng(self) -> None:
        if self._base is not None:
            self._base.reseed_rng()


class RestrictedCellSampler(SamplerWrapper):
    """Proposes only the allowed cells of a cell space (``space.genotypes``).

    The base sampler's joint proposal is drawn again until it is an allowed cell, up to
    :data:`ATTEMPTS` times; where the base has no model yet (TPE's startup trials, a random sampler)
    or finds none, a uniformly random allowed cell. So a restricted random search is uniform over
    the allowed cells, and TPE searches them with its own model.
    """

    ATTEMPTS = 200

    def __init__(self, base: optuna.samplers.BaseSampler, space: CellSpace, seed: int):
        self._base, self._space = base, space
        self._allowed = sorted(space.genotypes)  # sorted: a seed draws the same cells in every process
        self._rng = np.random.default_rng(seed)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._space.distributions()

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        for _ in range(self.ATTEMPTS):
            params = self._base.sample_relative(study, trial, search_space)
            if not params:
                break
            if self._space.genotype(params) in self._space.genotypes:
                return params
        return self._space.params(self._allowed[self._rng.integers(len(self._allowed))])

    def reseed_rng(self) -> None:
        self._base.reseed_rng()
        self._rng = np.random.default_rng()
