"""The fused chain kernels (CPU: Numba; GPU: Triton) against the float64 plain path.

Triton runs in its interpreter where there is no GPU (its cases are skipped where Triton is not
installed: the `gpu` extra). Both equal the plain path (itself checked
against neural-tangents and plain float64 code) to 1e-5 on random chains (1-4 convs of kernel 1, 3
or 5, random stds, both readouts, `fix`, odd image sizes, an image paired with itself) and on the
paper's network with a ReLU of a ReLU; their per-image variances equal the plain path's; pools and
branches are not chains; `nas_cntk.kernel` takes the fused path for chains and matches
`fused=False`; the CPU angle function equals atan2 over zeros, 1e-30 to 1e30 and correlations from
-1 to 1.
"""
import math
import random

import numpy as np
import pytest
import torch

import nas_cntk
from nas_cntk.description.architecture import load
from nas_cntk.kernels import fused, plan
from nas_cntk.kernels.fused import cpu as cpu_kernel
from nas_cntk.kernels.propagate import image_statistics

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BACKENDS = ("cpu", "triton")


def backend_module(backend: str):
    """The fused chain kernel's module and device; Triton's cases are skipped where Triton is not installed."""
    if backend == "cpu":
        return cpu_kernel, "cpu"
    pytest.importorskip("triton")
    from nas_cntk.kernels.fused import cuda

    return cuda, DEVICE


def random_chain(seed: int) -> dict:
    """A chain of convs (k = 1, 3, 5, random stds), ReLUs (also ReLU after ReLU) and either readout."""
    rng = random.Random(seed)

    def conv() -> dict:
        return {"op": "conv", "kernel": rng.choice([1, 3, 5]),
                **({"weight_std": round(rng.uniform(0.5, 2), 3)} if rng.random() < 0.5 else {}),
                **({"bias_std": round(rng.uniform(0, 0.5), 3)} if rng.random() < 0.5 else {})}

    layers = [conv()]
    for _ in range(rng.randint(0, 3)):
        layers += [{"op": "relu"}] * rng.choice([1, 1, 2]) + [conv()]
    if rng.random() < 0.7:
        layers.append({"op": "relu"})
    return {"weight_std": round(rng.uniform(1, 2), 3), "bias_std": rng.choice([0.0, 0.3]),
            "readout": rng.choice(["flatten", "gap"]), "fix_first_and_readout": rng.random() < 0.4,
            "layers": layers}


def fused_kernel(backend: str, spec, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The full (n1, n2) NNGP and NTK through one fused kernel, for all pairs at once."""
    module, device = backend_module(backend)
    arch = load(spec)
    pairs = module.Pairs(fused.chain(arch), arch.readout.grid(*x1.shape[2:]), x1.to(device), x2.to(device))
    i, j = (k.flatten().to(device) for k in torch.meshgrid(torch.arange(len(x1)), torch.arange(len(x2)), indexing="ij"))
    nngp, ntk = arch.readout.kernels(*pairs.means(i, j), trainable=not arch.fix_first_and_readout)
    return nngp.view(len(x1), len(x2)).cpu(), ntk.view(len(x1), len(x2)).cpu()


def assert_close(got: torch.Tensor, want: torch.Tensor) -> None:
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6 * want.abs().max().item())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(10))
def test_equals_the_plain_engine(backend, seed):
    spec = random_chain(seed)
    height, width = [(5, 7), (6, 6), (8, 8)][seed % 3]
    # One channel through a 1x1 conv makes every correlation +-1, where float32 keeps only half its
    # digits in the ReLU angle (the plain float32 path too): three channels there.
    channels = 3 if seed % 2 or spec["layers"][0]["kernel"] == 1 else 1
    g = torch.Generator().manual_seed(seed)
    x1, x2 = (torch.randn(n, channels, height, width, generator=g) for n in (2, 2))
    x2 = torch.cat([x2, x1[1:]])  # and a pair of an image with itself, where the ReLU angles are 0
    want = nas_cntk.kernel(spec, x1.double(), x2.double(), dtype=torch.float64, torch_compile=False)  # the true values
    nngp, ntk = fused_kernel(backend, spec, x1, x2)
    assert_close(nngp, want.nngp)
    assert_close(ntk, want.ntk)


@pytest.mark.parametrize("backend", [*BACKENDS, "plain"])
def test_moments_past_1e19_stay_finite_and_exact(backend):
    """Each conv-ReLU layer of weight std 8 multiplies the variance by 32: after 13 layers the squares of
    moments (v v' - Sigma^2, the unscaled ReLU rule) pass float32's largest number and turn into NaN."""
    spec = {"weight_std": 8.0, "readout": "gap", "layers": [{"op": "conv", "kernel": 3}, {"op": "relu"}] * 16}
    g = torch.Generator().manual_seed(3)
    x1, x2 = (torch.randn(n, 3, 5, 5, generator=g) for n in (2, 2))
    x2 = torch.cat([x2, x1[1:]])
    want = nas_cntk.kernel(spec, x1.double(), x2.double(), dtype=torch.float64, torch_compile=False)
    assert want.nngp.abs().max() > 1e22  # Sigma^2 > 1e44: float32 overflows on the unscaled rule
    if backend == "plain":
        got = nas_cntk.kernel(spec, x1, x2, fused=False, torch_compile=False)
        nngp, ntk = got.nngp, got.ntk
    else:
        nngp, ntk = fused_kernel(backend, spec, x1, x2)
    torch.testing.assert_close(nngp.double(), want.nngp, rtol=1e-4, atol=0)
    torch.testing.assert_close(ntk.double(), want.ntk, rtol=1e-4, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("readout", ["flatten", "gap"])
def test_paper_network_and_identity_relus(backend, readout):
    """The paper's conv3-relu stack (here depth 3, `fix`), with a redundant ReLU of a ReLU."""
    spec = {"readout": readout, "fix_first_and_readout": True,
            "layers": [{"op": "conv", "kernel": 3}, {"op": "relu"}] * 3 + [{"op": "relu"}]}
    x = torch.randn(3, 3, 6, 5, generator=torch.Generator().manual_seed(1))
    want = nas_cntk.kernel(spec, x.double(), x.double(), dtype=torch.float64, torch_compile=False)
    nngp, ntk = fused_kernel(backend, spec, x, x)
    assert len(fused.chain(load(spec)).layers) == 6
    assert_close(nngp, want.nngp)
    assert_close(ntk, want.ntk)


@pytest.mark.parametrize("backend", BACKENDS)
def test_image_variances_equal_the_engines(backend):
    module, device = backend_module(backend)
    spec = random_chain(4)
    arch, x = load(spec), torch.randn(5, 3, 7, 6, generator=torch.Generator().manual_seed(2))
    net = fused.chain(arch)
    stats = image_statistics(plan(arch, 7, 6), x, batch=64)
    want = torch.stack([stats.variance[n] for n in net.variance_nodes])
    torch.testing.assert_close(module.image_variances(net, x.to(device)).cpu(), want, rtol=1e-5, atol=0)


def test_chain_refuses_pools_and_branches():
    conv = {"op": "conv", "kernel": 3}
    pooled = {"readout": "gap", "layers": [conv, {"op": "relu"}, {"op": "avg_pool", "window": 2}]}
    residual = {"readout": "gap",
                "layers": [conv, {"op": "residual", "body": [{"op": "relu"}, conv]}, {"op": "relu"}]}
    assert fused.chain(load(pooled)) is None
    assert fused.chain(load(residual)) is None
    net = fused.chain(load({"readout": "gap", "fix_first_and_readout": True,
                             "layers": [conv, {"op": "relu"}, {"op": "relu"}, conv]}))
    assert [layer.kind for layer in net.layers] == ["conv", "relu", "conv"]
    assert net.variance_nodes == (1,)
    assert [layer.trainable for layer in net.layers] == [False, True, True]


def test_kernel_takes_the_fused_path_for_chains():
    """nas_cntk.kernel on a chain (symmetric and two-sided) equals its plain path."""
    spec = random_chain(1)
    g = torch.Generator().manual_seed(5)
    x1, x2 = torch.randn(4, 3, 6, 6, generator=g), torch.randn(3, 3, 6, 6, generator=g)
    for args in ((x1,), (x1, x2)):
        fast = nas_cntk.kernel(spec, *args)
        plain = nas_cntk.kernel(spec, *args, fused=False, torch_compile=False)
        assert_close(fast.nngp, plain.nngp.double())
        assert_close(fast.ntk, plain.ntk.double())


def angle_grid() -> tuple[torch.Tensor, torch.Tensor]:
    """(y >= 0, x) over zeros, tiny and huge magnitudes, and unit vectors at correlations -1 .. 1."""
    magnitudes = torch.tensor([0.0, 1e-30, 1e-12, 1e-6, 0.01, 0.3, 1.0, 3.0, 1e6, 1e12, 1e30])
    y = torch.cat([magnitudes, torch.rand(200, generator=torch.Generator().manual_seed(0)) * 2])
    x = torch.cat([-y, y])
    y, x = (t.flatten() for t in torch.meshgrid(y, x, indexing="ij"))
    angles = torch.linspace(0, math.pi, 1001, dtype=torch.float64)
    return (torch.cat([y, angles.sin().float(), torch.zeros(2)]),
            torch.cat([x, angles.cos().float(), torch.tensor([1.0, -1.0])]))


def test_cpu_angle_equals_atan2():
    y, x = angle_grid()
    got = np.array([cpu_kernel._angle(np.float32(a), np.float32(b)) for a, b in zip(y.tolist(), x.tolist())])
    assert (torch.from_numpy(got).double() - torch.atan2(y.double(), x.double())).abs().max().item() < 1e-6
