"""The fused graph kernel on the CPU: a Numba interpreter of :mod:`.graph`'s programs.

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
    Program,
)

_JIT = dict(nogil=True, cache=True, error_model="numpy")
_PI = math.pi
_SUM_BLOCK = 1024


class Interpreter:
    """:class:`~nas_cntk.kernels.fused.graph.Interpreter` on the CPU: the program's tables as arrays once."""

    def __init__(self, program: Program, like: torch.Tensor):
        dtype = like.cpu().numpy().dtype
        grid_table, grid_maps = program.grids
        table, indices, values = program.matrices
        tiles_at, tiles = program.tiles
        scratch = int(max(grid_table[:, 0].max(), 1) * max(grid_table[:, 1].max(), 1))
        self.tables = (program.code, program.alpha, program.beta, program.offsets, program.arena, table, indices,
                       values.astype(dtype), tiles_at, tiles.astype(dtype), *program.maps, grid_table, grid_maps,
                       program.variance_offsets, scratch)

    def __call__(self, x1, x2, var1, var2, vec1, vec2, i, j) -> torch.Tensor:
        sums = np.zeros((len(i), 2), np.float64)
        workers = max(1, min(numba.config.NUMBA_NUM_THREADS, len(i)))
        arrays = (t.numpy() for t in (x1, x2, var1, var2, vec1, vec2))  # views: the record pass writes var1
        _interpret(*arrays, np.asarray(i, np.int64), np.asarray(j, np.int64), *self.tables, workers, sums)
        return torch.from_numpy(sums)


@numba.njit(parallel=True, **_JIT)
def _interpret(x1, x2, var1, var2, vec1, vec2, pair_a, pair_b, code, alpha, beta, offsets, arena_size, m_table,
               m_indices, m_values, tiles_at, tiles, map_starts, map_indices, grid_table, grid_maps, var_offsets,
               scratch_size, workers, sums):
    n = len(pair_a)
    chunk = (n + workers - 1) // workers
    for worker in numba.prange(workers):
        arena = np.zeros(arena_size, x1.dtype)
        scratch = np.zeros(scratch_size, x1.dtype)
        for k in range(worker * chunk, min(n, (worker + 1) * chunk)):
            a, b = pair_a[k], pair_b[k]
            for ins in range(len(code)):
                _step(code[ins], alpha[ins], beta[ins], arena, scratch, offsets, x1, x2, var1, var2, vec1, vec2, a, b,
                      m_table, m_indices, m_values, tiles_at[ins], tiles, map_starts, map_indices, grid_table,
                      grid_maps, var_offsets, sums, k)


@numba.njit(**_JIT)
def _step(row, alpha, beta, arena, scratch, offsets, x1, x2, var1, var2, vec1, vec2, a, b, m_table, m_indices,
          m_values, tiles_at, tiles, map_starts, map_indices, grid_table, grid_maps, var_offsets, sums, k):
    """One instruction for the pair (x1[a], x2[b]). Every buffer is taken as its own view of the arena:
    indexing one array at run-time offsets keeps the compiler from vectorising (it cannot rule out
    overlap), views let it."""
    op = row[0]
    g_in, g_out = grid_table[row[5]], grid_table[row[6]]
    rows, cols, height, width, maps = g_out[0], g_out[1], g_out[2], g_out[3], g_out[4]
    size = rows * cols
    out = arena[offsets[row[1]]:offsets[row[1]] + size] if row[1] >= 0 else arena[:0]
    src = arena[offsets[row[2]]:offsets[row[2]] + g_in[0] * g_in[1]] if row[2] >= 0 and op != OUTER else arena[:0]
    row_pixel, row_partner = grid_maps[maps:maps + rows], grid_maps[maps + rows:maps + 2 * rows]
    col_pixel, col_partner = grid_maps[maps + 2 * rows:maps + 2 * rows + cols], grid_maps[maps + 2 * rows + cols:
                                                                                       maps + 2 * rows + 2 * cols]
    if op == INPUT:
        channels = x1.shape[1]
        for u in range(rows):
            line = out[u * cols:(u + 1) * cols]
            line[:] = 0
            for ch in range(channels):
                first, second = x1[a, ch, row_pixel[u]], x2[b, ch, row_partner[u]]
                for v in range(cols):
                    line[v] += first[col_pixel[v]] * second[col_partner[v]]
            for v in range(cols):
                line[v] = line[v] / channels
    elif op == ZERO:
        out[:] = 0
    elif op == LINEAR:
        _linear(src, scratch, out, g_in[0], g_in[1], rows, cols, row[3], row[4], alpha, beta, m_table, m_indices,
                m_values, tiles_at, tiles)
    elif op == GATHER:
        row_map = map_indices[map_starts[row[3]]:map_starts[row[3]] + rows]
        col_map = map_indices[map_starts[row[4]]:map_starts[row[4]] + cols]
        in_cols = g_in[1]
        for u in range(rows):
            line, source = out[u * cols:(u + 1) * cols], src[row_map[u] * in_cols:(row_map[u] + 1) * in_cols]
            for v in range(cols):
                line[v] = source[col_map[v]]
    elif op == ADD:  # left to right, a block at a time (the block stays in L1 between terms)
        terms = map_indices[map_starts[row[3]]:map_starts[row[3]] + row[4]]
        for start in range(0, size, _SUM_BLOCK):
            stop = min(size, start + _SUM_BLOCK)
            block = out[start:stop]
            block[:] = arena[offsets[terms[0]] + start:offsets[terms[0]] + stop]
            for t in range(1, len(terms)):
                term = arena[offsets[terms[t]] + start:offsets[terms[t]] + stop]
                for e in range(stop - start):
                    block[e] += term[e]
    elif op == SCALE:
        factor = x1.dtype.type(alpha)
        for e in range(size):
            out[e] = factor * src[e]
    elif op == RELU:
        offset = var_offsets[int(beta)]
        variance_a, variance_b = var1[a, offset:offset + height * width], var2[b, offset:offset + height * width]
        if row[3] < 0:
            _relu(out, src, None, None, rows, cols, row_pixel, row_partner, col_pixel, col_partner, variance_a,
                  variance_b, width, scratch)
        else:
            theta, theta_out = arena[offsets[row[3]]:offsets[row[3]] + size], arena[offsets[row[4]]:][:size]
            _relu(out, src, theta, theta_out, rows, cols, row_pixel, row_partner, col_pixel, col_partner, variance_a,
                  variance_b, width, scratch)
    elif op == OUTER:
        first = vec1[a, row[2]:row[2] + height * width]  # the vectors' offsets
        second = vec2[b, row[3]:row[3] + height * width]
        for u in range(rows):
            line, i, pi = out[u * cols:(u + 1) * cols], row_pixel[u] * width, row_partner[u] * width
            for v in range(cols):
                line[v] = first[i + col_pixel[v]] * second[pi + col_partner[v]]
    elif op == VARIANCE:
        r0, c0 = g_out[5], g_out[6]
        offset = var_offsets[row[3]]
        for i in range(height):
            for jj in range(width):
                var1[a, offset + i * width + jj] = src[(r0 * height + i) * cols + c0 * width + jj]
    elif op == MEAN:
        offset = var_offsets[row[3]]
        factor = x1.dtype.type(alpha)
        for e in range(height * width):
            out[e] = math.sqrt(factor * var1[a, offset + e])
    elif op == VECTOR:
        offset = row[3]
        for e in range(height * width):
            vec1[a, offset + e] = src[e]
    elif op == READOUT:
        theta = arena[offsets[row[3]]:offsets[row[3]] + size]
        r0, c0 = g_out[5], g_out[6]
        total_sigma, total_theta = 0.0, 0.0
        if alpha > 0:  # GAP: every entry
            for e in range(size):
                total_sigma += src[e]
                total_theta += theta[e]
        else:  # flatten: the same-pixel entries
            for i in range(height):
                for jj in range(width):
                    e = (r0 * height + i) * cols + c0 * width + jj
                    total_sigma += src[e]
                    total_theta += theta[e]
        sums[k, 0], sums[k, 1] = total_sigma, total_theta


@numba.njit(**_JIT)
def _linear(src, scratch, out, in_rows, in_cols, rows, cols, row_matrix, col_matrix, alpha, beta, m_table, m_indices,
            m_values, tiles_at, tiles):
    """out = alpha A src B^T + beta: B on each row into the scratch, then A on whole rows of it. The
    inner loops run along contiguous rows (B by diagonal where it is banded), which the compiler
    vectorises."""
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
def _relu(out, sigma, theta, theta_out, rows, cols, row_pixel, row_partner, col_pixel, col_partner, var_a, var_b,
          width, scratch):
    """The arc-cosine rules with the numerics of :mod:`nas_cntk.description.ops.relu`. Each row's
    variances are gathered into the scratch first, so that the arithmetic runs over contiguous rows
    and vectorises; ``theta`` is None in record mode (a type: each case is compiled without the branch)."""
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
