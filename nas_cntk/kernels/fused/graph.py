"""Any network as a program for a fused kernel: the plain path's walk of the graph, written out once.

The plain path (:mod:`nas_cntk.kernels.propagate`) applies each op's rule to a batch of pair tensors,
one torch op at a time. Here the same walk is done once per plan, symbolically, and every step
becomes an instruction on per-pair buffers, so that a fused kernel runs a pair through the whole
graph while its buffers stay in cache. Each op's rule is mirrored in :func:`_moments` and
:func:`_cross`; tests hold every fused result to the plain path, so a rule that drifts fails there.

Every linear map of the pixel pairs (a conv's box filter, both pools, a stride, a change of grid)
is separable: one sparse matrix on the (shift, row) plane and one on the (shift, column) plane. A
pair tensor of grid g is stored as a ``(len(g.rows) * H) x (len(g.cols) * W)`` matrix, entry
``(r * H + i, c * W + j)`` pairing pixel (i, j) of x with ((i + rows[r]) % H, (j + cols[c]) % W) of x'.

:class:`GraphPairs` runs a network's programs on an interpreter, one per backend: :mod:`.graph_cpu`
(Numba) or :mod:`.graph_cuda` (Triton).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from typing import Protocol

import numpy as np
import torch

from nas_cntk.description.grid import Grid, window_entries
from nas_cntk.description.ops import AvgPool, Conv, Identity, Kind, Relu, Zero
from nas_cntk.kernels.plan import Plan

# Instructions: one row of ``code`` each, (opcode, out, a, b, c, in grid, out grid) with unused
# fields -1; a, b, c are slots unless said otherwise. Grids are indices into the grid table.
INPUT = 0     # out = sum_ch x1[ch, p] x2[ch, p'] / C
ZERO = 1      # out = 0
LINEAR = 2    # out = alpha A a B^T + beta, with A = matrix b and B = matrix c (-1: the identity)
GATHER = 3    # out[u, v] = a[rows[u], cols[v]], with rows = index map b and cols = index map c
ADD = 4       # out = the c slots of index map b summed left to right (the builder's a + b: see _sums)
SCALE = 5     # out = alpha a
RELU = 6      # out (Sigma) and c (Theta, or -1) from a (Sigma) and b (Theta); variance slot: beta
OUTER = 7     # out[u, v] = vector a of image 1 at p times vector b of image 2 at p' (vector offsets)
VARIANCE = 8  # record mode: variance slot b of image 1 = the same-pixel entries of a
READOUT = 9   # the pair's readout sums of Sigma (a) and Theta (b); alpha: 1 for GAP, 0 for flatten
MEAN = 10     # record mode: out (H x W, one image's) = sqrt(alpha * the same-pixel entries of a)
VECTOR = 11   # record mode: the vector at offset b of image 1 = a (H x W)


@dataclass(frozen=True)
class Tensor:
    """A pair tensor of the program: a virtual buffer and the grid it holds."""

    slot: int
    grid: Grid


@dataclass
class Cross:
    """Cross moments of a fork f with a node n, as tensors (None: exactly zero); see ``ops.base.Cross``."""

    sigma_fn: Tensor | None
    sigma_nf: Tensor | None
    theta_fn: Tensor | None = None
    theta_nf: Tensor | None = None

    def parts(self) -> tuple[Tensor | None, ...]:
        return self.sigma_fn, self.sigma_nf, self.theta_fn, self.theta_nf


@dataclass
class Program:
    """Instructions and their tables; slots are offsets into a per-pair arena of ``arena`` entries."""

    code: np.ndarray           # (k, 7) int64
    alpha: np.ndarray          # (k,) float64
    beta: np.ndarray           # (k,) float64
    offsets: np.ndarray        # slot -> arena offset
    arena: int
    matrices: tuple[np.ndarray, ...]   # (m, 4) rows, width, offset, banded; indices; weights (see _ell)
    tiles: tuple[np.ndarray, np.ndarray]  # per instruction the offsets of A's and B's tiled weights, or -1; weights
    maps: tuple[np.ndarray, ...]       # index maps, concatenated: starts (m,), indices
    grids: tuple[np.ndarray, ...]      # per grid: (rows, cols, H, W, map offsets); concatenated maps
    vectors: dict[tuple[str, int], int]  # OUTER's per-image vectors: ("mean" | "relu_mean", node) -> offset
    vector_size: int
    variance_offsets: np.ndarray  # variance slot -> offset in an image's variances (its H x W follow)
    variance_size: int


@dataclass
class _Builder:
    plan: Plan
    code: list[tuple[int, ...]] = field(default_factory=list)
    alpha: list[float] = field(default_factory=list)
    beta: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    matrices: dict[object, int] = field(default_factory=dict)
    matrix_parts: list[tuple[int, bool, np.ndarray, np.ndarray]] = field(default_factory=list)
    maps: dict[object, int] = field(default_factory=dict)
    map_parts: list[np.ndarray] = field(default_factory=list)
    grid_ids: dict[Grid, int] = field(default_factory=dict)
    vectors: dict[tuple[str, int], int] = field(default_factory=dict)
    vector_sizes: list[int] = field(default_factory=list)

    # --- tables -------------------------------------------------------------------------------
    def grid(self, g: Grid) -> int:
        return self.grid_ids.setdefault(g, len(self.grid_ids))

    def matrix(self, key: object, build) -> int:
        if key not in self.matrices:
            self.matrices[key] = len(self.matrix_parts)
            self.matrix_parts.append(build())
        return self.matrices[key]

    def index_map(self, key: object, build) -> int:
        if key not in self.maps:
            self.maps[key] = len(self.map_parts)
            self.map_parts.append(np.asarray(build(), np.int64))
        return self.maps[key]

    def vector(self, kind: str, node: int) -> int:
        """The offset of a per-image vector among all the vectors an image has, which the record
        program has written by the time any program reads it."""
        return self.vectors[kind, node]

    def store_vector(self, kind: str, node: int, t: Tensor | None, grid: Grid) -> None:
        """Record mode: write a per-image vector (None: zeros on ``grid``) where later instructions, and
        the pair program, read it."""
        if (kind, node) in self.vectors:
            return
        t = t or self.zeros(grid)
        self.vectors[kind, node] = sum(self.vector_sizes)
        self.vector_sizes.append(t.grid.height * t.grid.width)
        self.emit(VECTOR, -1, t.slot, self.vectors[kind, node], grid_in=t.grid, grid_out=t.grid)

    # --- instructions -------------------------------------------------------------------------
    def slot(self, grid: Grid) -> int:
        self.sizes.append(_size(grid))
        return len(self.sizes) - 1

    def emit(self, op: int, out: int, a: int = -1, b: int = -1, c: int = -1, *, grid_in: Grid | None = None,
             grid_out: Grid | None = None, alpha: float = 1.0, beta: float = 0.0) -> None:
        grids = (-1 if g is None else self.grid(g) for g in (grid_in, grid_out))
        self.code.append((op, out, a, b, c, *grids))
        self.alpha.append(alpha)
        self.beta.append(beta)

    def tensor(self, op: int, grid: Grid, a: int = -1, b: int = -1, c: int = -1, *, grid_in: Grid | None = None,
               alpha: float = 1.0, beta: float = 0.0) -> Tensor:
        out = Tensor(self.slot(grid), grid)
        self.emit(op, out.slot, a, b, c, grid_in=grid_in or grid, grid_out=grid, alpha=alpha, beta=beta)
        return out

    def restrict(self, t: Tensor | None, to: Grid) -> Tensor | None:
        if t is None or t.grid == to:
            return t
        g = t.grid
        rows = self.index_map(("restrict", g.rows, to.rows, g.height), lambda: [
            g.rows.index(s) * g.height + i for s in to.rows for i in range(g.height)])
        cols = self.index_map(("restrict", g.cols, to.cols, g.width), lambda: [
            g.cols.index(s) * g.width + j for s in to.cols for j in range(g.width)])
        return self.tensor(GATHER, to, t.slot, rows, cols, grid_in=g)

    def add(self, a: Tensor | None, b: Tensor | None) -> Tensor | None:
        if a is None or b is None:
            return a if b is None else b
        return self.tensor(ADD, a.grid, a.slot, b.slot)

    def scale(self, t: Tensor | None, factor: float) -> Tensor | None:
        return None if t is None else self.tensor(SCALE, t.grid, t.slot, alpha=factor)

    def linear(self, t: Tensor, out: Grid, rows: int, cols: int, alpha: float = 1.0, beta: float = 0.0) -> Tensor:
        return self.tensor(LINEAR, out, t.slot, rows, cols, grid_in=t.grid, alpha=alpha, beta=beta)

    def zeros(self, grid: Grid) -> Tensor:
        return self.tensor(ZERO, grid)


def _size(g: Grid) -> int:
    return len(g.rows) * g.height * len(g.cols) * g.width


# ------------------------------------------------------------------------------------------------ lowering

def lower(p: Plan, reads: Program | None = None) -> Program:
    """A program of ``p``. Without ``reads``, the record program: on the pairs (x, x) on the image
    grids, it records each image's variances and the vectors of the cross rules. With it, the pair
    program: on any pairs on the pair grids, reading what ``reads`` (the record program) recorded,
    and ending in the readout's sums."""
    record = reads is None
    b = _Builder(p)
    if reads is not None:
        b.vectors, b.vector_sizes = dict(reads.vectors), [reads.vector_size]
    grids, cross_grids = (p.image_grids, p.image_cross_grids) if record else (p.pair_grids, p.pair_cross_grids)
    nodes, ntk = p.arch.nodes, not record
    variance_slots = {n: k for k, n in enumerate(sorted(p.variance_nodes))}
    values: dict[int, tuple[Tensor, Tensor | None]] = {}
    means: dict[int, Tensor | None] = {}  # record mode: each node's per-image mean (None: exactly 0)
    crosses: dict[tuple[int, int], Cross | None] = {}
    untrained_conv = p.arch.first_conv if p.arch.fix_first_and_readout else None

    def moments(i: int, grid: Grid) -> tuple[Tensor, Tensor | None]:
        sigma, theta = values[i]
        return b.restrict(sigma, grid), b.restrict(theta, grid)

    def cross_with(f: int, i: int, grid: Grid) -> Cross | None:
        if i == f:
            sigma, theta = moments(f, grid)
            return Cross(sigma, sigma, theta, theta)
        c = crosses.get((f, i)) if f < i else crosses.get((i, f))
        if c is None:
            return None
        c = Cross(*(b.restrict(t, grid) for t in c.parts()))
        return c if f < i else Cross(c.sigma_nf, c.sigma_fn, c.theta_nf, c.theta_fn)

    for n, node in enumerate(nodes):
        grid = grids[n]
        if node.op is None:
            sigma = b.tensor(INPUT, grid)
            values[n] = sigma, b.zeros(grid) if ntk else None
            means[n] = None
            continue
        first = node.inputs[0]
        grid_in = node.op.input_grid(grid, *p.sizes[first])
        sigma, theta = moments(first, grid_in)
        sigma_first = sigma
        if len(node.inputs) > 1:  # a sum, with both crosses of every pair of its inputs
            for i in node.inputs[1:]:
                sigma_i, theta_i = moments(i, grid_in)
                sigma, theta = b.add(sigma, sigma_i), b.add(theta, theta_i) if ntk else None
            for x, y in combinations(node.inputs, 2):
                c = cross_with(x, y, grid_in) or Cross(None, None)
                sigma = b.add(b.add(sigma, c.sigma_fn), c.sigma_nf)
                if ntk:
                    theta = b.add(b.add(theta, c.theta_fn), c.theta_nf)
        kind_in = sum((p.kinds[i] for i in node.inputs[1:]), start=p.kinds[first])
        trainable = n != untrained_conv
        if record:
            mean_in = None
            for i in node.inputs:
                mean_in = b.add(mean_in, means[i])
            means[n] = _mean(b, node.op, mean_in, sigma_first, grid_in, Grid.diagonal(*p.sizes[n]), kind_in)
            if isinstance(node.op, Relu) and kind_in is not Kind.NONNEGATIVE:
                b.store_vector("relu_mean", first, means[n], Grid.diagonal(*p.sizes[n]))
            if n in p.forks:
                b.store_vector("mean", n, means[n], Grid.diagonal(*p.sizes[n]))
        for f in (a for a, c in p.crossed if c == n and (a, c) in cross_grids):
            out = cross_grids[f, n]
            cross_in = node.op.input_grid(out, *p.sizes[first])
            carried = None
            for i in node.inputs:
                c = cross_with(f, i, cross_in)
                carried = c if carried is None else _add_cross(b, carried, c)
            crosses[f, n] = _cross(b, node.op, carried, cross_in, out, kind_in, f, first, p.kinds[f])
        values[n] = _moments(b, node.op, sigma, theta, grid_in, grid, kind_in, trainable,
                             variance_slots.get(first, -1))
        if record and n in variance_slots:
            b.emit(VARIANCE, -1, values[n][0].slot, variance_slots[n], grid_in=grid, grid_out=grid)
    if not record:
        sigma, theta = values[len(nodes) - 1]
        b.emit(READOUT, -1, sigma.slot, theta.slot, grid_in=grids[-1], grid_out=grids[-1],
               alpha=float(p.arch.readout.kind == "gap"))
    return _assemble(b, sorted(variance_slots, key=variance_slots.get))


def _add_cross(b: _Builder, x: Cross, y: Cross | None) -> Cross:
    if y is None:
        return x
    return Cross(*(b.add(s, t) for s, t in zip(x.parts(), y.parts())))


def _moments(b: _Builder, op, sigma: Tensor, theta: Tensor | None, grid_in: Grid, grid_out: Grid, kind_in: Kind,
             trainable: bool, variance: int) -> tuple[Tensor, Tensor | None]:
    """Mirrors each op's ``moments``."""
    if isinstance(op, Conv):
        scale, rows, cols = op.weight_std**2 / op.kernel**2, *_box_matrices(b, grid_in, op.kernel)
        sigma_out = _strided(b, b.linear(sigma, grid_in, rows, cols, scale, op.bias_std**2), op.stride, grid_out)
        if theta is None:
            return sigma_out, None
        if not trainable:
            return sigma_out, b.zeros(grid_out)
        theta_out = _strided(b, b.linear(theta, grid_in, rows, cols, scale), op.stride, grid_out)
        return sigma_out, b.add(theta_out, sigma_out)
    if isinstance(op, Relu):
        if kind_in is Kind.NONNEGATIVE:
            return sigma, theta
        sigma_out = Tensor(b.slot(grid_in), grid_in)
        theta_out = None if theta is None else Tensor(b.slot(grid_in), grid_in)
        b.emit(RELU, sigma_out.slot, sigma.slot, -1 if theta is None else theta.slot,
               -1 if theta_out is None else theta_out.slot, grid_in=grid_in, grid_out=grid_in, beta=variance)
        return sigma_out, theta_out
    if isinstance(op, AvgPool):
        rows, cols = _pool_matrices(b, op, grid_in, grid_out, True, True)
        return (b.linear(sigma, grid_out, rows, cols),
                None if theta is None else b.linear(theta, grid_out, rows, cols))
    if isinstance(op, Identity):
        return sigma, theta
    if isinstance(op, Zero):
        return b.zeros(grid_out), None if theta is None else b.zeros(grid_out)
    raise NotImplementedError(f"no fused rule for {type(op).__name__}")


def _cross(b: _Builder, op, cross: Cross | None, grid_in: Grid, grid_out: Grid, kind_in: Kind, fork: int,
           first: int, fork_kind: Kind) -> Cross | None:
    """Mirrors each op's ``cross``."""
    if isinstance(op, (Conv, Zero)):
        return None
    if isinstance(op, Identity) or (isinstance(op, Relu) and kind_in is Kind.NONNEGATIVE):
        return cross
    if isinstance(op, Relu):
        if fork_kind is Kind.GAUSSIAN:
            return None if cross is None else Cross(*(b.scale(t, 0.5) for t in cross.parts()))
        mean, relu_mean = b.vector("mean", fork), b.vector("relu_mean", first)
        return Cross(b.tensor(OUTER, grid_in, mean, relu_mean), b.tensor(OUTER, grid_in, relu_mean, mean))
    if isinstance(op, AvgPool):
        if cross is None:
            return None
        second = _pool_matrices(b, op, grid_in, grid_out, False, True)  # pools the second image
        first_side = _pool_matrices(b, op, grid_in, grid_out, True, False)
        sides = (second, first_side, second, first_side)
        return Cross(*(None if t is None else b.linear(t, grid_out, *side) for t, side in zip(cross.parts(), sides)))
    raise NotImplementedError(f"no fused cross rule for {type(op).__name__}")


def _mean(b: _Builder, op, mean: Tensor | None, sigma_first: Tensor, grid_in: Grid, out: Grid,
          kind_in: Kind) -> Tensor | None:
    """Mirrors each op's ``mean``: one image's per-pixel means, on a grid of one shift."""
    if isinstance(op, (Conv, Zero)):
        return None
    if isinstance(op, Relu):
        if kind_in is Kind.NONNEGATIVE:
            return mean
        return b.tensor(MEAN, out, sigma_first.slot, grid_in=grid_in, alpha=1 / (2 * math.pi))
    if isinstance(op, AvgPool):
        return None if mean is None else b.linear(mean, out, *_mean_pool_matrices(b, op, mean.grid, out))
    if isinstance(op, Identity):
        return mean
    raise NotImplementedError(f"no fused mean rule for {type(op).__name__}")


def _strided(b: _Builder, t: Tensor, stride: int, out: Grid) -> Tensor:
    if stride == 1:
        return t
    g = t.grid
    rows = b.index_map(("stride", g.rows, out.rows, g.height, stride), lambda: [
        g.rows.index(stride * s % g.height) * g.height + stride * i for s in out.rows for i in range(out.height)])
    cols = b.index_map(("stride", g.cols, out.cols, g.width, stride), lambda: [
        g.cols.index(stride * s % g.width) * g.width + stride * j for s in out.cols for j in range(out.width)])
    return b.tensor(GATHER, out, t.slot, rows, cols, grid_in=g)


# ------------------------------------------------------------------------------------------------ matrices

def _box_matrices(b: _Builder, g: Grid, kernel: int) -> tuple[int, int]:
    """A conv's box filter per axis: ``sum_a t[p + a, p' + a]``, zero where either pixel leaves the image
    (the seam of a cyclic shift: see :meth:`Grid.box_filter`)."""
    def axis(shifts: tuple[int, ...], size: int) -> int:
        def build():
            rows, cols, values = [], [], []
            for k, s in enumerate(shifts):
                seam = size - s
                for i in range(size):
                    for a in range(-(kernel // 2), kernel // 2 + 1):
                        if 0 <= i + a < size and (i + a < seam) == (i < seam):
                            rows.append(k * size + i)
                            cols.append(k * size + i + a)
                            values.append(1.0)
            return _ell(len(shifts) * size, rows, cols, values)
        return b.matrix(("box", shifts, size, kernel), build)

    if kernel == 1:
        return -1, -1
    return axis(g.rows, g.height), axis(g.cols, g.width)


def _pool_matrices(b: _Builder, op: AvgPool, g: Grid, out: Grid, first: bool, second: bool) -> tuple[int, int]:
    """A pool per axis, applied to the first image, the second or both (see :class:`Grid`'s pools)."""
    def axis(shifts_in: tuple[int, ...], shifts_out: tuple[int, ...], size: int, size_out: int) -> int:
        def build():
            if op.same_size:
                rows, cols, values = window_entries(shifts_in, shifts_out, size, op.window // 2, first, second)
            else:
                rows, cols, values = [], [], []
                w = op.window
                for k, s in enumerate(shifts_out):
                    for i in range(size_out):
                        for a in range(w):
                            for c in range(w):
                                rows.append(k * size_out + i)
                                cols.append(shifts_in.index((w * s + c - a) % size) * size + w * i + a)
                                values.append(1 / w**2)
            return _ell(len(shifts_out) * size_out, rows, cols, values)
        return b.matrix(("pool", op, first, second, shifts_in, shifts_out, size), build)

    return axis(g.rows, out.rows, g.height, out.height), axis(g.cols, out.cols, g.width, out.width)


def _mean_pool_matrices(b: _Builder, op: AvgPool, g: Grid, out: Grid) -> tuple[int, int]:
    """A pool of one image's means per axis: the average over the window's pixels inside the image
    (``count_include_pad=False``), separable since the count is."""
    def axis(size: int, size_out: int) -> int:
        def build():
            rows, cols, values = [], [], []
            for i in range(size_out):
                if op.same_size:
                    window = range(max(0, i - op.window // 2), min(size, i + op.window // 2 + 1))
                else:
                    window = range(op.window * i, op.window * i + op.window)
                for a in window:
                    rows.append(i)
                    cols.append(a)
                    values.append(1 / len(window))
            return _ell(size_out, rows, cols, values)
        return b.matrix(("mean pool", op, size, size_out), build)

    return axis(g.height, out.height), axis(g.width, out.width)


def _ell(n_rows: int, rows: list[int], cols: list[int], values: list[float]) -> tuple[int, bool, np.ndarray,
                                                                                    np.ndarray]:
    """The matrix as ``width`` entries a row, stored entry-major ((width, n_rows): the e-th entry of
    every row together, so that a kernel's inner loop runs over rows), zero-padded; returns (width,
    banded, indices, weights).

    Where it has few diagonals (a conv's box filter) it is stored by diagonal instead (``banded``):
    entry k of row r then lies in column r + indices[k, r], so a kernel reads contiguous runs, not
    scattered entries. Either way each row's terms come in column order, so that any grid sums the
    terms of an entry in the same order (the pairs (x, x) then repeat the variance pass bit for bit)."""
    per_row: list[list[tuple[int, float]]] = [[] for _ in range(n_rows)]
    for r, c, v in zip(rows, cols, values):
        per_row[r].append((c, v))
    width = max(1, max(map(len, per_row)))
    diagonals = sorted({c - r for r, c in zip(rows, cols)})
    if len(diagonals) <= 3 * width:  # contiguous runs beat scattered reads even at a few times the work
        indices = np.repeat(np.asarray(diagonals, np.int64)[:, None], n_rows, axis=1)
        weights = np.zeros((len(diagonals), n_rows), np.float64)
        for r, entries in enumerate(per_row):
            for c, v in entries:
                weights[diagonals.index(c - r), r] = v
        return len(diagonals), True, indices.ravel(), weights.ravel()
    indices, weights = np.zeros((width, n_rows), np.int64), np.zeros((width, n_rows), np.float64)
    for r, entries in enumerate(per_row):
        for e, (c, v) in enumerate(sorted(entries)):
            indices[e, r], weights[e, r] = c, v
    return width, False, indices.ravel(), weights.ravel()


# ------------------------------------------------------------------------------------------------ assembly

def _assemble(b: _Builder, variance_nodes: list[int]) -> Program:
    _shared(b)
    _sums(b)
    code = np.asarray(b.code, np.int64).reshape(-1, 7)
    offsets, arena = _allocate(code, b.sizes, b.map_parts)
    table, indices, values = [], [], []
    offset = 0
    for width, banded, columns, weights in b.matrix_parts:
        table.append((len(columns) // width, width, offset, banded))
        indices.append(columns)
        values.append(weights)
        offset += len(columns)
    matrices = (np.asarray(table, np.int64).reshape(-1, 4), *_cat(indices, np.int64), *_cat(values, np.float64))
    tiles = _tiles(code, b, matrices)
    map_starts = np.cumsum([0, *map(len, b.map_parts)])[:-1].astype(np.int64)
    maps = (map_starts, *_cat(b.map_parts, np.int64))
    grid_table, grid_maps = [], []
    offset = 0
    for g in sorted(b.grid_ids, key=b.grid_ids.get):  # per grid: the row and column pixel / partner maps
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
    variance_sizes = [b.plan.sizes[n][0] * b.plan.sizes[n][1] for n in variance_nodes]
    variance_offsets = np.cumsum([0, *variance_sizes]).astype(np.int64)
    return Program(code, np.asarray(b.alpha), np.asarray(b.beta), offsets, arena, matrices, tiles, maps, grids,
                   b.vectors, sum(b.vector_sizes), variance_offsets[:-1], int(variance_offsets[-1]))


# Tiled weights pay below this many entries a tensor (8 x 8 with every shift): there a row is short
# and one loop over the whole tensor beats a loop per row; above it a tiled diagonal (a tensor's
# size) pushes the tensors out of the L2 cache, measured 1.4x slower at 16 x 16.
_TILED_ENTRIES = 4096


def _tiles(code: np.ndarray, b: _Builder, matrices: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A linear map's banded matrices tiled over the whole pair tensor, where the map keeps its shape
    and the tensor is small: diagonal d of B then reads entry t + d of the tensor, diagonal d of A
    entry t + d * columns, so a kernel runs each diagonal as one loop over all the entries (weights 0
    where a row ends)."""
    table, _, weights = matrices
    grids = {index: g for g, index in b.grid_ids.items()}
    at = np.full((len(code), 2), -1, np.int64)
    made: dict[tuple[int, int, int], int] = {}
    parts, size = [], 0
    for k, row in enumerate(code):
        if row[0] != LINEAR:
            continue
        g_in, g_out = grids[row[5]], grids[row[6]]
        rows_in, rows_out = (len(g.rows) * g.height for g in (g_in, g_out))
        cols_in, cols_out = (len(g.cols) * g.width for g in (g_in, g_out))
        if rows_out * cols_out > _TILED_ENTRIES:
            continue
        for side, matrix, square in ((0, row[3], rows_in == rows_out), (1, row[4], cols_in == cols_out)):
            if matrix < 0 or not square or not table[matrix, 3]:
                continue
            n, width, offset = table[matrix, :3]
            key = (side, matrix, cols_out if side == 0 else rows_in)
            if key not in made:
                by_diagonal = weights[offset:offset + n * width].reshape(width, n)
                tiled = np.repeat(by_diagonal, key[2], axis=1) if side == 0 else np.tile(by_diagonal, key[2])
                made[key] = size
                parts.append(tiled.ravel())
                size += tiled.size
            at[k, side] = made[key]
    return at, (np.concatenate(parts) if parts else np.zeros(0, np.float64))


def _cat(parts: list[np.ndarray], dtype) -> tuple[np.ndarray]:
    return (np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype),)


def _reads(row, map_parts: list[np.ndarray]) -> list[int]:
    """The slots an instruction reads."""
    if row[0] == ADD:
        return [int(slot) for slot in map_parts[row[3]]] if row[2] < 0 else [row[2], row[3]]  # assembled, or not
    fields = {INPUT: (), ZERO: (), LINEAR: (2,), GATHER: (2,), SCALE: (2,), RELU: (2, 3), OUTER: (), VARIANCE: (2,),
              READOUT: (2, 3), MEAN: (2,), VECTOR: (2,)}[row[0]]
    return [row[f] for f in fields if row[f] >= 0]


def _shared(b: _Builder) -> None:
    """Each computation once: an instruction that repeats an earlier one on the same inputs (the
    ReLU and the conv moments of two edges out of one cell node, or a second zero tensor) is dropped,
    and what read its outputs reads the earlier one's."""
    same: dict[int, int] = {}  # slot -> the earlier slot with the same values
    seen: dict[tuple, list[int]] = {}
    code, alpha, beta = [], [], []
    for k, row in enumerate(b.code):
        op, row = row[0], list(row)
        inputs = {ADD: (2, 3), LINEAR: (2,), GATHER: (2,), SCALE: (2,), RELU: (2, 3), VARIANCE: (2,),
                  READOUT: (2, 3), MEAN: (2,), VECTOR: (2,)}.get(op, ())
        for f in inputs:
            row[f] = same.get(row[f], row[f])
        outputs = [row[1]] + ([row[4]] if op == RELU and row[4] >= 0 else [])
        key = (op, *row[2:4], *(row[4:5] if op != RELU else ()), *row[5:], b.alpha[k], b.beta[k])
        if op not in (VARIANCE, VECTOR, READOUT) and key in seen:  # those write what a program returns
            same.update(zip(outputs, seen[key]))
            continue
        seen[key] = outputs
        code.append(tuple(row))
        alpha.append(b.alpha[k])
        beta.append(b.beta[k])
    b.code, b.alpha, b.beta = code, alpha, beta


def _sums(b: _Builder) -> None:
    """Each chain of additions as one instruction: an addition whose first term is the result of
    another read nowhere else takes over its terms, in order, so the rounding is the same and only
    the final sum is written. The terms go to the index maps."""
    reads: dict[int, int] = {}
    for row in b.code:
        for slot in _reads(row, b.map_parts):
            reads[slot] = reads.get(slot, 0) + 1
    terms: dict[int, list[int]] = {}  # instruction -> its terms
    made_by: dict[int, int] = {}      # slot -> the addition that wrote it
    merged: set[int] = set()
    for k, row in enumerate(b.code):
        if row[0] != ADD:
            continue
        first, second = row[2], row[3]
        if first in made_by and reads[first] == 1:
            merged.add(made_by[first])
            terms[k] = terms.pop(made_by[first]) + [second]
        else:
            terms[k] = [first, second]
        made_by[row[1]] = k
    code, alpha, beta = [], [], []
    for k, row in enumerate(b.code):
        if k in merged:
            continue
        if row[0] == ADD:
            row = (ADD, row[1], -1, b.index_map(("sum", k), lambda k=k: terms[k]), len(terms[k]), row[5], row[6])
        code.append(row)
        alpha.append(b.alpha[k])
        beta.append(b.beta[k])
    b.code, b.alpha, b.beta = code, alpha, beta


def _allocate(code: np.ndarray, sizes: list[int], map_parts: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """Arena offsets for the virtual slots: a slot's memory is reused once no later instruction reads it."""
    last_read = np.full(len(sizes), -1)
    for k, row in enumerate(code):
        for slot in _reads(row, map_parts):
            last_read[slot] = k
    offsets = np.zeros(len(sizes), np.int64)
    free: dict[int, list[int]] = {}
    arena = 0
    releases: dict[int, list[int]] = {}
    for slot, k in enumerate(last_read):
        releases.setdefault(int(k), []).append(slot)
    for k, row in enumerate(code):
        written = [row[1]] + ([row[4]] if row[0] == RELU and row[4] >= 0 else [])
        for slot in written:
            if slot < 0:
                continue
            pool = free.get(sizes[slot])
            if pool:
                offsets[slot] = pool.pop()
            else:
                offsets[slot] = arena
                arena += sizes[slot]
        for slot in releases.get(k, []):  # read for the last time here: free after this instruction
            free.setdefault(sizes[slot], []).append(offsets[slot])
    return offsets, max(arena, 1)



# ------------------------------------------------------------------------------------------------ running

class Interpreter(Protocol):
    """A backend's interpreter of one program, for images of one dtype on one device."""

    def __init__(self, program: Program, like: torch.Tensor): ...

    def __call__(self, x1: torch.Tensor, x2: torch.Tensor, var1: torch.Tensor, var2: torch.Tensor,
                 vec1: torch.Tensor, vec2: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """The program on the pairs (x1[i[k]], x2[j[k]]): each pair's readout sums of Sigma and Theta,
        ``(len(i), 2)`` float64. In a record program the pairs are (x, x) and the variances and vectors
        are written into var1 (= var2) and vec1 (= vec2)."""
        ...


class GraphPairs:
    """Kernels between images x1 and x2 (None: x1 with itself) for any pairs; the per-image work done once.

    Each image's variances (what the ReLUs normalise by) and vectors (what the cross rules read)
    come from the record program on the pairs (x, x), on the interpreter itself, so that an image
    paired with itself repeats its variances bit for bit (see :mod:`nas_cntk.description.ops.relu`).
    """

    def __init__(self, p: Plan, x1: torch.Tensor, x2: torch.Tensor | None, interpreter: type[Interpreter]):
        self.p = p
        record = lower(p)
        self.run, run_record = interpreter(lower(p, record), x1), interpreter(record, x1)
        self.x1 = x1.contiguous()
        self.var1, self.vec1 = _image_work(run_record, record, self.x1)
        self.x2, self.var2, self.vec2 = self.x1, self.var1, self.vec1
        if x2 is not None:
            self.x2 = x2.contiguous()
            self.var2, self.vec2 = _image_work(run_record, record, self.x2)

    def means(self, i: torch.Tensor, j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sums = self.run(self.x1, self.x2, self.var1, self.var2, self.vec1, self.vec2, i, j)
        grid = self.p.pair_grids[-1]
        pixels = grid.height * grid.width
        result = (sums / (pixels**2 if self.p.arch.readout.kind == "gap" else pixels)).to(self.x1.dtype)
        return result[:, 0], result[:, 1]


def _image_work(run_record: Interpreter, record: Program, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The images' variances and vectors, from the record program on the pairs (x, x)."""
    var = x.new_zeros(len(x), max(record.variance_size, 1))
    vectors = x.new_zeros(len(x), max(record.vector_size, 1))
    k = torch.arange(len(x), device=x.device)
    run_record(x, x, var, var, vectors, vectors, k, k)
    return var, vectors
