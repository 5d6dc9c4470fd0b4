"""NAS-Bench-201 cells: the kernel against an independent float64 reference, tests/plain_nb201.py.

The reference is itself checked part by part (genotypes, convs, strided convs, pools against torch,
ReLU), on closed forms (the identity cell, two skips of one node 4x Sigma, two conv paths 2x,
(I + A) x with its cross terms, pool of a pool, disconnected cells), against tests/plain_cntk.py on
chain-shaped cells and against a wide finite network. The engine equals it to 1e-8 in float64 on the
example cell of docs/descriptions.md, pool and skip mixtures, zero nodes feeding convs, 10 random
genotypes, 2 cells per stage and nonzero stds; disconnected cells give zero (or, with biases,
constant) kernels; float32 agrees to 1e-4, also where skip-only cells grow the moments past 1e19.
"""
import math

import numpy as np
import plain_cntk
import plain_nb201 as ref
import pytest
import torch
import torch.nn.functional as F

import nas_cntk
from nas_cntk.description import nasbench201

SQRT2 = math.sqrt(2)
EXAMPLE_CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
IDENTITY = "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"


def images(n, seed, channels=3, size=8):
    """Noise plus a smooth part: neighbouring pixels correlate, so pooled and skipped branches of
    one node have large cross-covariances (white noise alone would make them small)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, channels, size, size, generator=g, dtype=torch.float64)
    coarse = torch.randn(n, channels, 3, 3, generator=g, dtype=torch.float64)
    smooth = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=True)
    return 0.5 * noise + smooth


def assert_rel(got, want, rtol, what=""):
    """max |got - want| <= rtol * max |want|."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.all(np.isfinite(got)), f"{what}: non-finite entries {got}"
    err, scale = np.abs(got - want).max(), np.abs(want).max()
    assert err <= rtol * scale, f"{what}: max error {err:.3e} > {rtol:g} * {scale:.6e}\ngot\n{got}\nwant\n{want}"


def random_value(h, w, seed):
    """A valid value (positive semi-definite joint covariance of two images) of shape h x w."""
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((2, 4, h, w)) + rng.standard_normal((2, 4, 1, 1))
    value = ref.input_value(x, y)
    for key in ref.PAIRS:  # a nonzero Theta too, with the same joint structure
        value[key] = (value[key][0], 0.7 * value[key][0])
    return value


# ------------------------------------------------------------------ the reference's own parts

def test_reference_parses_genotypes():
    assert ref.parse_genotype(EXAMPLE_CELL) == (("nor_conv_3x3",), ("nor_conv_3x3", "avg_pool_3x3"),
                                         ("skip_connect", "nor_conv_3x3", "skip_connect"))
    for bad in ["|none~0|+|none~0|none~1|", "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
                "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|"]:
        with pytest.raises(ValueError):
            ref.parse_genotype(bad)


@pytest.mark.parametrize("k,h,w", [(1, 5, 7), (3, 5, 7), (3, 8, 8)])
def test_reference_conv_equals_plain_cntk_padding_loop(k, h, w):
    value = random_value(h, w, 1)
    out = ref.conv(value, k, 1.3, 0.2)
    for key in ref.PAIRS:
        s, t = value[key]
        s4, t4 = s.reshape(h, w, h, w), t.reshape(h, w, h, w)
        want_s = 1.69 * plain_cntk._conv(s4, k) + 0.04
        want_t = 1.69 * plain_cntk._conv(t4, k) + want_s
        np.testing.assert_allclose(out[key][0].reshape(h, w, h, w), want_s, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(out[key][1].reshape(h, w, h, w), want_t, rtol=1e-13, atol=1e-13)


def test_reference_strided_conv_by_explicit_loops():
    h = w = 8
    value = random_value(h, w, 2)
    out = ref.conv(value, 3, SQRT2, 0.3, stride=2)
    assert (out["h"], out["w"]) == (4, 4)
    s = value["xy"][0].reshape(h, w, h, w)
    want = np.zeros((4, 4, 4, 4))
    for i, j, k, m in np.ndindex(4, 4, 4, 4):
        for a, b in np.ndindex(3, 3):
            p, q, r, t = 2 * i + a - 1, 2 * j + b - 1, 2 * k + a - 1, 2 * m + b - 1
            if 0 <= p < h and 0 <= q < w and 0 <= r < h and 0 <= t < w:
                want[i, j, k, m] += s[p, q, r, t]
    want = 2 / 9 * want + 0.09
    np.testing.assert_allclose(out["xy"][0].reshape(4, 4, 4, 4), want, rtol=1e-13, atol=1e-13)


def test_reference_pool_matrices_equal_torch_pooling():
    img = torch.randn(1, 1, 6, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    flat = img.reshape(-1).numpy()
    nb201_pool = F.avg_pool2d(img, 3, stride=1, padding=1, count_include_pad=False).reshape(-1).numpy()
    np.testing.assert_allclose(ref.avg_pool3_matrix(6, 8) @ flat, nb201_pool, rtol=1e-14)
    block = F.avg_pool2d(img, 2).reshape(-1).numpy()
    np.testing.assert_allclose(ref.block_pool_matrix(6, 8, 2) @ flat, block, rtol=1e-14)


def test_reference_relu_diagonal_and_zero_variance():
    value = random_value(4, 4, 3)
    out = ref.relu(value)
    np.testing.assert_allclose(np.diag(out["xx"][0]), np.diag(value["xx"][0]) / 2, rtol=1e-7)
    np.testing.assert_allclose(np.diag(out["xx"][1]), np.diag(value["xx"][1]) / 2, rtol=1e-7)
    zero = ref.relu(ref.zero_value(4, 4))
    assert all(np.all(zero[key][0] == 0) and np.all(zero[key][1] == 0) for key in ref.PAIRS)


# ------------------------------------------------------------------ cells: closed forms

def _pool_left(m4, times=1):
    """Pool the first image's pixels of a (H, W, H, W) array with NAS-Bench-201's 3x3 pool, in torch."""
    h, w = m4.shape[:2]
    t = torch.from_numpy(np.ascontiguousarray(m4.reshape(h, w, h * w).transpose(2, 0, 1)))[:, None]
    for _ in range(times):
        t = F.avg_pool2d(t, 3, stride=1, padding=1, count_include_pad=False)
    return t[:, 0].numpy().transpose(1, 2, 0).reshape(h, w, h, w)


def _pool_right(m4, times=1):
    return _pool_left(m4.transpose(2, 3, 0, 1), times).transpose(2, 3, 0, 1)


def _cell(genotype, value, w=SQRT2, b=0.0):
    return ref.cell(genotype, value, w, b)


def _assert_values(got, want, rtol=1e-12):
    for key in ref.PAIRS:
        for a, c in zip(got[key], want[key]):
            np.testing.assert_allclose(a, c, rtol=rtol, atol=rtol * np.abs(c).max())


def test_identity_cell_is_the_identity_and_drops_out_of_the_network():
    value = random_value(8, 8, 4)
    _assert_values(_cell(IDENTITY, value), value, rtol=0)
    x, y = images(2, 0).numpy()
    with_cells = ref.macro_layers(IDENTITY, 2)
    without = [layer for layer in with_cells if layer["op"] != "cell"]
    assert len(without) == len(with_cells) - 6
    assert_rel(ref.plain_layers_kernel(with_cells, x, y), ref.plain_layers_kernel(without, x, y), 1e-14)


def test_two_skips_of_one_node_quadruple_sigma_and_theta():
    value = random_value(6, 6, 5)
    out = _cell("|skip_connect~0|+|none~0|skip_connect~1|+|skip_connect~0|none~1|skip_connect~2|", value)
    _assert_values(out, ref.scale(value, 4.0))  # node 3 = node 0 + node 2 = 2 * node 0


def test_two_independent_conv_paths_double_sigma_and_theta():
    value = random_value(6, 6, 6)
    single = _cell("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|", value, 1.2, 0.3)
    both = _cell("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|skip_connect~1|skip_connect~2|", value, 1.2, 0.3)
    _assert_values(both, ref.scale(single, 2.0))  # fresh weights: no cross terms


def test_skip_plus_pool_keeps_the_cross_terms():
    h = w = 6
    value = random_value(h, w, 7)
    out = _cell("|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|skip_connect~1|none~2|", value)  # (I + A) x
    for key in ref.PAIRS:
        for got, m in zip(out[key], value[key]):
            m4 = m.reshape(h, w, h, w)
            want = m4 + _pool_left(m4) + _pool_right(m4) + _pool_left(_pool_right(m4))
            np.testing.assert_allclose(got.reshape(h, w, h, w), want, rtol=1e-12, atol=1e-12)
            no_cross = m4 + _pool_left(_pool_right(m4))  # what dropping the cross terms would give
            assert np.abs(got.reshape(h, w, h, w) - no_cross).max() > 0.1 * np.abs(want).max()


def test_pool_of_pool_through_nodes():
    h = w = 6
    value = random_value(h, w, 8)
    out = _cell("|avg_pool_3x3~0|+|none~0|avg_pool_3x3~1|+|none~0|none~1|skip_connect~2|", value)  # A A x
    for key in ref.PAIRS:
        for got, m in zip(out[key], value[key]):
            want = _pool_left(_pool_right(m.reshape(h, w, h, w), 2), 2)
            np.testing.assert_allclose(got.reshape(h, w, h, w), want, rtol=1e-12, atol=1e-12)


def test_disconnected_cell_outputs_zero_or_bias_only():
    value = random_value(6, 6, 9)
    out = _cell("|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|none~1|none~2|", value)
    assert all(np.all(out[key][0] == 0) and np.all(out[key][1] == 0) for key in ref.PAIRS)
    # node 1 is zero; node 2 = conv(relu(0)) = its bias only, a constant field; node 3 = pool of it.
    out = _cell("|none~0|+|none~0|nor_conv_1x1~1|+|none~0|skip_connect~1|avg_pool_3x3~2|", value, SQRT2, 0.3)
    for key in ref.PAIRS:
        np.testing.assert_allclose(out[key][0], 0.09, rtol=1e-14)
        np.testing.assert_allclose(out[key][1], 0.09, rtol=1e-14)


def test_chain_shaped_cells_equal_plain_cntk():
    """Cells that are chains or residual blocks, written both ways, through whole networks."""
    relu, c1, c3 = {"op": "relu"}, {"op": "conv", "kernel": 1}, {"op": "conv", "kernel": 3}
    pool = {"op": "avg_pool", "window": 2}
    cases = [  # (cell genotype, the same as plain_cntk layers)
        ("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|", [relu, c3]),
        ("|nor_conv_1x1~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|skip_connect~2|", [relu, c1, relu, c3]),
        ("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|skip_connect~1|none~2|",
         [{"op": "residual", "body": [relu, c3]}]),
        ("|none~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|skip_connect~2|",
         [{"op": "residual", "body": [relu, c1]}]),
    ]
    x, y = images(2, 1).numpy()
    for (w, b), (genotype, chain) in zip([(SQRT2, 0.0), (1.3, 0.2), (1.1, 0.0), (1.6, 0.1)], cases):
        cell = {"op": "cell", "genotype": genotype}
        mine = [c3, cell, pool, c3, cell, relu]
        theirs = [c3, *chain, pool, c3, *chain, relu]
        spec = {"weight_std": w, "bias_std": b, "readout": "gap", "layers": theirs}
        assert_rel(ref.plain_layers_kernel(mine, x, y, w, b), plain_cntk.plain_kernel(spec, x, y), 1e-12, genotype)


def _wide_network_nngp(genotype, x, width, seed):
    """Empirical NNGP of stem conv 3x3, one cell, ReLU, GAP, dense at finite width (float32)."""
    g = torch.Generator().manual_seed(seed)
    w = SQRT2

    def conv(h, k):
        weight = torch.randn(width, h.shape[1], k, k, generator=g)
        return w / math.sqrt(h.shape[1] * k * k) * F.conv2d(h, weight, padding=k // 2)

    nodes = [conv(x, 3)]
    for node_ops in ref.parse_genotype(genotype):
        acc = torch.zeros_like(nodes[0])
        for i, op in enumerate(node_ops):
            if op == "skip_connect":
                acc = acc + nodes[i]
            elif op == "avg_pool_3x3":
                acc = acc + F.avg_pool2d(nodes[i], 3, stride=1, padding=1, count_include_pad=False)
            elif op != "none":
                acc = acc + conv(torch.relu(nodes[i]), 3 if op == "nor_conv_3x3" else 1)
        nodes.append(acc)
    feat = torch.relu(nodes[3]).mean(dim=(2, 3)).double()
    return (w**2 * feat @ feat.T / width).numpy()


def test_reference_nngp_agrees_with_a_wide_finite_network():
    """Dependent skip / pool branches and a conv of a sum of them: the exact NNGP versus a Monte
    Carlo estimate (width 1024, 8 networks: about 2% noise). Dropping the cross terms between the
    dependent branches would be off by 23-33% on these images, far outside the 10% allowed."""
    genotype = "|skip_connect~0|+|skip_connect~0|avg_pool_3x3~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    x = images(3, 11)
    layers = [{"op": "conv", "kernel": 3}, {"op": "cell", "genotype": genotype}, {"op": "relu"}]
    want = np.array([[ref.plain_layers_kernel(layers, a, b)[0] for b in x.numpy()] for a in x.numpy()])
    with torch.no_grad():
        est = np.mean([_wide_network_nngp(genotype, x.float(), 1024, seed) for seed in range(8)], axis=0)
    np.testing.assert_allclose(est, want, rtol=0.10)


# ------------------------------------------------------------------ the engine against the reference

GENOTYPES = {
    "all_conv3x3": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "pool_chain": "|avg_pool_3x3~0|+|none~0|avg_pool_3x3~1|+|avg_pool_3x3~0|none~1|avg_pool_3x3~2|",  # (A + A^3) x
    "pool_chain_conv": "|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|"
                       "+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|",
    "skip_pool_mixed": "|skip_connect~0|+|skip_connect~0|avg_pool_3x3~1|"
                       "+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|",
    "conv1x1": "|nor_conv_1x1~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|avg_pool_3x3~1|nor_conv_1x1~2|",
    "zero_node_into_conv": "|none~0|+|skip_connect~0|nor_conv_3x3~1|+|none~0|skip_connect~1|nor_conv_3x3~2|",
    "example_cell": EXAMPLE_CELL,
    # node 3 = (A + I) x, the same sum with its two inputs listed in either order
    "pool_then_skip_of_one_node": "|skip_connect~0|+|none~0|none~1|+|avg_pool_3x3~0|skip_connect~1|none~2|",
    "skip_then_pool_of_one_node": "|skip_connect~0|+|none~0|none~1|+|skip_connect~0|avg_pool_3x3~1|none~2|",
    "pool_plus_skip_of_pool": "|avg_pool_3x3~0|+|none~0|none~1|+|avg_pool_3x3~0|skip_connect~1|none~2|",  # 2 A x
}
DISCONNECTED = {
    "all_none_into_output": "|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|none~1|none~2|",
    "output_from_zero_nodes": "|none~0|+|none~0|nor_conv_1x1~1|+|none~0|skip_connect~1|avg_pool_3x3~2|",
}


def _description(genotype, cells_per_stage=1, w=None, b=None):
    desc = dict(nasbench201.description(genotype, cells_per_stage))
    if w is not None:
        desc["weight_std"] = w
    if b is not None:
        desc["bias_std"] = b
    return desc


def _check_engine(genotype, cells_per_stage=1, w=SQRT2, b=0.0, set_stds=False):
    desc = _description(genotype, cells_per_stage, *((w, b) if set_stds else (None, None)))
    x, y = images(3, 20), images(2, 21)
    want_xx = ref.nb201_kernel(genotype, x.numpy(), None, cells_per_stage, w, b)
    want_xy = ref.nb201_kernel(genotype, x.numpy(), y.numpy(), cells_per_stage, w, b)
    sym = nas_cntk.kernel(desc, x, dtype=torch.float64)
    two = nas_cntk.kernel(desc, x, y, dtype=torch.float64)
    for name, got, want in [("nngp", sym.nngp, want_xx[0]), ("ntk", sym.ntk, want_xx[1])]:
        assert got.dtype == torch.float64
        assert_rel(got.numpy(), want, 1e-8, f"{genotype} symmetric {name}")
        assert_rel(got.numpy(), got.numpy().T, 1e-12, f"{genotype} symmetric {name} is symmetric")
    for name, got, want in [("nngp", two.nngp, want_xy[0]), ("ntk", two.ntk, want_xy[1])]:
        assert_rel(got.numpy(), want, 1e-8, f"{genotype} two-sided {name}")
    return sym, two, want_xx, want_xy


@pytest.mark.parametrize("name", list(GENOTYPES))
def test_engine_equals_reference_one_cell_per_stage(name):
    _check_engine(GENOTYPES[name])


def _random_genotypes(count, seed):
    rng = np.random.default_rng(seed)
    return ["+".join("|" + "|".join(f"{ref.OPS[rng.integers(5)]}~{i}" for i in range(j)) + "|" for j in (1, 2, 3))
            for _ in range(count)]


@pytest.mark.parametrize("genotype", _random_genotypes(10, 0))
def test_engine_equals_reference_random_genotypes(genotype):
    _check_engine(genotype)


def test_engine_equals_reference_two_cells_per_stage():
    _check_engine(EXAMPLE_CELL, cells_per_stage=2)


def test_engine_equals_reference_with_weight_and_bias_std():
    _check_engine(GENOTYPES["skip_pool_mixed"], w=1.2, b=0.1, set_stds=True)


@pytest.mark.parametrize("name", list(DISCONNECTED))
def test_engine_disconnected_cell_gives_zero_kernels(name):
    desc = _description(DISCONNECTED[name])
    x, y = images(3, 30), images(2, 31)
    for k in (nas_cntk.kernel(desc, x, dtype=torch.float64), nas_cntk.kernel(desc, x, y, dtype=torch.float64)):
        for got in k:
            assert torch.isfinite(got).all()
            np.testing.assert_allclose(got.numpy(), 0.0, atol=1e-12)
    want = ref.nb201_kernel(DISCONNECTED[name], x.numpy(), y.numpy())
    assert np.all(want[0] == 0) and np.all(want[1] == 0)


@pytest.mark.parametrize("name", list(DISCONNECTED))
def test_engine_disconnected_cell_with_bias_gives_a_constant_kernel(name):
    sym, two, want_xx, want_xy = _check_engine(DISCONNECTED[name], w=1.2, b=0.1, set_stds=True)
    for got in (*sym, *two):  # the network's output does not depend on its input
        assert_rel(got.numpy(), np.full(got.shape, got.numpy().flat[0]), 1e-12, f"{name} constant")
    assert want_xx[0].min() > 0


def test_engine_float32_agrees_with_reference():
    desc = _description(EXAMPLE_CELL)
    x = images(3, 40)
    want_nngp, want_ntk = ref.nb201_kernel(EXAMPLE_CELL, x.numpy())
    k = nas_cntk.kernel(desc, x.float(), dtype=torch.float32)
    for name, got, want in [("nngp", k.nngp, want_nngp), ("ntk", k.ntk, want_ntk)]:
        assert got.dtype == torch.float32
        err = np.linalg.norm(got.double().numpy() - want)
        assert err <= 1e-4 * np.linalg.norm(want), f"float32 {name}: error {err:.3e} vs norm {np.linalg.norm(want):.3e}"


def test_float32_stays_finite_where_skip_only_cells_grow_the_variance_past_1e18():
    # Each cell is (3I + A) x: its variance grows up to 16x a cell, so 15 cells reach past 1e19,
    # whose square overflows float32 (on CIFAR-10 this network once made NaNs in the ReLU rule).
    desc = nasbench201.description(
        "|skip_connect~0|+|skip_connect~0|avg_pool_3x3~1|+|skip_connect~0|skip_connect~1|skip_connect~2|", 5)
    x = 8 * images(3, seed=7)
    exact = nas_cntk.kernel(desc, x, dtype=torch.float64)
    fast = nas_cntk.kernel(desc, x.float(), dtype=torch.float32)
    assert exact.nngp.max() > 1e19
    for name in ("nngp", "ntk"):
        assert_rel(getattr(fast, name), getattr(exact, name), 1e-4, name)
