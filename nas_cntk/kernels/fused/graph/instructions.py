"""The instruction set of the fused graph kernel: what a program is, and the tables it carries.

A program runs one image pair through a network on per-pair buffers ("slots", virtual until
:mod:`.passes` places them in an arena). A pair tensor of grid g is stored as a
``(len(g.rows) * H) x (len(g.cols) * W)`` matrix, entry ``(r * H + i, c * W + j)`` pairing pixel
(i, j) of x with ((i + rows[r]) % H, (j + cols[c]) % W) of x' (see :mod:`nas_cntk.description.grid`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nas_cntk.description.grid import Grid

# Instructions: one row of ``code`` each, (opcode, out, a, b, c, in grid, out grid) with unused
# fields -1; a, b, c are slots unless said otherwise. Grids are indices into the grid table.
INPUT = 0     # out = sum_ch x1[ch, p] x2[ch, p'] / C
ZERO = 1      # out = 0
LINEAR = 2    # out = alpha A a B^T + beta, with A = matrix b and B = matrix c (-1: the identity)
GATHER = 3    # out[u, v] = a[rows[u], cols[v]], with rows = index map b and cols = index map c
ADD = 4       # out = the c slots of index map b summed left to right (as emitted, a + b: see passes.sums)
SCALE = 5     # out = alpha a
RELU = 6      # out (Sigma) and c (Theta, or -1) from a (Sigma) and b (Theta); variance slot: beta
OUTER = 7     # out[u, v] = vector a of image 1 at p times vector b of image 2 at p' (vector offsets)
VARIANCE = 8  # record mode: variance slot b of image 1 = the same-pixel entries of a
READOUT = 9   # the pair's readout sums of Sigma (a) and Theta (b); alpha: 1 for GAP, 0 for flatten
MEAN = 10     # record mode: out (H x W, one image's) = sqrt(alpha * variance slot b of image 1)
VECTOR = 11   # record mode: the vector at offset b of image 1 = a (H x W)

# The fields of each instruction that name slots it reads (ADD's, once assembled, are in its index map).
READS = {INPUT: (), ZERO: (), LINEAR: (2,), GATHER: (2,), ADD: (2, 3), SCALE: (2,), RELU: (2, 3), OUTER: (),
         VARIANCE: (2,), READOUT: (2, 3), MEAN: (), VECTOR: (2,)}
# Instructions that write what a program returns (variances, vectors, sums), not a slot.
RESULTS = frozenset({VARIANCE, VECTOR, READOUT})


@dataclass(frozen=True)
class Buffer:
    """A pair tensor of the program: a virtual slot and the grid it holds."""

    slot: int
    grid: Grid


@dataclass
class Program:
    """Instructions and their tables; slots are offsets into a per-pair arena of ``arena`` entries."""

    code: np.ndarray           # (k, 7) int64
    alpha: np.ndarray          # (k,) float64
    beta: np.ndarray           # (k,) float64
    offsets: np.ndarray        # slot -> arena offset
    arena: int
    matrices: tuple[np.ndarray, ...]   # (m, 4) rows, width, offset, banded; indices; weights (see ell)
    tiles: tuple[np.ndarray, np.ndarray]  # per instruction the offsets of A's and B's tiled weights, or -1; weights
    maps: tuple[np.ndarray, ...]       # index maps, concatenated: starts (m,), indices
    grids: tuple[np.ndarray, ...]      # per grid: (rows, cols, H, W, map offsets, diagonal); concatenated maps
    vectors: dict[int, int]    # OUTER's per-image vectors: node -> offset (its per-image mean)
    vector_size: int
    variance_offsets: np.ndarray  # variance slot -> offset in an image's variances (its H x W follow)
    variance_size: int


@dataclass
class Listing:
    """A program as emitted, before the passes and assembly: instructions on virtual slots, and the
    tables they index (each grid, matrix and index map once)."""

    code: list[tuple[int, ...]] = field(default_factory=list)
    alpha: list[float] = field(default_factory=list)
    beta: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)  # entries per slot
    grid_ids: dict[Grid, int] = field(default_factory=dict)
    matrix_ids: dict[object, int] = field(default_factory=dict)
    matrices: list[tuple[int, bool, np.ndarray, np.ndarray]] = field(default_factory=list)  # see ell
    map_ids: dict[object, int] = field(default_factory=dict)
    maps: list[np.ndarray] = field(default_factory=list)

    def grid(self, g: Grid) -> int:
        return self.grid_ids.setdefault(g, len(self.grid_ids))

    def matrix(self, key: object, build) -> int:
        if key not in self.matrix_ids:
            self.matrix_ids[key] = len(self.matrices)
            self.matrices.append(build())
        return self.matrix_ids[key]

    def index_map(self, key: object, build) -> int:
        if key not in self.map_ids:
            self.map_ids[key] = len(self.maps)
            self.maps.append(np.asarray(build(), np.int64))
        return self.map_ids[key]

    def slot(self, grid: Grid) -> int:
        self.sizes.append(len(grid.rows) * grid.height * len(grid.cols) * grid.width)
        return len(self.sizes) - 1

    def emit(self, op: int, out: int, a: int = -1, b: int = -1, c: int = -1, *, grid_in: Grid | None = None,
             grid_out: Grid | None = None, alpha: float = 1.0, beta: float = 0.0) -> None:
        grids = (-1 if g is None else self.grid(g) for g in (grid_in, grid_out))
        self.code.append((op, out, a, b, c, *grids))
        self.alpha.append(alpha)
        self.beta.append(beta)

    def keep(self, rows: list[int]) -> None:
        """Only the instructions ``rows`` (indices into ``code``), in that order."""
        self.code = [self.code[k] for k in rows]
        self.alpha = [self.alpha[k] for k in rows]
        self.beta = [self.beta[k] for k in rows]


def reads(row, maps: list[np.ndarray]) -> list[int]:
    """The slots an instruction reads."""
    if row[0] == ADD and row[2] < 0:  # assembled: the terms are in an index map
        return [int(slot) for slot in maps[row[3]]]
    return [row[f] for f in READS[row[0]] if row[f] >= 0]


def writes(row) -> list[int]:
    """The slots an instruction writes."""
    return [row[1]] + ([row[4]] if row[0] == RELU and row[4] >= 0 else [])


def ell(n_rows: int, rows: list[int], cols: list[int], values: list[float]) -> tuple[int, bool, np.ndarray,
                                                                                   np.ndarray]:
    """A sparse matrix as ``width`` entries a row, stored entry-major ((width, n_rows): the e-th entry of
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
