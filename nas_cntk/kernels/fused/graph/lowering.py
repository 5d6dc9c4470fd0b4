"""Lowering: a network's walk (:mod:`nas_cntk.kernels.walk`) written out once as a program.

The walk is the plain path's, done symbolically: each op emits its own rules as instructions
(``Op.emit_moments``, ``emit_cross``, ``emit_mean``) into a :class:`Builder`, the
:class:`~nas_cntk.description.ops.Emitter` of this instruction set. Every linear map of the pixel
pairs (a conv's box filter, both pools, a change of grid) is separable: one sparse matrix on the
(shift, row) plane and one on the (shift, column) plane.
"""
from __future__ import annotations

import numpy as np

from nas_cntk.description.grid import AxisMap, Grid
from nas_cntk.description.ops import Cross, Fork, Kind, Op, ProgramContext
from nas_cntk.kernels.fused.graph import passes
from nas_cntk.kernels.fused.graph.instructions import (
    ADD,
    GATHER,
    INPUT,
    LINEAR,
    MEAN,
    OUTER,
    READOUT,
    RELU,
    SCALE,
    VARIANCE,
    VECTOR,
    ZERO,
    Buffer,
    Listing,
    Program,
    ell,
)
from nas_cntk.kernels.plan import Plan
from nas_cntk.kernels.walk import walk


def lower(p: Plan, reads: Program | None = None) -> Program:
    """A program of ``p``. Without ``reads``, the record program: on the pairs (x, x) on the image
    grids, it records each image's variances and the vectors of the cross rules. With it, the pair
    program: on any pairs on the pair grids, reading what ``reads`` (the record program) recorded,
    and ending in the readout's sums."""
    builder = Builder(p, reads)
    last = walk(p, _Lowering(builder))
    if last is not None:
        (sigma, theta), grid = last, p.pair_grids[-1]
        builder.listing.emit(READOUT, -1, sigma.slot, theta.slot, grid_in=grid, grid_out=grid,
                             alpha=float(p.arch.readout.kind == "gap"))
    return _assemble(builder)


class Builder:
    """The instructions of one program as the ops' rules emit them (an
    :class:`~nas_cntk.description.ops.Emitter`), with the tables they index."""

    def __init__(self, p: Plan, reads: Program | None):
        self.plan, self.record = p, reads is None
        self.listing = Listing()
        self.variance_slots = {n: k for k, n in enumerate(sorted(p.variance_nodes))}
        self.means: dict[int, Buffer | None] = {}  # record mode: each node's per-image mean (None: exactly 0)
        # OUTER's per-image vectors (node -> offset): recorded where a rule first reads one
        self.vectors: dict[int, int] = {} if reads is None else dict(reads.vectors)
        self.vector_size = 0 if reads is None else reads.vector_size

    def buffer(self, op: int, grid: Grid, a: int = -1, b: int = -1, c: int = -1, *, grid_in: Grid | None = None,
               alpha: float = 1.0, beta: float = 0.0) -> Buffer:
        out = Buffer(self.listing.slot(grid), grid)
        self.listing.emit(op, out.slot, a, b, c, grid_in=grid_in or grid, grid_out=grid, alpha=alpha, beta=beta)
        return out

    def vector(self, node: int) -> int:
        """The offset of node's per-image mean among an image's vectors; the record program writes it
        where a rule first reads it, and the pair program reads it there."""
        if node not in self.vectors:
            assert self.record, f"the pair program reads a vector of node {node} the record program did not write"
            t = self.means.get(node) or self.zeros(Grid.diagonal(*self.plan.sizes[node]))
            self.vectors[node] = self.vector_size
            self.vector_size += t.grid.height * t.grid.width
            self.listing.emit(VECTOR, -1, t.slot, self.vectors[node], grid_in=t.grid, grid_out=t.grid)
        return self.vectors[node]

    # --- the Emitter ------------------------------------------------------------------------------
    def zeros(self, grid: Grid) -> Buffer:
        return self.buffer(ZERO, grid)

    def add(self, a: Buffer | None, b: Buffer | None) -> Buffer | None:
        if a is None or b is None:
            return a if b is None else b
        return self.buffer(ADD, a.grid, a.slot, b.slot)

    def scale(self, t: Buffer | None, factor: float) -> Buffer | None:
        return None if t is None else self.buffer(SCALE, t.grid, t.slot, alpha=factor)

    def linear(self, t: Buffer, out: Grid, rows: AxisMap | None, cols: AxisMap | None, alpha: float = 1.0,
               beta: float = 0.0) -> Buffer:
        row_matrix, col_matrix = (-1 if m is None else self.listing.matrix(m.key, lambda m=m: ell(*m.entries()))
                                  for m in (rows, cols))
        return self.buffer(LINEAR, out, t.slot, row_matrix, col_matrix, grid_in=t.grid, alpha=alpha, beta=beta)

    def subsample(self, t: Buffer, stride: int, out: Grid) -> Buffer:
        if stride == 1:
            return t
        g = t.grid
        rows = self.listing.index_map(("stride", g.rows, out.rows, g.height, stride), lambda: [
            g.rows.index(stride * s % g.height) * g.height + stride * i for s in out.rows for i in range(out.height)])
        cols = self.listing.index_map(("stride", g.cols, out.cols, g.width, stride), lambda: [
            g.cols.index(stride * s % g.width) * g.width + stride * j for s in out.cols for j in range(out.width)])
        return self.buffer(GATHER, out, t.slot, rows, cols, grid_in=g)

    def relu(self, sigma: Buffer, theta: Buffer | None, variance: int) -> tuple[Buffer, Buffer | None]:
        grid = sigma.grid
        sigma_out = Buffer(self.listing.slot(grid), grid)
        theta_out = None if theta is None else Buffer(self.listing.slot(grid), grid)
        self.listing.emit(RELU, sigma_out.slot, sigma.slot, -1 if theta is None else theta.slot,
                          -1 if theta_out is None else theta_out.slot, grid_in=grid, grid_out=grid, beta=variance)
        return sigma_out, theta_out

    def sqrt_variance(self, variance: int, out: Grid, factor: float) -> Buffer:
        return self.buffer(MEAN, out, b=variance, alpha=factor)

    def outer(self, first: int, second: int, grid: Grid) -> Buffer:
        return self.buffer(OUTER, grid, self.vector(first), self.vector(second))

    # --- what the walk needs besides ------------------------------------------------------------
    def restrict(self, t: Buffer, to: Grid) -> Buffer:
        if t.grid == to:
            return t
        g = t.grid
        rows = self.listing.index_map(("restrict", g.rows, to.rows, g.height), lambda: [
            g.rows.index(s) * g.height + i for s in to.rows for i in range(g.height)])
        cols = self.listing.index_map(("restrict", g.cols, to.cols, g.width), lambda: [
            g.cols.index(s) * g.width + j for s in to.cols for j in range(g.width)])
        return self.buffer(GATHER, to, t.slot, rows, cols, grid_in=g)


class _Lowering:
    """The walk's path into a :class:`Builder`: each op's emitted rules."""

    def __init__(self, builder: Builder):
        self.builder, self.record = builder, builder.record

    def input(self, grid: Grid) -> tuple[Buffer, Buffer | None, None]:
        sigma = self.builder.buffer(INPUT, grid)
        return sigma, None if self.record else self.builder.zeros(grid), None

    def restrict(self, t: Buffer, grid: Grid, to: Grid) -> Buffer:
        return self.builder.restrict(t, to)

    def add(self, a: Buffer | None, b: Buffer | None) -> Buffer | None:
        return self.builder.add(a, b)

    def context(self, n: int, first: int, grid_in: Grid, grid_out: Grid, kind_in: Kind,
                trainable: bool) -> ProgramContext:
        return ProgramContext(self.builder, grid_in, grid_out, kind_in, trainable,
                              self.builder.variance_slots.get(first, -1), mean=n)

    def fork(self, f: int, kind: Kind) -> Fork:
        return Fork(kind, f, f)

    def moments(self, op: Op, sigma: Buffer, theta: Buffer | None, ctx: ProgramContext):
        return op.emit_moments(sigma, theta, ctx)

    def cross(self, op: Op, cross: Cross | None, ctx: ProgramContext, fork: Fork) -> Cross | None:
        return op.emit_cross(cross, ctx, fork)

    def mean(self, op: Op, mean: Buffer | None, ctx: ProgramContext) -> Buffer | None:
        self.builder.means[ctx.mean] = op.emit_mean(mean, ctx)
        return self.builder.means[ctx.mean]

    def recorded(self, n: int, sigma: Buffer, grid: Grid, mean: Buffer | None) -> None:
        if n in self.builder.variance_slots:
            self.builder.listing.emit(VARIANCE, -1, sigma.slot, self.builder.variance_slots[n], grid_in=grid,
                                      grid_out=grid)


def _assemble(b: Builder) -> Program:
    """The listing, through the passes, as the arrays an interpreter reads."""
    listing = b.listing
    passes.shared(listing)
    passes.sums(listing)
    code = np.asarray(listing.code, np.int64).reshape(-1, 7)
    offsets, arena = passes.allocate(code, listing.sizes, listing.maps)
    table, indices, values = [], [], []
    offset = 0
    for width, banded, columns, weights in listing.matrices:
        table.append((len(columns) // width, width, offset, banded))
        indices.append(columns)
        values.append(weights)
        offset += len(columns)
    matrices = (np.asarray(table, np.int64).reshape(-1, 4), _cat(indices, np.int64), _cat(values, np.float64))
    map_starts = np.cumsum([0, *map(len, listing.maps)])[:-1].astype(np.int64)
    grid_table, grid_maps = [], []
    offset = 0
    for g in sorted(listing.grid_ids, key=listing.grid_ids.get):  # per grid: the row and column pixel / partner maps
        rows, cols = len(g.rows) * g.height, len(g.cols) * g.width
        row_pixel = [i for _ in g.rows for i in range(g.height)]
        row_partner = [(i + s) % g.height for s in g.rows for i in range(g.height)]
        col_pixel = [j for _ in g.cols for j in range(g.width)]
        col_partner = [(j + s) % g.width for s in g.cols for j in range(g.width)]
        diagonal = (g.rows.index(0) if 0 in g.rows else -1, g.cols.index(0) if 0 in g.cols else -1)
        grid_table.append((rows, cols, g.height, g.width, offset, *diagonal))
        grid_maps += [row_pixel, row_partner, col_pixel, col_partner]
        offset += 2 * rows + 2 * cols
    grids = (np.asarray(grid_table, np.int64).reshape(-1, 7), np.asarray([v for m in grid_maps for v in m], np.int64))
    variance_nodes = sorted(b.variance_slots, key=b.variance_slots.get)
    variance_offsets = np.cumsum([0, *(b.plan.sizes[n][0] * b.plan.sizes[n][1] for n in variance_nodes)])
    return Program(code, np.asarray(listing.alpha), np.asarray(listing.beta), offsets, arena, matrices,
                   passes.tiles(code, grids[0], matrices), (map_starts, _cat(listing.maps, np.int64)), grids,
                   b.vectors, b.vector_size, variance_offsets[:-1].astype(np.int64), int(variance_offsets[-1]))


def _cat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
