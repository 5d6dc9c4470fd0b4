"""What a search is asked to do. Light on purpose (no torch, no Optuna): the command line builds its options
from these.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from nas_cntk import checks
from nas_cntk.search.objectives import parse_objectives

if TYPE_CHECKING:
    from nas_cntk.search.stores import Stores

SAMPLERS = ("auto", "tpe", "random", "grid")
PRUNERS = ("sh", "hyperband")  # successive halving, Hyperband: which trials earn the next rung


@dataclass(frozen=True)
class SearchSettings:
    """What a search is asked to do. The data sizes left as None come from the space file's fidelity."""

    space: str                      # search-space file, or the name of a built-in one
    stores: Stores
    study: str | None = None        # None: named after the space and the data, e.g. default-t200-v100-r8-s0
    trials: int = 100               # finished (completed or pruned) trials the study should have
    sampler: str = "auto"
    seed: int = 0                   # of the sampler, and of the data subsets unless data_seed says otherwise
    workers: int = 1
    train_size: int | None = None
    val_size: int | None = None
    resolution: int | None = None
    zca: bool = False
    objectives: tuple[str, ...] | None = None  # scores, costs or sums of them (objectives.py); None: the space's
    data_seed: int | None = None    # of the data subsets; None: seed
    cells: tuple[str, ...] | None = None  # a cell space proposes only these genotypes; None: all
    rungs: tuple[int, ...] | None = None  # training images per rung, the last the search's; None: the space's
    pruner: str = "sh"
    reduction_factor: int = 2       # a rung keeps 1 / reduction_factor of the trials that reach it
    data_dir: str | None = None
    device: str | None = None
    heartbeat: int = 10             # seconds; a trial is stale after 3 missed heartbeats

    def __post_init__(self) -> None:
        for option in ("trials", "workers", "heartbeat"):
            checks.integer(getattr(self, option), f"--{option}")
        if self.objectives is not None:
            parse_objectives(self.objectives)
        checks.integer(self.reduction_factor, "--reduction-factor", minimum=2)
        checks.one_of(self.pruner, PRUNERS, "--pruner")
        checks.one_of(self.sampler, SAMPLERS, "--sampler")
