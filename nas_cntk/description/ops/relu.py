"""ReLU, with the arc-cosine kernel formulas."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nas_cntk.description.ops.base import Cross, Fork, Kind, Op, PairContext, check_keys
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
        # theta = angle between the two pre-activations; sqrt(v v') sin(theta) computed directly
        # and atan2 for the angle, as neural-tangents does (arccos is ill-conditioned near +-1).
        # No squares of moments: they overflow float32 from 1e19, which a NAS-Bench-201 network
        # of skip-only cells reaches (each cell multiplies the variance by up to 16).
        norm = torch.sqrt(ctx.var_a)[:, None, None] * ctx.grid_in.partner(torch.sqrt(ctx.var_b))
        correlation = torch.where(norm > 0, sigma / norm, 0.0)
        sine = norm * torch.sqrt(torch.clamp((1 - correlation) * (1 + correlation), min=0))
        angle = torch.atan2(sine, sigma)
        sigma_out = (sine + (math.pi - angle) * sigma) / (2 * math.pi)
        theta_out = None if theta is None else theta * ((math.pi - angle) / (2 * math.pi))
        return sigma_out, theta_out

    def cross(self, cross: Cross | None, ctx: PairContext, fork: Fork) -> Cross | None:
        if ctx.kind_in is Kind.NONNEGATIVE:
            return cross
        if fork.kind is Kind.GAUSSIAN:
            # Stein's lemma for jointly Gaussian (f, n): E[f relu(n)] = E[f n] P(n > 0) = E[f n] / 2,
            # and the NTK picks up E[relu'(n)] = 1/2 the same way.
            return None if cross is None else cross.scaled(0.5)
        # A Gaussian n below a non-Gaussian branch point lies past a fresh conv: independent of f,
        # so the moments factor into the means, E[f] E[relu(n)], and the NTK cross term vanishes.
        if cross is not None:
            raise ArchitectureError("relu of a Gaussian that is correlated with a non-negative branch it is "
                                    "summed with has no exact kernel; put a conv between them")
        grid = ctx.grid_in
        relu_mean_a, relu_mean_b = (torch.sqrt(v / (2 * math.pi)) for v in (ctx.var_a, ctx.var_b))
        return Cross(fork.mean_a[:, None, None] * grid.partner(relu_mean_b),
                     relu_mean_a[:, None, None] * grid.partner(fork.mean_b))

    def mean(self, mean: torch.Tensor, ctx: PairContext) -> torch.Tensor:
        # E[relu(g)] = sqrt(v / 2 pi) for a centred Gaussian g
        return mean if ctx.kind_in is Kind.NONNEGATIVE else torch.sqrt(ctx.var_a / (2 * math.pi))
