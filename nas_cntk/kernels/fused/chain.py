"""Chain networks: the shape the fused kernels (:mod:`.cpu`, :mod:`.cuda`) run.

A chain is convs and ReLUs one after the other, no pools and no branches: then every (pair, shift)
slice of a pair tensor goes through the whole network on its own (see :mod:`nas_cntk.description.grid`). The
kernels read the network as a small table at run time, so one compiled kernel serves every chain.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from nas_cntk.description.architecture import Architecture
from nas_cntk.description.ops import Conv, Identity, Kind, Relu

CONV, RELU = 0, 1  # layer kinds in the table


@dataclass(frozen=True)
class Layer:
    """One step of the chain: a conv, or a ReLU of a Gaussian (the ReLUs that are not the identity)."""

    kind: str               # "conv" or "relu"
    kernel: int = 1         # conv: k
    scale: float = 1.0      # conv: w^2 / k^2
    bias2: float = 0.0      # conv: b^2
    trainable: bool = True  # conv: False for the untrained first conv of the `fix` variant (Theta = 0)


@dataclass(frozen=True)
class Chain:
    """The network as the fused kernel runs it."""

    layers: tuple[Layer, ...]
    variance_nodes: tuple[int, ...]  # the input node of each ReLU layer, in chain order

    def tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The table the kernel reads: int32 rows (kind, k // 2 or variance slot, trainable), float32 (scale, b^2)."""
        ints, floats, slot = [], [], 0
        for layer in self.layers:
            if layer.kind == "conv":
                ints.append((CONV, layer.kernel // 2, int(layer.trainable)))
            else:
                ints.append((RELU, slot, 0))
                slot += 1
            floats.append((layer.scale, layer.bias2))
        return (torch.tensor(ints, dtype=torch.int32, device=device).reshape(-1, 3),
                torch.tensor(floats, dtype=torch.float32, device=device).reshape(-1, 2))


def chain(arch: Architecture) -> Chain | None:
    """The network as a chain of layers for the fused kernel, or None where it does not apply.

    None for pools, strided convs, branches and any other op; ReLUs of ReLU outputs and identities drop out.
    """
    kinds = arch.kinds()
    layers, variance_nodes = [], []
    for n, node in enumerate(arch.nodes[1:], start=1):
        if node.inputs != (n - 1,):
            return None
        op = node.op
        if type(op) is Conv and op.stride == 1:  # exactly Conv: the chain kernels run its dense k x k filter
            untrained = arch.fix_first_and_readout and n == arch.first_conv
            layers.append(Layer("conv", op.kernel, op.weight_std**2 / op.kernel**2, op.bias_std**2, not untrained))
        elif isinstance(op, Relu) and kinds[n - 1] is Kind.GAUSSIAN:
            layers.append(Layer("relu"))
            variance_nodes.append(n - 1)
        elif not isinstance(op, (Relu, Identity)):  # a ReLU of a ReLU output and the identity change nothing
            return None
    return Chain(tuple(layers), tuple(variance_nodes))


