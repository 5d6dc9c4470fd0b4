"""The fused graph kernel on the CPU: a Numba interpreter of :mod:`.instructions`' programs.

Each worker thread takes a share of the pairs and runs each pair through the whole program in its
own arena (a few hundred KiB at 16 x 16), so a pair's buffers stay in cache from the input to the
readout. One compiled function serves every network, float32 and float64.
"""
from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba.extending import overload

from nas_cntk.kernels.fused.cpu import _angle
from nas_cntk.kernels.fused.graph import instructions as isa
from nas_cntk.kernels.fused.graph.instructions import Program

_JIT = dict(nogil=True, cache=True, error_model="numpy")
_PI = math.pi
_SUM_BLOCK = 1024


class Interpreter:
    """:class:`~nas_cntk.kernels.fused.graph.Interpreter` on the CPU: the program's tables as arrays once."""

    def __init__(self, program: Program, like: torch.Tensor):
        dtype = like.cpu().numpy().dtype
        grid_table, _ = program.grids
        (table, indices, values), (tiles_at, tiles) = program.matrices, program.tiles
        self.arena = program.arena
        self.scratch = int(max(grid_table[:, 0].max(), 1) * max(grid_table[:, 1].max(), 1))
        self.program = (program.code, program.alpha, program.beta, program.offsets,
                        (table, indices, values.astype(dtype)), (tiles_at, tiles.astype(dtype)), program.maps,
                        program.grids, program.variance_offsets)

    def __call__(self, x1, x2, var1, var2, vec1, vec2, i, j) -> torch.Tensor:
        sums = np.zeros((len(i), 2), np.float64)
        # One array is passed once (see _interpret): a record program writes var1 and reads it as var2.
        shared = var2 is var1
        var2, vec2 = (var1[:0], vec1[:0]) if shared else (var2, vec2)
        images = tuple(t.numpy() for t in (x1, x2, var1, var2, vec1, vec2))  # views: the record pass writes var1
        workers = max(1, min(numba.config.NUMBA_NUM_THREADS, len(i)))
        _interpret(images, shared, np.asarray(i, np.int64), np.asarray(j, np.int64), self.program, self.arena,
                   self.scratch, workers, sums)
        return torch.from_numpy(sums)


@numba.njit(parallel=True, **_JIT)
def _interpret(images, shared, pair_a, pair_b, program, arena_size, scratch_size, workers, sums):
    """Each worker's share of the pairs, a pair at a time through the whole program in its own arena;
    ``shared``: var1 and vec1 stand for var2 and vec2 too.

    Numba compiles the body of the prange loop on its own, marking its array arguments as aliasing
    none of the others (so no array may come in twice: hence ``shared``); the same loop without
    prange ran 1.5x slower on a small network. Its arguments must be arrays: the tuples are unpacked
    outside and packed again inside.
    """
    x1, x2, var1, var2, vec1, vec2 = images
    code, alpha, beta, offsets, matrices, tiles, maps, grids, var_offsets = program
    (m_table, m_indices, m_values), (tiles_at, tiled), (map_starts, map_indices), (grid_table, grid_maps) = \
        matrices, tiles, maps, grids
    n = len(pair_a)
    chunk = (n + workers - 1) // workers
    for worker in numba.prange(workers):
        arena = np.zeros(arena_size, x1.dtype)
        scratch = np.zeros(scratch_size, x1.dtype)
        tables = (code, alpha, beta, offsets, (m_table, m_indices, m_values), (tiles_at, tiled),
                  (map_starts, map_indices), (grid_table, grid_maps), var_offsets)
        arrays = (x1, x2, var1, var1 if shared else var2, vec1, vec1 if shared else vec2)
        for k in range(worker * chunk, min(n, (worker + 1) * chunk)):
            a, b, pair_sums = pair_a[k], pair_b[k], sums[k]
            for step in range(len(code)):
                _step(step, tables, arrays, a, b, arena, scratch, pair_sums)


@numba.njit(**_JIT)
def _step(step, program, images, a, b, arena, scratch, sums):
    """One instruction for the pair (x1[a], x2[b]); each opcode's work is a helper below, inlined
    (``inline="always"``: a call costs as much as a small instruction's work) but for the large
    ``_linear`` and ``_relu``. Every buffer is taken as its own view of the arena: indexing one array
    at run-time offsets keeps the compiler from vectorising (it cannot rule out overlap), views let it."""
    code, alpha, beta, offsets, matrices, tiles, maps, grids, var_offsets = program
    x1, x2, var1, var2, vec1, vec2 = images
    row = code[step]
    op = row[0]
    g_in, g_out = grids[0][row[5]], grids[0][row[6]]
    size, pixels = g_out[0] * g_out[1], g_out[2] * g_out[3]
    out = _slot(arena, offsets, row[1], size)
    src = _slot(arena, offsets, row[2] if op != isa.OUTER else -1, g_in[0] * g_in[1])
    if op == isa.INPUT:
        _input(out, x1[a], x2[b], g_out, grids[1])
    elif op == isa.ZERO:
        out[:] = 0
    elif op == isa.LINEAR:
        _linear(src, scratch, out, g_in[0], g_in[1], g_out[0], g_out[1], row[3], row[4], alpha[step], beta[step],
                matrices, tiles[0][step], tiles[1])
    elif op == isa.GATHER:
        _gather(out, src, _index_map(maps, row[3], g_out[0]), _index_map(maps, row[4], g_out[1]), g_in[1])
    elif op == isa.ADD:
        _add(out, arena, offsets, _index_map(maps, row[3], row[4]))
    elif op == isa.SCALE:
        _scale(out, src, alpha[step])
    elif op == isa.RELU:
        variance = var_offsets[int(beta[step])]
        var_a, var_b = var1[a, variance:variance + pixels], var2[b, variance:variance + pixels]
        if row[3] < 0:  # record mode: no Theta
            _relu(out, src, None, None, g_out, grids[1], var_a, var_b, scratch)
        else:
            _relu(out, src, _slot(arena, offsets, row[3], size), _slot(arena, offsets, row[4], size), g_out,
                  grids[1], var_a, var_b, scratch)
    elif op == isa.OUTER:
        _outer(out, vec1[a, row[2]:row[2] + pixels], vec2[b, row[3]:row[3] + pixels], g_out, grids[1])
    elif op == isa.VARIANCE:
        _same_pixel(var1[a, var_offsets[row[3]]:var_offsets[row[3]] + pixels], src, g_out)
    elif op == isa.MEAN:
        _sqrt_scaled(out, var1[a, var_offsets[row[3]]:var_offsets[row[3]] + pixels], alpha[step])
    elif op == isa.VECTOR:
        vec1[a, row[3]:row[3] + pixels] = src[:pixels]
    elif op == isa.READOUT:
        _readout(sums, src, _slot(arena, offsets, row[3], size), g_out, alpha[step] > 0)


@numba.njit(inline="always", **_JIT)
def _slot(arena, offsets, slot, size):
    """A slot's buffer as a view of the arena (-1: an empty one)."""
    return arena[offsets[slot]:offsets[slot] + size] if slot >= 0 else arena[:0]


@numba.njit(inline="always", **_JIT)
def _index_map(maps, index, length):
    starts, indices = maps
    return indices[starts[index]:starts[index] + length]


@numba.njit(inline="always", **_JIT)
def _pixel_maps(grid, grid_maps):
    """A grid's four maps: for each row of a pair tensor the pixel row of image 1 and of image 2, for
    each column the pixel column of each."""
    rows, cols, at = grid[0], grid[1], grid[4]
    return (grid_maps[at:at + rows], grid_maps[at + rows:at + 2 * rows], grid_maps[at + 2 * rows:at + 2 * rows + cols],
            grid_maps[at + 2 * rows + cols:at + 2 * rows + 2 * cols])


@numba.njit(inline="always", **_JIT)
def _input(out, first, second, grid, grid_maps):
    """The input layer: the mean over channels of image 1's pixel p times image 2's pixel p'."""
    rows, cols, channels = grid[0], grid[1], first.shape[0]
    row_pixel, row_partner, col_pixel, col_partner = _pixel_maps(grid, grid_maps)
    for u in range(rows):
        line = out[u * cols:(u + 1) * cols]
        line[:] = 0
        for ch in range(channels):
            pixels, partners = first[ch, row_pixel[u]], second[ch, row_partner[u]]
            for v in range(cols):
                line[v] += pixels[col_pixel[v]] * partners[col_partner[v]]
        for v in range(cols):
            line[v] = line[v] / channels


@numba.njit(inline="always", **_JIT)
def _gather(out, src, row_map, col_map, in_cols):
    rows, cols = len(row_map), len(col_map)
    for u in range(rows):
        line, source = out[u * cols:(u + 1) * cols], src[row_map[u] * in_cols:(row_map[u] + 1) * in_cols]
        for v in range(cols):
            line[v] = source[col_map[v]]


@numba.njit(inline="always", **_JIT)
def _add(out, arena, offsets, terms):
    """The terms' slots summed left to right, a block at a time (the block stays in L1 between terms)."""
    size = len(out)
    for start in range(0, size, _SUM_BLOCK):
        stop = min(size, start + _SUM_BLOCK)
        block = out[start:stop]
        block[:] = arena[offsets[terms[0]] + start:offsets[terms[0]] + stop]
        for t in range(1, len(terms)):
            term = arena[offsets[terms[t]] + start:offsets[terms[t]] + stop]
            for e in range(stop - start):
                block[e] += term[e]


@numba.njit(inline="always", **_JIT)
def _scale(out, src, alpha):
    factor = out.dtype.type(alpha)
    for e in range(len(out)):
        out[e] = factor * src[e]


@numba.njit(inline="always", **_JIT)
def _outer(out, first, second, grid, grid_maps):
    """Image 1's vector at p times image 2's at p'."""
    rows, cols, width = grid[0], grid[1], grid[3]
    row_pixel, row_partner, col_pixel, col_partner = _pixel_maps(grid, grid_maps)
    for u in range(rows):
        line, i, pi = out[u * cols:(u + 1) * cols], row_pixel[u] * width, row_partner[u] * width
        for v in range(cols):
            line[v] = first[i + col_pixel[v]] * second[pi + col_partner[v]]


@numba.njit(inline="always", **_JIT)
def _same_pixel(target, src, grid):
    """target (H x W) = the entries of src pairing a pixel with itself."""
    cols, height, width, r0, c0 = grid[1], grid[2], grid[3], grid[5], grid[6]
    for i in range(height):
        for j in range(width):
            target[i * width + j] = src[(r0 * height + i) * cols + c0 * width + j]


@numba.njit(inline="always", **_JIT)
def _sqrt_scaled(out, src, alpha):
    factor = out.dtype.type(alpha)
    for e in range(len(out)):
        out[e] = math.sqrt(factor * src[e])


@numba.njit(inline="always", **_JIT)
def _readout(sums, sigma, theta, grid, gap):
    """The pair's readout sums of Sigma and Theta: every entry (GAP), or the same-pixel ones (flatten)."""
    cols, height, width, r0, c0 = grid[1], grid[2], grid[3], grid[5], grid[6]
    total_sigma, total_theta = 0.0, 0.0
    if gap:
        for e in range(len(sigma)):
            total_sigma += sigma[e]
            total_theta += theta[e]
    else:
        for i in range(height):
            for j in range(width):
                e = (r0 * height + i) * cols + c0 * width + j
                total_sigma += sigma[e]
                total_theta += theta[e]
    sums[0], sums[1] = total_sigma, total_theta


@numba.njit(**_JIT)
def _linear(src, scratch, out, in_rows, in_cols, rows, cols, row_matrix, col_matrix, alpha, beta, matrices, tiles_at,
            tiles):
    """out = alpha A src B^T + beta: B on each row into the scratch, then A on whole rows of it. The
    inner loops run along contiguous rows (B by diagonal where it is banded), which the compiler
    vectorises."""
    m_table, m_indices, m_values = matrices
    if tiles_at[1] >= 0:  # B banded over the whole tensor: one loop per diagonal
        size = in_rows * cols
        width, offset = m_table[col_matrix, 1], m_table[col_matrix, 2]
        _diagonals(scratch[:size], src, tiles[tiles_at[1]:tiles_at[1] + width * size], m_indices, offset, cols, width,
                   1)
    elif col_matrix >= 0:
        width, offset, banded = m_table[col_matrix, 1], m_table[col_matrix, 2], m_table[col_matrix, 3]
        for u in range(in_rows):
            line, source = scratch[u * cols:(u + 1) * cols], src[u * in_cols:(u + 1) * in_cols]
            line[:] = 0
            for e in range(width):
                weights = m_values[offset + e * cols:offset + (e + 1) * cols]
                columns = m_indices[offset + e * cols:offset + (e + 1) * cols]
                if banded:  # column v + d: contiguous runs (indexed from 0: no negative-index check)
                    d = columns[0]
                    low, high = max(0, -d), min(cols, in_cols - d)
                    target, run, weight = line[low:high], source[low + d:high + d], weights[low:high]
                    for t in range(high - low):
                        target[t] += weight[t] * run[t]
                else:
                    for v in range(cols):
                        line[v] += weights[v] * source[columns[v]]
    else:
        scratch[:in_rows * cols] = src
    scale, shift = out.dtype.type(alpha), out.dtype.type(beta)
    if tiles_at[0] >= 0:  # A banded over the whole tensor
        width, offset = m_table[row_matrix, 1], m_table[row_matrix, 2]
        _diagonals(out, scratch[:rows * cols], tiles[tiles_at[0]:tiles_at[0] + width * rows * cols], m_indices, offset,
                   rows, width, cols)
        for e in range(rows * cols):
            out[e] = scale * out[e] + shift
    elif row_matrix >= 0:
        width, offset, banded = m_table[row_matrix, 1], m_table[row_matrix, 2], m_table[row_matrix, 3]
        for u in range(rows):
            line = out[u * cols:(u + 1) * cols]
            line[:] = 0
            for e in range(width):
                weight, index = m_values[offset + e * rows + u], m_indices[offset + e * rows + u]
                if weight == 0:  # a banded matrix's padding, which may lie outside the scratch
                    continue
                base = ((u + index) if banded else index) * cols
                source = scratch[base:base + cols]
                for v in range(cols):
                    line[v] += weight * source[v]
            for v in range(cols):
                line[v] = scale * line[v] + shift
    else:
        for e in range(rows * cols):
            out[e] = scale * scratch[e] + shift


@numba.njit(**_JIT)
def _diagonals(out, src, weights, m_indices, offset, n, width, stride):
    """out = sum over diagonals d of weights_d * src shifted by d * stride, each diagonal one loop over
    the whole tensor (indexed from 0: no negative-index check to keep it from vectorising)."""
    size = len(out)
    out[:] = 0
    for e in range(width):
        shift = m_indices[offset + e * n] * stride
        low, high = max(0, -shift), min(size, size - shift)
        target, run, weight = out[low:high], src[low + shift:high + shift], weights[e * size + low:e * size + high]
        for t in range(high - low):
            target[t] += weight[t] * run[t]


@numba.njit(**_JIT)
def _relu(out, sigma, theta, theta_out, grid, grid_maps, var_a, var_b, scratch):
    """The arc-cosine rules with the numerics of :mod:`nas_cntk.description.ops.relu`. Each row's
    variances are gathered into the scratch first, so that the arithmetic runs over contiguous rows
    and vectorises; ``theta`` is None in record mode (a type: each case is compiled without the branch)."""
    rows, cols, width = grid[0], grid[1], grid[3]
    row_pixel, row_partner, col_pixel, col_partner = _pixel_maps(grid, grid_maps)
    zero, one = out.dtype.type(0), out.dtype.type(1)
    inv_2pi, pi = out.dtype.type(1 / (2 * _PI)), out.dtype.type(_PI)
    first, second = scratch[:cols], scratch[cols:2 * cols]
    for u in range(rows):
        row_a, row_b = var_a[row_pixel[u] * width:(row_pixel[u] + 1) * width], \
            var_b[row_partner[u] * width:(row_partner[u] + 1) * width]
        for v in range(cols):
            first[v], second[v] = row_a[col_pixel[v]], row_b[col_partner[v]]
        line, result = sigma[u * cols:(u + 1) * cols], out[u * cols:(u + 1) * cols]
        for v in range(cols):
            va, vb = first[v], second[v]
            scale = max(va, vb)
            inverse = one / scale if scale > 0 else zero
            x, y, c = va * inverse, vb * inverse, line[v] * inverse
            sine = math.sqrt(max(x * y - c * c, zero))
            rest = pi - _atan2(sine, c)
            result[v] = scale * ((sine + rest * c) * inv_2pi)
            first[v] = rest * inv_2pi  # Theta's factor, where the variance is no longer needed
        if theta is not None:
            for v in range(cols):
                theta_out[u * cols + v] = theta[u * cols + v] * first[v]


def _atan2(y, x):
    """atan2(y, x) for y >= 0, chosen by type when compiled (see the overload below)."""
    return math.atan2(y, x)


@overload(_atan2, jit_options=_JIT)
def _atan2_by_type(y, x):
    """float32: the fused chain kernel's atan2, which vectorises (float32 accurate); float64: libm's."""
    if y == numba.float32:
        return lambda y, x: _angle(y, x)
    return lambda y, x: math.atan2(y, x)
