"""What a search will cost: a trial's kernel seconds, timed on a few networks of the space on random images."""
from __future__ import annotations

import time

import optuna
import torch

from nas_cntk.data import DataSettings
from nas_cntk.description.architecture import Architecture
from nas_cntk.errors import ArchitectureError, InvalidCandidate
from nas_cntk.kernels import kernel
from nas_cntk.search.space import SearchSpace, check_candidate


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
