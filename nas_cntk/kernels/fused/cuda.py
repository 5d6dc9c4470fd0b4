"""A fused Triton kernel for the exact CNTK of chain networks (conv, relu, identity; no pooling, no branches).

Layout. As in :mod:`nas_cntk.description.grid`, a pair's covariance is held by cyclic shift: the slice of
shift (r, c) pairs pixel (i, j) of x with pixel ((i + r) % H, (j + c) % W) of x'. A conv never mixes
slices and a ReLU is pointwise, so each (pair, shift) slice, an *item*, goes through the whole
network on its own. One launch computes every layer of every item: a slice's Sigma and Theta stay
on chip from the input layer to the readout, and only the images, the per-image variances and one
sum per item and moment touch memory. Torch then adds a pair's items and divides by the pixel pairs
the readout averages over.

Persistent grid. A fixed number of programs (a few per SM) loop over blocks of items (several
slices per block for small images). The network is a small layer table read at run time, so one
compiled kernel per image size serves every depth and architecture.

Scratch. The conv's box filter needs neighbours, which Triton cannot move between threads in
registers: a program stores its block to its own scratch in global memory, waits at a barrier and
reads it back shifted, rows then columns (separable: 2 r loads per axis instead of (2 r + 1)^2).
The scratch is per program, not per pair (four blocks, 32 KiB for 32 x 32 images), so it stays in
the L1 / L2 caches.

Variances. The ReLUs need each image's per-pixel variances; :func:`image_variances` computes them
with the same kernel on the pairs (x, x), and without fused multiply-adds, so that a pair of an
image with itself repeats them bit for bit and sees a correlation of exactly 1 where it should.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from nas_cntk.description.grid import Grid
from nas_cntk.kernels.fused.chain import CONV, Chain

_BLOCK = 2048         # entries per block: 2 slices of 32 x 32, 32 of 8 x 8
_WARPS_PER_SM = 16    # two programs of 8 warps: what ~128 registers a thread allow (ptxas for sm_90)
_MAX_ITEMS = 1 << 24  # items per launch: bounds the per-item sums (128 MiB) and keeps indices in int32
_PI = tl.constexpr(math.pi)
_INV_2PI = tl.constexpr(1 / (2 * math.pi))
_CONV = tl.constexpr(CONV)  # the layer kinds of Chain.tables


class Pairs:
    """Kernels between images x1 and x2 (None: x1 with itself) for any pairs; the per-image work done once."""

    def __init__(self, chain: Chain, grid: Grid, x1: torch.Tensor, x2: torch.Tensor | None = None):
        self.chain, self.grid = chain, grid
        self.x1 = x1.to(torch.float32).contiguous()
        self.var1 = image_variances(chain, self.x1)
        self.x2 = self.x1 if x2 is None else x2.to(torch.float32).contiguous()
        self.var2 = self.var1 if x2 is None else image_variances(chain, self.x2)

    def means(self, i: torch.Tensor, j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Readout means (sigma_mean, theta_mean) of the pairs (x1[i[k]], x2[j[k]]), each ``(len(i),)``:
        over the pixel pairs the readout grid holds, what :meth:`~nas_cntk.description.ops.Readout.kernels` takes."""
        sums = _launch(self.chain, self.grid, self.x1, self.x2, self.var1, self.var2, i, j, record=False)
        sigma_mean, theta_mean = sums.view(2, len(i), -1).sum(-1) / self.grid.entries
        return sigma_mean, theta_mean


def image_variances(chain: Chain, x: torch.Tensor) -> torch.Tensor:
    """Per-pixel variances of ``chain.variance_nodes`` for the images x (n, C, H, W), (len(variance_nodes), n, H, W).

    The kernel's own pass over the pairs (x, x): the same float32 operations as :meth:`Pairs.means`,
    so a pair of an image with itself sees a correlation of exactly 1 at every pixel. Variances
    from the engine's image pass differ in the last bits, which moves that ReLU angle from 0 to
    ~sqrt(float32 eps) and the self-NTK by ~1e-5 (the arc-cosine is steep at 1).
    """
    n, _, height, width = x.shape
    var = torch.empty(len(chain.variance_nodes), n, height, width, dtype=torch.float32, device=x.device)
    k = torch.arange(n, device=x.device)
    _launch(chain, Grid.diagonal(height, width), x, x, var, var, k, k, record=True)
    return var


def _launch(chain: Chain, grid: Grid, x1: torch.Tensor, x2: torch.Tensor, var1: torch.Tensor, var2: torch.Tensor,
            i: torch.Tensor, j: torch.Tensor, record: bool) -> torch.Tensor:
    """Run the kernel over the items (pairs x shifts of ``grid``); the (2, items) sums of Sigma and Theta.

    With ``record`` the pairs are (x, x) on the diagonal grid and the kernel writes the variances
    into var1 (= var2) as it goes.
    """
    (n1, channels, height, width), n2, device = x1.shape, len(x2), x1.device
    x1, x2 = (t.to(torch.float32).contiguous() for t in (x1, x2))
    if not record:
        var1, var2 = (t.to(torch.float32).contiguous() for t in (var1, var2))
    i, j = (t.to(device, torch.int64).contiguous() for t in (i, j))
    ints, floats = chain.tables(device)
    rows, cols = (torch.tensor(s, dtype=torch.int32, device=device) for s in (grid.rows, grid.cols))
    shifts = len(grid.rows) * len(grid.cols)
    block_h, block_w = triton.next_power_of_2(height), triton.next_power_of_2(width)
    slices = max(1, _BLOCK // (block_h * block_w))
    warps = 4 if slices * block_h * block_w <= 1024 else 8
    sums = torch.empty(2, len(i) * shifts, dtype=torch.float32, device=device)
    pairs_per_launch = max(1, _MAX_ITEMS // shifts)
    for start in range(0, len(i), pairs_per_launch):
        pairs = slice(start, start + pairs_per_launch)
        items = len(i[pairs]) * shifts
        programs = min(triton.cdiv(items, slices), _programs(device, warps))
        scratch = torch.empty(programs, 4, slices * block_h * block_w, dtype=torch.float32, device=device)
        # No fused multiply-adds: the (x, x) pairs must repeat the variance pass bit for bit, and
        # a b - c^2 (the ReLU's scaled moments) must be exactly 0 there.
        _chain_kernel[(programs,)](
            x1, x2, var1, var2, i[pairs], j[pairs], rows, cols, ints, floats,
            sums[0, start * shifts:], sums[1, start * shifts:], scratch,
            items, shifts, len(grid.cols), len(chain.layers), n1, n2, channels, height, width,
            RECORD=record, SLICES=slices, BLOCK_H=block_h, BLOCK_W=block_w, num_warps=warps,
            enable_fp_fusion=False)
    return sums


def _programs(device: torch.device, warps: int) -> int:
    """The persistent grid: as many programs as stay resident together (a few, in the interpreter)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count * max(1, _WARPS_PER_SM // warps)
    return 3


@triton.jit
def _angle(y, x):
    """atan2(y, x) for y >= 0, in [0, pi]; atan2(0, 0) = 0.

    The interpreter has no libdevice and tl.math no atan2: Cephes' atanf on the ratio folded into
    [0, 1], then back to the octant.
    """
    ax = tl.abs(x)
    negative = x.to(tl.int32, bitcast=True) < 0  # the sign bit: atan2(0, -0) = pi, as in torch
    big = tl.maximum(y, ax)
    t = tl.minimum(y, ax) / tl.where(big > 0, big, 1.0)
    far = t > 0.41421356  # tan(pi / 8): reduce to |t| <= tan(pi / 8) with atan(t) = pi/4 + atan((t-1)/(t+1))
    t = tl.where(far, (t - 1) / (t + 1), t)
    z = t * t
    angle = (((8.05374449538e-2 * z - 1.38776856032e-1) * z + 1.99777106478e-1) * z - 3.33329491539e-1) * z * t + t
    angle = tl.where(far, angle + _PI / 4, angle)
    angle = tl.where(y > ax, _PI / 2 - angle, angle)
    return tl.where(negative, _PI - angle, angle)


@triton.jit
def _box_axis(sigma, theta, buffer, here, position, below_seam, seam, size, step, radius,
              BLOCK: tl.constexpr):
    """One axis of the conv's box filter on Sigma and Theta: add the neighbours at distance 1..radius.

    A neighbour counts where both pixels stay inside their images: inside [0, size) and on the same
    side of the seam (entries at positions >= seam have wrapped around the second image).
    """
    tl.store(buffer + here, sigma)
    tl.store(buffer + BLOCK + here, theta)
    tl.debug_barrier()
    sigma_sum, theta_sum = sigma, theta
    for d in range(1, radius + 1):
        after = (position + d < size) & ((position + d < seam) == below_seam)
        before = (position >= d) & ((position - d < seam) == below_seam)
        sigma_sum += tl.load(buffer + here + d * step, mask=after, other=0.0)
        theta_sum += tl.load(buffer + BLOCK + here + d * step, mask=after, other=0.0)
        sigma_sum += tl.load(buffer + here - d * step, mask=before, other=0.0)
        theta_sum += tl.load(buffer + BLOCK + here - d * step, mask=before, other=0.0)
    return sigma_sum, theta_sum


@triton.jit(do_not_specialize=["items", "n1", "n2"])
def _chain_kernel(x1, x2, var1, var2, pair_a, pair_b, rows, cols, ints, floats, sigma_sums, theta_sums,
                  scratch, items, shifts, n_cols, n_layers, n1, n2, channels, height, width,
                  RECORD: tl.constexpr, SLICES: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    """Sigma and Theta of the last layer, summed over each item's slice, for blocks of SLICES items.

    With RECORD the items are pairs (x, x) on the diagonal, and each ReLU stores its input Sigma,
    the variances, into var1.
    """
    BLOCK: tl.constexpr = SLICES * BLOCK_H * BLOCK_W
    s = tl.arange(0, SLICES)[:, None, None]
    row = tl.arange(0, BLOCK_H)[None, :, None]
    col = tl.arange(0, BLOCK_W)[None, None, :]
    here = s * (BLOCK_H * BLOCK_W) + row * BLOCK_W + col  # place in a scratch block
    buffers = scratch + tl.program_id(0) * (4 * BLOCK)    # Sigma, Theta before and after the row pass
    pixels = height * width
    pixel = row * width + col
    for block in range(tl.program_id(0), tl.cdiv(items, SLICES), tl.num_programs(0)):
        item = block * SLICES + s
        live = item < items
        a = tl.load(pair_a + item // shifts, mask=live, other=0)
        b = tl.load(pair_b + item // shifts, mask=live, other=0)
        r = tl.load(rows + item % shifts // n_cols, mask=live, other=0)
        c = tl.load(cols + item % shifts % n_cols, mask=live, other=0)
        inside = live & (row < height) & (col < width)
        partner = (tl.where(row + r < height, row + r, row + r - height) * width
                   + tl.where(col + c < width, col + c, col + c - width))
        below_row_seam, below_col_seam = row < height - r, col < width - c

        sigma = tl.zeros([SLICES, BLOCK_H, BLOCK_W], tl.float32)
        for ch in range(channels):
            xa = tl.load(x1 + (a * channels + ch) * pixels + pixel, mask=inside, other=0.0)
            xb = tl.load(x2 + (b * channels + ch) * pixels + partner, mask=inside, other=0.0)
            sigma += xa * xb
        sigma = sigma / channels
        theta = tl.zeros([SLICES, BLOCK_H, BLOCK_W], tl.float32)

        for layer in range(n_layers):
            kind = tl.load(ints + 3 * layer)
            arg = tl.load(ints + 3 * layer + 1)
            if kind == _CONV:  # arg = k // 2
                sigma_box, theta_box = sigma, theta
                if arg > 0:
                    sigma_box, theta_box = _box_axis(sigma_box, theta_box, buffers, here, row, below_row_seam,
                                                     height - r, height, BLOCK_W, arg, BLOCK)
                    sigma_box, theta_box = _box_axis(sigma_box, theta_box, buffers + 2 * BLOCK, here, col,
                                                     below_col_seam, width - c, width, 1, arg, BLOCK)
                scale = tl.load(floats + 2 * layer)
                sigma = scale * sigma_box + tl.load(floats + 2 * layer + 1)
                theta = tl.where(tl.load(ints + 3 * layer + 2) != 0, scale * theta_box + sigma, 0.0)
            else:  # ReLU of a Gaussian, arg = its variance slot
                if RECORD:  # pairs (x, x): the variance is Sigma itself
                    tl.store(var1 + (arg * n1 + a) * pixels + pixel, sigma, mask=inside)
                    va = tl.where(inside, sigma, 0.0)
                    vb = va
                else:
                    va = tl.load(var1 + (arg * n1 + a) * pixels + pixel, mask=inside, other=0.0)
                    vb = tl.load(var2 + (arg * n2 + b) * pixels + partner, mask=inside, other=0.0)
                # the numerics of nas_cntk.description.ops.relu: scaled before any square
                scale = tl.maximum(va, vb)
                inverse = tl.where(scale > 0, 1.0 / tl.where(scale > 0, scale, 1.0), 0.0)
                va, vb, correlation = va * inverse, vb * inverse, sigma * inverse
                sine = tl.sqrt(tl.maximum(va * vb - correlation * correlation, 0.0))
                rest = _PI - _angle(sine, correlation)
                sigma = scale * ((sine + rest * correlation) * _INV_2PI)
                theta = theta * (rest * _INV_2PI)

        out = block * SLICES + tl.arange(0, SLICES)
        sigma_sum = tl.sum(tl.sum(tl.where(inside, sigma, 0.0), axis=2), axis=1)
        theta_sum = tl.sum(tl.sum(tl.where(inside, theta, 0.0), axis=2), axis=1)
        tl.store(sigma_sums + out, sigma_sum, mask=out < items)
        tl.store(theta_sums + out, theta_sum, mask=out < items)
