"""Zero: the value of a cell node with no incoming edge (NAS-Bench-201's ``none`` everywhere into it)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nas_cntk.description.ops.base import Op, PairContext, ProgramContext


class ZeroModule(nn.Module):
    """``x * 0``: keeps the shape (and NaNs, as NAS-Bench-201's own zero op does)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0


@dataclass(frozen=True)
class Zero(Op):
    name = "zero"
    module_classes = (ZeroModule,)
    independent = True

    def module(self, channels: int, width: int) -> nn.Module:
        return ZeroModule()

    def module_code(self, channels: str, width: str) -> str:
        return "ZeroModule()"

    def moments(self, sigma, theta, ctx: PairContext):
        return torch.zeros_like(sigma), None if theta is None else torch.zeros_like(theta)

    def mean(self, mean: torch.Tensor, ctx: PairContext) -> torch.Tensor:
        return torch.zeros_like(mean)

    def emit_moments(self, sigma, theta, ctx: ProgramContext):
        return ctx.program.zeros(ctx.grid_out), None if theta is None else ctx.program.zeros(ctx.grid_out)

    def emit_mean(self, mean, ctx: ProgramContext):
        return None
