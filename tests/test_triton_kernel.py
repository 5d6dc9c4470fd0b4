"""What only the Triton kernel has, in Triton's interpreter where there is no GPU.

A batch split over several launches gives exactly the same kernels, and the angle function, run as
Triton code, equals atan2 to 1e-6 over zeros, tiny and huge magnitudes and correlations from
-1 to 1. Its checks against the plain path are shared with the CPU kernel in tests/test_fused.py.
Skipped where Triton is not installed (the `gpu` extra).
"""
import pytest
import torch
from test_fused import DEVICE, angle_grid, fused_kernel

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")

from nas_cntk.kernels.fused import cuda as triton_kernel  # noqa: E402 (needs Triton, checked above)


def test_launches_in_parts_agree(monkeypatch):
    spec = {"readout": "gap", "layers": [{"op": "conv", "kernel": 3}, {"op": "relu"}, {"op": "conv", "kernel": 3}]}
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(3))
    whole = fused_kernel("triton", spec, x, x)
    monkeypatch.setattr(triton_kernel, "_MAX_ITEMS", 50)  # one pair (36 shifts) per launch
    for a, b in zip(fused_kernel("triton", spec, x, x), whole):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@triton.jit
def _angle_kernel(y, x, out, n, BLOCK: tl.constexpr):
    k = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out + k, triton_kernel._angle(tl.load(y + k, mask=k < n), tl.load(x + k, mask=k < n)), mask=k < n)


def test_angle_equals_atan2():
    y, x = angle_grid()
    out = torch.empty_like(y, device=DEVICE)
    _angle_kernel[(triton.cdiv(len(y), 1024),)](y.to(DEVICE), x.to(DEVICE), out, len(y), BLOCK=1024)
    want = torch.atan2(y.double(), x.double())
    assert (out.cpu().double() - want).abs().max().item() < 1e-6
