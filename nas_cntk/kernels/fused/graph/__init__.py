"""The fused graph kernel: any network as a program for a fused kernel.

The plain path (:mod:`nas_cntk.kernels.propagate`) applies each op's rule to a batch of pair tensors,
one torch op at a time. Here the same walk of the graph (:mod:`nas_cntk.kernels.walk`) is done once
per plan, symbolically, and every step becomes an instruction on per-pair buffers, so that a fused
kernel runs a pair through the whole graph while its buffers stay in cache:

- :mod:`.instructions`: the instruction set, a program and its tables;
- :mod:`.lowering`: the walk as a program, each op emitting its own rules (``Op.emit_moments``, ...);
- :mod:`.passes`: the optimisation passes (shared work, chains of sums, slots in an arena, tiles);
- :mod:`.runtime`: :class:`GraphPairs`, each image's own work once, then any pairs, on an interpreter
  per backend: :mod:`.cpu` (Numba) or :mod:`.cuda` (Triton).

Tests hold every fused result to the plain path.
"""
from nas_cntk.kernels.fused.graph.instructions import Program
from nas_cntk.kernels.fused.graph.lowering import lower
from nas_cntk.kernels.fused.graph.runtime import GraphPairs, Interpreter

__all__ = ["GraphPairs", "Interpreter", "Program", "lower"]
