"""What the kernel computation of one architecture looks like before any image is seen.

For each node: its size and kind, the pixel pairs it must hold for the readout (its grid, see
:mod:`nas_cntk.description.grid`), and which node pairs need cross moments because a sum joins
branches that depend on each other. Planning also rejects networks that do not fit the images.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

from nas_cntk.description.architecture import Architecture
from nas_cntk.description.grid import Grid
from nas_cntk.description.ops import Kind, Relu
from nas_cntk.errors import ArchitectureError


@dataclass(frozen=True)
class Plan:
    """What the computation looks like for one architecture and input size, before any image is seen."""

    arch: Architecture
    sizes: list[tuple[int, int]]
    kinds: list[Kind]
    pair_grids: list[Grid]   # pixel pairs each node must hold for the readout
    image_grids: list[Grid]  # the same for a flatten readout: enough for per-pixel variances
    consumers: list[int]     # how many times each node's value is read
    crossed: frozenset[tuple[int, int]]  # node pairs (a < b) whose cross moments some sum needs
    pair_cross_grids: dict[tuple[int, int], Grid]   # pixel pairs each crossed pair must hold
    image_cross_grids: dict[tuple[int, int], Grid]
    live: tuple[int, int]    # the most values and crosses held at once

    @property
    def variance_nodes(self) -> frozenset[int]:
        """Nodes whose per-pixel variance a ReLU needs."""
        return frozenset(node.inputs[0] for node in self.arch.nodes if isinstance(node.op, Relu))

    @property
    def forks(self) -> frozenset[int]:
        """Nodes whose per-pixel mean a cross rule may need (the earlier node of each crossed pair)."""
        return frozenset(a for a, _ in self.crossed)

    def bytes_per_pair(self, itemsize: int, grids: list[Grid]) -> int:
        """Working memory of one pair (or one image, with the image grids)."""
        # Live at once: the values (Sigma and Theta) and crosses (four tensors) held, plus a few
        # temporaries of the conv and ReLU rules.
        values, crosses = self.live
        return (8 + 2 * values + 4 * crosses) * itemsize * max(g.entries for g in grids)


def plan(arch: Architecture, height: int, width: int) -> Plan:
    nodes = arch.nodes
    sizes, kinds = arch.sizes(height, width), arch.kinds()

    crossed = _crossed_pairs(arch)

    def grids(last: Grid) -> tuple[list[Grid], dict[tuple[int, int], Grid]]:
        """What each node and crossed pair must hold, from the readout back: a node's uses are its
        consumers' inputs; a pair's are the sums that join it and the crosses computed from it."""
        needed: list[Grid | None] = [None] * len(nodes)
        cross_needed: dict[tuple[int, int], Grid] = {}

        def need(key: int | tuple[int, int], grid: Grid) -> None:
            table = needed if isinstance(key, int) else cross_needed
            old = table[key] if isinstance(key, int) else table.get(key)
            table[key] = grid if old is None else old.union(grid)

        needed[-1] = last
        for n in range(len(nodes) - 1, 0, -1):
            node = nodes[n]
            if needed[n] is not None:
                for i in node.inputs:
                    need(i, node.op.input_grid(needed[n], *sizes[i]))
                grid_in = node.op.input_grid(needed[n], *sizes[node.inputs[0]])
                for a, b in combinations(node.inputs, 2):
                    if (min(a, b), max(a, b)) in crossed:
                        need((min(a, b), max(a, b)), grid_in)
            for a in (a for a, b in crossed if b == n and (a, b) in cross_needed):
                grid_in = node.op.input_grid(cross_needed[a, n], *sizes[node.inputs[0]])
                for i in node.inputs:
                    need(i if i == a else (min(a, i), max(a, i)), grid_in)
        return needed, {pair: cross_needed[pair] for pair in crossed if pair in cross_needed}

    consumers, last_read = [0] * len(nodes), list(range(len(nodes)))
    for n, node in enumerate(nodes):
        for i in node.inputs:
            consumers[i] += 1
            last_read[i] = n
    live = max((sum(last_read[i] > n >= i for i in range(len(nodes))),
                sum(last_read[a] > n and last_read[b] > n and b <= n for a, b in crossed))
               for n in range(len(nodes)))
    (pair_grids, pair_cross_grids), (image_grids, image_cross_grids) = (
        grids(arch.readout.grid(*sizes[-1])), grids(Grid.diagonal(*sizes[-1])))
    return Plan(arch, sizes, kinds, pair_grids, image_grids, consumers, crossed, pair_cross_grids,
                image_cross_grids, live)


def _crossed_pairs(arch: Architecture) -> frozenset[tuple[int, int]]:
    """The node pairs whose cross moments are needed: those a sum joins, and recursively those the
    later node's cross rule reads (its inputs with the earlier node). A fresh conv ends the recursion:
    its cross moments with every other node vanish."""
    nodes = arch.nodes
    pending = [(min(a, b), max(a, b)) for node in nodes for a, b in combinations(node.inputs, 2) if a != b]
    crossed = set()
    while pending:
        a, b = pair = pending.pop()
        if pair in crossed or nodes[b].op.independent:
            continue
        if not nodes[b].op.has_cross:
            raise ArchitectureError(f"{nodes[b].path}: {nodes[b].op.name} has no cross-moment rule, so it cannot lie "
                                    f"on a branch that a sum joins with {nodes[a].path}")
        crossed.add(pair)
        pending += [(min(a, i), max(a, i)) for i in nodes[b].inputs if i != a]
    return frozenset(crossed)
