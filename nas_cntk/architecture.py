"""Architecture descriptions: load, validate, hash, and build the finite network.

A description is a JSON or YAML mapping::

    {"weight_std": 1.4142135623730951, "bias_std": 0.0, "readout": "gap",
     "layers": [{"op": "conv", "kernel": 3},
                {"op": "residual", "body": [{"op": "relu"}, {"op": "conv", "kernel": 3}]},
                {"op": "relu"}, {"op": "avg_pool", "window": 2}]}

Internally a network is a graph of nodes in topological order; a node applies one op to the sum
of its inputs. ``residual`` is not an op but a shape of the graph: the body hangs off a branch
point and an identity node sums both branches. Cell-based spaces add nodes with more inputs.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
import yaml
from torch import nn

from nas_cntk.errors import ArchitectureError
from nas_cntk.ops import OPS, Identity, Kind, Op, Readout
from nas_cntk.ops.base import check_keys, std
from nas_cntk.ops.readout import READOUTS

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
        """A one-line description, e.g. ``conv3 relu [conv3 relu conv3] pool2 relu | gap``."""
        return f"{_summary(self.spec['layers'])} | {self.readout.kind}"

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
               input_size: tuple[int, int] = (32, 32)) -> GraphNetwork:
        """The finite network at a given width, in the parameterisation the kernel describes."""
        return GraphNetwork(self, width, in_channels, outputs, input_size)


class GraphNetwork(nn.Module):
    """A finite network built from an :class:`Architecture`: each node runs its op on the sum of its inputs."""

    def __init__(self, arch: Architecture, width: int, in_channels: int, outputs: int,
                 input_size: tuple[int, int]):
        super().__init__()
        self.inputs = [node.inputs for node in arch.nodes]
        channels, layers = [in_channels], [nn.Identity()]
        for node in arch.nodes[1:]:
            c = channels[node.inputs[0]]
            layers.append(node.op.module(c, width))
            channels.append(node.op.output_channels(c, width))
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
    defaults = {"weight_std": std(description, "weight_std", "weight_std", math.sqrt(2.0)),
                "bias_std": std(description, "bias_std", "bias_std", 0.0)}
    readout = description.get("readout")
    if readout not in READOUTS:
        raise ArchitectureError(f"readout: expected one of {', '.join(READOUTS)}, got {readout!r}")
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
    """An architecture from a dict, or from a ``.json``, ``.yaml`` or ``.yml`` file."""
    if isinstance(source, Architecture):
        return source
    if isinstance(source, Mapping):
        return parse(source)
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


def _parse_layers(layers: list[Any], path: str, nodes: list[Node], defaults: Mapping[str, float]) -> list[dict]:
    """Append the nodes of ``layers`` after the last node of ``nodes``; return their canonical specs."""
    canonical = []
    for i, spec in enumerate(layers):
        here = f"{path}[{i}]"
        if not isinstance(spec, Mapping) or "op" not in spec:
            raise ArchitectureError(f"{here}: expected a mapping with an 'op' key, got {spec!r}")
        branch_point = len(nodes) - 1
        if spec["op"] == "residual":
            check_keys(spec, frozenset({"body"}), here)
            body = spec.get("body")
            if not isinstance(body, list):
                raise ArchitectureError(f"{here}.body: expected a list of ops, got {body!r}")
            body_spec = _parse_layers(body, f"{here}.body", nodes, defaults)
            nodes.append(Node(Identity(), (branch_point, len(nodes) - 1), here))
            canonical.append({"op": "residual", "body": body_spec})
            continue
        op_type = OPS.get(spec["op"])
        if op_type is None:
            raise ArchitectureError(f"{here}.op: unknown op {spec['op']!r}; expected one of "
                                    f"{', '.join(sorted([*OPS, 'residual']))}")
        op = op_type.parse(spec, here, defaults)
        nodes.append(Node(op, (branch_point,), here))
        canonical.append(op.spec())
    return canonical


def _summary(layers: list[dict]) -> str:
    words = []
    for spec in layers:
        if spec["op"] == "residual":
            words.append(f"[{_summary(spec['body'])}]")
        else:
            words.append(spec["op"].replace("avg_pool", "pool") + str(spec.get("kernel", spec.get("window", ""))))
    return " ".join(words)
