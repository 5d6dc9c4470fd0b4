"""Readout: flatten or global average pooling (GAP), then a dense output layer."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from nas_cntk.description.grid import Grid

READOUTS = ("flatten", "gap")


class ReadoutModule(nn.Module):
    """Flatten or average the feature map, then ``weight_std / sqrt(fan_in) * W h + bias_std * b``."""

    def __init__(self, readout: str, channels: int, pixels: int, outputs: int, weight_std: float,
                 bias_std: float):
        super().__init__()
        self.readout = readout
        fan_in = channels * (pixels if readout == "flatten" else 1)
        self.weight = nn.Parameter(torch.randn(outputs, fan_in))
        self.bias = nn.Parameter(torch.randn(outputs))
        self.weight_scale, self.bias_scale = weight_std / math.sqrt(fan_in), bias_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1) if self.readout == "flatten" else x.mean(dim=(2, 3))
        return h @ (self.weight * self.weight_scale).T + self.bias * self.bias_scale


@dataclass(frozen=True)
class Readout:
    kind: str  # "flatten" or "gap"
    weight_std: float
    bias_std: float

    module_classes: ClassVar[tuple[type[nn.Module], ...]] = (ReadoutModule,)

    def module(self, channels: int, size: tuple[int, int], outputs: int) -> nn.Module:
        return ReadoutModule(self.kind, channels, size[0] * size[1], outputs, self.weight_std, self.bias_std)

    def module_code(self, channels: str, size: tuple[int, int], outputs: str) -> str:
        """The Python expression that builds :meth:`module`, given expressions for channels and outputs."""
        return (f"ReadoutModule({self.kind!r}, {channels}, {size[0]} * {size[1]}, {outputs}, "
                f"{self.weight_std!r}, {self.bias_std!r})")

    def grid(self, height: int, width: int) -> Grid:
        """The pixel pairs the readout reads: all of them for GAP, same-pixel ones for flatten."""
        return Grid.full(height, width) if self.kind == "gap" else Grid.diagonal(height, width)

    def reduce(self, t: torch.Tensor, grid: Grid) -> torch.Tensor:
        """The readout's average of a pair tensor over the pixel pairs ``grid`` holds, ``(B,)``.

        flatten: mean_p K[p, p]; GAP: mean_{p, p'} K[p, p']. Linear, so a pair's shifts may be
        reduced in parts and the parts added.
        """
        pixels = grid.height * grid.width
        if self.kind == "gap":
            return t.sum(dim=(1, 2, 3, 4)) / pixels**2
        return grid.same_pixel(t).sum(dim=(1, 2)) / pixels

    def kernels(self, sigma_mean: torch.Tensor, theta_mean: torch.Tensor,
                trainable: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """NNGP and NTK of the network output from the :meth:`reduce`d last-layer moments.

        NNGP = w^2 mean K + b^2. The NTK adds the readout's own term (the NNGP) unless the readout
        is fixed (the paper's `fix` variant).
        """
        nngp = self.weight_std**2 * sigma_mean + self.bias_std**2
        ntk = self.weight_std**2 * theta_mean
        return nngp, ntk + nngp if trainable else ntk
