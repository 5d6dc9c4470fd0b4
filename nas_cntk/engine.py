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
    scopes: dict[int, frozenset[int]]  # branch point -> the nodes on branches that a sum closes again

    @property
    def variance_nodes(self) -> frozenset[int]:
        """Nodes whose per-pixel variance a ReLU needs."""
        return frozenset(node.inputs[0] for node in self.arch.nodes if isinstance(node.op, Relu))

    def bytes_per_pair(self, itemsize: int, grids: list[Grid]) -> int:
        """Working memory of one pair (or one image, with the image grids)."""
        # Live at once: a node's input and output moments, a few temporaries of the conv and ReLU
        # rules, and per open branch point its moments and four cross tensors.
        open_branches = max((sum(n in scope for scope in self.scopes.values()) for n in range(len(self.sizes))),
                            default=0)
        return (10 + 6 * open_branches) * itemsize * max(g.entries for g in grids)


def plan(arch: Architecture, height: int, width: int) -> Plan:
    nodes = arch.nodes
    sizes, kinds = arch.sizes(height, width), arch.kinds()

    def grids(last: Grid) -> list[Grid]:
        needed: list[Grid | None] = [None] * len(nodes)
        needed[-1] = last
        for n in range(len(nodes) - 1, 0, -1):
            for i in nodes[n].inputs:
                grid = nodes[n].op.input_grid(needed[n], *sizes[i])
                needed[i] = grid if needed[i] is None else needed[i].union(grid)
        return needed

    consumers = [0] * len(nodes)
    descendants: list[set[int]] = [set() for _ in nodes]
    for n in range(len(nodes) - 1, -1, -1):
        for i in nodes[n].inputs:
            consumers[i] += 1
            descendants[i] |= {n} | descendants[n]
    scopes = {}
    for f in range(len(nodes)):
        if consumers[f] > 1:
            last = max(n for n in range(len(nodes)) if f in nodes[n].inputs)
            scopes[f] = frozenset(n for n in descendants[f] if n < last)
    for n, node in enumerate(nodes):
        if len(node.inputs) > 1 and not (len(node.inputs) == 2 and node.inputs[0] in scopes
                                         and node.inputs[1] in scopes[node.inputs[0]] | {node.inputs[0]}):
            raise ArchitectureError(f"{node.path}: the engine sums two branches only where one leaves the other")
    return Plan(arch, sizes, kinds, grids(arch.readout.grid(*sizes[-1])),
                grids(Grid.diagonal(*sizes[-1])), consumers, scopes)


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
    grids = p.image_grids if record else p.pair_grids
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
        if i == f:
            sigma, theta = moments(f, grid)
            return Cross(sigma, sigma, theta, theta)
        c = crosses[f, i]
        return None if c is None else Cross(*(None if t is None else grids[i].restrict(t, grid)
                                              for t in (c.sigma_fn, c.sigma_nf, c.theta_fn, c.theta_nf)))

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
        if len(node.inputs) == 2:  # a branch point and a node on a branch leaving it
            other = node.inputs[1]
            c = cross_with(first, other, grid_in) or Cross(None, None)
            sigma_o, theta_o = moments(other, grid_in)
            sigma = sigma + sigma_o + _zero_if_none(c.sigma_fn) + _zero_if_none(c.sigma_nf)
            if ntk:
                theta = theta + theta_o + _zero_if_none(c.theta_fn) + _zero_if_none(c.theta_nf)
        kind_in = sum((p.kinds[i] for i in node.inputs[1:]), start=p.kinds[first])
        ctx = PairContext(grid_in, grid, stats_a.variance.get(first), stats_b.variance.get(first), kind_in,
                          trainable=n != untrained_conv)
        for f, scope in p.scopes.items():
            if n in scope:
                carried = sum((c for i in node.inputs if (c := cross_with(f, i, grid_in)) is not None), start=None)
                crosses[f, n] = node.op.cross(carried, ctx, Fork(p.kinds[f], stats_a.mean[f], stats_b.mean[f]))
        values[n] = node.op.moments(sigma, theta, ctx)
        if record:
            means[n] = node.op.mean(sum(means[i] for i in node.inputs), ctx)
            if n in p.variance_nodes:
                stats_a.variance[n] = grid.same_pixel(values[n][0])
            if n in p.scopes:
                stats_a.mean[n] = means[n]
        for i in node.inputs:  # free what no later node reads
            remaining[i] -= 1
            if remaining[i] == 0:
                del values[i]
                for key in [k for k in crosses if k[1] == i]:
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
        image_batch = max(1, min(budget // p.bytes_per_pair(x1.element_size(), p.image_grids), 1 << 16))
        stats1 = image_statistics(p, x1, image_batch)
        stats2 = stats1 if x2 is None else image_statistics(p, x2, image_batch)
        batch = max(1, min(budget // p.bytes_per_pair(x1.element_size(), p.pair_grids), 1 << 16, total))
        # Compiling costs tens of seconds once per network and batch shape: about a minute of
        # uncompiled work on a 2-core CPU is where it starts to pay.
        propagate = _propagate_compiled if (work > 1 << 29 if compile is None else compile) else _propagate

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
