"""NAS-Bench-201 (Dong and Yang, ICLR 2020): its cell genotypes and its macro network as descriptions.

A genotype string such as
``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|``
lists, for cell nodes 1, 2 and 3 in turn, one ``op~i`` per earlier node i: node j sums the ops
applied to nodes 0..j-1, node 0 is the cell's input and node 3 its output. The macro network is
the benchmark's: a 3x3 stem conv, three stages of N cells at full, half and quarter resolution
with a residual reduction block between stages, a ReLU, global average pooling and a dense
output. ``nor_conv_kxk`` is ReLU then conv, without the benchmark's batch norm: batch norm's
infinite-width limit couples the images of a batch (Yang et al., ICLR 2019, "A Mean Field Theory of
Batch Normalization"), so no kernel of image pairs gives it.
"""
from __future__ import annotations

from typing import Any

from nas_cntk import checks
from nas_cntk.errors import ArchitectureError

NODES = 4  # per cell, the input included
STAGES = 3  # of cells, at full, half and quarter resolution
EDGE_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

# What each edge op is in a description; an empty list is the identity, None is no edge.
EDGE_LAYERS: dict[str, list[dict[str, Any]] | None] = {
    "none": None,
    "skip_connect": [],
    "nor_conv_1x1": [{"op": "relu"}, {"op": "conv", "kernel": 1}],
    "nor_conv_3x3": [{"op": "relu"}, {"op": "conv", "kernel": 3}],
    "avg_pool_3x3": [{"op": "avg_pool", "window": 3, "stride": 1}],
}

Genotype = tuple[tuple[str, ...], ...]  # node j's incoming ops, from nodes 0..j-1, for j = 1, 2, 3

# The benchmark's trained network: a 3x3 stem conv on 32 x 32 RGB images to 16 channels, channels
# doubling and the side halving at each of the two reductions, 5 cells per stage, 10 classes.
TRAINED_IN_CHANNELS = 3
TRAINED_STAGES = ((16, 32), (32, 16), (64, 8))  # (channels, image side) per stage
TRAINED_CELLS_PER_STAGE = 5
TRAINED_CLASSES = 10
BATCH_NORM_PARAMETERS = 2  # per channel: a scale and a shift


def parse_genotype(text: Any, path: str = "genotype") -> Genotype:
    """The edge ops of a genotype string; errors name what is wrong with it."""
    example = "|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_1x1~1|skip_connect~2|"
    if not isinstance(text, str):
        raise ArchitectureError(f"{path}: expected a NAS-Bench-201 genotype string like {example}, got {text!r}")
    parts = text.strip().split("+")
    if len(parts) != NODES - 1:
        raise ArchitectureError(f"{path}: expected {NODES - 1} nodes separated by '+', got {len(parts)} in {text!r}")
    genotype = []
    for j, part in enumerate(parts, start=1):
        edges = [e for e in part.strip().strip("|").split("|")] if part.strip().strip("|") else []
        if len(edges) != j:
            raise ArchitectureError(f"{path}: node {j} needs {j} edges (one from each earlier node), got {part!r}")
        ops = []
        for i, edge in enumerate(edges):
            op, _, source = edge.partition("~")
            if op not in EDGE_OPS:
                raise ArchitectureError(f"{path}: unknown op {op!r} in {edge!r}; expected one of {', '.join(EDGE_OPS)}")
            if source != str(i):
                raise ArchitectureError(f"{path}: edge {edge!r} of node {j} should come from node {i} ('{op}~{i}')")
            ops.append(op)
        genotype.append(tuple(ops))
    return tuple(genotype)


def genotype_string(genotype: Genotype) -> str:
    """The benchmark's own spelling of a genotype."""
    return "+".join("|" + "|".join(f"{op}~{i}" for i, op in enumerate(ops)) + "|" for ops in genotype)


def connected(genotype: Genotype) -> bool:
    """Whether the cell's output depends on its input (else the cell outputs zeros)."""
    reached = {0}
    for j, ops in enumerate(genotype, start=1):
        if any(op != "none" and i in reached for i, op in enumerate(ops)):
            reached.add(j)
    return NODES - 1 in reached


def description(genotype: str | Genotype, cells_per_stage: int = TRAINED_CELLS_PER_STAGE) -> dict[str, Any]:
    """The benchmark's macro network around one cell genotype, as an architecture description."""
    checks.integer(cells_per_stage, "cells_per_stage", error=ArchitectureError)
    text = genotype if isinstance(genotype, str) else genotype_string(genotype)
    cell = {"op": "cell", "genotype": genotype_string(parse_genotype(text))}
    relu, conv3 = {"op": "relu"}, {"op": "conv", "kernel": 3}
    # ResNet basic block with stride 2: relu-conv(stride 2)-relu-conv, shortcut 2x2 pool then 1x1 conv.
    reduction = {"op": "residual", "body": [relu, {"op": "conv", "kernel": 3, "stride": 2}, relu, conv3],
                 "shortcut": [{"op": "avg_pool", "window": 2}, {"op": "conv", "kernel": 1}]}
    stages = [[cell] * cells_per_stage for _ in range(STAGES)]
    layers = [conv3, *stages[0], reduction, *stages[1], reduction, *stages[2], relu]
    return {"readout": "gap", "layers": layers}


def _conv(kernel: int, channels_in: int, channels_out: int, pixels: int, *,
          batch_norm: bool = True) -> tuple[int, int]:
    """(FLOPs, parameters) of a bias-free ``kernel`` x ``kernel`` conv, and the batch norm after it."""
    weights = kernel * kernel * channels_in * channels_out
    return weights * pixels, weights + (BATCH_NORM_PARAMETERS * channels_out if batch_norm else 0)


def _pool(window: int, channels: int, pixels: int) -> tuple[int, int]:
    """(FLOPs, parameters) of average pooling: a window sum per output."""
    return window * window * channels * pixels, 0


def trained_network_cost(genotype: str | Genotype) -> tuple[int, int]:
    """(FLOPs, parameters) of the network the benchmark trains for ``genotype``, built as its code builds
    it: FLOPs are the multiply-adds of convs and the dense layer plus the window sums of average
    pools; parameters include batch norm's scales and shifts. A ``none`` edge costs nothing, and an
    edge counts even where the cell's output never sees it (the benchmark's network computes it)."""
    if isinstance(genotype, str):
        genotype = parse_genotype(genotype)
    ops = [op for node in genotype for op in node]
    stem, side = TRAINED_STAGES[0]
    costs = [_conv(3, TRAINED_IN_CHANNELS, stem, side * side)]
    for stage, (channels, side) in enumerate(TRAINED_STAGES):
        pixels = side * side
        edge_costs = {"nor_conv_3x3": _conv(3, channels, channels, pixels),
                      "nor_conv_1x1": _conv(1, channels, channels, pixels),
                      "avg_pool_3x3": _pool(3, channels, pixels)}
        costs += [edge_costs[op] for op in ops if op in edge_costs] * TRAINED_CELLS_PER_STAGE
        if stage:  # the residual reduction block before the stage: two 3x3 convs, a pooled 1x1 shortcut
            before = TRAINED_STAGES[stage - 1][0]
            costs += [_conv(3, before, channels, pixels), _conv(3, channels, channels, pixels),
                      _pool(2, before, pixels), _conv(1, before, channels, pixels, batch_norm=False)]
    last = TRAINED_STAGES[-1][0]
    # the last batch norm, then the dense layer (weights and biases)
    costs += [(0, BATCH_NORM_PARAMETERS * last), (last * TRAINED_CLASSES, last * TRAINED_CLASSES + TRAINED_CLASSES)]
    return sum(flops for flops, _ in costs), sum(parameters for _, parameters in costs)
