"""The fused graph kernel (CPU, Numba) against the plain path, on every shape of network there is.

Random networks of both search spaces (the default space's residual, pooled, flatten and GAP
networks; NAS-Bench-201 cells, every one of its five edge ops, one and two cells per stage, 8x8 and
16x16), strided and dilated convs and the `fix` variant: in float32 within 1e-5 of the plain
float64 path, and in float64 within 1e-10 of it. Each batch includes an image paired with itself, where the ReLU
angles are exactly 0 only if the variances are repeated bit for bit. `nas_cntk.kernel` takes the
graph kernel on the CPU for every network that is not a chain. The Triton kernel (float32, 1e-5) runs
four of these networks in its interpreter where there is no GPU, which covers each of its
instructions, and all of them compiled on a GPU (skipped elsewhere: the interpreter is too slow).
"""
from __future__ import annotations

import random

import optuna
import pytest
import torch
import torch.nn.functional as F
from test_fused import DEVICE

import nas_cntk
from nas_cntk.description import nasbench201, nasbench201_network
from nas_cntk.errors import InvalidCandidate
from nas_cntk.kernels import plan
from nas_cntk.kernels.fused.graph import GraphPairs
from nas_cntk.kernels.fused.graph import cpu as graph_cpu
from nas_cntk.search import load_space
from nas_cntk.search.space import check_candidate


def images(n: int, seed: int, size: int) -> torch.Tensor:
    """Noise plus a smooth part, so that pooled and skipped branches of one node correlate strongly."""
    g = torch.Generator().manual_seed(seed)
    smooth = F.interpolate(torch.randn(n, 3, 3, 3, generator=g, dtype=torch.float64), size=(size, size),
                           mode="bilinear", align_corners=True)
    return 0.5 * torch.randn(n, 3, size, size, generator=g, dtype=torch.float64) + smooth


def default_space_networks(count: int, resolution: int) -> list[nas_cntk.Architecture]:
    space, found = load_space("default"), []
    sampler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7))
    while len(found) < count:
        try:
            arch = space.suggest(sampler.ask())
            check_candidate(arch, resolution)
        except InvalidCandidate:
            continue
        found.append(arch)
    return found


def genotype(seed: int) -> str:
    rng = random.Random(seed)
    return nasbench201.genotype_string(tuple(tuple(rng.choice(nasbench201.EDGE_OPS) for _ in range(j))
                                             for j in range(1, nasbench201.NODES)))


def graph_kernel(arch, x1: torch.Tensor, x2: torch.Tensor, interpreter) -> tuple[torch.Tensor, torch.Tensor]:
    """All pairs of x1 and x2 through one GraphPairs."""
    pairs = GraphPairs(plan(arch, *x1.shape[2:]), x1, x2, interpreter)
    i, j = (k.flatten() for k in torch.meshgrid(torch.arange(len(x1)), torch.arange(len(x2)), indexing="ij"))
    nngp, ntk = arch.readout.kernels(*pairs.means(i, j), trainable=not arch.fix_first_and_readout)
    return nngp.view(len(x1), len(x2)).double(), ntk.view(len(x1), len(x2)).double()


def check(arch, size: int, seed: int, backend: str = "cpu") -> None:
    """The graph kernel against the plain path in float64 on the CPU: 2 x 3 pairs on the CPU
    interpreter, in float32 and float64; 1 x 2 on Triton (float32), whose interpreter is slow."""
    if backend == "cpu":
        interpreter, device, count = graph_cpu.Interpreter, "cpu", 2
        dtypes = ((torch.float32, 1e-5), (torch.float64, 1e-10))
    else:
        pytest.importorskip("triton")  # the gpu extra
        from nas_cntk.kernels.fused.graph import cuda as graph_cuda

        interpreter, device, dtypes, count = graph_cuda.Interpreter, DEVICE, ((torch.float32, 1e-5),), 1
    x1, x2 = images(count, seed, size), images(count, seed + 1, size)
    x2 = torch.cat([x2, x1[-1:]])  # an image with itself
    want = nas_cntk.kernel(arch, x1, x2, dtype=torch.float64, fused=False, torch_compile=False)
    for dtype, rtol in dtypes:
        nngp, ntk = graph_kernel(arch, x1.to(device, dtype), x2.to(device, dtype), interpreter)
        for got, exact, name in ((nngp, want.nngp, "NNGP"), (ntk, want.ntk, "NTK")):
            # max(.., tiny): a cell of `none` edges is a constant network, whose kernel is exactly 0
            error = (got.cpu() - exact).abs().max().item() / max(exact.abs().max().item(), 1e-300)
            assert error <= rtol, f"{arch.summary()} {backend} {dtype} {name}: relative error {error:.2e} > {rtol:g}"


BACKENDS = ["cpu", pytest.param("triton", marks=pytest.mark.skipif(
    DEVICE != "cuda", reason="Triton compiled needs a GPU; its interpreter runs test_triton_graph_kernel"))]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", range(8))
def test_default_space_networks(k: int, backend: str) -> None:
    check(default_space_networks(8, 8)[k], 8, k, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(8))
def test_nasbench201_cells(seed: int, backend: str) -> None:
    check(nasbench201_network(genotype(seed), 1 + seed % 2), 8, seed, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", nasbench201.EDGE_OPS)
def test_each_nasbench201_op_on_every_edge_at_16x16(op: str, backend: str) -> None:
    cell = "+".join("|" + "|".join(f"{op}~{i}" for i in range(j)) + "|" for j in range(1, 4))
    check(nasbench201_network(cell, 1), 16, 3, backend)


def strided_flatten_fix_network() -> nas_cntk.Architecture:
    return nas_cntk.load({"readout": "flatten", "fix_first_and_readout": True, "bias_std": 0.2, "layers": [
        {"op": "conv", "kernel": 3}, {"op": "relu"}, {"op": "conv", "kernel": 3, "stride": 2},
        {"op": "residual", "body": [{"op": "relu"}, {"op": "conv", "kernel": 3}]},
        {"op": "avg_pool", "window": 3, "stride": 1}, {"op": "relu"}]})


def test_strided_convs_flatten_and_the_fix_variant() -> None:
    check(strided_flatten_fix_network(), 8, 11)


def dilated_network() -> nas_cntk.Architecture:
    """Dilated convs where a conv may stand: in a chain, on a residual branch, before a pool, strided."""
    dilated = {"op": "dil_conv", "kernel": 3, "dilation": 2}
    return nas_cntk.load({"readout": "flatten", "bias_std": 0.1, "layers": [
        {"op": "conv", "kernel": 3}, {"op": "relu"}, dilated,
        {"op": "residual", "body": [{"op": "relu"}, {**dilated, "kernel": 5}]}, {"op": "avg_pool", "window": 2},
        {"op": "relu"}, {**dilated, "stride": 2}, {"op": "relu"}]})


def test_dilated_convs() -> None:
    check(dilated_network(), 8, 13)


EVERY_OP_CELL = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"


@pytest.mark.parametrize("network", ["every NAS-Bench-201 op, 4x4", "default space, 8x8", "strided, flatten, fix",
                                     "dilated, 8x8"])
def test_triton_graph_kernel(network: str) -> None:
    """Every instruction of the Triton interpreter (in Triton's interpreter where there is no GPU)."""
    arch, size = {"every NAS-Bench-201 op, 4x4": (nasbench201_network(EVERY_OP_CELL, 1), 4),
                  "default space, 8x8": (default_space_networks(8, 8)[0], 8),
                  "strided, flatten, fix": (strided_flatten_fix_network(), 8),
                  "dilated, 8x8": (dilated_network(), 8)}[network]
    check(arch, size, 5, "triton")


def test_kernel_takes_the_graph_kernel_for_networks_that_are_not_chains() -> None:
    arch = nasbench201_network(genotype(3), 1)
    x1, x2 = images(3, 0, 8).float(), images(2, 1, 8).float()
    for args in ((x1,), (x1, x2)):
        fast = nas_cntk.kernel(arch, *args)
        plain = nas_cntk.kernel(arch, *args, fused=False, torch_compile=False)
        torch.testing.assert_close(fast.nngp, plain.nngp, rtol=1e-5, atol=0)
        torch.testing.assert_close(fast.ntk, plain.ntk, rtol=1e-5, atol=0)
