"""How the work is tiled: batch sizes of every path, the plain path's memory budget and its
torch.compile decision, and when a run is long enough for a progress bar.

On the CPU a batch whose working set stays in the per-core caches runs fastest; uncompiled, each
tensor op also costs microseconds of Python, so a batch must be large enough to hide that.
Compiling costs tens of seconds once per network and batch shape, which only large jobs repay.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator

import torch

from nas_cntk.description.grid import Grid
from nas_cntk.kernels.plan import Plan
from nas_cntk.kernels.propagate import propagate

# About a minute of uncompiled work on a 2-core CPU is where compiling starts to pay. Compiling
# grows with the graph (about a second per node): cell networks (47 nodes and more) do not repay it.
COMPILE_WORK, COMPILE_MAX_NODES = 1 << 29, 40
# Work (see `work`) from which a run shows a progress bar by default: seconds or more.
PROGRESS_WORK = 1 << 32
CPU_MEMORY_BUDGET = 2 << 20  # bytes: see default_memory_budget
# A fused batch takes well under a second, so that the progress bar moves and an interrupt loses
# little: pair-tensor entries per batch, of the last node for the chain kernel, times the node
# count for the graph kernel (whose work grows with the graph).
FUSED_BATCH_ENTRIES = {("chain", "cpu"): 1 << 22, ("chain", "cuda"): 1 << 24,
                       ("graph", "cpu"): 1 << 26, ("graph", "cuda"): 1 << 28}
# The most pairs (or images) in one batch of the plain path.
MAX_BATCH = 1 << 16
# Uncompiled, the plain path gives each tensor op at least this many entries (cell networks at low
# resolution run 10x faster than at the cache-sized batch).
UNCOMPILED_OP_ENTRIES = 1 << 20


def default_memory_budget(device: torch.device) -> int:
    """Bytes of working memory for one batch of pairs.

    GPU: half its free memory. CPU: small batches on purpose; a batch whose working set stays in
    the per-core caches runs up to twice as fast as one that spills (measured: 2 MiB beats 32 MiB
    by 1.5-2x for flatten and low-resolution GAP on a 2-core EPYC).
    """
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] // 2
    return CPU_MEMORY_BUDGET


def work(p: Plan, pairs: int) -> int:
    """Entries the pair pass writes, roughly: what the compile decision and the progress bar go by."""
    return pairs * max(g.entries for g in p.pair_grids) * len(p.arch.nodes)


def should_compile(p: Plan, pairs: int) -> bool:
    return work(p, pairs) > COMPILE_WORK and len(p.arch.nodes) <= COMPILE_MAX_NODES


def long_run(p: Plan, pairs: int) -> bool:
    """Whether computing ``pairs`` pairs deserves a progress bar."""
    return work(p, pairs) > PROGRESS_WORK


def fused_batch(p: Plan, pairs: int, device: torch.device, kernel: str) -> int:
    """Pairs per batch of the fused ``kernel`` ("chain" or "graph"), at most ``pairs``."""
    entries = p.pair_grids[-1].entries * (len(p.arch.nodes) if kernel == "graph" else 1)
    return max(1, min(FUSED_BATCH_ENTRIES[kernel, device.type] // entries, pairs))


def batch_size(p: Plan, grids: list[Grid], most: int, budget: int, itemsize: int, compiled: bool) -> int:
    """Pairs (or images, with the image grids) per batch of the plain path: within ``budget`` bytes,
    at most ``most``."""
    floor = 1 if compiled else UNCOMPILED_OP_ENTRIES // max(g.entries for g in grids)
    return max(1, min(max(budget // p.bytes_per_pair(itemsize, grids), floor), MAX_BATCH, most))


def pair_batches(n1: int, n2: int | None, batch: int, device: torch.device) -> Iterator[tuple[torch.Tensor, ...]]:
    """Index batches of pairs: all of n1 x n2, or each unordered pair i <= j once when n2 is None."""
    if n2 is not None:
        for start in range(0, n1 * n2, batch):
            k = torch.arange(start, min(start + batch, n1 * n2), device=device)
            yield k // n2, k % n2
        return
    row_starts = torch.cumsum(torch.arange(n1, 0, -1, device=device), 0) - torch.arange(n1, 0, -1, device=device)
    total = n1 * (n1 + 1) // 2
    for start in range(0, total, batch):
        k = torch.arange(start, min(start + batch, total), device=device)
        i = torch.searchsorted(row_starts, k, right=True) - 1
        yield i, i + k - row_starts[i]


def _compiled(fn):
    """``fn`` through torch.compile, falling back to eager (with a warning) where compiling fails."""
    compiled = torch.compile(fn, dynamic=False)

    def run(*args, **kwargs):
        nonlocal compiled
        try:
            return compiled(*args, **kwargs)
        except Exception as error:  # no C++ compiler, unsupported backend, ...
            warnings.warn(f"torch.compile failed ({type(error).__name__}); computing the kernel without it",
                          stacklevel=2)
            compiled = fn
            return fn(*args, **kwargs)

    return run


propagate_compiled = _compiled(propagate)
