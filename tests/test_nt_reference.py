"""The kernel against neural-tangents 0.6.5: float64 NNGP and NTK in tests/data/nt_reference.npz.

Agreement to 1e-6 relative in float64, and to 1e-5 in float32 for the chain networks, which go
through the fused kernel; the file covers both readouts and the example description of
docs/descriptions.md (the `*_readme_example` cases). It is made by
tools/neural_tangents/make_reference.py in neural-tangents' own environment (the mapping is in
tools/neural_tangents/stax_mapping.py); this test only reads it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import nas_cntk
from nas_cntk.description.architecture import load
from nas_cntk.kernels.fused.chain import chain

REFERENCE = np.load(Path(__file__).parent / "data" / "nt_reference.npz")
CASES = range(int(REFERENCE["n_cases"]))
RTOL = 1e-6


def case_id(i: int) -> str:
    return json.loads(str(REFERENCE[f"arch_{i}"]))["name"]


@pytest.mark.parametrize("i", CASES, ids=case_id)
def test_matches_neural_tangents(i: int) -> None:
    arch = json.loads(str(REFERENCE[f"arch_{i}"]))
    x1 = torch.from_numpy(REFERENCE[f"x1_{i}"])
    x2 = torch.from_numpy(REFERENCE[f"x2_{i}"]) if f"x2_{i}" in REFERENCE else None
    ours = nas_cntk.kernel(arch, x1, x2, dtype=torch.float64)
    for name, got in zip(("nngp", "ntk"), ours):
        want = REFERENCE[f"{name}_{i}"]
        scale = np.abs(want).max()
        np.testing.assert_allclose(got.numpy(), want, rtol=RTOL, atol=RTOL * scale, err_msg=name)


def test_reference_covers_the_readme_example_and_both_readouts() -> None:
    names = {case_id(i) for i in CASES}
    assert {"gap_readme_example", "flatten_readme_example"} <= names
    readouts = {json.loads(str(REFERENCE[f"arch_{i}"]))["readout"] for i in CASES}
    assert readouts == {"flatten", "gap"}


@pytest.mark.parametrize("i", [i for i in CASES if chain(load(json.loads(str(REFERENCE[f"arch_{i}"])))) is not None],
                         ids=case_id)
def test_fused_float32_matches_neural_tangents(i: int) -> None:
    """The chain networks in float32, through the fused kernel that kernel() picks for them."""
    arch = json.loads(str(REFERENCE[f"arch_{i}"]))
    x1 = torch.from_numpy(REFERENCE[f"x1_{i}"]).float()
    x2 = torch.from_numpy(REFERENCE[f"x2_{i}"]).float() if f"x2_{i}" in REFERENCE else None
    ours = nas_cntk.kernel(arch, x1, x2, fused=True)
    for name, got in zip(("nngp", "ntk"), ours):
        want = REFERENCE[f"{name}_{i}"]
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5 * np.abs(want).max(), err_msg=name)
