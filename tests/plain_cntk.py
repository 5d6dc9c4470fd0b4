"""A plain float64 CNTK written straight from docs/cntk-math.md: full P x P matrices, loops.

Independent of the engine's layout on purpose: it is the reference the engine is tested against
(tests/test_kernel.py, to 1e-10) and that tests/plain_nb201.py is checked against on chain-shaped
cells. Covers chains of conv / relu / avg_pool, the `fix` variant, a ReLU of a ReLU output (the
identity) and residual blocks whose body ends in a conv (where the cross terms vanish); dependent
branches are checked against wide finite networks instead (tests/test_finite_ntk.py).
"""
import math

import numpy as np


def _conv(m, k):
    h, w = m.shape[0], m.shape[1]
    r = k // 2
    padded = np.pad(m, [(r, r)] * 4)
    out = np.zeros_like(m)
    for a in range(k):
        for b in range(k):
            out += padded[a:a + h, b:b + w, a:a + h, b:b + w]
    return out / k**2


def _pool(m, win):
    h, w = m.shape[0] // win, m.shape[1] // win
    return m.reshape(h, win, w, win, h, win, w, win).mean(axis=(1, 3, 5, 7))


def _relu(s, t, vx, vy):
    prod = vx[:, :, None, None] * vy[None, None, :, :]
    c = np.clip(s / np.sqrt(prod), -1, 1)
    angle = np.arccos(c)
    k = np.sqrt(prod) * (np.sin(angle) + (math.pi - angle) * c) / (2 * math.pi)
    return k, t * (math.pi - angle) / (2 * math.pi)


def _layers(spec, layers, state, first):
    """state: dict of (sigma, theta) for the pairs 'xx', 'yy', 'xy' as (H, W, H, W) arrays, and
    'nonnegative': whether the value is a (pooled) ReLU output, on which a ReLU is the identity."""
    for layer in layers:
        op = layer["op"]
        if op == "relu" and state["nonnegative"]:
            continue
        state["nonnegative"] = op == "relu" or (op == "avg_pool" and state["nonnegative"])
        if op == "conv":
            w2 = layer.get("weight_std", spec["weight_std"]) ** 2
            b2 = layer.get("bias_std", spec["bias_std"]) ** 2
            for key, (s, t) in _pairs(state):
                s2 = w2 * _conv(s, layer["kernel"]) + b2
                fixed = first[0] and spec.get("fix_first_and_readout", False)
                state[key] = s2, np.zeros_like(s2) if fixed else w2 * _conv(t, layer["kernel"]) + s2
            first[0] = False
        elif op == "relu":
            diag = {key: np.einsum("ijij->ij", state[key][0]) for key in ("xx", "yy")}
            for key, (s, t) in _pairs(state):
                state[key] = _relu(s, t, diag[key[0] * 2], diag[key[1] * 2])
        elif op == "avg_pool":
            state.update({key: (_pool(s, layer["window"]), _pool(t, layer["window"])) for key, (s, t) in _pairs(state)})
        elif op == "residual":
            assert layer["body"] and layer["body"][-1]["op"] == "conv", "only bodies ending in a conv"
            assert not state["nonnegative"], "only Gaussian branch points"
            body = _layers(spec, layer["body"], dict(state), first)
            state = {key: (s + body[key][0], t + body[key][1]) for key, (s, t) in _pairs(state)}
            state["nonnegative"] = False
    return state


def _pairs(state):
    return [(key, value) for key, value in list(state.items()) if key != "nonnegative"]


def plain_kernel(spec, x, y):
    """NNGP and NTK between two images (C, H, W) as floats."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    inputs = {"xx": (x, x), "yy": (y, y), "xy": (x, y)}
    state = {key: (np.einsum("cij,ckl->ijkl", a, b) / a.shape[0],) * 1 for key, (a, b) in inputs.items()}
    state = {key: (s[0], np.zeros_like(s[0])) for key, s in state.items()}
    state["nonnegative"] = False
    s, t = _layers(spec, spec["layers"], state, [True])["xy"]
    h, w = s.shape[:2]
    if spec["readout"] == "gap":
        s_out, t_out = s.mean(), t.mean()
    else:
        s_out, t_out = np.einsum("ijij->", s) / (h * w), np.einsum("ijij->", t) / (h * w)
    nngp = spec["weight_std"] ** 2 * s_out + spec["bias_std"] ** 2
    ntk = spec["weight_std"] ** 2 * t_out
    return nngp, ntk if spec.get("fix_first_and_readout", False) else ntk + nngp
