"""Architecture descriptions (nas-cntk's JSON format) as neural-tangents `stax` networks.

Runs only in the neural-tangents environment (.venv-nt: neural-tangents 0.6.5, JAX 0.4.23), never
in the project's. The mapping is the contract the reference values in tests/data/nt_reference.npz
rest on:

    conv      -> stax.Conv(1, (k, k), padding='SAME', W_std=w, b_std=b)
                 (w, b: the conv's own weight_std / bias_std, else the top-level ones; the output
                 channel count does not affect the kernels)
    dil_conv  -> the same stax.Conv, on the image's polyphase components (below)
    relu      -> stax.Relu()
    avg_pool  -> stax.AvgPool((w, w), strides=(w, w))          (default VALID padding)
    residual  -> stax.serial(stax.FanOut(2), stax.parallel(body, stax.Identity()), stax.FanInSum())
    readout   -> stax.Flatten() or stax.GlobalAvgPool(), then stax.Dense(1, W_std=w, b_std=b)
                 with the top-level weight_std / bias_std

Inputs are NCHW arrays (n, C, H, W), transposed to NHWC for neural-tangents. Both use the NTK
parameterisation with fan-in C k^2 (Flatten's kernel is the mean over pixels, i.e. fan-in C H W).

Dilated convs: stax.Conv takes no dilation in neural-tangents 0.6.5. A dilated conv (dilation d,
SAME padding) at pixel (d m + r, d n + c) reads only pixels of the same residue (r, c), as the dense
conv with the same weights does on that polyphase component (every d-th pixel from (r, c)); its
zero padding is the component's. So where every other conv is 1 x 1 and nothing pools or strides, the network
runs on each component on its own, with the same weights, as the dense network; its kernel between
x and x' is then the mean over component pairs (r, r') of the dense network's kernels between x_r
and x'_r' (GAP: every pair; flatten: r = r', where its pixel pairs lie), the readout being linear
in the last layer's moments. H and W must be multiples of d.

Where neural-tangents is exact: it sums the kernels of summed branches (exact when a residual
body ends in a conv with fresh weights) and refuses a ReLU, or a FanInSum, whose input is not a
zero-mean Gaussian (a ReLU output, a pooled ReLU output, the raw images). The `fix` variant
(`fix_first_and_readout: true`) has no stax equivalent and is refused here.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from neural_tangents import stax

DEFAULT_WEIGHT_STD = 2.0 ** 0.5
DEFAULT_BIAS_STD = 0.0


def _ops(layers: list[dict[str, Any]], w: float, b: float) -> list:
    out = []
    for layer in layers:
        op = layer["op"]
        if op in ("conv", "dil_conv"):  # a dilated conv on the polyphase components: see the docstring
            out.append(stax.Conv(1, (layer["kernel"],) * 2, padding="SAME",
                                 W_std=layer.get("weight_std", w), b_std=layer.get("bias_std", b)))
        elif op == "relu":
            out.append(stax.Relu())
        elif op == "avg_pool":
            window = (layer["window"],) * 2
            out.append(stax.AvgPool(window, strides=window))
        elif op == "residual":
            body = stax.serial(*_ops(layer["body"], w, b))
            out.append(stax.serial(stax.FanOut(2), stax.parallel(body, stax.Identity()), stax.FanInSum()))
        else:
            raise ValueError(f"unknown op {op!r}")
    return out


def to_stax(arch: dict[str, Any]) -> tuple:
    """(init_fn, apply_fn, kernel_fn) of the described network, output width 1."""
    if arch.get("fix_first_and_readout", False):
        raise ValueError("fix_first_and_readout has no neural-tangents equivalent")
    w = arch.get("weight_std", DEFAULT_WEIGHT_STD)
    b = arch.get("bias_std", DEFAULT_BIAS_STD)
    readout = {"flatten": stax.Flatten, "gap": stax.GlobalAvgPool}[arch["readout"]]
    return stax.serial(*_ops(arch["layers"], w, b), readout(), stax.Dense(1, W_std=w, b_std=b))


def nhwc(x_nchw: np.ndarray) -> np.ndarray:
    return np.transpose(np.asarray(x_nchw), (0, 2, 3, 1))


def dilation(layers: list[dict[str, Any]]) -> int:
    """The dilation d of the network's dilated convs (1: none), after checking that it runs on the
    polyphase components (one d, every other conv 1 x 1, no pool or stride)."""
    ops = list(_flattened(layers))
    found = {op.get("dilation", 2) for op in ops if op["op"] == "dil_conv"}
    if not found:
        return 1
    if len(found) > 1:
        raise ValueError(f"dilated convs of several dilations {sorted(found)}")
    for op in ops:
        if op.get("stride", 1) != 1 or op["op"] == "avg_pool" or (op["op"] == "conv" and op["kernel"] != 1):
            raise ValueError(f"{op}: beside dilated convs, only 1 x 1 convs, relus and residuals")
    return found.pop()


def _flattened(layers: list[dict[str, Any]]):
    """Every op of the layers, residuals' bodies and shortcuts included."""
    for layer in layers:
        if layer["op"] == "residual":
            for key in ("shortcut", "body"):
                yield from _flattened(layer.get(key, []))
        else:
            yield layer


def components(x: np.ndarray, d: int) -> np.ndarray:
    """NCHW images as their d x d polyphase components, (n * d^2, C, H / d, W / d), image-major."""
    n, c, h, w = x.shape
    if h % d or w % d:
        raise ValueError(f"{h}x{w} images do not split into components of dilation {d}")
    return x.reshape(n, c, h // d, d, w // d, d).transpose(0, 3, 5, 1, 2, 4).reshape(n * d * d, c, h // d, w // d)


def kernel(arch: dict[str, Any], x1: np.ndarray, x2: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The n1 x n2 NNGP and NTK of the network's output for NCHW inputs (x2=None: x1 with itself).

    The precision is the inputs' as far as JAX allows: call
    `jax.config.update('jax_enable_x64', True)` first for float64.
    """
    kernel_fn, d = to_stax(arch)[2], dilation(arch["layers"])
    if d > 1:
        x1, x2 = (None if x is None else components(np.asarray(x), d) for x in (x1, x2))
    k = kernel_fn(nhwc(x1), None if x2 is None else nhwc(x2), ("nngp", "ntk"))
    if d == 1:
        return np.asarray(k.nngp), np.asarray(k.ntk)
    n1, n2 = len(x1) // d**2, (len(x1) if x2 is None else len(x2)) // d**2

    def combined(m) -> np.ndarray:
        m = np.asarray(m).reshape(n1, d * d, n2, d * d)
        return m.mean(axis=(1, 3)) if arch["readout"] == "gap" else np.einsum("arbr->ab", m) / d**2

    return combined(k.nngp), combined(k.ntk)
