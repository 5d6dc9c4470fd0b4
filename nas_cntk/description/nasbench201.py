"""NAS-Bench-201 (Dong and Yang, ICLR 2020): its cell genotypes and its macro network as descriptions.

A genotype string such as
``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|``
lists, for cell nodes 1, 2 and 3 in turn, one ``op~i`` per earlier node i: node j sums the ops
applied to nodes 0..j-1, node 0 is the cell's input and node 3 its output. The macro network is
the benchmark's: a 3x3 stem conv, three stages of N cells at full, half and quarter resolution
with a residual reduction block between stages, a ReLU, global average pooling and a dense
output. In the infinite-width limit batch norm drops out, so ``nor_conv_kxk`` is ReLU then conv.
"""
from __future__ import annotations

from typing import Any

from nas_cntk import checks
from nas_cntk.errors import ArchitectureError

NODES = 4  # per cell, the input included
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


def description(genotype: str | Genotype, cells_per_stage: int = 5) -> dict[str, Any]:
    """The benchmark's macro network around one cell genotype, as an architecture description."""
    checks.integer(cells_per_stage, "cells_per_stage", error=ArchitectureError)
    text = genotype if isinstance(genotype, str) else genotype_string(genotype)
    cell = {"op": "cell", "genotype": genotype_string(parse_genotype(text))}
    relu, conv3 = {"op": "relu"}, {"op": "conv", "kernel": 3}
    # ResNet basic block with stride 2: relu-conv(stride 2)-relu-conv, shortcut 2x2 pool then 1x1 conv.
    reduction = {"op": "residual", "body": [relu, {"op": "conv", "kernel": 3, "stride": 2}, relu, conv3],
                 "shortcut": [{"op": "avg_pool", "window": 2}, {"op": "conv", "kernel": 1}]}
    stages = [[cell] * cells_per_stage for _ in range(3)]
    layers = [conv3, *stages[0], reduction, *stages[1], reduction, *stages[2], relu]
    return {"readout": "gap", "layers": layers}


# The benchmark's trained network: a 16-channel stem at 32 x 32, channels doubling at each of the two
# reductions, 5 cells per stage, 10 classes.
TRAINED_STAGES = ((16, 32), (32, 16), (64, 8))  # (channels, image side) per stage
TRAINED_CELLS_PER_STAGE = 5


def trained_network_cost(genotype: str | Genotype) -> tuple[int, int]:
    """(FLOPs, parameters) of the network the benchmark trains for ``genotype``, built as its code builds
    it: FLOPs are the multiply-adds of convs and the dense layer plus the window sums of average
    pools; parameters include batch norm's scales and shifts. A ``none`` edge costs nothing, and an
    edge counts even where the cell's output never sees it (the benchmark's network computes it)."""
    if isinstance(genotype, str):
        genotype = parse_genotype(genotype)
    ops = [op for node in genotype for op in node]
    stem = 16
    flops, parameters = 9 * 3 * stem * 32 * 32, 9 * 3 * stem + 2 * stem
    for stage, (channels, side) in enumerate(TRAINED_STAGES):
        pixels = side * side
        per_cell_flops = sum({"nor_conv_3x3": 9 * channels**2 * pixels, "nor_conv_1x1": channels**2 * pixels,
                              "avg_pool_3x3": 9 * channels * pixels}.get(op, 0) for op in ops)
        per_cell_parameters = sum({"nor_conv_3x3": 9 * channels**2 + 2 * channels,
                                   "nor_conv_1x1": channels**2 + 2 * channels}.get(op, 0) for op in ops)
        flops += TRAINED_CELLS_PER_STAGE * per_cell_flops
        parameters += TRAINED_CELLS_PER_STAGE * per_cell_parameters
        if stage:  # the residual reduction block before the stage: two 3x3 convs, a pooled 1x1 shortcut
            before = TRAINED_STAGES[stage - 1][0]
            flops += 9 * before * channels * pixels + 9 * channels**2 * pixels + 4 * before * pixels \
                + before * channels * pixels
            parameters += 9 * before * channels + 2 * channels + 9 * channels**2 + 2 * channels + before * channels
    classes, last = 10, TRAINED_STAGES[-1][0]
    return flops + last * classes, parameters + 2 * last + last * classes + classes
