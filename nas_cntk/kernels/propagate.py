"""The plain, reference path: push a batch of image pairs through the graph, op by op.

Two modes. With no image statistics given, the pairs are (x, x) and the pass records each image's
per-pixel variances (which the ReLUs normalise by) and the means that cross rules need. Otherwise
each pair holds only the pixel pairs its readout needs, and the pass returns the readout's averages
of the last NNGP and NTK tensors. Every op applies its own rule (:mod:`nas_cntk.description.ops`);
this module walks the graph and sums branches with their cross moments.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import torch

from nas_cntk.description.grid import Grid
from nas_cntk.description.ops import Cross, Fork, PairContext
from nas_cntk.kernels.plan import Plan


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


def propagate(p: Plan, xa: torch.Tensor, xb: torch.Tensor, stats_a: ImageStats | None,
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


def image_statistics(p: Plan, x: torch.Tensor, batch: int) -> ImageStats:
    return ImageStats.cat([propagate(p, chunk, chunk, None, None, ntk=False) for chunk in x.split(batch)])
