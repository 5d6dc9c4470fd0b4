"""The pixel-pair layout every kernel rule works on.

For a pair of images (x, x') a layer's covariance is a P x P matrix over pixel pairs. We store it
by *cyclic shift*: entry ``[b, r, c, i, j]`` of a pair tensor pairs pixel ``(i, j)`` of x with
pixel ``((i + rows[r]) % H, (j + cols[c]) % W)`` of x'. With every shift present each pixel pair
appears exactly once (P^2 entries, nothing wasted, what global average pooling needs); a band of
shifts holds only the near-diagonal pairs a flatten readout needs (O(P) entries).

Why shifts: a convolution moves both pixels by the same offset, so it never changes the shift and
becomes a small box filter over (i, j) for each shift. A shift ``s`` holds two true displacements,
``s`` for ``i < H - s`` and ``s - H`` above; a conv must not sum across that seam, which the
masks in :meth:`Grid.box_filter` take care of.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AxisMap:
    """A linear map of pair tensors along one axis of the (shift, position) plane, as the entries of a
    sparse matrix: the form the fused kernels apply every linear rule in (:mod:`nas_cntk.kernels.fused`).
    Maps with equal keys are equal, so a program holds each once."""

    key: tuple
    entries: Callable[[], tuple[int, list[int], list[int], list[float]]] = field(compare=False, repr=False)
    """(rows, then the row, column and value of each entry), built when a program first needs them."""


@dataclass(frozen=True)
class Grid:
    """Which pixel pairs of an ``height x width`` feature map a pair tensor holds."""

    height: int
    width: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    @classmethod
    def full(cls, height: int, width: int) -> Grid:
        return cls(height, width, tuple(range(height)), tuple(range(width)))

    @classmethod
    def diagonal(cls, height: int, width: int) -> Grid:
        return cls(height, width, (0,), (0,))

    def union(self, other: Grid) -> Grid:
        return Grid(self.height, self.width, tuple(sorted({*self.rows, *other.rows})),
                    tuple(sorted({*self.cols, *other.cols})))

    @property
    def entries(self) -> int:
        """Pair-tensor entries per image pair."""
        return len(self.rows) * len(self.cols) * self.height * self.width

    @property
    def is_full(self) -> bool:
        return len(self.rows) == self.height and len(self.cols) == self.width

    # --- building pair tensors --------------------------------------------------------------
    def partner(self, v: torch.Tensor) -> torch.Tensor:
        """Per-pixel values of the second image, ``(B, H, W) -> (B, R, C, H, W)`` at each entry's partner pixel."""
        # Tiling v twice along each axis turns the cyclic partner into a sliding window: a view.
        h, w = self.height, self.width
        tiled = v.repeat(1, 2, 2).contiguous()
        windows = tiled.as_strided((v.shape[0], h, w, h, w), (4 * h * w, 2 * w, 1, 2 * w, 1))
        if not self.is_full:
            windows = windows[:, list(self.rows)][:, :, list(self.cols)]
        return windows

    def pair_product(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``sum_c a[:, c, p] * b[:, c, p']`` for per-image feature maps ``(B, C, H, W)``."""
        return sum(a[:, c, None, None] * self.partner(b[:, c]) for c in range(a.shape[1]))

    def same_pixel(self, t: torch.Tensor) -> torch.Tensor:
        """The entries pairing a pixel with itself, ``(B, R, C, H, W) -> (B, H, W)``."""
        return t[:, self.rows.index(0), self.cols.index(0)]

    def restrict(self, t: torch.Tensor, to: Grid) -> torch.Tensor:
        """The subset of shifts that ``to`` holds (``to`` must be contained in this grid)."""
        if to == self:
            return t
        rows = torch.tensor([self.rows.index(s) for s in to.rows], device=t.device)
        cols = torch.tensor([self.cols.index(s) for s in to.cols], device=t.device)
        return t.index_select(1, rows).index_select(2, cols)

    # --- linear maps of the feature maps, applied to both images -------------------------------
    def box_filter(self, t: torch.Tensor, taps: tuple[int, ...]) -> torch.Tensor:
        """``sum_a t[p + a, p' + a]`` over the offsets ``a`` of a conv's taps on each axis (symmetric,
        0 among them), zero outside either image."""
        reach = max(taps)
        if reach == 0:
            return t
        for dim, shifts, size in ((-2, self.rows, self.height), (-1, self.cols, self.width)):
            masks = _seam_masks(shifts, size, taps, t.device, t.dtype)  # (len(taps), S, size)
            view = (1, -1, 1, size, 1) if dim == -2 else (1, 1, -1, 1, size)
            padded = F.pad(t, (0, 0, reach, reach) if dim == -2 else (reach, reach))
            out = t.clone()
            for k, offset in enumerate(taps):
                if offset:
                    out.addcmul_(padded.narrow(dim, reach + offset, size), masks[k].view(view))
            t = out
        return t

    def box_axes(self, taps: tuple[int, ...]) -> tuple[AxisMap | None, AxisMap | None]:
        """:meth:`box_filter` as one sparse map per axis (None: the identity, a 1 x 1 filter)."""
        if max(taps) == 0:
            return None, None
        return _box_axis(self.rows, self.height, taps), _box_axis(self.cols, self.width, taps)

    def pool_input(self, window: int, height: int, width: int) -> Grid:
        """The shifts an average pool's input must hold so that this (output) grid can be computed."""
        near = range(-(window - 1), window)
        return Grid(height, width, tuple(sorted({(window * s + e) % height for s in self.rows for e in near})),
                    tuple(sorted({(window * s + e) % width for s in self.cols for e in near})))

    def average_pool(self, t: torch.Tensor, window: int, out: Grid) -> torch.Tensor:
        """Apply the ``window x window`` average pool to both images: ``A T A^T``.

        Output pixel I of x and its partner J = I + s_out of x' average the input pixels
        ``w I + a`` and ``w J + a'``; that input entry sits at shift ``(w s_out + a' - a) % H``
        (the window must divide the map, which the architecture checks).
        """
        for dim, shifts_in, shifts_out, size in ((1, self.rows, out.rows, self.height),
                                                 (2, self.cols, out.cols, self.width)):
            position_dim = dim + 2
            total = 0
            for a in range(window):
                rows = t.index_select(position_dim, torch.arange(a, size, window, device=t.device))
                for a2 in range(window):
                    src = [shifts_in.index((window * s + a2 - a) % size) for s in shifts_out]
                    total = total + rows.index_select(dim, torch.tensor(src, device=t.device))
            t = total / window**2
        return t

    def average_pool_axes(self, window: int, out: Grid) -> tuple[AxisMap, AxisMap]:
        """:meth:`average_pool` as one sparse map per axis."""
        def axis(shifts_in: tuple[int, ...], shifts_out: tuple[int, ...], size: int, size_out: int) -> AxisMap:
            def entries() -> tuple[int, list[int], list[int], list[float]]:
                rows, cols, values = [], [], []
                for k, s in enumerate(shifts_out):
                    for i in range(size_out):
                        for a in range(window):
                            for a2 in range(window):
                                rows.append(k * size_out + i)
                                cols.append(shifts_in.index((window * s + a2 - a) % size) * size + window * i + a)
                                values.append(1 / window**2)
                return len(shifts_out) * size_out, rows, cols, values
            return AxisMap(("average pool", window, shifts_in, shifts_out, size), entries)

        return axis(self.rows, out.rows, self.height, out.height), axis(self.cols, out.cols, self.width, out.width)

    def subsample_input(self, stride: int, height: int, width: int) -> Grid:
        """The shifts a stride's input must hold: output shift s is input shift ``stride * s``."""
        return Grid(height, width, tuple(sorted({stride * s % height for s in self.rows})),
                    tuple(sorted({stride * s % width for s in self.cols})))

    def subsample(self, t: torch.Tensor, stride: int, out: Grid) -> torch.Tensor:
        """Keep the pixels a stride keeps, ``stride * I`` in both images (``out``: the output grid)."""
        for dim, shifts_in, shifts_out, size in ((1, self.rows, out.rows, self.height),
                                                 (2, self.cols, out.cols, self.width)):
            t = t.index_select(dim + 2, torch.arange(0, size, stride, device=t.device))
            t = t.index_select(dim, torch.tensor([shifts_in.index(stride * s % size) for s in shifts_out],
                                                 device=t.device))
        return t

    def widened(self, reach: int) -> Grid:
        """This grid with every shift within ``reach`` of one it holds."""
        near = range(-reach, reach + 1)
        return Grid(self.height, self.width, tuple(sorted({(s + e) % self.height for s in self.rows for e in near})),
                    tuple(sorted({(s + e) % self.width for s in self.cols for e in near})))

    def window_input(self, radius: int) -> Grid:
        """The shifts a same-size window average's input must hold to produce this grid's."""
        return self.widened(2 * radius)

    def window_average(self, t: torch.Tensor, radius: int, out: Grid, first: bool = True,
                       second: bool = True) -> torch.Tensor:
        """A same-size average over (2r+1)^2 windows that leaves padding out of the count, applied to
        the first image, the second, or both (NAS-Bench-201's ``avg_pool_3x3``; one side for the
        cross moments of a branch).

        Entry ``(i, s)`` pairs pixel i with ``j = (i + s) % H``; moving i by a and j by b reads the
        input entry ``(i + a, s + b - a)``, weighted by ``1 / count`` of each side's window. Per axis
        that is a sparse matrix on the (shift, position) plane, at most (2r+1)^2 entries a row: one
        sparse product per axis (as shifted slices, the same sums took up to 10x longer).
        """
        for dim, shifts_in, shifts_out, size in ((1, self.rows, out.rows, self.height),
                                                 (2, self.cols, out.cols, self.width)):
            matrix = _window_matrix(shifts_in, shifts_out, size, radius, first, second).to(t.device, t.dtype)
            order = (dim, dim + 2, *(d for d in range(5) if d not in (dim, dim + 2)))
            moved = t.permute(*order)
            product = (matrix @ moved.reshape(matrix.shape[1], -1)).reshape(len(shifts_out), size, *moved.shape[2:])
            t = product.permute(*sorted(range(5), key=order.__getitem__))
        return t.contiguous()

    def window_average_axes(self, radius: int, out: Grid, first: bool = True,
                            second: bool = True) -> tuple[AxisMap, AxisMap]:
        """:meth:`window_average` as one sparse map per axis."""
        def axis(shifts_in: tuple[int, ...], shifts_out: tuple[int, ...], size: int) -> AxisMap:
            return AxisMap(("window average", radius, first, second, shifts_in, shifts_out, size), lambda: (
                len(shifts_out) * size, *window_entries(shifts_in, shifts_out, size, radius, first, second)))

        return axis(self.rows, out.rows, self.height), axis(self.cols, out.cols, self.width)


def window_entries(shifts_in: tuple[int, ...], shifts_out: tuple[int, ...], size: int, radius: int, first: bool,
                   second: bool) -> tuple[list[int], list[int], list[float]]:
    """The window average on one axis as the (row, column, value) entries of a (S_out * size, S_in * size)
    matrix on the (shift, position) plane (see :meth:`Grid.window_average`)."""
    offsets = range(-radius, radius + 1)
    count = [sum(0 <= i + a < size for a in offsets) for i in range(size)]
    rows, cols, values = [], [], []
    for k, s in enumerate(shifts_out):
        for i in range(size):
            j = (i + s) % size
            for a in offsets if first else (0,):
                for b in offsets if second else (0,):
                    if 0 <= i + a < size and 0 <= j + b < size:
                        rows.append(k * size + i)
                        cols.append(shifts_in.index((s + b - a) % size) * size + i + a)
                        values.append((1 / count[i] if first else 1) * (1 / count[j] if second else 1))
    return rows, cols, values


@cache
def _window_matrix(shifts_in: tuple[int, ...], shifts_out: tuple[int, ...], size: int, radius: int,
                   first: bool, second: bool) -> torch.Tensor:
    """The window average on one axis as a sparse matrix (see window_average)."""
    rows, cols, values = window_entries(shifts_in, shifts_out, size, radius, first, second)
    shape = (len(shifts_out) * size, len(shifts_in) * size)
    return torch.sparse_coo_tensor(torch.tensor([rows, cols]), torch.tensor(values, dtype=torch.float64), shape,
                                   check_invariants=True).coalesce()


def _inside(i: int, j: int, size: int, seam: int) -> bool:
    """Whether moving pixel i of an entry to j, across a shift whose seam lies at ``seam``, keeps both
    pixels of the entry inside the image (entries at i >= seam have wrapped)."""
    return 0 <= j < size and (j < seam) == (i < seam)


def _seam_masks(shifts: tuple[int, ...], size: int, taps: tuple[int, ...], device: torch.device,
                dtype: torch.dtype) -> torch.Tensor:
    """1 where moving an entry by a tap's offset keeps both pixels inside the image, for each tap.

    Built from Python lists: a constant to torch.compile, with no comparisons for it to trace.
    """
    return torch.tensor([[[float(_inside(i, i + offset, size, size - s)) for i in range(size)] for s in shifts]
                         for offset in taps], dtype=dtype, device=device)


def _box_axis(shifts: tuple[int, ...], size: int, taps: tuple[int, ...]) -> AxisMap:
    """The box filter on one axis: entry (s, i) sums the entries (s, i + a) inside the image."""
    def entries() -> tuple[int, list[int], list[int], list[float]]:
        rows, cols, values = [], [], []
        for k, s in enumerate(shifts):
            for i in range(size):
                for a in taps:
                    if _inside(i, i + a, size, size - s):
                        rows.append(k * size + i)
                        cols.append(k * size + i + a)
                        values.append(1.0)
        return len(shifts) * size, rows, cols, values
    return AxisMap(("box", shifts, size, taps), entries)
