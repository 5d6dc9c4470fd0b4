"""The exact kernel against wide finite networks built from the same description.

A finite network of width n gives an empirical NTK J(x) J(x')^T (gradients of its single output with
respect to the trained parameters: all, or all but the first conv and the readout for `fix`) and an
empirical NNGP w^2 <h(x), h(x')> / fan_in + b^2 over the readout's input features h. The mean of 64
networks of width 128 must lie within 4 standard errors (estimated from the networks, themselves
under 5%) plus a bias allowance of 2 / n of the exact kernel, in relative Frobenius norm: on chains,
pools, `fix`, residuals with dependent branches, a NAS-Bench-201 cell with dependent pooled and
skipped branches, the benchmark's reduction block and dilated convs. The mistakes this guards
against are far larger: summing dependent branches as independent, as neural-tangents does, is 50% off on
`residual_empty` (var(x + x) = 4 var(x), not 2), a missing Stein factor of 1/2 on
`residual_relu_on_gaussian` about 25%. A single network's NTK error falls like 1 / sqrt(width).
"""
from __future__ import annotations

import pytest
import torch

import nas_cntk

WIDTH, NETWORKS = 128, 64

CONV = {"op": "conv", "kernel": 3}
RELU = {"op": "relu"}
POOL = {"op": "avg_pool", "window": 2}
DILATED = {"op": "dil_conv", "kernel": 3, "dilation": 2}

ARCHITECTURES = {
    "flatten_chain_bias": {"readout": "flatten", "bias_std": 0.1, "layers": [CONV, RELU, CONV, RELU]},
    "gap_pool": {"readout": "gap", "layers": [CONV, RELU, POOL, CONV, RELU]},
    "gap_fix_first_and_readout": {"readout": "gap", "fix_first_and_readout": True, "layers": [CONV, RELU, CONV, RELU]},
    # Residuals whose two branches are dependent: the cross-covariances count.
    "residual_empty": {"readout": "gap", "layers": [CONV, {"op": "residual", "body": []}, RELU, CONV, RELU]},
    "residual_relu_on_gaussian": {"readout": "flatten",
                                  "layers": [CONV, {"op": "residual", "body": [RELU]}, CONV, RELU]},
    "residual_on_nonnegative": {"readout": "gap",
                                "layers": [CONV, RELU, {"op": "residual", "body": [CONV, RELU]}, RELU, CONV, RELU]},
    # A NAS-Bench-201 cell whose sums join pooled and skipped copies of one node (dependent), and
    # the benchmark's reduction block (strided conv body, pooled 1x1-conv shortcut).
    "nasbench201_cell": {"readout": "gap", "layers": [CONV, {"op": "cell", "genotype": (
        "|avg_pool_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_1x1~2|")}, RELU]},
    "nasbench201_reduction": {"readout": "gap", "layers": [CONV, {
        "op": "residual", "body": [RELU, {"op": "conv", "kernel": 3, "stride": 2}, RELU, CONV],
        "shortcut": [POOL, {"op": "conv", "kernel": 1}]}, RELU]},
    # Dilated convs (taps 2 pixels apart), 3x3 and 5x5 strided.
    "dilated_convs": {"readout": "gap", "layers": [CONV, RELU, DILATED, RELU, {**DILATED, "kernel": 5, "stride": 2},
                                                   RELU]},
}


def images() -> torch.Tensor:
    return torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def empirical_kernels(arch: nas_cntk.Architecture, x: torch.Tensor, width: int,
                      seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(NNGP, NTK) of one finite network of the given width, float64."""
    torch.manual_seed(seed)
    net = arch.module(width, in_channels=x.shape[1], outputs=1, input_size=tuple(x.shape[2:])).double()
    fixed = {*net.layers[1].parameters(), *net.readout.parameters()} if arch.fix_first_and_readout else set()
    trained = [p for p in net.parameters() if p not in fixed]
    gradients = []
    for image in x:
        output = net(image[None])[0, 0]
        gradients.append(torch.cat([g.flatten() for g in torch.autograd.grad(output, trained)]))
    jacobian = torch.stack(gradients)

    features = {}
    net.readout.register_forward_hook(lambda module, inputs, output: features.update(h=inputs[0]))
    with torch.no_grad():
        net(x)
    readout = net.readout
    h = features["h"].flatten(1) if readout.readout == "flatten" else features["h"].mean(dim=(2, 3))
    nngp = readout.weight_scale**2 * h @ h.T + readout.bias_scale**2
    return nngp, jacobian @ jacobian.T


def relative_error(estimate: torch.Tensor, exact: torch.Tensor) -> float:
    return (torch.linalg.norm(estimate - exact) / torch.linalg.norm(exact)).item()


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_mean_of_wide_networks_matches_exact_kernel(name: str) -> None:
    arch = nas_cntk.load(ARCHITECTURES[name])
    x = images()
    exact = nas_cntk.kernel(arch, x, dtype=torch.float64)
    pairs = [empirical_kernels(arch, x, WIDTH, seed) for seed in range(NETWORKS)]
    for samples, limit in zip(map(torch.stack, zip(*pairs)), exact):
        standard_error = (torch.linalg.norm(samples.std(dim=0)) / NETWORKS**0.5 / torch.linalg.norm(limit)).item()
        assert standard_error < 0.05
        assert relative_error(samples.mean(dim=0), limit) < 4 * standard_error + 2 / WIDTH

def test_single_networks_converge_as_width_grows() -> None:
    """A single network's NTK error falls like 1 / sqrt(width): 16x the width, about 4x less error."""
    arch = nas_cntk.load(ARCHITECTURES["flatten_chain_bias"])
    x = images()
    exact = nas_cntk.kernel(arch, x, dtype=torch.float64).ntk

    def mean_error(width: int) -> float:
        return sum(relative_error(empirical_kernels(arch, x, width, seed)[1], exact) for seed in range(8)) / 8

    narrow, wide = mean_error(32), mean_error(512)
    assert wide < narrow / 2
    assert wide < 0.1
