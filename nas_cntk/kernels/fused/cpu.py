"""The fused CPU kernel for chain networks: the CPU counterpart of :mod:`nas_cntk.kernels.fused.cuda`.

Same layout and work items: a (pair, shift) slice of H x W entries goes through every layer while
it sits in the core's L1 cache, and only one sum per item and moment is written out. Numba compiles
the loops and runs the items on all cores. The network is the same run-time layer table, so one
compiled function serves every architecture.

Speed comes from branch-free loops along image rows that the compiler vectorises:

- A slice is held with zero rows around each side of the row seam (``reach`` of them, the widest
  conv radius), so the vertical half of a box filter is plain sums of rows. The horizontal half
  weighs each neighbour 0 or 1 (same side of the column seam, inside the image), so a row stays
  one contiguous run.
- The second image's rows are stored twice over, side by side, so its pixels at column shift c are
  the contiguous run ``[c, c + W)``.
- The ReLU's angle costs a single division: the divider and the square root bound that loop.
- Nothing in a hot loop depends on a value only known at run time where it can be avoided (see
  the notes at ``_conv`` and above ``_input_layer``): that alone halves the speed.
"""
from __future__ import annotations

import math

import numba
import numpy as np
import torch

from nas_cntk.description.grid import Grid
from nas_cntk.kernels.fused.chain import CONV, Chain

_PI = np.float32(math.pi)
_INV_2PI = np.float32(1 / (2 * math.pi))
U = np.uint64
_JIT = dict(nogil=True, cache=True, error_model="numpy")  # numpy errors: no division checks to stop vectorising


class Pairs:
    """Kernels between images x1 and x2 (None: x1 with itself) for any pairs; the per-image work done once."""

    def __init__(self, chain: Chain, grid: Grid, x1: torch.Tensor, x2: torch.Tensor | None = None):
        self.tables = tuple(t.numpy() for t in chain.tables(torch.device("cpu")))
        self.rows, self.cols, self.entries = np.array(grid.rows), np.array(grid.cols), grid.entries
        x1 = _array(x1)
        self.x1_by_channels = x1 / np.float32(x1.shape[1])  # the input layer's mean over channels, folded in
        self.var1 = image_variances(chain, x1).numpy()
        x2, var2 = (x1, self.var1) if x2 is None else (_array(x2), image_variances(chain, x2).numpy())
        # The second image's rows twice over: its pixels at column shift c are the run [c, c + W).
        self.x2_twice, self.var2_twice = (np.concatenate([t, t], axis=-1) for t in (x2, var2))

    def means(self, i: torch.Tensor, j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Readout means (sigma_mean, theta_mean) of the pairs (x1[i[k]], x2[j[k]]), each ``(len(i),)``."""
        sums = _run(self.x1_by_channels, self.x2_twice, self.var1, self.var2_twice, i.numpy(), j.numpy(), self.rows,
                    self.cols, *self.tables, record=False)
        sigma_mean, theta_mean = torch.from_numpy(sums.sum(-1) / self.entries).float()
        return sigma_mean, theta_mean


def image_variances(chain: Chain, x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Per-pixel variances of ``chain.variance_nodes`` for images x, ``(len(variance_nodes), n, H, W)``.

    The kernel's own pass over the pairs (x, x), for the reason given in :mod:`nas_cntk.kernels.fused.cuda`.
    """
    x = _array(x) if isinstance(x, torch.Tensor) else x
    var = np.zeros((len(chain.variance_nodes), *x.shape[:1], *x.shape[2:]), np.float32)
    k, zero = np.arange(len(x)), np.zeros(1, np.int64)
    tables = (t.numpy() for t in chain.tables(torch.device("cpu")))
    _run(x / np.float32(x.shape[1]), x, var, var, k, k, zero, zero, *tables, record=True)
    return torch.from_numpy(var)


def _array(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy(), np.float32)


def _run(x1_by_channels, x2_twice, var1, var2_twice, i, j, rows, cols, ints, floats, record: bool) -> np.ndarray:
    """The kernel on all cores that torch may use; the sums, ``(2, pairs, shifts)``."""
    sums = np.zeros((2, len(i), len(rows) * len(cols)))
    workers = min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(workers)
    _chain_sums(x1_by_channels, x2_twice, var1, var2_twice, i.astype(np.int64), j.astype(np.int64),
                rows.astype(np.int64), cols.astype(np.int64), ints, floats, record, workers, sums)
    return sums


@numba.njit(parallel=True, **_JIT)
def _chain_sums(x1_by_channels, x2_twice, var1, var2_twice, pair_a, pair_b, rows, cols, ints, floats, record, workers,
                sums):
    """Sigma and Theta of the last layer summed over each item's slice, into ``sums[:, pair, shift]``.

    With ``record`` the items are the pairs (x, x) at shift 0 and each ReLU stores its input
    Sigma, the variances, into var1.
    """
    height, width = x1_by_channels.shape[2], x1_by_channels.shape[3]
    reach = 0
    for layer in range(len(ints)):
        if ints[layer, 0] == CONV:
            reach = max(reach, min(ints[layer, 1], max(height, width) - 1))  # further neighbours are all outside
    padded = (height + 4 * reach) * width
    shifts = len(rows) * len(cols)
    for worker in numba.prange(workers):  # each worker takes every workers-th item
        # Per-worker buffers, reused for every item: a few KiB each, in L1. A slice is flat, row after row.
        moments = np.zeros((2, 2, padded), np.float32)                               # (buffer, Sigma/Theta, entry)
        row_sums = np.zeros((2, width + 2 * reach), np.float32)  # one row's column sums; zero margins: the edges
        weights = np.zeros((reach, 2, width), np.float32)  # whether column neighbour d+1 counts, right/left
        starts = np.zeros(height, np.uint64)                       # where each image row starts in the slice
        column_sums = np.zeros(width)
        laid_out = -1                                              # the shift the above are for
        for item in range(worker, len(pair_a) * shifts, workers):
            shift, pair = item // len(pair_a), item % len(pair_a)  # shift-major: the geometry changes rarely
            a, b = pair_a[pair], pair_b[pair]
            r, c = rows[shift // len(cols)], cols[shift % len(cols)]
            if shift != laid_out:
                _geometry(height, width, r, c, reach, starts, weights, moments)
                laid_out = shift
            current, theta_is_zero = 0, True
            _input_layer(x1_by_channels, a, x2_twice, b, r, c, starts, moments)
            # Theta = 0, read by a ReLU before any conv (a conv sets it afresh)
            if len(ints) == 0 or ints[0, 0] != CONV:
                moments[0, 1, :] = 0
            for layer in range(len(ints)):
                if ints[layer, 0] == CONV:
                    _conv(moments, current, ints[layer, 1], floats[layer, 0], floats[layer, 1], ints[layer, 2] != 0,
                          theta_is_zero, c == 0, starts, weights, row_sums)
                    current, theta_is_zero = 1 - current, ints[layer, 2] == 0
                else:
                    _relu(moments, current, var1, ints[layer, 1], a, var2_twice, b, r, c, starts, record)
            _total(moments, current, starts, column_sums, sums, pair, shift)


@numba.njit(**_JIT)
def _geometry(height, width, r, c, reach, starts, weights, moments):
    """Where each row starts for row shift r (rows past the seam 2 reach rows lower, zero rows in
    between), and which column neighbours count for column shift c (same side of the seam, inside)."""
    for p in range(height):
        starts[p] = (p + reach + (2 * reach if p >= height - r else 0)) * width
    moments[:, :, (height - r + reach) * width:(height - r + 3 * reach) * width] = 0  # the seam's zero rows
    seam = width - c
    for d in range(1, reach + 1):
        for q in range(width):
            weights[d - 1, 0, q] = q + d < width and (q + d < seam) == (q < seam)
            weights[d - 1, 1, q] = q - d >= 0 and (q - d < seam) == (q < seam)


# The loops below index with unsigned integers (U): Numba checks every signed index for wraparound
# (a negative index counts from the end), and that check alone stops the loop from vectorising.
# They take whole arrays and indices, not views: a view updates its array's reference count, an
# atomic that the cores contend for.
@numba.njit(**_JIT)
def _input_layer(x1_by_channels, a, x2_twice, b, r, c, starts, moments):
    """``Sigma[p, q] = sum_ch x1[a, ch, p, q] / C x2[b, ch, (p + r) % H, (q + c) % W]`` into buffer 0."""
    channels, height, width = x1_by_channels.shape[1], x1_by_channels.shape[2], x1_by_channels.shape[3]
    w, c = U(width), U(c)
    for p in range(height):
        pr, start = p + r if p + r < height else p + r - height, starts[p]
        for q in range(w):
            moments[0, 0, start + q] = x1_by_channels[a, 0, p, q] * x2_twice[b, 0, pr, c + q]
        for ch in range(1, channels):
            for q in range(w):
                moments[0, 0, start + q] += x1_by_channels[a, ch, p, q] * x2_twice[b, ch, pr, c + q]


@numba.njit(**_JIT)
def _conv(moments, current, radius, scale, bias2, trainable, theta_is_zero, seamless, starts, weights, row_sums):
    """From buffer ``current`` into the other: Sigma' = w^2/k^2 box(Sigma) + b^2 and
    Theta' = w^2/k^2 box(Theta) + Sigma' (0 for an untrained conv; Sigma' while Theta is still 0).
    """
    out, w = 1 - current, U(weights.shape[2])
    box_theta = trainable and not theta_is_zero
    # The same call with literal arguments for 3x3 convs: once inlined, its loops are unrolled and
    # run about twice as fast as with a radius known only at run time.
    if radius == 1 and box_theta:
        _box(moments, current, 1, scale, bias2, True, seamless, starts, weights, row_sums)
    elif radius == 1:
        _box(moments, current, 1, scale, bias2, False, seamless, starts, weights, row_sums)
    else:
        _box(moments, current, radius, scale, bias2, box_theta, seamless, starts, weights, row_sums)
    if not box_theta:  # Theta' is Sigma' (Theta was 0) or 0 (untrained)
        for p in range(len(starts)):
            start = starts[p]
            for q in range(w):
                moments[out, 1, start + q] = moments[out, 0, start + q] if trainable else np.float32(0)


@numba.njit(**_JIT)
def _box(moments, current, radius, scale, bias2, box_theta, seamless, starts, weights, row_sums):
    """Sigma' = scale box(Sigma) + b^2 (and Theta' = scale box(Theta) + Sigma' if ``box_theta``), into the other buffer.

    Row by row: first sums down each column (rows above and below; zero rows at the seam and the
    edges) into ``row_sums``, whose ``margin`` zeros each side stand for the image edges; then
    along the row, each neighbour weighted by whether it is on the same side of the column seam.
    """
    w, margin, out = U(weights.shape[2]), U(weights.shape[0]), 1 - current
    for p in range(len(starts)):
        start = starts[p]
        for m in range(2 if box_theta else 1):
            for q in range(w):
                row_sums[m, margin + q] = moments[current, m, start + q]
            for d in range(1, radius + 1):
                up, down = start - U(d) * w, start + U(d) * w
                for q in range(w):
                    row_sums[m, margin + q] += moments[current, m, up + q] + moments[current, m, down + q]
            for q in range(w):  # Sigma' = ... + b^2, Theta' = ... + Sigma' (finished just before: m = 0 first)
                moments[out, m, start + q] = scale * row_sums[m, margin + q] + (
                    bias2 if m == 0 else moments[out, 0, start + q])
            for d in range(1, radius + 1):
                right, left = margin + U(d), margin - U(d)
                if seamless:  # column shift 0: the zero margins alone stand for the image edges
                    for q in range(w):
                        moments[out, m, start + q] += scale * (row_sums[m, right + q] + row_sums[m, left + q])
                else:
                    for q in range(w):
                        moments[out, m, start + q] += scale * (weights[d - 1, 0, q] * row_sums[m, right + q]
                                                               + weights[d - 1, 1, q] * row_sums[m, left + q])


@numba.njit(**_JIT)
def _relu(moments, current, var1, slot, a, var2_twice, b, r, c, starts, record):
    """The arc-cosine rules in place; ``record``: the pairs are (x, x) at shift 0, and Sigma, the
    variance, is stored first."""
    if record:
        for p in range(var1.shape[2]):
            for q in range(U(var1.shape[3])):
                var1[slot, a, p, q] = moments[current, 0, starts[p] + q]
        _arc_cosine(moments, current, var1, slot, a, var1, a, r, c, starts)
    else:
        _arc_cosine(moments, current, var1, slot, a, var2_twice, b, r, c, starts)


@numba.njit(**_JIT)
def _arc_cosine(moments, current, var1, slot, a, var2, b, r, c, starts):
    """ReLU of each entry, with v = var1[slot, a] at its pixel and v' = var2[slot, b] at the partner's;
    the numerics of :mod:`nas_cntk.description.ops.relu`."""
    height, width = var1.shape[2], var1.shape[3]
    w, c = U(width), U(c)
    for p in range(height):
        pr, start = p + r if p + r < height else p + r - height, starts[p]
        for q in range(w):
            v, v2, s = var1[slot, a, p, q], var2[slot, b, pr, c + q], moments[current, 0, start + q]
            scale = max(v, v2)
            inverse = np.float32(1) / scale if scale > 0 else np.float32(0)
            v, v2, s = v * inverse, v2 * inverse, s * inverse
            sine = math.sqrt(max(v * v2 - s * s, np.float32(0)))
            rest = _PI - _angle(sine, s)
            moments[current, 0, start + q] = scale * ((sine + rest * s) * _INV_2PI)
            moments[current, 1, start + q] = moments[current, 1, start + q] * (rest * _INV_2PI)


@numba.njit(**_JIT)
def _total(moments, current, starts, column_sums, sums, pair, shift):
    """Sums of Sigma and Theta over the slice, in float64 (per column first: that vectorises)."""
    w = U(len(column_sums))
    for m in range(2):
        column_sums[:] = 0
        for p in range(len(starts)):
            for q in range(w):
                column_sums[q] += moments[current, m, starts[p] + q]
        sums[m, pair, shift] = column_sums.sum()


@numba.njit(**_JIT)
def _angle(y, x):
    """atan2(y, x) for y >= 0, in [0, pi]: Cephes' atanf on the ratio folded into [0, tan(pi/8)].

    One division: min/max and, past tan(pi/8), (min - max)/(min + max) = tan(angle - pi/4).
    """
    ax = abs(x)
    small, big = min(y, ax), max(y, ax)
    far = small > np.float32(0.41421356) * big
    numerator = small - big if far else small
    denominator = small + big if far else (big if big > 0 else np.float32(1))
    t = numerator / denominator
    z = t * t
    angle = ((((np.float32(8.05374449538e-2) * z - np.float32(1.38776856032e-1)) * z + np.float32(1.99777106478e-1))
              * z - np.float32(3.33329491539e-1)) * z * t + t)
    angle = angle + _PI / np.float32(4) if far else angle
    angle = _PI / np.float32(2) - angle if y > ax else angle
    return _PI - angle if math.copysign(np.float32(1), x) < 0 else angle  # the sign bit: atan2(0, -0) = pi
