"""The walk of a network's graph that both paths share: the plain path runs it on torch tensors
(:mod:`nas_cntk.kernels.propagate`), the fused graph kernel's lowering on a program's buffers
(:mod:`nas_cntk.kernels.fused.graph.lowering`).

Node by node, in topological order: the moments of the node's inputs on the pixel pairs it needs,
summed with the cross moments of every pair of them (``M(a + b) = M(a) + M(b) + both crosses``);
then the op's rules for the crosses with earlier nodes that later sums need, and for the node's
own moments. In record mode the pairs are (x, x) on the image grids, ``Theta`` is not carried, and
each node's per-image mean is taken too; a path records from it what later passes read.
"""
from __future__ import annotations

from itertools import combinations
from typing import Any, Generic, Protocol, TypeVar

from nas_cntk.description.grid import Grid
from nas_cntk.description.ops import Cross, Fork, Kind, Op
from nas_cntk.kernels.plan import Plan

T = TypeVar("T")  # a pair tensor of the path


class Path(Protocol, Generic[T]):
    """What the walk does through a path: its tensors, and which of each op's rules it applies."""

    record: bool  # the pairs (x, x) on the image grids, recording each image's statistics

    def input(self, grid: Grid) -> tuple[T, T | None, Any]:
        """The input node's Sigma, Theta (None in record mode) and per-image mean."""
        ...

    def restrict(self, t: T, grid: Grid, to: Grid) -> T:
        """A tensor on ``grid`` reduced to the pixel pairs ``to`` holds."""
        ...

    def add(self, a: T | None, b: T | None) -> T | None:
        """a + b, where None is exactly zero."""
        ...

    def context(self, n: int, first: int, grid_in: Grid, grid_out: Grid, kind_in: Kind, trainable: bool) -> Any:
        """The context of node n's rules, whose first input is node ``first``."""
        ...

    def fork(self, f: int, kind: Kind) -> Fork:
        ...

    def moments(self, op: Op, sigma: T, theta: T | None, ctx: Any) -> tuple[T, T | None]: ...

    def cross(self, op: Op, cross: Cross | None, ctx: Any, fork: Fork) -> Cross | None: ...

    def mean(self, op: Op, mean: Any, ctx: Any) -> Any: ...

    def recorded(self, n: int, sigma: T, grid: Grid, mean: Any) -> None:
        """Record mode: node n's Sigma and mean are final; keep what later passes read."""
        ...


def walk(p: Plan, path: Path[T]) -> tuple[T, T | None] | None:
    """The walk through ``path``; the last node's Sigma and Theta, or None in record mode."""
    record = path.record
    grids, cross_grids = (p.image_grids, p.image_cross_grids) if record else (p.pair_grids, p.pair_cross_grids)
    nodes = p.arch.nodes
    values: dict[int, tuple[T, T | None]] = {}
    means: dict[int, Any] = {}  # record mode: each node's per-image mean
    crosses: dict[tuple[int, int], Cross | None] = {}
    remaining = list(p.consumers)
    untrained_conv = p.arch.first_conv if p.arch.fix_first_and_readout else None

    def moments(i: int, grid: Grid) -> tuple[T, T | None]:
        sigma, theta = values[i]
        return path.restrict(sigma, grids[i], grid), None if theta is None else path.restrict(theta, grids[i], grid)

    def cross_with(f: int, i: int, grid: Grid) -> Cross | None:
        """Moments of node f with node i (either order), on ``grid``; None where they vanish."""
        if i == f:
            sigma, theta = moments(f, grid)
            return Cross(sigma, sigma, theta, theta)
        pair = min(f, i), max(f, i)
        c = crosses.get(pair)
        if c is None:
            return None
        c = c.map(lambda t: path.restrict(t, cross_grids[pair], grid))
        return c if f < i else c.swapped()

    def add_cross(x: Cross | None, y: Cross | None) -> Cross | None:
        if x is None or y is None:
            return x if y is None else y
        return Cross(*(path.add(s, t) for s, t in zip(x.parts(), y.parts())))

    for n, node in enumerate(nodes):
        grid = grids[n]
        if node.op is None:
            sigma, theta, means[n] = path.input(grid)
            values[n] = sigma, theta
            continue
        first = node.inputs[0]
        grid_in = node.op.input_grid(grid, *p.sizes[first])
        sigma, theta = moments(first, grid_in)
        if len(node.inputs) > 1:  # a sum: M(a + b + ...) = M(a) + M(b) + ... + both crosses of every pair
            for i in node.inputs[1:]:
                sigma_i, theta_i = moments(i, grid_in)
                sigma, theta = path.add(sigma, sigma_i), None if record else path.add(theta, theta_i)
            for a, b in combinations(node.inputs, 2):
                c = cross_with(a, b, grid_in) or Cross(None, None)
                sigma = path.add(path.add(sigma, c.sigma_fn), c.sigma_nf)
                if not record:
                    theta = path.add(path.add(theta, c.theta_fn), c.theta_nf)
        kind_in = sum((p.kinds[i] for i in node.inputs[1:]), start=p.kinds[first])
        trainable = n != untrained_conv
        ctx = path.context(n, first, grid_in, grid, kind_in, trainable)
        if record:
            mean_in = None
            for i in node.inputs:
                mean_in = path.add(mean_in, means[i])
            means[n] = path.mean(node.op, mean_in, ctx)
        for f in (a for a, b in p.crossed if b == n and (a, b) in cross_grids):
            # on the pixel pairs the cross's own uses need, which may be more than the node's
            out = cross_grids[f, n]
            cross_in = node.op.input_grid(out, *p.sizes[first])
            carried = None
            for i in node.inputs:
                carried = add_cross(carried, cross_with(f, i, cross_in))
            cross_ctx = path.context(n, first, cross_in, out, kind_in, trainable)
            crosses[f, n] = path.cross(node.op, carried, cross_ctx, path.fork(f, p.kinds[f]))
        values[n] = path.moments(node.op, sigma, theta, ctx)
        if record:
            path.recorded(n, values[n][0], grid, means[n])
        for i in node.inputs:  # free what no later node reads
            remaining[i] -= 1
            if remaining[i] == 0:
                del values[i]
                for key in [k for k in crosses if i in k]:
                    del crosses[key]
    return None if record else values[len(nodes) - 1]
