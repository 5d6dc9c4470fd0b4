"""Fused kernels for chain networks (convs and ReLUs, no pools or branches).

Each keeps one pixel-pair slice of a batch in fast memory through every layer and writes out only
the readout's sums. Both read the network as a small layer table (:mod:`.chain`), so one compiled
kernel serves every chain: :mod:`.cpu` (Numba) on the CPU, :mod:`.cuda` (Triton) on a CUDA GPU.
Both equal the plain path (:mod:`nas_cntk.kernels.propagate`) to float32 rounding.

May import: :mod:`nas_cntk.description`, :mod:`nas_cntk.errors`.
"""
from __future__ import annotations

from types import ModuleType

import torch

from nas_cntk.kernels.fused.chain import Chain, chain


def backend(device: torch.device) -> ModuleType:
    """The fused kernel's module for the device, imported on first use: Numba and Triton cost start-up
    time that commands without a kernel should not pay, and only CUDA runs need Triton."""
    if device.type == "cuda":
        from nas_cntk.kernels.fused import cuda
        return cuda
    from nas_cntk.kernels.fused import cpu
    return cpu


__all__ = ["Chain", "backend", "chain"]
