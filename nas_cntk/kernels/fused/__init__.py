"""Fused kernels: each runs a pair of images through the whole network while its buffers stay in
fast memory, and writes out only the readout's sums.

- Chain networks (convs and ReLUs, no pools or branches): every (pair, shift) slice goes through
  the network on its own, read from a small layer table (:mod:`.chain`): :mod:`.cpu` (Numba) on the
  CPU, :mod:`.cuda` (Triton) on a CUDA GPU.
- Any other network: :mod:`.graph` writes the plain path's walk of the graph out once as a program
  of instructions on per-pair buffers, which :mod:`.graph.cpu` (Numba) interprets on the CPU and
  :mod:`.graph.cuda` (Triton) on a CUDA GPU.

All equal the plain path (:mod:`nas_cntk.kernels.propagate`) to float32 rounding, and are tested
against it.

May import: :mod:`nas_cntk.description`, :mod:`nas_cntk.errors`.
"""
from __future__ import annotations

from types import ModuleType

import torch

from nas_cntk.kernels.fused.chain import Chain, chain
from nas_cntk.kernels.fused.graph import GraphPairs


def backend(device: torch.device) -> ModuleType:
    """The fused chain kernel's module for the device, imported on first use: Numba and Triton cost
    start-up time that commands without a kernel should not pay, and only CUDA runs need Triton."""
    if device.type == "cuda":
        from nas_cntk.kernels.fused import cuda
        return cuda
    from nas_cntk.kernels.fused import cpu
    return cpu


def graph_backend(device: torch.device) -> ModuleType:
    """The fused graph kernel's module for the device (its ``Interpreter``), imported on first use."""
    if device.type == "cuda":
        from nas_cntk.kernels.fused.graph import cuda
        return cuda
    from nas_cntk.kernels.fused.graph import cpu
    return cpu


__all__ = ["Chain", "GraphPairs", "backend", "chain", "graph_backend"]
