"""Running a network's programs: each image's own work once, then any pairs, on a backend's interpreter."""
from __future__ import annotations

from typing import Protocol

import torch

from nas_cntk.kernels.fused.graph.instructions import Program
from nas_cntk.kernels.fused.graph.lowering import lower
from nas_cntk.kernels.plan import Plan


class Interpreter(Protocol):
    """A backend's interpreter of one program, for images of one dtype on one device."""

    def __init__(self, program: Program, like: torch.Tensor): ...

    def __call__(self, x1: torch.Tensor, x2: torch.Tensor, var1: torch.Tensor, var2: torch.Tensor,
                 vec1: torch.Tensor, vec2: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """The program on the pairs (x1[i[k]], x2[j[k]]): each pair's readout sums of Sigma and Theta,
        ``(len(i), 2)`` float64. In a record program the pairs are (x, x) and the variances and vectors
        are written into var1 (= var2) and vec1 (= vec2)."""
        ...


class GraphPairs:
    """Kernels between images x1 and x2 (None: x1 with itself) for any pairs; the per-image work done once.

    Each image's variances (what the ReLUs normalise by) and vectors (what the cross rules read)
    come from the record program on the pairs (x, x), on the interpreter itself, so that an image
    paired with itself repeats its variances bit for bit (see :mod:`nas_cntk.description.ops.relu`).
    """

    def __init__(self, p: Plan, x1: torch.Tensor, x2: torch.Tensor | None, interpreter: type[Interpreter]):
        self.p = p
        record = lower(p)
        self.run, run_record = interpreter(lower(p, record), x1), interpreter(record, x1)
        self.x1 = x1.contiguous()
        self.var1, self.vec1 = _image_work(run_record, record, self.x1)
        self.x2, self.var2, self.vec2 = self.x1, self.var1, self.vec1
        if x2 is not None:
            self.x2 = x2.contiguous()
            self.var2, self.vec2 = _image_work(run_record, record, self.x2)

    def means(self, i: torch.Tensor, j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sums = self.run(self.x1, self.x2, self.var1, self.var2, self.vec1, self.vec2, i, j)
        grid = self.p.pair_grids[-1]
        pixels = grid.height * grid.width
        result = (sums / (pixels**2 if self.p.arch.readout.kind == "gap" else pixels)).to(self.x1.dtype)
        return result[:, 0], result[:, 1]


def _image_work(run_record: Interpreter, record: Program, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The images' variances and vectors, from the record program on the pairs (x, x)."""
    var = x.new_zeros(len(x), max(record.variance_size, 1))
    vectors = x.new_zeros(len(x), max(record.vector_size, 1))
    k = torch.arange(len(x), device=x.device)
    run_record(x, x, var, var, vectors, vectors, k, k)
    return var, vectors
