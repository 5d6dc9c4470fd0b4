"""The exported PyTorch file is the same network as `Architecture.module`, without nas_cntk.

Run where nas_cntk cannot be imported, the file builds the same state dict from the same seed, the
same outputs and the `fix` variant's frozen layers, for the paper's networks, the example
description of docs/descriptions.md and an odd flatten network; a deliberately wrong export is
caught; the file compiles, keeps lines within 120 characters and runs as a script.
"""
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_architecture import CONTRACT

import nas_cntk
from nas_cntk.search.export import export_architecture

EXAMPLES = Path(__file__).resolve().parents[1] / "search_spaces" / "examples"
WIDTH = 16

# Kernels 1 and 5, per-layer and global non-default stds, flatten after two pools of a 16x16 input:
# a wrong readout size changes the readout's shape.
ODD = {"weight_std": 1.3, "bias_std": 0.2, "readout": "flatten",
       "layers": [{"op": "conv", "kernel": 5, "weight_std": 0.9}, {"op": "relu"},
                  {"op": "conv", "kernel": 1, "bias_std": 0.5}, {"op": "relu"}, {"op": "avg_pool", "window": 2},
                  {"op": "conv", "kernel": 3}, {"op": "avg_pool", "window": 4}]}

CASES = {"cntk_v_3": (EXAMPLES / "cntk_v_3.json", (32, 32)),
         "cntk_gap_3": (EXAMPLES / "cntk_gap_3.json", (32, 32)),  # the `fix` variant
         "contract": (CONTRACT, (32, 32)),                        # a residual block and a pool
         "odd": (ODD, (16, 16))}

# Runs an exported file where nas_cntk cannot be imported; saves the network's parameters, output
# on the given batch, and frozen parameters.
RUNNER = """
import runpy, sys
sys.modules["nas_cntk"] = None
import torch
path, batch, out, width = sys.argv[1:]
network = runpy.run_path(path)["Network"]
torch.manual_seed(0)
net = network(width=int(width))
frozen = [name for name, p in net.named_parameters() if not p.requires_grad]
torch.save({"state": net.state_dict(), "output": net(torch.load(batch)).detach(), "frozen": frozen}, out)
"""


def _export(name, tmp_path):
    source, size = CASES[name]
    arch = nas_cntk.load(source)
    json_path, python_path = export_architecture(arch, tmp_path / "out", name, input_size=size)
    return arch, size, json_path, python_path


def _run(python_path, size, tmp_path):
    batch = torch.randn(4, 3, *size, generator=torch.Generator().manual_seed(1))
    torch.save(batch, tmp_path / "batch.pt")
    subprocess.run([sys.executable, "-c", RUNNER, str(python_path), str(tmp_path / "batch.pt"),
                    str(tmp_path / "result.pt"), str(WIDTH)], check=True, cwd=tmp_path)
    return batch, torch.load(tmp_path / "result.pt")


def _check_same_network(arch, size, batch, result):
    torch.manual_seed(0)
    net = arch.module(WIDTH, input_size=size)
    expected = net.state_dict()
    assert list(result["state"]) == list(expected)
    for key, value in expected.items():
        assert torch.equal(result["state"][key], value), key
    torch.testing.assert_close(result["output"], net(batch), rtol=0, atol=1e-6)
    fixed = ["layers.1.weight", "layers.1.bias", "readout.weight", "readout.bias"]
    assert result["frozen"] == (fixed if arch.fix_first_and_readout else [])


@pytest.mark.parametrize("name", CASES)
def test_exported_network_matches_the_module(name, tmp_path):
    arch, size, json_path, python_path = _export(name, tmp_path)
    assert nas_cntk.load(json_path).hash == arch.hash
    text = python_path.read_text()
    assert "nas_cntk" not in text
    assert all(line == line.rstrip() and len(line) <= 120 for line in text.splitlines())
    py_compile.compile(str(python_path), cfile=str(tmp_path / "compiled.pyc"), doraise=True)
    _check_same_network(arch, size, *_run(python_path, size, tmp_path))


@pytest.mark.parametrize("name, wrong, right", [
    ("odd", "2 * 2, num_classes", "4 * 4, num_classes"),                   # readout sized for the wrong map
    ("contract", "h3 = self.layers[3]", "h3 = self.layers[5]"),            # a node runs another conv
])
def test_a_wrong_export_is_caught(name, wrong, right, tmp_path):
    arch, size, _, python_path = _export(name, tmp_path)
    text = python_path.read_text()
    assert wrong in text
    python_path.write_text(text.replace(wrong, right))
    with pytest.raises((AssertionError, subprocess.CalledProcessError)):
        _check_same_network(arch, size, *_run(python_path, size, tmp_path))


def test_exported_file_runs_as_a_script(tmp_path):
    _, _, _, python_path = _export("contract", tmp_path)
    run = subprocess.run([sys.executable, str(python_path)], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "torch.Size([2, 10])"
