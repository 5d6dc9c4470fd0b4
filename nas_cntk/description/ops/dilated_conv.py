"""Dilated convolution: k x k taps ``dilation`` pixels apart, SAME zero padding (the DARTS space's
``dil_conv_3x3`` and ``dil_conv_5x5``, dilation 2, without their depthwise split and batch norm).

A conv whose filter reads other offsets: its exact rules are the conv's over those taps, in both
forms (torch and fused), so this file holds only what differs: the taps and the finite module.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from nas_cntk.description.ops.base import integer
from nas_cntk.description.ops.conv import Conv, ConvModule


class DilatedConvModule(ConvModule):
    """:class:`ConvModule` with its taps ``dilation`` pixels apart."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, weight_std: float, bias_std: float,
                 stride: int, dilation: int):
        super().__init__(in_channels, out_channels, kernel, weight_std, bias_std, stride)
        self.dilation = dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.weight_scale, self.bias * self.bias_scale, stride=self.stride,
                        padding=self.dilation * (self.weight.shape[-1] // 2), dilation=self.dilation)


@dataclass(frozen=True)
class DilatedConv(Conv):
    dilation: int = 2

    name = "dil_conv"
    keys = Conv.keys | {"dilation"}
    module_classes = (ConvModule, DilatedConvModule)

    @classmethod
    def parse(cls, spec: Mapping[str, Any], path: str, defaults: Mapping[str, float]) -> DilatedConv:
        # dilation 1 is a plain conv, which has one spelling: "conv"
        return replace(super().parse(spec, path, defaults),
                       dilation=integer({"dilation": 2, **spec}, "dilation", path, minimum=2))

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "dilation": self.dilation}

    def module(self, channels: int, width: int) -> DilatedConvModule:
        return DilatedConvModule(channels, width, self.kernel, self.weight_std, self.bias_std, self.stride,
                                 self.dilation)

    def module_code(self, channels: str, width: str) -> str:
        return (f"DilatedConvModule({channels}, {width}, {self.kernel}, {self.weight_std!r}, {self.bias_std!r}, "
                f"{self.stride}, {self.dilation})")

    @property
    def taps(self) -> tuple[int, ...]:
        return tuple(self.dilation * a for a in super().taps)
