"""The plain, reference path: push a batch of image pairs through the graph, op by op.

Two modes. With no image statistics given, the pairs are (x, x) and the pass records each image's
per-pixel variances (which the ReLUs normalise by) and the means that cross rules need. Otherwise
each pair holds only the pixel pairs its readout needs, and the pass returns the readout's averages
of the last NNGP and NTK tensors. Every op applies its own rule on torch tensors
(:mod:`nas_cntk.description.ops`); the walk of the graph is :mod:`nas_cntk.kernels.walk`'s.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from nas_cntk.description.grid import Grid
from nas_cntk.description.ops import Cross, Fork, Kind, Op, PairContext
from nas_cntk.kernels.plan import Plan
from nas_cntk.kernels.walk import walk


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
              stats_b: ImageStats | None) -> tuple[torch.Tensor, torch.Tensor] | ImageStats:
    """Push a batch of image pairs through the network.

    With ``stats_a`` None the pairs are (x, x) and the pass records each image's statistics as
    it goes (variances are the same-pixel entries); otherwise it returns the readout's averages of
    the last NNGP and NTK pair tensors (:meth:`Readout.reduce`).
    """
    path = _Torch(p, xa, xb, stats_a, stats_b)
    last = walk(p, path)
    if last is None:
        return path.stats_a
    sigma, theta = last
    return p.arch.readout.reduce(sigma, p.pair_grids[-1]), p.arch.readout.reduce(theta, p.pair_grids[-1])


class _Torch:
    """The walk's path on torch tensors, batches of pairs: each op's plain rules."""

    def __init__(self, p: Plan, xa: torch.Tensor, xb: torch.Tensor, stats_a: ImageStats | None,
                 stats_b: ImageStats | None):
        self.p, self.xa, self.xb = p, xa, xb
        self.record = stats_a is None
        self.stats_a = ImageStats({}, {}) if self.record else stats_a
        self.stats_b = self.stats_a if self.record else stats_b

    def input(self, grid: Grid) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        sigma = grid.pair_product(self.xa, self.xb) / self.xa.shape[1]
        return sigma, None if self.record else torch.zeros_like(sigma), torch.zeros_like(self.xa[:, 0])

    def restrict(self, t: torch.Tensor, grid: Grid, to: Grid) -> torch.Tensor:
        return grid.restrict(t, to)

    def add(self, a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
        return a if b is None else b if a is None else a + b

    def context(self, n: int, first: int, grid_in: Grid, grid_out: Grid, kind_in: Kind,
                trainable: bool) -> PairContext:
        return PairContext(grid_in, grid_out, self.stats_a.variance.get(first), self.stats_b.variance.get(first),
                           kind_in, trainable)

    def fork(self, f: int, kind: Kind) -> Fork:
        return Fork(kind, self.stats_a.mean[f], self.stats_b.mean[f])

    def moments(self, op: Op, sigma, theta, ctx: PairContext):
        return op.moments(sigma, theta, ctx)

    def cross(self, op: Op, cross: Cross | None, ctx: PairContext, fork: Fork) -> Cross | None:
        return op.cross(cross, ctx, fork)

    def mean(self, op: Op, mean: torch.Tensor, ctx: PairContext) -> torch.Tensor:
        return op.mean(mean, ctx)

    def recorded(self, n: int, sigma: torch.Tensor, grid: Grid, mean: torch.Tensor) -> None:
        if n in self.p.variance_nodes:
            self.stats_a.variance[n] = grid.same_pixel(sigma)
        if n in self.p.forks:
            self.stats_a.mean[n] = mean


def image_statistics(p: Plan, x: torch.Tensor, batch: int) -> ImageStats:
    return ImageStats.cat([propagate(p, chunk, chunk, None, None) for chunk in x.split(batch)])
