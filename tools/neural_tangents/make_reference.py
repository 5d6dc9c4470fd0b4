"""Regenerate tests/data/nt_reference.npz: neural-tangents' float64 NNGP and NTK for a set of networks.

    .venv-nt/bin/python tools/neural_tangents/make_reference.py

(.venv-nt: `python3 -m venv .venv-nt && .venv-nt/bin/pip install neural-tangents==0.6.5
"jax[cpu]==0.4.23" "jaxlib==0.4.23" "numpy<2"`.) The networks are mapped as stax_mapping.py's
docstring says; only ones on which neural-tangents is exact are used (each ReLU and each residual
takes a Gaussian input, each residual body ends in a conv). Images are standard normal, seeded per
case; the file is byte-for-byte reproducible.

Contents, for case i = 0 .. n_cases - 1:
    arch_i   the description as a JSON string (0-d str array; `json.loads(str(data["arch_i"]))`)
    x1_i     float64 (n1, C, H, W)
    x2_i     float64 (n2, C, H, W); ABSENT when the case is x2=None (the kernel of x1 with itself)
    nngp_i   float64 (n1, n2) (n2 = n1 when x2_i is absent)
    ntk_i    float64 (n1, n2)
and n_cases (int), versions (str: neural-tangents / JAX versions).
"""
from __future__ import annotations

import io
import json
import math
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)

import neural_tangents  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stax_mapping import kernel  # noqa: E402

OUT = Path(__file__).resolve().parents[2] / "tests" / "data" / "nt_reference.npz"
SQRT2 = math.sqrt(2)


def conv(k: int, **stds: float) -> dict[str, Any]:
    return {"op": "conv", "kernel": k, **stds}


def dil_conv(k: int, **stds: float) -> dict[str, Any]:
    return {"op": "dil_conv", "kernel": k, "dilation": 2, **stds}


RELU = {"op": "relu"}
POOL2 = {"op": "avg_pool", "window": 2}


def residual(*body: dict[str, Any]) -> dict[str, Any]:
    return {"op": "residual", "body": list(body)}


def arch(name: str, readout: str, layers: list, w: float = SQRT2, b: float = 0.0) -> dict[str, Any]:
    return {"name": name, "weight_std": w, "bias_std": b, "readout": readout, "layers": layers}


README_EXAMPLE = [conv(3), residual(RELU, conv(3), RELU, conv(3)), RELU, POOL2, conv(3), RELU]
NESTED = [conv(3), residual(RELU, conv(3), residual(RELU, conv(1)), RELU, conv(3)), RELU,
          conv(3), residual(RELU, conv(5))]
OVERRIDES = [conv(3, weight_std=1.7, bias_std=0.5), RELU, conv(1, bias_std=0.0), RELU,
             conv(5, weight_std=1.1), RELU]

# (description, (n1, C, H, W), n2 or None for x2=None)
CASES: list[tuple[dict[str, Any], tuple[int, int, int, int], int | None]] = [
    (arch("flatten_d1", "flatten", [conv(3), RELU]), (3, 3, 8, 8), 2),
    (arch("gap_d1", "gap", [conv(3), RELU]), (3, 3, 8, 8), 2),
    (arch("flatten_d2_k1_k5", "flatten", [conv(1), RELU, conv(5), RELU]), (3, 3, 8, 6), 2),
    (arch("gap_d2_k5_k3", "gap", [conv(5), RELU, conv(3), RELU]), (3, 3, 8, 6), 2),
    (arch("flatten_d3_self", "flatten", [conv(3), RELU, conv(1), RELU, conv(5), RELU]), (4, 3, 8, 8), None),
    (arch("gap_d3_self", "gap", [conv(3), RELU, conv(3), RELU, conv(1), RELU]), (4, 3, 8, 8), None),
    (arch("flatten_overrides_bias", "flatten", OVERRIDES, w=1.2, b=0.3), (3, 3, 8, 8), 2),
    (arch("gap_overrides_bias", "gap", OVERRIDES, w=1.3, b=0.2), (3, 3, 8, 6), 2),
    (arch("flatten_pool", "flatten", [conv(3), RELU, POOL2, conv(3), RELU]), (3, 3, 8, 6), 2),
    (arch("gap_pool", "gap", [conv(3), RELU, POOL2, conv(3), RELU]), (3, 3, 8, 8), 2),
    (arch("flatten_pool_twice", "flatten", [conv(3), RELU, POOL2, conv(3), RELU, POOL2]), (3, 3, 8, 8), 2),
    (arch("gap_pool_twice_self", "gap", [conv(3), RELU, POOL2, conv(3), RELU, POOL2, conv(1), RELU]),
     (4, 3, 8, 8), None),
    (arch("gap_readme_example", "gap", README_EXAMPLE), (3, 3, 8, 8), 2),
    (arch("flatten_readme_example", "flatten", README_EXAMPLE, b=0.1), (3, 3, 8, 6), 2),
    (arch("flatten_nested_residual", "flatten", NESTED, b=0.2), (3, 3, 8, 8), 2),
    (arch("gap_nested_residual_self", "gap", NESTED), (4, 3, 8, 6), None),
    (arch("flatten_last_conv", "flatten", [conv(3), RELU, conv(3), RELU, conv(3)]), (3, 3, 8, 8), 2),
    (arch("gap_last_conv", "gap", [conv(3), RELU, conv(5), RELU, conv(3)], b=0.1), (3, 3, 8, 8), 2),
    (arch("gap_one_channel", "gap", [conv(3), RELU, conv(3), RELU]), (3, 1, 8, 8), 2),
    # dilated convs, on the polyphase components (stax_mapping.py's docstring)
    (arch("gap_dilated", "gap", [conv(1), RELU, dil_conv(3), RELU, dil_conv(5), RELU]), (3, 3, 8, 8), 2),
    (arch("flatten_dilated_residual_self", "flatten", [conv(1), residual(RELU, dil_conv(3)), RELU,
                                                       dil_conv(5, weight_std=1.1, bias_std=0.2), RELU], b=0.1),
     (4, 3, 8, 6), None),
]


def check_exact(layers: list[dict[str, Any]], gaussian: bool = False) -> bool:
    """Asserts neural-tangents is exact on `layers` given whether their input is Gaussian; returns
    whether their output is. (neural-tangents itself refuses the first two; the third it would get
    wrong.)"""
    for layer in layers:
        op = layer["op"]
        if op == "relu":
            assert gaussian, "a ReLU of a non-Gaussian input"
            gaussian = False
        elif op == "residual":
            assert gaussian, "a residual with a non-Gaussian branch point"
            assert layer["body"][-1]["op"] in ("conv", "dil_conv"), "a residual body not ending in a conv"
            check_exact(layer["body"], True)
        elif op in ("conv", "dil_conv"):
            gaussian = True
    return gaussian


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez, but with fixed zip timestamps so that the bytes are reproducible."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)),
                             buffer.getvalue(), compress_type=zipfile.ZIP_DEFLATED)


def main() -> None:
    # FanInSum warns that it assumes independent branches; check_exact makes sure they are.
    warnings.filterwarnings("ignore", message="`FanIn` layers assume independent inputs")
    arrays: dict[str, np.ndarray] = {}
    print(f"{'i':>2} {'name':<26} {'x1':<14} {'x2':<14} {'nngp[0,0]':>12} {'ntk[0,0]':>12} {'ntk/nngp':>9}")
    for i, (spec, shape, n2) in enumerate(CASES):
        check_exact(spec["layers"])
        rng = np.random.default_rng(1000 + i)
        x1 = rng.standard_normal(shape)
        x2 = None if n2 is None else rng.standard_normal((n2, *shape[1:]))
        nngp, ntk = kernel(spec, x1, x2)
        assert nngp.dtype == ntk.dtype == np.float64 and np.isfinite(nngp).all() and np.isfinite(ntk).all()
        assert nngp.shape == ntk.shape == (shape[0], shape[0] if n2 is None else n2)
        arrays.update({f"arch_{i}": np.array(json.dumps(spec)), f"x1_{i}": x1, f"nngp_{i}": nngp, f"ntk_{i}": ntk})
        if x2 is not None:
            arrays[f"x2_{i}"] = x2
        x2_text = "None" if x2 is None else "x".join(map(str, x2.shape))
        print(f"{i:>2} {spec['name']:<26} {'x'.join(map(str, shape)):<14} {x2_text:<14} "
              f"{nngp[0, 0]:>12.6f} {ntk[0, 0]:>12.6f} {ntk[0, 0] / nngp[0, 0]:>9.4f}")
    arrays["n_cases"] = np.array(len(CASES))
    arrays["versions"] = np.array(f"neural-tangents {neural_tangents.__version__}, jax {jax.__version__}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_npz(OUT, arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB, {len(CASES)} cases)")


if __name__ == "__main__":
    main()
