"""What a search is asked to do. Light on purpose (no torch, no Optuna): the command line builds its options
from these.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from nas_cntk import checks
from nas_cntk.errors import NasCntkError
from nas_cntk.scoring.measures import check_score_name

if TYPE_CHECKING:
    from nas_cntk.search.stores import Stores

SAMPLERS = ("auto", "tpe", "random", "grid")


@dataclass(frozen=True)
class SearchSettings:
    """What a search is asked to do. The data sizes left as None come from the space file's fidelity."""

    space: str                      # search-space file, or the name of a built-in one
    stores: Stores
    study: str | None = None        # None: named after the space and the data, e.g. default-t200-v100-r8-s0
    trials: int = 100               # finished (completed or pruned) trials the study should have
    sampler: str = "auto"
    seed: int = 0                   # of the sampler and of the data subsets
    workers: int = 1
    train_size: int | None = None
    val_size: int | None = None
    resolution: int | None = None
    zca: bool = False
    objective: str | None = None    # a score name; None: the space file's objective
    data_dir: str | None = None
    device: str | None = None
    heartbeat: int = 10             # seconds; a trial is stale after 3 missed heartbeats

    def __post_init__(self) -> None:
        for option in ("trials", "workers", "heartbeat"):
            checks.integer(getattr(self, option), f"--{option}")
        if self.objective is not None:
            check_score_name(self.objective)
        if self.sampler not in SAMPLERS:
            raise NasCntkError(f"--sampler: expected one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
