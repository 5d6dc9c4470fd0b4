"""Baselines for the kernel's ranking: the network NAS-Bench-201 trains, at initialisation.

:class:`TrainedNetwork` builds it as the benchmark's code does (16/32/64 channels, 5 cells per stage,
batch norm, a residual reduction block between stages); two published training-free proxies score
it on real images, without training:

- NASWOT (Mellor et al., ICML 2021): log |det K| of the agreement of the ReLUs' binary codes
  across a batch of images, ``K[i, j]`` = how many ReLU units are on or off for both i and j.
- synflow (Tanaka et al., NeurIPS 2020, as a proxy by Abdelfattah et al., ICLR 2021): with every
  weight replaced by its magnitude and batch norm removed, the sum of |weight x gradient| of the
  output's sum on an all-ones input, in float64.
"""
from __future__ import annotations

import torch
from torch import nn

from nas_cntk.description.nasbench201 import TRAINED_CELLS_PER_STAGE, TRAINED_STAGES, parse_genotype


class _ReluConvNorm(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, batch_norm: bool):
        super().__init__(nn.ReLU(), nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out) if batch_norm else nn.Identity())


class _Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def _edge(op: str, channels: int, batch_norm: bool) -> nn.Module:
    if op == "nor_conv_3x3":
        return _ReluConvNorm(channels, channels, 3, 1, batch_norm)
    if op == "nor_conv_1x1":
        return _ReluConvNorm(channels, channels, 1, 1, batch_norm)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    return nn.Identity() if op == "skip_connect" else _Zero()


class _Cell(nn.Module):
    def __init__(self, genotype, channels: int, batch_norm: bool):
        super().__init__()
        self.edges = nn.ModuleList(nn.ModuleList(_edge(op, channels, batch_norm) for op in node) for node in genotype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for edges in self.edges:
            nodes.append(sum(edge(nodes[i]) for i, edge in enumerate(edges)))
        return nodes[-1]


class _Reduction(nn.Module):
    def __init__(self, c_in: int, c_out: int, batch_norm: bool):
        super().__init__()
        self.body = nn.Sequential(_ReluConvNorm(c_in, c_out, 3, 2, batch_norm),
                                  _ReluConvNorm(c_out, c_out, 3, 1, batch_norm))
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class TrainedNetwork(nn.Sequential):
    """NAS-Bench-201's network for a genotype, freshly initialised (``batch_norm=False``: without it)."""

    def __init__(self, genotype: str, classes: int = 10, batch_norm: bool = True):
        cells = parse_genotype(genotype)
        stem = TRAINED_STAGES[0][0]
        layers: list[nn.Module] = [nn.Conv2d(3, stem, 3, 1, 1, bias=False),
                                   nn.BatchNorm2d(stem) if batch_norm else nn.Identity()]
        for stage, (channels, _) in enumerate(TRAINED_STAGES):
            if stage:
                layers.append(_Reduction(TRAINED_STAGES[stage - 1][0], channels, batch_norm))
            layers += [_Cell(cells, channels, batch_norm) for _ in range(TRAINED_CELLS_PER_STAGE)]
        last = TRAINED_STAGES[-1][0]
        layers += [nn.BatchNorm2d(last) if batch_norm else nn.Identity(), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                   nn.Flatten(), nn.Linear(last, classes)]
        super().__init__(*layers)


def naswot(genotype: str, images: torch.Tensor, seed: int = 0) -> float:
    """NASWOT's score of the freshly initialised network on ``images`` (n, 3, 32, 32), in train mode."""
    torch.manual_seed(seed)
    network = TrainedNetwork(genotype).train()
    agreement = torch.zeros(len(images), len(images), dtype=torch.float64)

    def count(module: nn.Module, inputs, output: torch.Tensor) -> None:
        # units on for both + off for both = units - on(i) - on(j) + 2 on(i, j); exact in float32
        # below 2^24 units a layer
        codes = (output.flatten(1) > 0).float()
        on = codes.sum(1)
        both = (codes.shape[1] - on[:, None] - on[None, :] + 2 * codes @ codes.T).double()
        agreement.add_(both)

    hooks = [m.register_forward_hook(count) for m in network.modules() if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        network(images)
    for hook in hooks:
        hook.remove()
    return float(torch.linalg.slogdet(agreement)[1])


def synflow(genotype: str, seed: int = 0) -> float:
    """synflow's score of the freshly initialised network without batch norm, in float64."""
    torch.manual_seed(seed)
    network = TrainedNetwork(genotype, batch_norm=False).double()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.abs_()
    network(torch.ones(1, 3, 32, 32, dtype=torch.float64)).sum().backward()
    with torch.no_grad():
        return float(sum((m.weight * m.weight.grad).abs().sum() for m in network.modules()
                         if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.grad is not None))
