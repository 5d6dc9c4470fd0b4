"""A plain float64 NNGP / NTK of NAS-Bench-201 macro networks: full P x P matrices, numpy, loops.

Written from the maths alone (docs/cntk-math.md and NAS-Bench-201's definition), independent of the
engine on purpose: the reference that tests/test_nb201_kernel.py holds the engine's cells to (1e-8
in float64). An image (C, H, W) has pixels p = i * W + j; a value carries, for the pairs 'xx', 'yy',
'xy', P x P matrices Sigma (NNGP) and Theta (NTK); every operator is an explicit P x P matrix (a
k x k conv is sum_a S_a M S_a^T over shift matrices S_a, a stride a selection, a pool an averaging),
in neural-tangents' NTK parameterisation.

In a cell every node is a sum of linear maps of independent Gaussian sources (the cell input and
each conv output, fresh weights each): node = sum_s L_s source_s, so Sigma(node) =
sum_s L_s Sigma_s L_s^T with each source's maps summed first. Skips and 3x3 pools are such maps and
keep the dependence between branches: two skips of one node give 2x the value, 4x its Sigma.
"""
from __future__ import annotations

import math

import numpy as np

PAIRS = ("xx", "yy", "xy")
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


# ---------------------------------------------------------------- genotypes

def parse_genotype(text: str) -> tuple[tuple[str, ...], ...]:
    """'|a~0|+|b~0|c~1|+|d~0|e~1|f~2|' -> (('a',), ('b', 'c'), ('d', 'e', 'f'))."""
    nodes = text.strip().split("+")
    if len(nodes) != 3:
        raise ValueError(f"expected 3 nodes separated by '+': {text!r}")
    out = []
    for j, node in enumerate(nodes, start=1):
        edges = [e for e in node.split("|") if e]
        if len(edges) != j:
            raise ValueError(f"node {j} needs {j} edges: {node!r}")
        ops = []
        for i, edge in enumerate(edges):
            op, source = edge.split("~")
            if op not in OPS or int(source) != i:
                raise ValueError(f"bad edge {edge!r} for node {j}")
            ops.append(op)
        out.append(tuple(ops))
    return tuple(out)


# ---------------------------------------------------------------- pixel matrices

def shift_matrix(h: int, w: int, di: int, dj: int) -> np.ndarray:
    """S[p, p + (di, dj)] = 1 where p + (di, dj) is inside the image (zero padding elsewhere)."""
    s = np.zeros((h * w, h * w))
    for i in range(h):
        for j in range(w):
            if 0 <= i + di < h and 0 <= j + dj < w:
                s[i * w + j, (i + di) * w + (j + dj)] = 1.0
    return s


def stride_matrix(h: int, w: int, stride: int) -> np.ndarray:
    """D[(I, J), (stride I, stride J)] = 1: keeps the outputs a strided conv computes."""
    ho, wo = (h + stride - 1) // stride, (w + stride - 1) // stride
    d = np.zeros((ho * wo, h * w))
    for i in range(ho):
        for j in range(wo):
            d[i * wo + j, (stride * i) * w + stride * j] = 1.0
    return d


def block_pool_matrix(h: int, w: int, window: int) -> np.ndarray:
    """Average pooling, window = stride, no padding: Q[(I, J), p] = 1/window^2 for p in block (I, J)."""
    ho, wo = h // window, w // window
    q = np.zeros((ho * wo, h * w))
    for i in range(ho):
        for j in range(wo):
            for a in range(window):
                for b in range(window):
                    q[i * wo + j, (window * i + a) * w + window * j + b] = 1.0 / window**2
    return q


def avg_pool3_matrix(h: int, w: int) -> np.ndarray:
    """nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False): A[p, p + a] = 1 / count(p)."""
    m = np.zeros((h * w, h * w))
    for i in range(h):
        for j in range(w):
            window = [(i + a) * w + (j + b) for a in (-1, 0, 1) for b in (-1, 0, 1)
                      if 0 <= i + a < h and 0 <= j + b < w]
            m[i * w + j, window] = 1.0 / len(window)
    return m


# ---------------------------------------------------------------- layer maps on a value
# A value is {'h': H, 'w': W, 'xx': (Sigma, Theta), 'yy': ..., 'xy': ...}.

def input_value(x: np.ndarray, y: np.ndarray) -> dict:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    c, h, w = x.shape
    fx, fy = x.reshape(c, h * w), y.reshape(c, h * w)
    value = {"h": h, "w": w}
    for key, (a, b) in {"xx": (fx, fx), "yy": (fy, fy), "xy": (fx, fy)}.items():
        s = a.T @ b / c
        value[key] = (s, np.zeros_like(s))
    return value


def zero_value(h: int, w: int) -> dict:
    z = np.zeros((h * w, h * w))
    return {"h": h, "w": w, **{key: (z, z) for key in PAIRS}}


def linear(value: dict, left: np.ndarray, h: int, w: int) -> dict:
    """A deterministic linear pixel map L on both images: Sigma -> L Sigma L^T, Theta likewise."""
    out = {"h": h, "w": w}
    for key in PAIRS:
        s, t = value[key]
        out[key] = (left @ s @ left.T, left @ t @ left.T)
    return out


def conv(value: dict, k: int, w_std: float, b_std: float, stride: int = 1) -> dict:
    """k x k conv, zero padding k // 2, fresh weights; stride s keeps the outputs at multiples of s."""
    h, w = value["h"], value["w"]
    r = k // 2
    shifts = [shift_matrix(h, w, di, dj) for di in range(-r, r + 1) for dj in range(-r, r + 1)]
    d = stride_matrix(h, w, stride)
    ho, wo = (h + stride - 1) // stride, (w + stride - 1) // stride
    out = {"h": ho, "w": wo}
    for key in PAIRS:
        s, t = value[key]
        s_sum = sum(a @ s @ a.T for a in shifts)
        t_sum = sum(a @ t @ a.T for a in shifts)
        s_new = d @ (w_std**2 / k**2 * s_sum) @ d.T + b_std**2
        t_new = d @ (w_std**2 / k**2 * t_sum) @ d.T + s_new
        out[key] = (s_new, t_new)
    return out


def relu(value: dict) -> dict:
    """ReLU of a centred Gaussian (arc-cosine kernels); a zero-variance entry stays exactly zero."""
    vx, vy = np.diag(value["xx"][0]).copy(), np.diag(value["yy"][0]).copy()
    var = {"x": vx, "y": vy}
    out = {"h": value["h"], "w": value["w"]}
    for key in PAIRS:
        s, t = value[key]
        prod = np.outer(var[key[0]], var[key[1]])
        root = np.sqrt(prod)
        safe = np.where(root > 0, root, 1.0)
        c = np.where(root > 0, np.clip(s / safe, -1.0, 1.0), 0.0)
        angle = np.arccos(c)
        k = root * (np.sin(angle) + (math.pi - angle) * c) / (2 * math.pi)
        out[key] = (k, t * (math.pi - angle) / (2 * math.pi))
    return out


def add(*values: dict) -> dict:
    """Sum of independent values (each ends in its own fresh conv, or is otherwise independent)."""
    out = {"h": values[0]["h"], "w": values[0]["w"]}
    for key in PAIRS:
        out[key] = (sum(v[key][0] for v in values), sum(v[key][1] for v in values))
    return out


def scale(value: dict, factor: float) -> dict:
    return {"h": value["h"], "w": value["w"],
            **{key: (factor * value[key][0], factor * value[key][1]) for key in PAIRS}}


# ---------------------------------------------------------------- the cell

def _node_value(terms: dict, sources: list, h: int, w: int) -> dict:
    """sum_s L_s Sigma_s L_s^T over independent sources s (L_s: the summed map from source s)."""
    if not terms:
        return zero_value(h, w)
    return add(*[linear(sources[s], m, h, w) for s, m in terms.items()])


def cell(genotype, value: dict, w_std: float, b_std: float) -> dict:
    """The NAS-Bench-201 cell: node j = sum_{i<j} op_ij(node i), output node 3."""
    ops = parse_genotype(genotype) if isinstance(genotype, str) else genotype
    h, w = value["h"], value["w"]
    eye, pool = np.eye(h * w), avg_pool3_matrix(h, w)
    sources = [value]        # independent Gaussian values: the cell input, then each conv output
    nodes = [{0: eye}]       # node -> {source index: summed linear map from that source}
    for node_ops in ops:
        terms: dict = {}
        for i, op in enumerate(node_ops):
            if op == "none":
                continue
            if op == "skip_connect":
                contribution = nodes[i]
            elif op == "avg_pool_3x3":
                contribution = {s: pool @ m for s, m in nodes[i].items()}
            else:
                k = 1 if op == "nor_conv_1x1" else 3
                sources.append(conv(relu(_node_value(nodes[i], sources, h, w)), k, w_std, b_std))
                contribution = {len(sources) - 1: eye}
            for s, m in contribution.items():
                terms[s] = terms[s] + m if s in terms else m
        nodes.append(terms)
    return _node_value(nodes[3], sources, h, w)


# ---------------------------------------------------------------- networks

def run_layers(layers, value: dict, w_std: float, b_std: float, gaussian: bool = True) -> tuple[dict, bool]:
    """A small interpreter for chains: conv (kernel, stride), relu, avg_pool (window), cell
    (genotype), residual (body, optional shortcut; both must end in a fresh conv unless the
    shortcut is the identity and the body ends in a conv). Tracks whether the value is a centred
    Gaussian, which the ReLU formulas and the cell need."""
    for layer in layers:
        op = layer["op"]
        if op == "conv":
            value = conv(value, layer["kernel"], w_std, b_std, layer.get("stride", 1))
            gaussian = True
        elif op == "relu":
            assert gaussian, "ReLU of a non-Gaussian value has no closed form here"
            value, gaussian = relu(value), False
        elif op == "avg_pool":
            assert layer["window"] == layer.get("stride", layer["window"])
            h, w = value["h"], value["w"]
            value = linear(value, block_pool_matrix(h, w, layer["window"]), h // layer["window"], w // layer["window"])
        elif op == "cell":
            assert gaussian, "cells take a Gaussian input"
            value = cell(layer["genotype"], value, w_std, b_std)
        elif op == "residual":
            assert gaussian, "residual branch points must be Gaussian"
            body, _ = run_layers(layer["body"], value, w_std, b_std, gaussian)
            assert layer["body"][-1]["op"] == "conv"
            if "shortcut" in layer:
                assert layer["shortcut"][-1]["op"] == "conv"
                short, _ = run_layers(layer["shortcut"], value, w_std, b_std, gaussian)
            else:
                short = value  # independent of the body's last conv
            value, gaussian = add(body, short), True
        else:
            raise ValueError(f"unknown op {op!r}")
    return value, gaussian


def readout(value: dict, w_std: float, b_std: float) -> tuple[float, float]:
    """Global average pooling then a dense layer, for the 'xy' pair."""
    s, t = value["xy"]
    nngp = w_std**2 * s.mean() + b_std**2
    return nngp, w_std**2 * t.mean() + nngp


def plain_layers_kernel(layers, x, y, w_std: float = math.sqrt(2), b_std: float = 0.0) -> tuple[float, float]:
    value, _ = run_layers(layers, input_value(x, y), w_std, b_std)
    return readout(value, w_std, b_std)


def macro_layers(genotype: str, cells_per_stage: int) -> list:
    """NAS-Bench-201's macro network: stem conv 3x3, three stages of N cells with a ResNet basic
    block of stride 2 (body relu-conv3/2-relu-conv3, shortcut 2x2 pool then conv 1x1) between
    them, a ReLU; global average pooling and the dense readout come after."""
    c3, relu_ = {"op": "conv", "kernel": 3}, {"op": "relu"}
    reduction = {"op": "residual",
                 "body": [relu_, {"op": "conv", "kernel": 3, "stride": 2}, relu_, c3],
                 "shortcut": [{"op": "avg_pool", "window": 2}, {"op": "conv", "kernel": 1}]}
    stage = [{"op": "cell", "genotype": genotype}] * cells_per_stage
    return [c3, *stage, reduction, *stage, reduction, *stage, relu_]


def nb201_pair(genotype: str, x, y, cells_per_stage: int = 1, w_std: float = math.sqrt(2),
               b_std: float = 0.0) -> tuple[float, float]:
    """NNGP and NTK between two images (C, H, W) of the NAS-Bench-201 network of a genotype."""
    return plain_layers_kernel(macro_layers(genotype, cells_per_stage), x, y, w_std, b_std)


def nb201_kernel(genotype: str, xs, ys=None, cells_per_stage: int = 1, w_std: float = math.sqrt(2),
                 b_std: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(n1, n2) NNGP and NTK matrices, pair by pair."""
    xs = np.asarray(xs, np.float64)
    ys = xs if ys is None else np.asarray(ys, np.float64)
    out = np.array([[nb201_pair(genotype, a, b, cells_per_stage, w_std, b_std) for b in ys] for a in xs])
    return out[..., 0], out[..., 1]
