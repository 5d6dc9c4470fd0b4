"""`nas_cntk.kernel` against an independent plain float64 CNTK (tests/plain_cntk.py) and itself.

Equal to 1e-10 on 12 random architectures (conv / relu / pool chains, residual blocks, both
readouts, `fix`, non-square maps); the symmetric call equals the two-sided one and is exactly
symmetric; tiling into batches does not change the result; float32 agrees with float64 to 1e-5; the
compiled pass equals the eager one; a flatten readout keeps only the pixel pairs it needs (O(P), a
narrow band after pooling) while GAP keeps all P^2; a non-finite kernel is an error.
"""
import random

import numpy as np
import pytest
import torch
from plain_cntk import plain_kernel

import nas_cntk
from nas_cntk import KernelError


def random_architecture(seed: int) -> dict:
    """Chains of conv / relu / pool, with residual blocks (body ending in a conv) on Gaussian values."""
    rng = random.Random(seed)

    def conv() -> dict:
        return {"op": "conv", "kernel": rng.choice([1, 3, 5]),
                **({"weight_std": round(rng.uniform(0.5, 2), 3)} if rng.random() < 0.3 else {}),
                **({"bias_std": round(rng.uniform(0, 0.5), 3)} if rng.random() < 0.3 else {})}

    layers, pools, gaussian = [conv()], 0, True
    for _ in range(rng.randint(2, 5)):
        choice = rng.random()
        if choice < 0.4:
            layers += [{"op": "relu"}, conv()]
            gaussian = True
        elif choice < 0.6 and pools < 2:
            layers.append({"op": "avg_pool", "window": 2})
            pools += 1
        elif choice < 0.8 and gaussian:  # a residual on a ReLU output and a ReLU after it has no exact kernel
            layers.append({"op": "residual", "body": [{"op": "relu"}, conv()]})
        else:
            layers.append({"op": "relu"})  # also relu after relu or pooled relu: the identity
            gaussian = False
    if rng.random() < 0.7:
        layers.append({"op": "relu"})
    return {"weight_std": round(rng.uniform(1, 2), 3), "bias_std": rng.choice([0.0, 0.2]),
            "readout": rng.choice(["flatten", "gap"]), "fix_first_and_readout": rng.random() < 0.25,
            "layers": layers}


def images(n, seed, channels=3, height=8, width=8):
    return torch.randn(n, channels, height, width, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


@pytest.mark.parametrize("seed", range(12))
def test_engine_equals_plain_float64_reference(seed):
    spec = random_architecture(seed)
    height, width = (8, 8) if seed % 3 else (8, 12)  # non-square maps too
    x, y = images(3, seed, height=height, width=width), images(2, seed + 100, height=height, width=width)
    got = nas_cntk.kernel(spec, x, y, dtype=torch.float64)
    want = np.array([[plain_kernel(spec, a.numpy(), b.numpy()) for b in y] for a in x])
    np.testing.assert_allclose(got.nngp.numpy(), want[..., 0], rtol=1e-10, atol=0)
    np.testing.assert_allclose(got.ntk.numpy(), want[..., 1], rtol=1e-10, atol=0)


def test_symmetric_block_equals_rectangular_and_is_exactly_symmetric():
    spec = random_architecture(3)
    x = images(5, 0)
    sym, rect = nas_cntk.kernel(spec, x, dtype=torch.float64), nas_cntk.kernel(spec, x, x, dtype=torch.float64)
    for a, b in zip(sym, rect):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
        assert torch.equal(a, a.T)


@pytest.mark.parametrize("readout", ["flatten", "gap"])
def test_tiling_does_not_change_the_result(readout):
    spec = {**random_architecture(5), "readout": readout}
    x, y = images(4, 1), images(3, 2)
    whole = nas_cntk.kernel(spec, x, y, dtype=torch.float64)
    for budget in (1, 200_000):  # one pair per batch; a few pairs per batch with a padded last one
        tiled = nas_cntk.kernel(spec, x, y, dtype=torch.float64, memory_budget=budget)
        torch.testing.assert_close(tiled.nngp, whole.nngp, rtol=1e-13, atol=0)
        torch.testing.assert_close(tiled.ntk, whole.ntk, rtol=1e-13, atol=0)


def test_float32_agrees_with_float64_to_float32_rounding():
    spec = {"readout": "gap", "layers": [{"op": "conv", "kernel": 3}, {"op": "relu"}] * 4}
    x = images(4, 7, height=16, width=16)
    k64 = nas_cntk.kernel(spec, x, dtype=torch.float64)
    k32 = nas_cntk.kernel(spec, x.float())
    assert k32.nngp.dtype == torch.float32
    torch.testing.assert_close(k32.nngp.double(), k64.nngp, rtol=1e-5, atol=0)
    torch.testing.assert_close(k32.ntk.double(), k64.ntk, rtol=1e-5, atol=0)


def test_compiled_pass_equals_eager_pass():
    spec = {"readout": "gap", "layers": [{"op": "conv", "kernel": 3},
                                         {"op": "residual", "body": [{"op": "relu"}, {"op": "conv", "kernel": 3}]},
                                         {"op": "relu"}, {"op": "avg_pool", "window": 2},
                                         {"op": "conv", "kernel": 3}, {"op": "relu"}]}
    x, y = images(3, 3).float(), images(2, 4).float()
    eager = nas_cntk.kernel(spec, x, y, torch_compile=False)
    compiled = nas_cntk.kernel(spec, x, y, torch_compile=True)
    torch.testing.assert_close(compiled.nngp, eager.nngp, rtol=1e-5, atol=0)
    torch.testing.assert_close(compiled.ntk, eager.ntk, rtol=1e-5, atol=0)


def test_flatten_readout_holds_only_near_diagonal_pixel_pairs():
    from nas_cntk.kernels import plan
    flat = plan(nas_cntk.load({"readout": "flatten", "layers": [{"op": "conv", "kernel": 3}, {"op": "relu"}] * 3}),
                32, 32)
    assert max(g.entries for g in flat.pair_grids) == 32 * 32  # O(P): same-pixel entries only
    pooled = plan(nas_cntk.load({"readout": "flatten", "layers": [{"op": "conv", "kernel": 3},
                                                                  {"op": "avg_pool", "window": 2},
                                                                  {"op": "conv", "kernel": 3}]}), 32, 32)
    assert pooled.pair_grids[1].rows == (0, 1, 31)  # the band a 2x2 pool needs: shifts -1, 0, 1
    gap = plan(nas_cntk.load({"readout": "gap", "layers": [{"op": "conv", "kernel": 3}]}), 32, 32)
    assert gap.pair_grids[-1].entries == (32 * 32) ** 2  # O(P^2), each pixel pair once


def test_non_finite_kernel_is_an_error():
    x = images(2, 0)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(KernelError, match="non-finite"):
        nas_cntk.kernel({"readout": "gap", "layers": [{"op": "conv", "kernel": 3}, {"op": "relu"}]}, x)
