"""The exact kernel engine: NNGP and NTK of an architecture for two sets of images.

Work is split in two passes. First each image alone (pairs (x, x), O(P) entries) gives the
per-pixel variances the ReLUs normalise by and the means that branch sums need. Then image pairs
go through the network in batches sized to a memory budget, each pair holding only the pixel
pairs its readout needs (see :mod:`nas_cntk.grid`). Every op applies its own rule
(:mod:`nas_cntk.ops`); this module only walks the graph, sums branches with their cross moments,
and tiles the work.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Iterator, Mapping, NamedTuple

import torch
from tqdm.auto import tqdm

from nas_cntk.architecture import Architecture, load
from nas_cntk.chain import chain
from nas_cntk.errors import ArchitectureError, KernelError
from nas_cntk.grid import Grid
from nas_cntk.ops import Cross, Fork, Kind, PairContext, Relu


class Kernels(NamedTuple):
    nngp: torch.Tensor  # (n1, n2)
    ntk: torch.Tensor   # (n1, n2)


@dataclass(frozen=True)
class Plan:
    """What the computation looks like for one architecture and input size, before any image is seen."""

    arch: Architecture
    sizes: list[tuple[int, int]]
    kinds: list[Kind]
    pair_grids: list[Grid]   # pixel pairs each node must hold for the readout
    image_grids: list[Grid]  # the same for a flatten readout: enough for per-pixel variances
    consumers: list[int]     # how many times each node's value is read
    crossed: frozenset[tuple[int, int]]  # node pairs (a < b) whose cross moments some sum needs
    pair_cross_grids: dict[tuple[int, int], Grid]   # pixel pairs each crossed pair must hold
    image_cross_grids: dict[tuple[int, int], Grid]
    live: tuple[int, int]    # the most values and crosses held at once

    @property
    def variance_nodes(self) -> frozenset[int]:
        """Nodes whose per-pixel variance a ReLU needs."""
        return frozenset(node.inputs[0] for node in self.arch.nodes if isinstance(node.op, Relu))

    @property
    def forks(self) -> frozenset[int]:
        """Nodes whose per-pixel mean a cross rule may need (the earlier node of each crossed pair)."""
        return frozenset(a for a, _ in self.crossed)

    def bytes_per_pair(self, itemsize: int, grids: list[Grid]) -> int:
        """Working memory of one pair (or one image, with the image grids)."""
        # Live at once: the values (Sigma and Theta) and crosses (four tensors) held, plus a few
        # temporaries of the conv and ReLU rules.
        values, crosses = self.live
        return (8 + 2 * values + 4 * crosses) * itemsize * max(g.entries for g in grids)


def plan(arch: Architecture, height: int, width: int) -> Plan:
    nodes = arch.nodes
    sizes, kinds = arch.sizes(height, width), arch.kinds()

    crossed = _crossed_pairs(arch)

    def grids(last: Grid) -> tuple[list[Grid], dict[tuple[int, int], Grid]]:
        """What each node and crossed pair must hold, from the readout back: a node's uses are its
        consumers' inputs; a pair's are the sums that join it and the crosses computed from it."""
        needed: list[Grid | None] = [None] * len(nodes)
        cross_needed: dict[tuple[int, int], Grid] = {}

        def need(key: int | tuple[int, int], grid: Grid) -> None:
            table = needed if isinstance(key, int) else cross_needed
            old = table[key] if isinstance(key, int) else table.get(key)
            table[key] = grid if old is None else old.union(grid)

        needed[-1] = last
        for n in range(len(nodes) - 1, 0, -1):
            node = nodes[n]
            if needed[n] is not None:
                for i in node.inputs:
                    need(i, node.op.input_grid(needed[n], *sizes[i]))
                grid_in = node.op.input_grid(needed[n], *sizes[node.inputs[0]])
                for a, b in combinations(node.inputs, 2):
                    if (min(a, b), max(a, b)) in crossed:
                        need((min(a, b), max(a, b)), grid_in)
            for a in (a for a, b in crossed if b == n and (a, b) in cross_needed):
                grid_in = node.op.input_grid(cross_needed[a, n], *sizes[node.inputs[0]])
                for i in node.inputs:
                    need(i if i == a else (min(a, i), max(a, i)), grid_in)
        return needed, {pair: cross_needed[pair] for pair in crossed if pair in cross_needed}

    consumers, last_read = [0] * len(nodes), list(range(len(nodes)))
    for n, node in enumerate(nodes):
        for i in node.inputs:
            consumers[i] += 1
            last_read[i] = n
    live = max((sum(last_read[i] > n >= i for i in range(len(nodes))),
                sum(last_read[a] > n and last_read[b] > n and b <= n for a, b in crossed))
               for n in range(len(nodes)))
    (pair_grids, pair_cross_grids), (image_grids, image_cross_grids) = (
        grids(arch.readout.grid(*sizes[-1])), grids(Grid.diagonal(*sizes[-1])))
    return Plan(arch, sizes, kinds, pair_grids, image_grids, consumers, crossed, pair_cross_grids,
                image_cross_grids, live)


def _crossed_pairs(arch: Architecture) -> frozenset[tuple[int, int]]:
    """The node pairs whose cross moments are needed: those a sum joins, and recursively those the
    later node's cross rule reads (its inputs with the earlier node). A fresh conv ends the recursion:
    its cross moments with every other node vanish."""
    nodes = arch.nodes
    pending = [(min(a, b), max(a, b)) for node in nodes for a, b in combinations(node.inputs, 2) if a != b]
    crossed = set()
    while pending:
        a, b = pair = pending.pop()
        if pair in crossed or nodes[b].op.independent:
            continue
        if not nodes[b].op.has_cross:
            raise ArchitectureError(f"{nodes[b].path}: {nodes[b].op.name} has no cross-moment rule, so it cannot lie "
                                    f"on a branch that a sum joins with {nodes[a].path}")
        crossed.add(pair)
        pending += [(min(a, i), max(a, i)) for i in nodes[b].inputs if i != a]
    return frozenset(crossed)


@dataclass
class ImageStats:
    """Per-image, per-pixel statistics of the nodes that need them, ``(n, H, W)`` each."""

    variance: dict[int, torch.Tensor]
    mean: dict[int, torch.Tensor]

    def take(self, index: torch.Tensor) -> ImageStats:
        return ImageStats({n: v[index] for n, v in self.variance.items()},
                          {n: m[index] for n, m in self.mean.items()})

    @classmethod
    def cat(cls, parts: list[ImageStats]) -> ImageStats:
        return cls({n: torch.cat([p.variance[n] for p in parts]) for n in parts[0].variance},
                   {n: torch.cat([p.mean[n] for p in parts]) for n in parts[0].mean})


def _propagate(p: Plan, xa: torch.Tensor, xb: torch.Tensor, stats_a: ImageStats | None,
               stats_b: ImageStats | None, ntk: bool) -> tuple[torch.Tensor, torch.Tensor] | ImageStats:
    """Push a batch of image pairs through the network.

    With ``stats_a`` None the pairs are (x, x) and the pass records each image's statistics as
    it goes (variances are the same-pixel entries); otherwise it returns the readout's averages of
    the last NNGP and NTK pair tensors (:meth:`Readout.reduce`).
    """
    record = stats_a is None
    grids, cross_grids = (p.image_grids, p.image_cross_grids) if record else (p.pair_grids, p.pair_cross_grids)
    if record:
        stats_a = stats_b = ImageStats({}, {})
    nodes = p.arch.nodes
    means: dict[int, torch.Tensor] = {}        # record mode: every node's mean, for the forks' ones
    values: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
    crosses: dict[tuple[int, int], Cross | None] = {}
    remaining = list(p.consumers)
    untrained_conv = p.arch.first_conv if p.arch.fix_first_and_readout else None

    def moments(i: int, grid: Grid) -> tuple[torch.Tensor, torch.Tensor | None]:
        sigma, theta = values[i]
        return grids[i].restrict(sigma, grid), None if theta is None else grids[i].restrict(theta, grid)

    def cross_with(f: int, i: int, grid: Grid) -> Cross | None:
        """Moments of node f with node i (either order), on ``grid``; None where they vanish."""
        if i == f:
            sigma, theta = moments(f, grid)
            return Cross(sigma, sigma, theta, theta)
        c = crosses.get((f, i)) if f < i else crosses.get((i, f))
        if c is None:
            return None
        c = Cross(*(None if t is None else cross_grids[min(f, i), max(f, i)].restrict(t, grid)
                    for t in (c.sigma_fn, c.sigma_nf, c.theta_fn, c.theta_nf)))
        return c if f < i else Cross(c.sigma_nf, c.sigma_fn, c.theta_nf, c.theta_fn)

    for n, node in enumerate(nodes):
        grid = grids[n]
        if node.op is None:
            sigma = grid.pair_product(xa, xb) / xa.shape[1]
            values[n] = sigma, torch.zeros_like(sigma) if ntk else None
            means[n] = torch.zeros_like(xa[:, 0])
            continue
        first = node.inputs[0]
        grid_in = node.op.input_grid(grid, *p.sizes[first])
        sigma, theta = moments(first, grid_in)
        if len(node.inputs) > 1:  # a sum: M(a + b + ...) = M(a) + M(b) + ... + both crosses of every pair
            for i in node.inputs[1:]:
                sigma_i, theta_i = moments(i, grid_in)
                sigma = sigma + sigma_i
                theta = theta + theta_i if ntk else None
            for a, b in combinations(node.inputs, 2):
                c = cross_with(a, b, grid_in) or Cross(None, None)
                sigma = sigma + _zero_if_none(c.sigma_fn) + _zero_if_none(c.sigma_nf)
                if ntk:
                    theta = theta + _zero_if_none(c.theta_fn) + _zero_if_none(c.theta_nf)
        kind_in = sum((p.kinds[i] for i in node.inputs[1:]), start=p.kinds[first])
        ctx = PairContext(grid_in, grid, stats_a.variance.get(first), stats_b.variance.get(first), kind_in,
                          trainable=n != untrained_conv)
        for f in (a for a, b in p.crossed if b == n and (a, b) in cross_grids):
            # on the pixel pairs the cross's own uses need, which may be more than the node's
            out = cross_grids[f, n]
            cross_in = node.op.input_grid(out, *p.sizes[first])
            carried = sum((c for i in node.inputs if (c := cross_with(f, i, cross_in)) is not None), start=None)
            cross_ctx = PairContext(cross_in, out, ctx.var_a, ctx.var_b, kind_in, ctx.trainable)
            crosses[f, n] = node.op.cross(carried, cross_ctx, Fork(p.kinds[f], stats_a.mean[f], stats_b.mean[f]))
        values[n] = node.op.moments(sigma, theta, ctx)
        if record:
            means[n] = node.op.mean(sum(means[i] for i in node.inputs), ctx)
            if n in p.variance_nodes:
                stats_a.variance[n] = grid.same_pixel(values[n][0])
            if n in p.forks:
                stats_a.mean[n] = means[n]
        for i in node.inputs:  # free what no later node reads
            remaining[i] -= 1
            if remaining[i] == 0:
                del values[i]
                for key in [k for k in crosses if i in k]:
                    del crosses[key]
    if record:
        return stats_a
    sigma, theta = values[len(nodes) - 1]
    return p.arch.readout.reduce(sigma, grids[-1]), p.arch.readout.reduce(theta, grids[-1])


def _zero_if_none(t: torch.Tensor | None) -> torch.Tensor | float:
    return 0.0 if t is None else t


def default_memory_budget(device: torch.device) -> int:
    """Bytes of working memory for one batch of pairs.

    GPU: half its free memory. CPU: small batches on purpose; a batch whose working set stays in
    the per-core caches runs up to twice as fast as one that spills (measured: 2 MiB beats 32 MiB
    by 1.5-2x for flatten and low-resolution GAP on a 2-core EPYC).
    """
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] // 2
    return 2 << 20


def _compiled(fn):
    """``fn`` through torch.compile, falling back to eager (with a warning) where compiling fails."""
    compiled = torch.compile(fn, dynamic=False)

    def run(*args, **kwargs):
        nonlocal compiled
        try:
            return compiled(*args, **kwargs)
        except Exception as error:  # no C++ compiler, unsupported backend, ...
            warnings.warn(f"torch.compile failed ({type(error).__name__}); computing the kernel without it")
            compiled = fn
            return fn(*args, **kwargs)

    return run


_propagate_compiled = _compiled(_propagate)


def _fused_backend(device: torch.device):
    """The fused kernel's module for the device, imported on first use: Numba and Triton cost start-up
    time that commands without a kernel should not pay, and only CUDA runs need Triton."""
    if device.type == "cuda":
        from nas_cntk import triton_kernel
        return triton_kernel
    from nas_cntk import cpu_kernel
    return cpu_kernel


def _pair_batches(n1: int, n2: int | None, batch: int, device: torch.device) -> Iterator[tuple[torch.Tensor, ...]]:
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


def image_statistics(p: Plan, x: torch.Tensor, batch: int) -> ImageStats:
    return ImageStats.cat([_propagate(p, chunk, chunk, None, None, ntk=False) for chunk in x.split(batch)])


def kernel(arch: Architecture | Mapping[str, Any] | str | os.PathLike, x1: torch.Tensor,
           x2: torch.Tensor | None = None, *, dtype: torch.dtype = torch.float32,
           device: torch.device | str | None = None, memory_budget: int | None = None,
           progress: bool | None = None, compile: bool | None = None, fused: bool | None = None) -> Kernels:
    """Exact NNGP and NTK of ``arch`` between images ``x1`` (n1, C, H, W) and ``x2`` (n2, C, H, W).

    ``x2=None`` means ``x2 = x1``; the symmetric matrix is then computed once per unordered pair.
    ``progress`` shows a bar with an ETA (default: for long runs).
    Chain networks (convs and ReLUs, no pools or branches) in float32 run on a fused kernel
    (:mod:`nas_cntk.cpu_kernel`, or :mod:`nas_cntk.triton_kernel` on a CUDA GPU) that keeps each
    pixel-pair slice on chip through every layer; ``fused=False`` forces the plain path, which
    every fused result is tested against. On the plain path, work is tiled into batches of image
    pairs that fit ``memory_budget`` bytes (default: from the device's free memory), and
    ``compile`` fuses each batch's pass with torch.compile, several times faster once compiled
    (default: when the work is large enough to repay the seconds of compiling).
    """
    arch = load(arch)
    device = torch.device(device) if device is not None else x1.device
    x1 = x1.to(device, dtype)
    x2 = None if x2 is None else x2.to(device, dtype)
    if x1.ndim != 4 or (x2 is not None and x2.shape[1:] != x1.shape[1:]):
        raise ValueError(f"expected image batches (n, C, H, W) of one shape, got {tuple(x1.shape)} and "
                         f"{None if x2 is None else tuple(x2.shape)}")
    p = plan(arch, x1.shape[2], x1.shape[3])
    n1, n2 = len(x1), len(x1) if x2 is None else len(x2)
    total = n1 * (n1 + 1) // 2 if x2 is None else n1 * n2
    work = total * max(g.entries for g in p.pair_grids) * len(arch.nodes)
    net = chain(arch) if fused is not False and device.type in ("cpu", "cuda") and dtype == torch.float32 else None
    if fused and net is None:
        raise ValueError("fused=True needs a chain network (convs and ReLUs, no pools or branches), float32, "
                         "on the CPU or a CUDA GPU")
    if net is not None:
        pairs = _fused_backend(device).Pairs(net, p.pair_grids[-1], x1, x2)
        # Sized so that a batch takes well under a second: the progress bar moves, and an interrupt
        # loses little.
        batch = max(1, min((1 << 24 if device.type == "cuda" else 1 << 22) // p.pair_grids[-1].entries, total))
        means = pairs.means
    else:
        budget = memory_budget or default_memory_budget(device)
        # Compiling costs tens of seconds once per network and batch shape: about a minute of
        # uncompiled work on a 2-core CPU is where it starts to pay. It grows with the graph (about
        # a second per node): cell networks (47 nodes and more) are not worth it by default.
        compiled = work > 1 << 29 and len(arch.nodes) <= 40 if compile is None else compile
        propagate = _propagate_compiled if compiled else _propagate

        def batch_size(grids: list[Grid], most: int) -> int:
            # Uncompiled, each tensor op costs microseconds of Python: give it at least 1M entries
            # (cell networks at low resolution run 10x faster than at the cache-sized batch).
            floor = 1 if compiled else (1 << 20) // max(g.entries for g in grids)
            return max(1, min(max(budget // p.bytes_per_pair(x1.element_size(), grids), floor), 1 << 16, most))

        image_batch = batch_size(p.image_grids, max(n1, n2))
        stats1 = image_statistics(p, x1, image_batch)
        stats2 = stats1 if x2 is None else image_statistics(p, x2, image_batch)
        batch = batch_size(p.pair_grids, total)

        def means(i: torch.Tensor, j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            count = len(i)
            if count < batch:  # pad the last batch: one shape, one compiled graph
                i, j = (torch.cat([t, t[-1:].expand(batch - count)]) for t in (i, j))
            xb = x1[j] if x2 is None else x2[j]
            sigma, theta = propagate(p, x1[i], xb, stats1.take(i), stats2.take(j), ntk=True)
            return sigma[:count], theta[:count]

    progress = work > 1 << 32 if progress is None else progress
    nngp = torch.empty(n1, n2, dtype=dtype, device=device)
    ntk = torch.empty_like(nngp)
    with tqdm(total=total, unit="pair", disable=not progress, desc="kernel", dynamic_ncols=True) as bar:
        for i, j in _pair_batches(n1, None if x2 is None else n2, batch, device):
            a, b = arch.readout.kernels(*means(i, j), trainable=not arch.fix_first_and_readout)
            nngp[i, j], ntk[i, j] = a, b
            if x2 is None:
                nngp[j, i], ntk[j, i] = a, b
            bar.update(len(i))
    bad = (~torch.isfinite(nngp)).sum().item() + (~torch.isfinite(ntk)).sum().item()
    if bad:
        raise KernelError(f"the kernel has {bad} non-finite entries (NaN or Inf); check the input images "
                          "and the weight/bias stds")
    return Kernels(nngp, ntk)
