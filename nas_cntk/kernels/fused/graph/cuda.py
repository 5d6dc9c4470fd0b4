"""The fused graph kernel on a CUDA GPU: a Triton interpreter of :mod:`.instructions`' programs.

A persistent grid of programs, each taking pairs in turn and running a pair through the whole
program in its own arena in global memory (hundreds of KiB to tens of MiB a program, so an arena
stays in the L2 cache at small sizes). Every instruction is a loop over blocks of its output
entries, followed by a barrier: the next instruction reads entries other threads wrote. One
compiled kernel serves every network; the program is a table read at run time. Float32, without
fused multiply-adds, so that the pairs (x, x) repeat the record pass bit for bit (see
:mod:`.cuda`).
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from nas_cntk.kernels.fused.cuda import _angle
from nas_cntk.kernels.fused.graph import instructions as isa

_BLOCK = 1024
_WARPS = 4
_PROGRAMS_PER_SM = 8
_PI = tl.constexpr(math.pi)
_INV_2PI = tl.constexpr(1 / (2 * math.pi))
_INPUT, _ZERO, _LINEAR, _GATHER, _ADD, _SCALE, _RELU, _OUTER, _VARIANCE, _READOUT, _MEAN, _VECTOR = (
    tl.constexpr(op) for op in (isa.INPUT, isa.ZERO, isa.LINEAR, isa.GATHER, isa.ADD, isa.SCALE, isa.RELU, isa.OUTER,
                                isa.VARIANCE, isa.READOUT, isa.MEAN, isa.VECTOR))


class Interpreter:
    """:class:`~nas_cntk.kernels.fused.graph.Interpreter` on a CUDA GPU (or Triton's interpreter): the
    program's tables on the device once."""

    def __init__(self, program: isa.Program, like: torch.Tensor):
        def ints(a):
            return torch.as_tensor(a, dtype=torch.int64, device=like.device).contiguous().view(-1)

        def floats(a):
            return torch.as_tensor(a, dtype=torch.float32, device=like.device).contiguous().view(-1)

        grid_table, grid_maps = program.grids
        m_table, m_indices, m_values = program.matrices
        map_starts, map_indices = program.maps
        self.tables = (ints(program.code), floats(program.alpha), floats(program.beta), ints(program.offsets),
                       ints(m_table), ints(m_indices), floats(m_values), ints(map_starts), ints(map_indices),
                       ints(grid_table), ints(grid_maps), ints(program.variance_offsets))
        self.steps = len(program.code)
        self.arena = program.arena
        self.work = program.arena + int(max(grid_table[:, 0].max(), 1) * max(grid_table[:, 1].max(), 1))

    def __call__(self, x1, x2, var1, var2, vec1, vec2, i, j) -> torch.Tensor:
        device = x1.device
        i, j = (t.to(device, torch.int64).contiguous() for t in (i, j))
        programs = min(len(i), _programs(device, 4 * self.work))
        work = torch.empty(programs, self.work, dtype=torch.float32, device=device)
        sums = torch.empty(len(i), 2, dtype=torch.float64, device=device)
        _graph_kernel[(programs,)](
            x1, x2, var1, var2, vec1, vec2, i, j, len(i), *self.tables, work, sums, self.steps, self.arena,
            self.work, var1.shape[1], vec1.shape[1], x1.shape[1], x1.shape[2] * x1.shape[3],
            BLOCK=_BLOCK, num_warps=_WARPS, enable_fp_fusion=False)
        return sums


def _programs(device: torch.device, work_bytes: int) -> int:
    """The persistent grid: a few programs per SM, as many as a quarter of the free memory holds (a
    few, in the interpreter)."""
    if device.type != "cuda":
        return 2
    free, _ = torch.cuda.mem_get_info(device)
    per_sm = torch.cuda.get_device_properties(device).multi_processor_count * _PROGRAMS_PER_SM
    return max(1, min(per_sm, free // 4 // work_bytes))


@triton.jit(do_not_specialize=["n_pairs", "steps", "arena_size", "work_size", "var_size", "vec_size", "channels",
                               "pixels"])
def _graph_kernel(x1, x2, var1, var2, vec1, vec2, pair_a, pair_b, n_pairs, code, alpha, beta, offsets, m_table,
                  m_indices, m_values, map_starts, map_indices, grid_table, grid_maps, var_offsets, work, sums, steps,
                  arena_size, work_size, var_size, vec_size, channels, pixels, BLOCK: tl.constexpr):
    """Each pair's readout sums of Sigma and Theta into sums (n_pairs, 2); the instructions as in
    :mod:`.instructions` (and :mod:`.cpu`, its CPU twin), each opcode's work a helper below."""
    arena = work + tl.program_id(0).to(tl.int64) * work_size
    scratch = arena + arena_size
    lanes = tl.arange(0, BLOCK)
    for k in range(tl.program_id(0), n_pairs, tl.num_programs(0)):
        a = tl.load(pair_a + k)
        b = tl.load(pair_b + k)
        for step in range(steps):
            op = tl.load(code + 7 * step)
            f1 = tl.load(code + 7 * step + 1)
            f2 = tl.load(code + 7 * step + 2)
            f3 = tl.load(code + 7 * step + 3)
            f4 = tl.load(code + 7 * step + 4)
            g_in = grid_table + 7 * tl.load(code + 7 * step + 5)
            g_out = grid_table + 7 * tl.load(code + 7 * step + 6)
            in_rows, in_cols = tl.load(g_in), tl.load(g_in + 1)
            rows, cols, height, width = tl.load(g_out), tl.load(g_out + 1), tl.load(g_out + 2), tl.load(g_out + 3)
            maps = grid_maps + tl.load(g_out + 4)  # row pixels, row partners, column pixels, column partners
            size, pixels_out = rows * cols, height * width
            scale_k, shift_k = tl.load(alpha + step), tl.load(beta + step)
            out = arena + tl.load(offsets + tl.maximum(f1, 0))
            src = arena + tl.load(offsets + tl.where((f2 >= 0) & (op != _OUTER), f2, 0))
            if op == _INPUT:
                _input(out, x1 + a * channels * pixels, x2 + b * channels * pixels, channels, pixels, size, rows, cols,
                       width, maps, lanes, BLOCK)
            elif op == _ZERO:
                _zeros(out, size, lanes, BLOCK)
            elif op == _LINEAR:  # B on each row into the scratch, then A on whole rows of it (as on the CPU)
                _linear_pass(src, scratch, in_rows * cols, cols, in_cols, in_cols, f4, False, 1.0, 0.0, m_table,
                             m_indices, m_values, lanes, BLOCK)
                tl.debug_barrier()
                _linear_pass(scratch, out, size, cols, cols, in_rows, f3, True, scale_k, shift_k, m_table, m_indices,
                             m_values, lanes, BLOCK)
            elif op == _GATHER:
                _gather(out, src, map_indices + tl.load(map_starts + f3), map_indices + tl.load(map_starts + f4), size,
                        cols, in_cols, lanes, BLOCK)
            elif op == _ADD:  # f3: the index map of the terms, f4 of them
                _add(out, arena, offsets, map_indices + tl.load(map_starts + f3), f4, size, lanes, BLOCK)
            elif op == _SCALE:
                _scale(out, src, scale_k, size, lanes, BLOCK)
            elif op == _RELU:
                at = tl.load(var_offsets + shift_k.to(tl.int32))
                theta, theta_out = (arena + tl.load(offsets + tl.maximum(f3, 0)),
                                    arena + tl.load(offsets + tl.maximum(f4, 0)))
                _relu(out, src, theta, theta_out, f3 >= 0, var1 + a * var_size + at, var2 + b * var_size + at, size,
                      rows, cols, width, maps, lanes, BLOCK)
            elif op == _OUTER:  # f2, f3: the vectors' offsets
                _outer(out, vec1 + a * vec_size + f2, vec2 + b * vec_size + f3, size, rows, cols, width, maps, lanes,
                       BLOCK)
            elif op == _VARIANCE:
                _same_pixel(var1 + a * var_size + tl.load(var_offsets + f3), src, cols, height, width,
                            tl.load(g_out + 5), tl.load(g_out + 6), lanes, BLOCK)
            elif op == _MEAN:
                _sqrt_scaled(out, var1 + a * var_size + tl.load(var_offsets + f3), scale_k, pixels_out, lanes, BLOCK)
            elif op == _VECTOR:  # a copy
                _scale(vec1 + a * vec_size + f3, src, 1.0, pixels_out, lanes, BLOCK)
            elif op == _READOUT:
                _readout(sums + 2 * k, src, arena + tl.load(offsets + f3), scale_k > 0, size, cols, height, width,
                         tl.load(g_out + 5), tl.load(g_out + 6), lanes, BLOCK)
            tl.debug_barrier()


# Each opcode's work: a loop over blocks of the entries it writes, as in graph/cpu.py.

@triton.jit
def _input(out, first, second, channels, pixels, size, rows, cols, width, maps, lanes, BLOCK: tl.constexpr):
    """The input layer: the mean over channels of image 1's pixel p times image 2's pixel p'."""
    for start in range(0, size, BLOCK):
        e = start + lanes
        live = e < size
        at_first, at_second = _pixels(e, live, rows, cols, width, maps)
        total = tl.zeros([BLOCK], tl.float32)
        for ch in range(channels):
            total += (tl.load(first + ch * pixels + at_first, mask=live, other=0.0)
                      * tl.load(second + ch * pixels + at_second, mask=live, other=0.0))
        tl.store(out + e, total / channels, mask=live)


@triton.jit
def _zeros(out, size, lanes, BLOCK: tl.constexpr):
    for start in range(0, size, BLOCK):
        e = start + lanes
        tl.store(out + e, tl.zeros([BLOCK], tl.float32), mask=e < size)


@triton.jit
def _gather(out, src, row_map, col_map, size, cols, in_cols, lanes, BLOCK: tl.constexpr):
    for start in range(0, size, BLOCK):
        e = start + lanes
        live = e < size
        at = tl.load(row_map + e // cols, mask=live, other=0) * in_cols + tl.load(col_map + e % cols, mask=live,
                                                                                  other=0)
        tl.store(out + e, tl.load(src + at, mask=live, other=0.0), mask=live)


@triton.jit
def _add(out, arena, offsets, terms, count, size, lanes, BLOCK: tl.constexpr):
    """The ``count`` slots of ``terms`` summed left to right."""
    for start in range(0, size, BLOCK):
        e = start + lanes
        live = e < size
        total = tl.load(arena + tl.load(offsets + tl.load(terms)) + e, mask=live, other=0.0)
        for t in range(1, count):
            total += tl.load(arena + tl.load(offsets + tl.load(terms + t)) + e, mask=live, other=0.0)
        tl.store(out + e, total, mask=live)


@triton.jit
def _scale(out, src, factor, size, lanes, BLOCK: tl.constexpr):
    for start in range(0, size, BLOCK):
        e = start + lanes
        live = e < size
        tl.store(out + e, factor * tl.load(src + e, mask=live, other=0.0), mask=live)


@triton.jit
def _relu(out, sigma, theta, theta_out, has_theta, var_a, var_b, size, rows, cols, width, maps, lanes,
          BLOCK: tl.constexpr):
    """The arc-cosine rules with the numerics of nas_cntk.description.ops.relu: scaled before any square."""
    for start in range(0, size, BLOCK):
        e = start + lanes
        live = e < size
        at_first, at_second = _pixels(e, live, rows, cols, width, maps)
        va = tl.load(var_a + at_first, mask=live, other=0.0)
        vb = tl.load(var_b + at_second, mask=live, other=0.0)
        scale = tl.maximum(va, vb)
        inverse = tl.where(scale > 0, 1.0 / tl.where(scale > 0, scale, 1.0), 0.0)
        x, y, c = va * inverse, vb * inverse, tl.load(sigma + e, mask=live, other=0.0) * inverse
        sine = tl.sqrt(tl.maximum(x * y - c * c, 0.0))
        rest = _PI - _angle(sine, c)
        tl.store(out + e, scale * ((sine + rest * c) * _INV_2PI), mask=live)
        if has_theta:
            tl.store(theta_out + e, tl.load(theta + e, mask=live, other=0.0) * (rest * _INV_2PI), mask=live)


@triton.jit
def _outer(out, first, second, size, rows, cols, width, maps, lanes, BLOCK: tl.constexpr):
    """Image 1's vector at p times image 2's at p'."""
    for start in range(0, size, BLOCK):
        e = start + lanes
        live = e < size
        at_first, at_second = _pixels(e, live, rows, cols, width, maps)
        tl.store(out + e, tl.load(first + at_first, mask=live, other=0.0) * tl.load(second + at_second, mask=live,
                                                                                    other=0.0), mask=live)


@triton.jit
def _same_pixel(target, src, cols, height, width, r0, c0, lanes, BLOCK: tl.constexpr):
    """target (H x W) = the entries of src pairing a pixel with itself (shift r0, c0)."""
    for start in range(0, height * width, BLOCK):
        e = start + lanes
        live = e < height * width
        entry = (r0 * height + e // width) * cols + c0 * width + e % width
        tl.store(target + e, tl.load(src + entry, mask=live, other=0.0), mask=live)


@triton.jit
def _sqrt_scaled(out, src, factor, count, lanes, BLOCK: tl.constexpr):
    for start in range(0, count, BLOCK):
        e = start + lanes
        live = e < count
        tl.store(out + e, tl.sqrt(factor * tl.load(src + e, mask=live, other=0.0)), mask=live)


@triton.jit
def _readout(sums, sigma, theta, gap, size, cols, height, width, r0, c0, lanes, BLOCK: tl.constexpr):
    """The pair's readout sums of Sigma and Theta: every entry (GAP), or the same-pixel ones (flatten)."""
    count = tl.where(gap, size, height * width)
    total_sigma = tl.zeros([BLOCK], tl.float64)
    total_theta = tl.zeros([BLOCK], tl.float64)
    for start in range(0, count, BLOCK):
        e = start + lanes
        live = e < count
        entry = tl.where(gap, e, (r0 * height + e // width) * cols + c0 * width + e % width)
        total_sigma += tl.load(sigma + entry, mask=live, other=0.0).to(tl.float64)
        total_theta += tl.load(theta + entry, mask=live, other=0.0).to(tl.float64)
    tl.store(sums, tl.sum(total_sigma, axis=0))
    tl.store(sums + 1, tl.sum(total_theta, axis=0))


@triton.jit
def _pixels(e, live, rows, cols, width, maps):
    """The pixels (flat, of image 1 and image 2) an entry of a pair tensor pairs, from the grid's maps."""
    u, v = e // cols, e % cols
    first = tl.load(maps + u, mask=live, other=0) * width + tl.load(maps + 2 * rows + v, mask=live, other=0)
    second = tl.load(maps + rows + u, mask=live, other=0) * width + tl.load(maps + 2 * rows + cols + v, mask=live,
                                                                            other=0)
    return first, second


@triton.jit
def _linear_pass(src, dst, count, cols, in_cols, limit, matrix, along_rows, scale, shift, m_table, m_indices,
                 m_values, lanes, BLOCK: tl.constexpr):
    """dst (count entries, rows of ``cols``) = scale M src + shift with M = matrix (-1: the identity) on
    the rows of src (``along_rows``: A, whose rows are the output rows) or on its columns (B, whose
    rows are the output columns); ``limit`` bounds M's column indices. A row's terms in column order."""
    if matrix >= 0:
        width = tl.load(m_table + 4 * matrix + 1)
        offset = tl.load(m_table + 4 * matrix + 2)
        banded = tl.load(m_table + 4 * matrix + 3)
        n = tl.load(m_table + 4 * matrix)
        for start in range(0, count, BLOCK):
            e = start + lanes
            live = e < count
            u, v = e // cols, e % cols
            r = tl.where(along_rows, u, v)
            total = tl.zeros([BLOCK], tl.float32)
            for f in range(width):
                weight = tl.load(m_values + offset + f * n + r, mask=live, other=0.0)
                index = tl.load(m_indices + offset + f * n + r, mask=live, other=0)
                index = tl.where(banded != 0, index + r, index)
                at = tl.where(along_rows, index * cols + v, u * in_cols + index)
                take = live & (weight != 0) & (index >= 0) & (index < limit)
                total += weight * tl.load(src + at, mask=take, other=0.0)
            tl.store(dst + e, scale * total + shift, mask=live)
    else:
        for start in range(0, count, BLOCK):
            e = start + lanes
            tl.store(dst + e, scale * tl.load(src + e, mask=e < count, other=0.0) + shift, mask=e < count)
