"""Average pooling, a fixed linear map A applied to both images.

Two forms: window w with stride w (non-overlapping, the map shrinks), and stride 1 with an odd
window and SAME padding left out of the count (NAS-Bench-201's ``avg_pool_3x3``, the map keeps
its size, so it may sit on a branch that a sum joins).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nas_cntk.description.grid import AxisMap, Grid
from nas_cntk.description.ops.base import Cross, Fork, Op, PairContext, ProgramContext, check_keys, integer
from nas_cntk.errors import ArchitectureError


@dataclass(frozen=True)
class AvgPool(Op):
    window: int
    stride: int

    name = "avg_pool"
    keys = frozenset({"window", "stride"})

    @classmethod
    def parse(cls, spec: Mapping[str, Any], path: str, defaults: Mapping[str, float]) -> AvgPool:
        check_keys(spec, cls.keys, path)
        window = integer(spec, "window", path, minimum=2 if spec.get("stride", 0) != 1 else 1)
        stride = integer({"stride": window, **spec}, "stride", path, minimum=1)
        if stride not in (1, window):
            raise ArchitectureError(f"{path}.stride: expected the window ({window}, non-overlapping) or 1 (same "
                                    f"size), got {stride}")
        if stride == 1 and window % 2 == 0:
            raise ArchitectureError(f"{path}.window: a stride-1 pool needs an odd window (centred), got {window}")
        return cls(window, stride)

    @property
    def same_size(self) -> bool:
        return self.stride == 1

    def spec(self) -> dict[str, Any]:
        # the default stride (the window) is left out, so older descriptions keep their hashes
        return {"op": self.name, "window": self.window, **({"stride": 1} if self.same_size else {})}

    def module(self, channels: int, width: int) -> nn.Module:
        if self.same_size:
            return nn.AvgPool2d(self.window, stride=1, padding=self.window // 2, count_include_pad=False)
        return nn.AvgPool2d(self.window)

    def module_code(self, channels: str, width: str) -> str:
        if self.same_size:
            return f"nn.AvgPool2d({self.window}, stride=1, padding={self.window // 2}, count_include_pad=False)"
        return f"nn.AvgPool2d({self.window})"

    def output_size(self, size: tuple[int, int], path: str) -> tuple[int, int]:
        if self.same_size:
            return size
        h, w = size
        if h < self.window or w < self.window:
            raise ArchitectureError(f"{path}: avg_pool window {self.window} pools the {h}x{w} feature map "
                                    "below one pixel")
        if h % self.window or w % self.window:
            raise ArchitectureError(f"{path}: avg_pool window {self.window} does not divide the {h}x{w} "
                                    "feature map")
        return h // self.window, w // self.window

    def input_grid(self, out: Grid, height: int, width: int) -> Grid:
        return out.window_input(self.window // 2) if self.same_size else out.pool_input(self.window, height, width)

    def moments(self, sigma, theta, ctx: PairContext):
        def pool(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            if self.same_size:
                return ctx.grid_in.window_average(t, self.window // 2, ctx.grid_out)
            return ctx.grid_in.average_pool(t, self.window, ctx.grid_out)

        return pool(sigma), pool(theta)

    @property
    def has_cross(self) -> bool:
        # A shrinking pool on a branch would need the sum's other side pooled too; no space asks for it.
        return self.same_size

    def cross(self, cross: Cross | None, ctx: PairContext, fork: Fork) -> Cross | None:
        if cross is None:
            return None
        # E[f(x) n(x')] pools the second image, E[n(x) f(x')] the first.
        def pool(t: torch.Tensor | None, first: bool) -> torch.Tensor | None:
            return None if t is None else ctx.grid_in.window_average(t, self.window // 2, ctx.grid_out,
                                                                     first=first, second=not first)
        return Cross(pool(cross.sigma_fn, False), pool(cross.sigma_nf, True),
                     pool(cross.theta_fn, False), pool(cross.theta_nf, True))

    def mean(self, mean: torch.Tensor, ctx: PairContext) -> torch.Tensor:
        if self.same_size:
            return F.avg_pool2d(mean[:, None], self.window, 1, self.window // 2, count_include_pad=False)[:, 0]
        return F.avg_pool2d(mean[:, None], self.window)[:, 0]

    def emit_moments(self, sigma, theta, ctx: ProgramContext):
        if self.same_size:
            axes = ctx.grid_in.window_average_axes(self.window // 2, ctx.grid_out)
        else:
            axes = ctx.grid_in.average_pool_axes(self.window, ctx.grid_out)
        return (ctx.program.linear(sigma, ctx.grid_out, *axes),
                None if theta is None else ctx.program.linear(theta, ctx.grid_out, *axes))

    def emit_cross(self, cross: Cross | None, ctx: ProgramContext, fork: Fork) -> Cross | None:
        if cross is None:
            return None
        second = ctx.grid_in.window_average_axes(self.window // 2, ctx.grid_out, first=False, second=True)
        first = ctx.grid_in.window_average_axes(self.window // 2, ctx.grid_out, first=True, second=False)
        return Cross(*(None if t is None else ctx.program.linear(t, ctx.grid_out, *side)
                       for t, side in zip(cross.parts(), (second, first, second, first))))

    def emit_mean(self, mean, ctx: ProgramContext):
        if mean is None:
            return None
        (height, width), out = (ctx.grid_in.height, ctx.grid_in.width), ctx.grid_out
        return ctx.program.linear(mean, Grid.diagonal(out.height, out.width), self._mean_axis(height, out.height),
                                  self._mean_axis(width, out.width))

    def _mean_axis(self, size: int, size_out: int) -> AxisMap:
        """:meth:`mean`'s pool on one axis of one image: the average over the window's pixels inside
        the image (``count_include_pad=False``), separable since the count is."""
        def entries() -> tuple[int, list[int], list[int], list[float]]:
            rows, cols, values = [], [], []
            for i in range(size_out):
                if self.same_size:
                    window = range(max(0, i - self.window // 2), min(size, i + self.window // 2 + 1))
                else:
                    window = range(self.window * i, self.window * i + self.window)
                for a in window:
                    rows.append(i)
                    cols.append(a)
                    values.append(1 / len(window))
            return size_out, rows, cols, values
        return AxisMap(("mean pool", self.window, self.stride, size, size_out), entries)
