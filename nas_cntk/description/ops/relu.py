"""ReLU, with the arc-cosine kernel formulas.

The numerics every backend follows (this module, and the fused kernels in
:mod:`nas_cntk.kernels.fused`, which mirror it and are tested against it): for an entry with moment
Sigma between pre-activations of variances v and v', scale by m = max(v, v') first,

    inv = 1 / m,   a, b, c = v inv, v' inv, Sigma inv,   sine = sqrt(max(a b - c^2, 0)),
    angle = atan2(sine, c),   Sigma' = m (sine + (pi - angle) c) / 2 pi,   Theta' = Theta (pi - angle) / 2 pi,

and Sigma' = 0, Theta' = Theta / 2 where m = 0. Scaling first keeps every square below 1, where
``v v' - Sigma^2`` overflows float32 from moments of 1e19 (deep or skip-heavy networks reach them);
and a pair of an image with itself (v = v' = Sigma, bit for bit) gets a b - c^2 = 0 exactly, so
its angle is exactly 0. atan2 rather than arccos: arccos is ill-conditioned near +-1.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nas_cntk.description.grid import Grid
from nas_cntk.description.ops.base import Cross, Fork, Kind, Op, PairContext, ProgramContext, check_keys
from nas_cntk.errors import ArchitectureError


@dataclass(frozen=True)
class Relu(Op):
    name = "relu"

    @classmethod
    def parse(cls, spec: Mapping[str, Any], path: str, defaults: Mapping[str, float]) -> Relu:
        check_keys(spec, cls.keys, path)
        return cls()

    def module(self, channels: int, width: int) -> nn.Module:
        return nn.ReLU()

    def module_code(self, channels: str, width: str) -> str:
        return "nn.ReLU()"

    def output_kind(self, kind: Kind, path: str) -> Kind:
        if kind is Kind.MIXED:
            # relu(g + r) with g Gaussian and r a ReLU output is not Gaussian: no closed form.
            raise ArchitectureError(
                f"{path}: relu of a sum of a Gaussian branch (ending in conv) and a non-negative branch "
                "(ending in relu) has no exact kernel; end both summed branches the same way")
        return Kind.NONNEGATIVE

    def moments(self, sigma, theta, ctx: PairContext):
        if ctx.kind_in is Kind.NONNEGATIVE:  # relu of a non-negative value is the identity
            return sigma, theta
        # The module docstring's numerics: scaled by m = max(v, v') before any square.
        var_a, var_b = ctx.var_a[:, None, None], ctx.grid_in.partner(ctx.var_b)
        scale = torch.maximum(var_a, var_b)
        inverse = torch.where(scale > 0, 1 / scale, 0.0)
        a, b, c = var_a * inverse, var_b * inverse, sigma * inverse
        sine = torch.sqrt(torch.clamp(a * b - c * c, min=0))
        rest = math.pi - torch.atan2(sine, c)
        sigma_out = scale * (sine + rest * c) / (2 * math.pi)
        theta_out = None if theta is None else theta * (rest / (2 * math.pi))
        return sigma_out, theta_out

    def cross(self, cross: Cross | None, ctx: PairContext, fork: Fork) -> Cross | None:
        if ctx.kind_in is Kind.NONNEGATIVE:
            return cross
        if fork.kind is Kind.GAUSSIAN:
            # Stein's lemma for jointly Gaussian (f, n): E[f relu(n)] = E[f n] P(n > 0) = E[f n] / 2,
            # and the NTK picks up E[relu'(n)] = 1/2 the same way.
            return None if cross is None else cross.map(lambda t: t * 0.5)
        # A Gaussian n below a non-Gaussian branch point lies past a fresh conv: independent of f,
        # so the moments factor into the means, E[f] E[relu(n)], and the NTK cross term vanishes.
        _check_independent(cross)
        grid = ctx.grid_in
        relu_mean_a, relu_mean_b = (torch.sqrt(v / (2 * math.pi)) for v in (ctx.var_a, ctx.var_b))
        return Cross(fork.mean_a[:, None, None] * grid.partner(relu_mean_b),
                     relu_mean_a[:, None, None] * grid.partner(fork.mean_b))

    def mean(self, mean: torch.Tensor, ctx: PairContext) -> torch.Tensor:
        # E[relu(g)] = sqrt(v / 2 pi) for a centred Gaussian g
        return mean if ctx.kind_in is Kind.NONNEGATIVE else torch.sqrt(ctx.var_a / (2 * math.pi))

    def emit_moments(self, sigma, theta, ctx: ProgramContext):
        if ctx.kind_in is Kind.NONNEGATIVE:
            return sigma, theta
        return ctx.program.relu(sigma, theta, ctx.variance)

    def emit_cross(self, cross: Cross | None, ctx: ProgramContext, fork: Fork) -> Cross | None:
        if ctx.kind_in is Kind.NONNEGATIVE:
            return cross
        program = ctx.program
        if fork.kind is Kind.GAUSSIAN:
            return None if cross is None else cross.map(lambda t: program.scale(t, 0.5))
        _check_independent(cross)
        return Cross(program.outer(fork.mean_a, ctx.mean, ctx.grid_in),
                     program.outer(ctx.mean, fork.mean_b, ctx.grid_in))

    def emit_mean(self, mean, ctx: ProgramContext):
        if ctx.kind_in is Kind.NONNEGATIVE:
            return mean
        return ctx.program.sqrt_variance(ctx.variance, Grid.diagonal(ctx.grid_in.height, ctx.grid_in.width),
                                         1 / (2 * math.pi))


def _check_independent(cross: Cross | None) -> None:
    """A Gaussian input correlated with a non-negative branch point: relu's moments with it have no closed form."""
    if cross is not None:
        raise ArchitectureError("relu of a Gaussian that is correlated with a non-negative branch it is "
                                "summed with has no exact kernel; put a conv between them")
