"""What a described network costs once trained: multiply-adds of one forward pass and parameters.

The kernel sees an infinitely wide network, so width is not in a description; the cost is that of the
finite network at a given width (:data:`WIDTH`, the width ``nas-cntk train`` and ``export`` default to)
on 32 x 32 CIFAR-10 images. A NAS-Bench-201 cell's cost is that of the network the benchmark trains
(:func:`nas_cntk.description.nasbench201.trained_network_cost`).
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from nas_cntk.description.architecture import Architecture

WIDTH = 128
IMAGE_SIZE = (32, 32)


def network_cost(arch: Architecture, width: int = WIDTH) -> dict[str, int]:
    """``flops`` (multiply-adds of convs and dense layers for one image) and ``parameters`` at ``width``."""
    network = arch.module(width, input_size=IMAGE_SIZE)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        network(torch.zeros(1, 3, *IMAGE_SIZE))
    # the counter counts a multiply-add as two operations
    return {"flops": counter.get_total_flops() // 2, "parameters": sum(p.numel() for p in network.parameters())}
