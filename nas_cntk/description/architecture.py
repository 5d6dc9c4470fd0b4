"""Architecture descriptions: load, validate, hash, and build the finite network.

A description is a JSON or YAML mapping::

    {"weight_std": 1.4142135623730951, "bias_std": 0.0, "readout": "gap",
     "layers": [{"op": "conv", "kernel": 3},
                {"op": "residual", "body": [{"op": "relu"}, {"op": "conv", "kernel": 3}]},
                {"op": "relu"}, {"op": "avg_pool", "window": 2}]}

Internally a network is a graph of nodes in topological order; a node applies one op to the sum
of its inputs. ``residual`` and ``cell`` are not ops but shapes of the graph. In a residual the
body (and an optional ``shortcut``, else the identity) hang off a branch point and an identity node
sums both branches. A ``cell`` (``{"op": "cell", "genotype": "|nor_conv_3x3~0|+|...|"}``) is a
NAS-Bench-201 cell: each of its nodes sums the edge ops applied to earlier nodes
(:mod:`nas_cntk.description.nasbench201`). A NAS-Bench-201 genotype string is itself accepted wherever a
description is: it stands for the benchmark's macro network around that cell.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from nas_cntk import checks
from nas_cntk.description import nasbench201
from nas_cntk.description.ops import OPS, Conv, Identity, Kind, Op, Readout, Zero
from nas_cntk.description.ops.base import check_keys, std
from nas_cntk.description.ops.readout import READOUTS
from nas_cntk.errors import ArchitectureError

DEFAULT_WEIGHT_STD = math.sqrt(2.0)  # He initialisation: keeps the variance through ReLUs
TOP_LEVEL_KEYS = frozenset({"name", "weight_std", "bias_std", "readout", "layers", "fix_first_and_readout"})


@dataclass(frozen=True)
class Node:
    op: Op | None            # None for the network input
    inputs: tuple[int, ...]  # ids of the nodes whose outputs are summed into this op
    path: str                # where it comes from in the description, for error messages


@dataclass(frozen=True)
class Architecture:
    nodes: tuple[Node, ...]
    readout: Readout
    fix_first_and_readout: bool  # the paper's `fix`: first conv and readout not trained
    spec: Mapping[str, Any]      # canonical description
    name: str | None = None

    @property
    def hash(self) -> str:
        """Same network, same hash: computed on the canonical description (names excluded)."""
        text = json.dumps(self.spec, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps(self.spec, indent=2)

    @property
    def depth(self) -> int:
        """Number of convs, the paper's depth."""
        return sum(isinstance(node.op, OPS["conv"]) for node in self.nodes)

    @property
    def first_conv(self) -> int:
        """Node index of the first conv: the layer the paper's `fix` variant keeps untrained."""
        return next(n for n, node in enumerate(self.nodes) if isinstance(node.op, OPS["conv"]))

    def summary(self) -> str:
        """A one-line description, e.g. ``conv3 relu [conv3 relu conv3] pool2 relu | gap``; what differs from
        the defaults follows the readout (``| gap, fix, weight_std 1.2, bias_std 0.1``), so that networks
        that differ only there read differently."""
        extra = [*(["fix"] if self.fix_first_and_readout else []),
                 *(f"{key} {self.spec[key]:.5g}" for key, default in (("weight_std", DEFAULT_WEIGHT_STD),
                                                                       ("bias_std", 0.0))
                   if self.spec[key] != default)]
        return ", ".join([f"{_summary(self.spec['layers'])} | {self.readout.kind}", *extra])

    def sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Feature-map size at every node for a given input; raises if a pool does not fit."""
        sizes: list[tuple[int, int]] = []
        for node in self.nodes:
            if node.op is None:
                sizes.append((height, width))
                continue
            size_in = sizes[node.inputs[0]]
            if any(sizes[i] != size_in for i in node.inputs):
                raise ArchitectureError(f"{node.path}: the summed branches have different feature-map sizes "
                                        f"({' vs '.join('x'.join(map(str, sizes[i])) for i in node.inputs)})")
            sizes.append(node.op.output_size(size_in, node.path))
        return sizes

    def kinds(self) -> list[Kind]:
        """What each node is in the infinite-width limit; raises where no exact kernel exists."""
        kinds: list[Kind] = []
        for node in self.nodes:
            if node.op is None:
                kinds.append(Kind.GAUSSIAN)  # only seen by the first conv, which makes any input Gaussian
                continue
            kind_in = kinds[node.inputs[0]]
            for i in node.inputs[1:]:
                kind_in = kind_in + kinds[i]
            kinds.append(node.op.output_kind(kind_in, node.path))
        return kinds

    def module(self, width: int, *, in_channels: int = 3, outputs: int = 10,
               input_size: tuple[int, int] = (32, 32), batch_norm: bool = False) -> GraphNetwork:
        """The finite network at a given width, in the parameterisation the kernel describes.

        ``batch_norm`` puts a BatchNorm2d after every conv, as NAS-Bench-201 trains its networks;
        the kernel is that of the network without it (batch norm's infinite-width limit couples the
        images of a batch, so no kernel of image pairs gives it).
        """
        return GraphNetwork(self, width, in_channels, outputs, input_size, batch_norm)


class GraphNetwork(nn.Module):
    """A finite network built from an :class:`Architecture`: each node runs its op on the sum of its inputs."""

    def __init__(self, arch: Architecture, width: int, in_channels: int, outputs: int,
                 input_size: tuple[int, int], batch_norm: bool = False):
        super().__init__()
        self.inputs = [node.inputs for node in arch.nodes]
        channels, layers = [in_channels], [nn.Identity()]
        for node in arch.nodes[1:]:
            c = channels[node.inputs[0]]
            layer = node.op.module(c, width)
            channels.append(node.op.output_channels(c, width))
            if batch_norm and isinstance(node.op, Conv):
                layer = nn.Sequential(layer, nn.BatchNorm2d(channels[-1]))
            layers.append(layer)
        self.layers = nn.ModuleList(layers)
        self.readout = arch.readout.module(channels[-1], arch.sizes(*input_size)[-1], outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = [x]
        for layer, inputs in zip(self.layers[1:], self.inputs[1:]):
            values.append(layer(sum(values[i] for i in inputs)))
        return self.readout(values[-1])


def parse(description: Mapping[str, Any]) -> Architecture:
    """Validate a description (a dict) and build its graph; errors name the offending field."""
    if not isinstance(description, Mapping):
        raise ArchitectureError(f"description: expected a mapping with 'layers' and 'readout', got "
                                f"{type(description).__name__}")
    check_keys({"op": None, **description}, TOP_LEVEL_KEYS, "description")
    defaults = {"weight_std": std(description, "weight_std", "weight_std", DEFAULT_WEIGHT_STD),
                "bias_std": std(description, "bias_std", "bias_std", 0.0)}
    readout = description.get("readout")
    checks.one_of(readout, READOUTS, "readout", error=ArchitectureError)
    fix = description.get("fix_first_and_readout", False)
    if not isinstance(fix, bool):
        raise ArchitectureError(f"fix_first_and_readout: expected true or false, got {fix!r}")
    name = description.get("name")
    if name is not None and not isinstance(name, str):
        raise ArchitectureError(f"name: expected a string, got {name!r}")
    layers = description.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ArchitectureError(f"layers: expected a non-empty list of ops, got {layers!r}")
    if not (isinstance(layers[0], Mapping) and layers[0].get("op") == "conv"):
        raise ArchitectureError("layers[0]: a network must start with a conv (it maps the image channels "
                                "to the network's width)")

    nodes = [Node(None, (), "input")]
    canonical_layers = _parse_layers(layers, "layers", nodes, defaults)
    spec = {"weight_std": defaults["weight_std"], "bias_std": defaults["bias_std"], "readout": readout,
            "fix_first_and_readout": fix, "layers": canonical_layers}
    arch = Architecture(tuple(nodes), Readout(readout, defaults["weight_std"], defaults["bias_std"]), fix, spec,
                        name)
    arch.kinds()  # refuse networks without an exact kernel now, not in the middle of a run
    return arch


def load(source: str | Path | Mapping[str, Any]) -> Architecture:
    """An architecture from a dict, a ``.json``, ``.yaml`` or ``.yml`` file, or a NAS-Bench-201 genotype
    string (the benchmark's macro network, 5 cells per stage)."""
    if isinstance(source, Architecture):
        return source
    if isinstance(source, Mapping):
        return parse(source)
    if isinstance(source, str) and source.strip().startswith("|"):
        return nasbench201_network(source)
    path = Path(source)
    try:
        text = path.read_text()
    except OSError as error:
        raise ArchitectureError(f"{path}: cannot read the architecture file ({error.strerror})") from None
    try:
        description = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (ValueError, yaml.YAMLError) as error:
        first_line = str(error).splitlines()[0]
        raise ArchitectureError(f"{path}: not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'} "
                                f"({first_line})") from None
    try:
        arch = parse(description)
    except ArchitectureError as error:
        raise ArchitectureError(f"{path}: {error}") from None
    return arch if arch.name else Architecture(arch.nodes, arch.readout, arch.fix_first_and_readout, arch.spec,
                                               path.stem)


def nasbench201_network(genotype: str | nasbench201.Genotype,
                        cells_per_stage: int = nasbench201.TRAINED_CELLS_PER_STAGE) -> Architecture:
    """The NAS-Bench-201 macro network around ``genotype``, named by the genotype in the benchmark's spelling."""
    parsed = genotype if isinstance(genotype, tuple) else nasbench201.parse_genotype(genotype)
    text = nasbench201.genotype_string(parsed)
    return parse({**nasbench201.description(text, cells_per_stage), "name": text})


def _parse_layers(layers: list[Any], path: str, nodes: list[Node], defaults: Mapping[str, float],
                  start: int | None = None) -> list[dict]:
    """Append the nodes of ``layers``, the first reading node ``start`` (default: the last node of
    ``nodes``), each later one the node before it; return their canonical specs."""
    canonical = []
    branch_point = len(nodes) - 1 if start is None else start
    for i, spec in enumerate(layers):
        here = f"{path}[{i}]"
        if not isinstance(spec, Mapping) or "op" not in spec:
            raise ArchitectureError(f"{here}: expected a mapping with an 'op' key, got {spec!r}")
        if spec["op"] == "residual":
            check_keys(spec, frozenset({"body", "shortcut"}), here)
            specs = {}
            for key in ("shortcut", "body"):
                branch = spec.get(key, [])
                if not isinstance(branch, list):
                    raise ArchitectureError(f"{here}.{key}: expected a list of ops, got {branch!r}")
                specs[key] = _parse_layers(branch, f"{here}.{key}", nodes, defaults, branch_point) if branch else []
                if key == "shortcut":
                    shortcut_end = len(nodes) - 1 if branch else branch_point
            body_end = len(nodes) - 1 if specs["body"] else branch_point
            nodes.append(Node(Identity(), (shortcut_end, body_end), here))
            canonical.append({"op": "residual", "body": specs["body"],
                              **({"shortcut": specs["shortcut"]} if specs["shortcut"] else {})})
        elif spec["op"] == "cell":
            check_keys(spec, frozenset({"genotype"}), here)
            genotype = nasbench201.parse_genotype(spec.get("genotype"), f"{here}.genotype")
            _append_cell(genotype, here, nodes, defaults, branch_point)
            canonical.append({"op": "cell", "genotype": nasbench201.genotype_string(genotype)})
        else:
            op_type = OPS.get(spec["op"])
            if op_type is None:
                raise ArchitectureError(f"{here}.op: unknown op {spec['op']!r}; expected one of "
                                        f"{', '.join(sorted([*OPS, 'cell', 'residual']))}")
            op = op_type.parse(spec, here, defaults)
            nodes.append(Node(op, (branch_point,), here))
            canonical.append(op.spec())
        branch_point = len(nodes) - 1
    return canonical


def _append_cell(genotype: nasbench201.Genotype, path: str, nodes: list[Node], defaults: Mapping[str, float],
                 cell_input: int) -> None:
    """Append a cell's nodes: each cell node an identity summing its incoming edges' last nodes.

    Nodes the output does not read (through edges other than ``none``) are left out: they change
    nothing, and the engine computes only what the readout reads."""
    last = len(genotype)
    read = {last}
    for j in range(last - 1, 0, -1):
        if any(genotype[k - 1][j] != "none" for k in read):
            read.add(j)
    cell_nodes: list[int | None] = [cell_input]
    for j, ops in enumerate(genotype, start=1):
        if j not in read:
            cell_nodes.append(None)
            continue
        terms = []
        for i, op in enumerate(ops):
            edge = nasbench201.EDGE_LAYERS[op]
            if edge is None:
                continue
            _parse_layers(edge, f"{path}.{op}~{i}->{j}", nodes, defaults, cell_nodes[i])
            terms.append(len(nodes) - 1 if edge else cell_nodes[i])
        # No incoming edge: the node is zero (NAS-Bench-201 multiplies its input by 0 there).
        nodes.append(Node(Identity(), tuple(terms), f"{path}.node{j}") if terms
                     else Node(Zero(), (cell_input,), f"{path}.node{j}"))
        cell_nodes.append(len(nodes) - 1)


def _summary(layers: list[dict]) -> str:
    """Short words, repeats counted: ``conv3 cell x5 [pool2 conv1 + relu conv3/2 relu conv3] ...``
    (a cell's genotype is left out: it is long, and a NAS-Bench-201 network carries it as its name)."""
    words: list[str] = []
    for spec in layers:
        if spec["op"] == "residual":
            shortcut = f"{_summary(spec['shortcut'])} + " if "shortcut" in spec else ""
            words.append(f"[{shortcut}{_summary(spec['body'])}]")
        else:
            stride = f"/{spec['stride']}" if spec.get("stride", 1) != 1 else ""  # a pool's spec has only stride 1
            words.append(spec["op"].replace("avg_pool", "pool") + str(spec.get("kernel", spec.get("window", "")))
                         + stride)
    runs = [[word, len(list(group))] for word, group in groupby(words)]
    return " ".join(word if count == 1 else f"{word} x{count}" for word, count in runs)
