"""Convolution: k x k, SAME zero padding, stride 1 or more, fresh N(0, 1) weights in the NTK parameterisation."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nas_cntk.description.grid import Grid
from nas_cntk.description.ops.base import Channels, Kind, Op, PairContext, ProgramContext, check_keys, integer, std
from nas_cntk.errors import ArchitectureError


class ConvModule(nn.Module):
    """``y = weight_std / sqrt(fan_in) * W * x + bias_std * b`` with W, b ~ N(0, 1) (the NTK parameterisation)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, weight_std: float, bias_std: float,
                 stride: int = 1):
        super().__init__()
        self.stride = stride
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.randn(out_channels))
        self.weight_scale = weight_std / math.sqrt(in_channels * kernel * kernel)
        self.bias_scale = bias_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.weight_scale, self.bias * self.bias_scale,
                        stride=self.stride, padding=self.weight.shape[-1] // 2)


@dataclass(frozen=True)
class Conv(Op):
    kernel: int
    weight_std: float
    bias_std: float
    stride: int = 1  # keeps pixels stride * I, as a strided conv with padding k // 2 does

    name = "conv"
    keys = frozenset({"kernel", "weight_std", "bias_std", "stride"})
    module_classes = (ConvModule,)
    # Fresh zero-mean weights: the output is independent of everything before it and has mean zero,
    # so its moments with any earlier node vanish (NTK too: the weights average out).
    independent = True

    @classmethod
    def parse(cls, spec: Mapping[str, Any], path: str, defaults: Mapping[str, float]) -> Conv:
        check_keys(spec, cls.keys, path)
        return cls(integer(spec, "kernel", path, minimum=1, odd=True),
                   std(spec, "weight_std", path, defaults["weight_std"]),
                   std(spec, "bias_std", path, defaults["bias_std"]),
                   integer({"stride": 1, **spec}, "stride", path, minimum=1))

    def spec(self) -> dict[str, Any]:
        # stride 1 is left out, so descriptions written before strides existed keep their hashes
        return {"op": self.name, "kernel": self.kernel, "weight_std": self.weight_std, "bias_std": self.bias_std,
                **({"stride": self.stride} if self.stride != 1 else {})}

    def module(self, channels: int, width: int) -> nn.Module:
        return ConvModule(channels, width, self.kernel, self.weight_std, self.bias_std, self.stride)

    def module_code(self, channels: str, width: str) -> str:
        stride = f", stride={self.stride}" if self.stride != 1 else ""
        return f"ConvModule({channels}, {width}, {self.kernel}, {self.weight_std!r}, {self.bias_std!r}{stride})"

    def output_channels(self, channels: Channels, width: Channels) -> Channels:
        return width

    def output_size(self, size: tuple[int, int], path: str) -> tuple[int, int]:
        h, w = size
        if h % self.stride or w % self.stride:
            raise ArchitectureError(f"{path}: conv stride {self.stride} does not divide the {h}x{w} feature map")
        return h // self.stride, w // self.stride

    def output_kind(self, kind: Kind, path: str) -> Kind:
        return Kind.GAUSSIAN

    def input_grid(self, out: Grid, height: int, width: int) -> Grid:
        return out if self.stride == 1 else out.subsample_input(self.stride, height, width)

    @property
    def taps(self) -> tuple[int, ...]:
        """The offsets the filter reads along each axis."""
        return tuple(range(-(self.kernel // 2), self.kernel // 2 + 1))

    def moments(self, sigma, theta, ctx: PairContext):
        # Sigma' = w^2/k^2 sum_a K[p+a, p'+a] + b^2;  Theta' = w^2/k^2 sum_a Theta[p+a, p'+a] + Sigma'
        scale = self.weight_std**2 / self.kernel**2
        sigma_out = self._strided(scale * ctx.grid_in.box_filter(sigma, self.taps) + self.bias_std**2, ctx)
        if theta is None:
            return sigma_out, None
        if not ctx.trainable:
            return sigma_out, torch.zeros_like(sigma_out)
        return sigma_out, self._strided(scale * ctx.grid_in.box_filter(theta, self.taps), ctx) + sigma_out

    def _strided(self, t: torch.Tensor, ctx: PairContext) -> torch.Tensor:
        return t if self.stride == 1 else ctx.grid_in.subsample(t, self.stride, ctx.grid_out)

    def mean(self, mean: torch.Tensor, ctx: PairContext) -> torch.Tensor:
        return torch.zeros_like(mean[:, ::self.stride, ::self.stride])

    def emit_moments(self, sigma, theta, ctx: ProgramContext):
        # the box filter, its scale and the bias as one linear map, then the stride
        program, scale = ctx.program, self.weight_std**2 / self.kernel**2
        rows, cols = ctx.grid_in.box_axes(self.taps)

        def filtered(t, bias: float):
            return program.subsample(program.linear(t, ctx.grid_in, rows, cols, scale, bias), self.stride,
                                     ctx.grid_out)

        sigma_out = filtered(sigma, self.bias_std**2)
        if theta is None:
            return sigma_out, None
        if not ctx.trainable:
            return sigma_out, program.zeros(ctx.grid_out)
        return sigma_out, program.add(filtered(theta, 0.0), sigma_out)

    def emit_mean(self, mean, ctx: ProgramContext):
        return None
