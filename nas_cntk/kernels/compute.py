"""``kernel()``: the exact NNGP and NTK of an architecture between two sets of images.

Image pairs go through the network in batches, each pair holding only the pixel pairs its readout
needs. Float32 on the CPU or a CUDA GPU takes a fused kernel (:mod:`nas_cntk.kernels.fused`);
everything else takes the plain path (:mod:`nas_cntk.kernels.propagate`), the reference every fused result is
tested against. Either way this module only fills the matrices, with a progress bar.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

import torch
from tqdm.auto import tqdm

from nas_cntk.description.architecture import Architecture, load
from nas_cntk.errors import KernelError
from nas_cntk.kernels import batching
from nas_cntk.kernels.fused import GraphPairs, backend, chain, graph_backend
from nas_cntk.kernels.plan import Plan, plan
from nas_cntk.kernels.propagate import image_statistics, propagate


class Pairs(Protocol):
    """What every path provides, plain or fused, CPU or CUDA: for a batch of pairs (x1[i], x2[j]),
    the readout's averages of the last NNGP and NTK pair tensors (what ``Readout.kernels`` takes)."""

    def means(self, i: torch.Tensor, j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class Kernels(NamedTuple):
    nngp: torch.Tensor  # (n1, n2)
    ntk: torch.Tensor   # (n1, n2)


def kernel(arch: Architecture | Mapping[str, Any] | str | os.PathLike, x1: torch.Tensor,
           x2: torch.Tensor | None = None, *, dtype: torch.dtype = torch.float32,
           device: torch.device | str | None = None, memory_budget: int | None = None,
           progress: bool | None = None, torch_compile: bool | None = None, fused: bool | None = None) -> Kernels:
    """Exact NNGP and NTK of ``arch`` between images ``x1`` (n1, C, H, W) and ``x2`` (n2, C, H, W).

    ``x2=None`` means ``x2 = x1``; the symmetric matrix is then computed once per unordered pair.
    ``progress`` shows a bar with an ETA (default: for long runs).
    In float32, chain networks (convs and ReLUs, no pools or branches) run on a fused chain kernel
    that keeps each pixel-pair slice on chip through every layer, and every other network on the
    fused graph kernel, which keeps each pair's buffers in cache through the whole graph; both on
    the CPU or a CUDA GPU (on the CPU float64 too, with ``fused=True``). ``fused=False`` forces the plain
    path, the reference. There, work is tiled into batches of image pairs that fit
    ``memory_budget`` bytes (default: from the device's free memory), and ``torch_compile`` fuses
    each batch's pass with torch.compile (default: when the work repays compiling).
    """
    arch = load(arch)
    device = torch.device(device) if device is not None else x1.device
    x1 = x1.to(device, dtype)
    x2 = None if x2 is None else x2.to(device, dtype)
    if x1.ndim != 4 or (x2 is not None and x2.shape[1:] != x1.shape[1:]):
        raise KernelError(f"expected image batches (n, C, H, W) of one shape, got {tuple(x1.shape)} and "
                          f"{None if x2 is None else tuple(x2.shape)}")
    p = plan(arch, x1.shape[2], x1.shape[3])
    n1, n2 = len(x1), len(x1) if x2 is None else len(x2)
    total = n1 * (n1 + 1) // 2 if x2 is None else n1 * n2
    fusable = device.type == "cpu" or (device.type == "cuda" and dtype == torch.float32)
    net = chain(arch) if fused is not False and fusable and dtype == torch.float32 else None
    graph = net is None and fusable and (fused or (fused is None and dtype == torch.float32))
    if fused and net is None and not graph:
        raise KernelError("fused=True needs the CPU, or float32 on a CUDA GPU")
    pairs: Pairs
    if net is not None:
        pairs = backend(device).Pairs(net, p.pair_grids[-1], x1, x2)
        batch = batching.fused_batch(p, total, device, "chain")
    elif graph:
        pairs = GraphPairs(p, x1, x2, graph_backend(device).Interpreter)
        batch = batching.fused_batch(p, total, device, "graph")
    else:
        compiled = batching.should_compile(p, total) if torch_compile is None else torch_compile
        pairs = PlainPairs(p, x1, x2, total, memory_budget or batching.default_memory_budget(device), compiled)
        batch = pairs.batch

    progress = batching.long_run(p, total) if progress is None else progress
    nngp = torch.empty(n1, n2, dtype=dtype, device=device)
    ntk = torch.empty_like(nngp)
    with tqdm(total=total, unit="pair", disable=not progress, desc="kernel", dynamic_ncols=True) as bar:
        for i, j in batching.pair_batches(n1, None if x2 is None else n2, batch, device):
            a, b = arch.readout.kernels(*pairs.means(i, j), trainable=not arch.fix_first_and_readout)
            nngp[i, j], ntk[i, j] = a, b
            if x2 is None:
                nngp[j, i], ntk[j, i] = a, b
            bar.update(len(i))
    bad = (~torch.isfinite(nngp)).sum().item() + (~torch.isfinite(ntk)).sum().item()
    if bad:
        raise KernelError(f"the kernel has {bad} non-finite entries (NaN or Inf); check the input images "
                          "and the weight/bias stds")
    return Kernels(nngp, ntk)


class PlainPairs:
    """The plain path: each image's statistics first, then pairs in batches through :func:`propagate`."""

    def __init__(self, p: Plan, x1: torch.Tensor, x2: torch.Tensor | None, total: int, budget: int,
                 compiled: bool):
        itemsize = x1.element_size()
        image_batch = batching.batch_size(p, p.image_grids, max(len(x1), len(x1 if x2 is None else x2)), budget,
                                          itemsize, compiled)
        self.p, self.x1, self.x2 = p, x1, x2
        self.stats1 = image_statistics(p, x1, image_batch)
        self.stats2 = self.stats1 if x2 is None else image_statistics(p, x2, image_batch)
        self.batch = batching.batch_size(p, p.pair_grids, total, budget, itemsize, compiled)
        self.run = batching.propagate_compiled if compiled else propagate

    def means(self, i: torch.Tensor, j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        count = len(i)
        if count < self.batch:  # pad the last batch: one shape, one compiled graph
            i, j = (torch.cat([t, t[-1:].expand(self.batch - count)]) for t in (i, j))
        xb = self.x1[j] if self.x2 is None else self.x2[j]
        sigma, theta = self.run(self.p, self.x1[i], xb, self.stats1.take(i), self.stats2.take(j))
        return sigma[:count], theta[:count]
