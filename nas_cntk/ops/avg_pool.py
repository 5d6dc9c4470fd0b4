"""Average pooling: window w, stride w; a fixed linear map A applied to both images."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from nas_cntk.errors import ArchitectureError
from nas_cntk.grid import Grid
from nas_cntk.ops.base import Cross, Fork, Op, PairContext, check_keys, integer


@dataclass(frozen=True)
class AvgPool(Op):
    window: int

    name = "avg_pool"
    keys = frozenset({"window"})

    @classmethod
    def parse(cls, spec: Mapping[str, Any], path: str, defaults: Mapping[str, float]) -> AvgPool:
        check_keys(spec, cls.keys, path)
        return cls(integer(spec, "window", path, minimum=2))

    def spec(self) -> dict[str, Any]:
        return {"op": self.name, "window": self.window}

    def module(self, channels: int, width: int) -> nn.Module:
        return nn.AvgPool2d(self.window)

    def module_code(self, channels: str, width: str) -> str:
        return f"nn.AvgPool2d({self.window})"

    def output_size(self, size: tuple[int, int], path: str) -> tuple[int, int]:
        h, w = size
        if h < self.window or w < self.window:
            raise ArchitectureError(f"{path}: avg_pool window {self.window} pools the {h}x{w} feature map "
                                    "below one pixel")
        if h % self.window or w % self.window:
            raise ArchitectureError(f"{path}: avg_pool window {self.window} does not divide the {h}x{w} "
                                    "feature map")
        return h // self.window, w // self.window

    def input_grid(self, out: Grid, height: int, width: int) -> Grid:
        return out.pool_input(self.window, height, width)

    def moments(self, sigma, theta, ctx: PairContext):
        pool = lambda t: None if t is None else ctx.grid_in.average_pool(t, self.window, ctx.grid_out)
        return pool(sigma), pool(theta)

    def cross(self, cross: Cross | None, ctx: PairContext, fork: Fork) -> Cross | None:
        raise AssertionError("a pool changes the feature-map size, so it never lies between a branch "
                             "point and the sum that closes it")

    def mean(self, mean: torch.Tensor, ctx: PairContext) -> torch.Tensor:
        return F.avg_pool2d(mean[:, None], self.window)[:, 0]
