"""Architecture descriptions and NAS-Bench-201 genotypes: parsing, graph, hash, errors, modules.

The example description of docs/descriptions.md becomes the expected graph, depth and summary; the
hash ignores defaults, key order and the name; JSON and YAML load alike; malformed descriptions,
unreadable files and a ReLU of a Gaussian-plus-ReLU sum are one-line errors naming the field or
file, and so are pools that do not fit the input size the kernel is planned for; the finite network
runs at any width. A genotype string loads as the benchmark's macro network (N cells per stage at
32, 16 and 8 pixels), cell nodes the output never reads are left out, and malformed genotypes say
what is wrong.
"""
import json
import math

import pytest
import torch

import nas_cntk
from nas_cntk import ArchitectureError
from nas_cntk.description import nasbench201
from nas_cntk.description.ops import OPS
from nas_cntk.kernels import plan

CONTRACT = {"weight_std": 1.4142135623730951, "bias_std": 0.0, "readout": "gap",
            "layers": [{"op": "conv", "kernel": 3},
                       {"op": "residual", "body": [{"op": "relu"}, {"op": "conv", "kernel": 3},
                                                   {"op": "relu"}, {"op": "conv", "kernel": 3}]},
                       {"op": "relu"}, {"op": "avg_pool", "window": 2},
                       {"op": "conv", "kernel": 3}, {"op": "relu"}]}


def test_contract_form_is_accepted_and_becomes_a_graph():
    arch = nas_cntk.load(CONTRACT)
    ops = [type(node.op).__name__ if node.op else "input" for node in arch.nodes]
    assert ops == ["input", "Conv", "Relu", "Conv", "Relu", "Conv", "Identity", "Relu", "AvgPool", "Conv", "Relu"]
    assert arch.nodes[6].inputs == (1, 5)  # the residual sums the branch point and the body's end
    assert arch.depth == 4
    assert arch.summary() == "conv3 [relu conv3 relu conv3] relu pool2 conv3 relu | gap"


def test_summary_names_what_differs_from_the_defaults():
    base = nas_cntk.load(CONTRACT).summary()
    assert nas_cntk.load({**CONTRACT, "weight_std": 1.2}).summary() == f"{base}, weight_std 1.2"
    assert nas_cntk.load({**CONTRACT, "bias_std": 0.1}).summary() == f"{base}, bias_std 0.1"
    assert nas_cntk.load({**CONTRACT, "fix_first_and_readout": True, "weight_std": 1.23456789}).summary() \
        == f"{base}, fix, weight_std 1.2346"


def test_hash_is_canonical():
    explicit = json.loads(json.dumps(CONTRACT))
    explicit["layers"][0].update(weight_std=math.sqrt(2), bias_std=0)  # the defaults, spelled out
    explicit["name"] = "renamed"
    reordered = dict(reversed(list(explicit.items())))
    assert nas_cntk.load(CONTRACT).hash == nas_cntk.load(explicit).hash == nas_cntk.load(reordered).hash
    different = json.loads(json.dumps(CONTRACT))
    different["layers"][0]["kernel"] = 5
    assert nas_cntk.load(different).hash != nas_cntk.load(CONTRACT).hash


def test_json_and_yaml_files_load_the_same_network(tmp_path):
    import yaml
    (tmp_path / "a.json").write_text(json.dumps(CONTRACT))
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(CONTRACT))
    a, b = nas_cntk.load(tmp_path / "a.json"), nas_cntk.load(tmp_path / "a.yaml")
    assert a.hash == b.hash and a.name == "a"


def _broken(path, value):
    spec = json.loads(json.dumps(CONTRACT))
    target = spec
    *parents, last = path
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return spec


@pytest.mark.parametrize("path, value, message", [
    (["layers", 1, "body", 1, "op"], "pool", r"layers\[1\]\.body\[1\]\.op: unknown op 'pool'"),
    (["layers", 0, "kernel"], 4, r"layers\[0\]\.kernel: expected an odd integer >= 1, got 4"),
    (["layers", 0, "kernel"], "3", r"layers\[0\]\.kernel: expected an odd integer"),
    (["layers", 0, "kernel"], True, r"layers\[0\]\.kernel"),
    (["layers", 0, "kernel"], KeyError, r"layers\[0\]\.kernel: missing"),
    (["layers", 3, "window"], 1, r"layers\[3\]\.window: expected an integer >= 2"),
    (["layers", 3, "stride"], 3, r"layers\[3\]\.stride: expected the window \(2, non-overlapping\) or 1"),
    (["layers", 3, "padding"], 1, r"layers\[3\]: unknown key 'padding'"),
    (["layers", 0, "stride"], 0, r"layers\[0\]\.stride: expected an integer >= 1, got 0"),
    (["layers", 0, "weight_std"], -1.0, r"layers\[0\]\.weight_std: expected a finite number >= 0"),
    (["bias_std"], float("nan"), r"bias_std: expected a finite number"),
    (["readout"], "max", r"readout: expected one of flatten, gap, got 'max'"),
    (["layers"], [], r"layers: expected a non-empty list"),
    (["layers", 0], {"op": "relu"}, r"layers\[0\]: a network must start with a conv"),
    (["layers", 1, "body"], "relu", r"layers\[1\]\.body: expected a list"),
    (["depth"], 3, r"description: unknown key 'depth'"),
    (["fix_first_and_readout"], "yes", r"fix_first_and_readout: expected true or false"),
    (["layers", 4], {"op": "dil_conv", "kernel": 3, "dilation": 1}, r"layers\[4\]\.dilation: expected an integer >= 2"),
])
def test_malformed_descriptions_name_the_field(path, value, message):
    with pytest.raises(ArchitectureError, match=message):
        nas_cntk.load(_broken(path, value))


def test_a_dilated_conv_is_a_conv_whose_taps_lie_dilation_pixels_apart():
    arch = nas_cntk.load({"readout": "gap", "layers": [{"op": "conv", "kernel": 3},
                                                       {"op": "dil_conv", "kernel": 5, "stride": 2}]})
    assert arch.spec["layers"][1] == {"op": "dil_conv", "kernel": 5, "dilation": 2, "stride": 2,
                                      "weight_std": math.sqrt(2), "bias_std": 0.0}
    assert arch.summary() == "conv3 dil_conv5/2 | gap" and arch.depth == 2
    assert arch.nodes[2].op.taps == (-4, -2, 0, 2, 4)


def test_pooling_past_one_pixel_is_refused_for_the_input_size():
    spec = {"readout": "flatten", "layers": [{"op": "conv", "kernel": 3}] + [{"op": "avg_pool", "window": 2}] * 4}
    arch = nas_cntk.load(spec)
    plan(arch, 16, 16)  # 16 -> 1 pixel is fine
    with pytest.raises(ArchitectureError, match=r"layers\[4\]: avg_pool window 2 pools the 1x1 feature map below"):
        plan(arch, 8, 8)
    with pytest.raises(ArchitectureError, match=r"does not divide the 6x6"):
        plan(nas_cntk.load({"readout": "gap", "layers": [{"op": "conv", "kernel": 1},
                                                         {"op": "avg_pool", "window": 4}]}), 6, 6)


def test_relu_of_a_mixed_sum_has_no_exact_kernel_and_says_so():
    spec = {"readout": "gap", "layers": [{"op": "conv", "kernel": 3}, {"op": "relu"},
                                         {"op": "residual", "body": [{"op": "conv", "kernel": 3}]}, {"op": "relu"}]}
    with pytest.raises(ArchitectureError, match=r"layers\[3\]: relu of a sum of a Gaussian branch"):
        nas_cntk.load(spec)


def test_unreadable_files_are_one_line_errors(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ArchitectureError, match=r"bad\.json: not valid JSON") as error:
        nas_cntk.load(tmp_path / "bad.json")
    assert "\n" not in str(error.value)
    with pytest.raises(ArchitectureError, match=r"missing\.json: cannot read"):
        nas_cntk.load(tmp_path / "missing.json")


def test_finite_network_runs_at_any_width():
    arch = nas_cntk.load(CONTRACT)
    for width in (4, 32):
        net = arch.module(width, outputs=10)
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
        convs = [m for m in net.modules() if type(m).__name__ == "ConvModule"]
        assert [c.weight.shape[0] for c in convs] == [width] * 4


NB201_EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def test_a_nasbench201_genotype_string_is_the_benchmarks_macro_network():
    arch = nas_cntk.load(NB201_EXAMPLE)
    assert arch.name == NB201_EXAMPLE
    assert arch.hash == nas_cntk.load(nasbench201.description(NB201_EXAMPLE, 5)).hash
    assert arch.summary() == ("conv3 cell x5 [pool2 conv1 + relu conv3/2 relu conv3] cell x5 "
                              "[pool2 conv1 + relu conv3/2 relu conv3] cell x5 relu | gap")
    assert [size for size, node in zip(arch.sizes(32, 32), arch.nodes) if node.path.endswith("node3")][::5] == \
        [(32, 32), (16, 16), (8, 8)]
    net = arch.module(4)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert nas_cntk.load(nasbench201.description(NB201_EXAMPLE, 2)).depth == 1 + 3 * 2 * 3 + 2 * 3


def test_cell_nodes_the_output_never_reads_are_left_out():
    # node 1 feeds nodes 2 and 3 only through `none`: the cells differ in node 1's op, not in the network
    a = nas_cntk.load(nasbench201.description("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|", 1))
    b = nas_cntk.load(nasbench201.description("|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|", 1))
    assert len(a.nodes) == len(b.nodes) and a.hash != b.hash
    assert not any(isinstance(node.op, OPS["avg_pool"]) and node.op.stride == 1 for node in b.nodes)


@pytest.mark.parametrize("genotype, message", [
    ("|nor_conv_3x3~0|+|none~0|none~1|", r"expected 3 nodes separated by '\+', got 2"),
    ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", r"unknown op 'conv' in 'conv~0'"),
    ("|none~0|+|none~1|none~0|+|none~0|none~1|none~2|", r"edge 'none~1' of node 2 should come from node 0"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", r"node 2 needs 2 edges"),
])
def test_malformed_genotypes_say_what_is_wrong(genotype, message):
    with pytest.raises(ArchitectureError, match=message):
        nas_cntk.load(genotype)
    with pytest.raises(ArchitectureError, match=r"layers\[1\]\.genotype: " + message):
        nas_cntk.load({"readout": "gap", "layers": [{"op": "conv", "kernel": 3}, {"op": "cell", "genotype": genotype}]})
