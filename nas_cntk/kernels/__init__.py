"""The exact kernel: NNGP and NTK of a described network between two sets of images.

``plan`` (what a network needs before any image is seen) -> ``propagate`` (the plain path, op by
op; the reference) or ``fused`` (one fused kernel for chain networks, CPU and CUDA), tiled by
``batching``, driven by ``compute.kernel``.

May import: :mod:`nas_cntk.description`, :mod:`nas_cntk.errors`.
"""
from nas_cntk.kernels.compute import Kernels, kernel
from nas_cntk.kernels.plan import Plan, plan

__all__ = ["Kernels", "Plan", "kernel", "plan"]
