"""Identity: the op of a node that only sums its inputs (where a residual block closes)."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from nas_cntk.description.ops.base import Cross, Fork, Op, PairContext, ProgramContext


@dataclass(frozen=True)
class Identity(Op):
    name = "identity"

    def module(self, channels: int, width: int) -> nn.Module:
        return nn.Identity()

    def module_code(self, channels: str, width: str) -> str:
        return "nn.Identity()"

    def moments(self, sigma, theta, ctx: PairContext):
        return sigma, theta

    def cross(self, cross: Cross | None, ctx: PairContext, fork: Fork) -> Cross | None:
        return cross

    def emit_moments(self, sigma, theta, ctx: ProgramContext):
        return sigma, theta

    def emit_cross(self, cross: Cross | None, ctx: ProgramContext, fork: Fork) -> Cross | None:
        return cross
