"""What training takes: the settings of a trained network. Light on purpose (no torch): the command
line builds its options from these.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from nas_cntk import checks
from nas_cntk.data import TEST_IMAGES
from nas_cntk.errors import NasCntkError

SCHEDULES = ("onecycle", "cosine")
PARAMETERIZATIONS = ("ntk", "standard")


@dataclass(frozen=True)
class TrainSettings:
    width: int = 128
    epochs: int = 30
    batch_size: int = 128
    lr: float = 4.0                  # for the N(0, 1) parameters of the NTK parameterisation (see module doc)
    momentum: float = 0.9
    weight_decay: float = 5e-4       # on the effective weights, whichever the parameterisation
    schedule: str = "onecycle"
    parameterization: str = "ntk"
    train_size: int | None = None    # None: the whole training split but the search's validation images
    test_size: int = TEST_IMAGES
    resolution: int = 32
    augment: bool = True             # random crops (padding resolution / 8) and horizontal flips
    seed: int = 0
    batch_norm: bool = False         # a BatchNorm2d after every conv, as NAS-Bench-201 trains its cells

    def __post_init__(self) -> None:
        for name in ("width", "epochs", "batch_size"):
            checks.integer(getattr(self, name), f"--{name.replace('_', '-')}")
        for name in ("momentum", "weight_decay"):
            checks.number(getattr(self, name), f"--{name.replace('_', '-')}")
        if not checks.is_number(self.lr) or self.lr == 0:
            raise NasCntkError(f"--lr: expected a finite number > 0, got {self.lr}")
        checks.one_of(self.schedule, SCHEDULES, "--schedule")
        checks.one_of(self.parameterization, PARAMETERIZATIONS, "--parameterization")

    @property
    def label(self) -> str:
        """Names a result, e.g. ``w128-e30-nall-r32-s0-1a2b3c``: the digest covers every setting."""
        settings = asdict(self)
        if not self.batch_norm:  # left out when off, so labels from before the option still match
            del settings["batch_norm"]
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:6]
        return (f"w{self.width}-e{self.epochs}-n{self.train_size or 'all'}-r{self.resolution}-s{self.seed}"
                f"-{digest}")
