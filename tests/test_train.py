"""Training finite networks: the parameterisations, the fixed layers, augmentation, settings.

One optimizer step in either parameterisation (ntk, standard) equals a plain gradient step on the
effective weights of the same network written out by hand; zero-scale biases are left out; networks
learn an easy task, a NAS-Bench-201 cell network with batch norm too; the `fix` variant's first conv
and readout do not move; a diverging run says so; augmentation makes a crop or flipped crop of each
image, reproducibly; both schedules rise then fall to zero; the label names every setting; bad
settings name their option.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nas_cntk.data import DataSplits
from nas_cntk.description import architecture, nasbench201
from nas_cntk.description.ops import Conv
from nas_cntk.errors import NasCntkError, TrainingDiverged
from nas_cntk.trained.training import TrainSettings, _augment, learning_rate_factor, parameter_groups, train

CONV_NET = {"readout": "flatten", "bias_std": 0.3,
            "layers": [{"op": "conv", "kernel": 3}, {"op": "relu"}, {"op": "conv", "kernel": 1}, {"op": "relu"}]}


def toy_data(n: int = 200, size: int = 4, seed: int = 0) -> DataSplits:
    """Two classes told apart by the sign of the first channel's mean: any of these nets can learn it."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 3, size, size, generator=g)
    x[:, 0] += (2 * y - 1)[:, None, None].float() * 1.5
    half = n // 2
    return DataSplits(x[:half], y[:half], x[half:], y[half:], np.arange(half), np.arange(half), "test")


def effective_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [getattr(m, name) * getattr(m, f"{name}_scale") for m in model.modules() if hasattr(m, "weight_scale")
            for name in ("weight", "bias")]


@pytest.mark.parametrize("parameterization", ["standard", "ntk"])
def test_one_step_matches_sgd_on_the_effective_weights(parameterization: str) -> None:
    """standard: SGD with lr on the effective weights w = scale * p; ntk: lr * scale^2 on them."""
    torch.manual_seed(0)
    model = architecture.parse(CONV_NET).module(6, outputs=2, input_size=(4, 4)).double()
    data = toy_data()
    x, y = data.x_train[:16].double(), data.y_train[:16]
    settings = TrainSettings(lr=0.3, momentum=0.0, weight_decay=0.01, parameterization=parameterization)
    scales = [getattr(m, f"{name}_scale") for m in model.modules() if hasattr(m, "weight_scale")
              for name in ("weight", "bias")]
    before = [w.detach().clone().requires_grad_() for w in effective_weights(model)]

    # Reference: the same network written with its effective weights, one plain gradient step on them.
    def reference_forward(weights: list[torch.Tensor]) -> torch.Tensor:
        h = torch.relu(F.conv2d(x, weights[0], weights[1], padding=1))
        h = torch.relu(F.conv2d(h, weights[2], weights[3]))
        return h.flatten(1) @ weights[4].T + weights[5]

    loss = F.cross_entropy(reference_forward(before), y)
    grads = torch.autograd.grad(loss, before)
    expected = []
    for w, g, scale in zip(before, grads, scales):
        lr = settings.lr if parameterization == "standard" else settings.lr * scale**2
        expected.append(w - lr * (g + settings.weight_decay * w))

    optimizer = torch.optim.SGD(parameter_groups(model, settings), lr=settings.lr)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
    for got, want in zip(effective_weights(model), expected):
        torch.testing.assert_close(got, want.detach(), rtol=1e-10, atol=1e-12)


def test_a_zero_bias_scale_is_left_out() -> None:
    model = architecture.parse({**CONV_NET, "bias_std": 0.0}).module(4, input_size=(4, 4))
    groups = parameter_groups(model, TrainSettings())
    biases = {id(m.bias) for m in model.modules() if hasattr(m, "bias_scale")}
    assert not biases & {id(p) for g in groups for p in g["params"]}
    assert len(groups) == 3  # the three weights


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_training_learns_an_easy_task(parameterization: str) -> None:
    arch = architecture.parse({**CONV_NET, "readout": "gap"})
    lr = 4.0 if parameterization == "ntk" else 0.05
    settings = TrainSettings(width=16, epochs=8, batch_size=25, lr=lr, parameterization=parameterization)
    result = train(arch, toy_data(), settings, device="cpu", progress=False)
    assert result.test_accuracy >= 0.9
    assert len(result.train_loss) == len(result.train_accuracy) == 8
    assert result.train_loss[-1] < result.train_loss[0]
    assert result.parameters == (16 * 3 * 9 + 16) + (16 * 16 + 16) + (16 * 10 + 10)  # conv 3x3, conv 1x1, readout


def test_a_nasbench201_cell_network_trains_with_batch_norm() -> None:
    arch = architecture.load(nasbench201.description(
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|", 1))
    convs = sum(isinstance(node.op, Conv) for node in arch.nodes[1:])
    model = arch.module(8, input_size=(4, 4), batch_norm=True)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == convs
    settings = TrainSettings(width=8, epochs=8, batch_size=25, lr=1.0, batch_norm=True)
    result = train(arch, toy_data(), settings, device="cpu", progress=False)
    assert result.test_accuracy >= 0.9


def test_the_fix_variant_trains_neither_first_conv_nor_readout(monkeypatch: pytest.MonkeyPatch) -> None:
    arch = architecture.parse({**CONV_NET, "readout": "gap", "fix_first_and_readout": True})
    built = []
    original = architecture.Architecture.module
    monkeypatch.setattr(architecture.Architecture, "module",
                        lambda self, *a, **k: built.append(original(self, *a, **k)) or built[-1])
    result = train(arch, toy_data(), TrainSettings(width=8, epochs=2, batch_size=20), device="cpu", progress=False)
    assert result.parameters == 8 * 8 + 8  # only the middle 1x1 conv
    torch.manual_seed(0)  # train() seeds with settings.seed (0) before it builds the network
    fresh, model = original(arch, 8, input_size=(4, 4)), built[0]
    torch.testing.assert_close(model.layers[1].weight, fresh.layers[1].weight)
    torch.testing.assert_close(model.readout.weight, fresh.readout.weight)
    assert not torch.allclose(model.layers[3].weight, fresh.layers[3].weight)


def test_a_diverging_run_says_so() -> None:
    arch = architecture.parse(CONV_NET)
    with pytest.raises(TrainingDiverged, match="lower --lr"):
        train(arch, toy_data(), TrainSettings(width=8, epochs=3, lr=1e6, batch_size=20), device="cpu",
              progress=False)


def test_augmentation_crops_and_flips_each_image_on_its_own() -> None:
    x = torch.randn(64, 3, 8, 8)
    out = _augment(x, torch.Generator().manual_seed(0))
    padded = F.pad(x, (1, 1, 1, 1))
    seen = set()
    for i in range(len(x)):
        matches = [(dy, dx, flip) for dy in range(3) for dx in range(3) for flip in (False, True)
                   if torch.equal(out[i], (lambda c: c.flip(-1) if flip else c)(padded[i, :, dy:dy + 8, dx:dx + 8]))]
        assert matches, f"image {i} is not a crop (or flipped crop) of its padded original"
        seen.add(matches[0])
    assert len(seen) > 5  # the images got different crops and flips
    torch.testing.assert_close(out, _augment(x, torch.Generator().manual_seed(0)))  # reproducible


@pytest.mark.parametrize("total", [1, 2, 3, 100])
def test_schedules_rise_then_fall_to_zero(total: int) -> None:
    onecycle = [learning_rate_factor("onecycle", step, total) for step in range(total + 1)]
    peak = onecycle.index(max(onecycle))
    assert max(onecycle) == 1 and onecycle[-1] == 0
    assert onecycle[:peak + 1] == sorted(onecycle[:peak + 1]) and onecycle[peak:] == sorted(onecycle[peak:])[::-1]
    cosine = [learning_rate_factor("cosine", step, total) for step in range(total + 1)]
    assert cosine[0] == 1 and cosine[-1] == pytest.approx(0, abs=1e-12) and cosine == sorted(cosine)[::-1]


def test_the_label_names_every_setting() -> None:
    base = TrainSettings()
    assert base.label.startswith("w128-e30-nall-r32-s0-")
    assert base.label == TrainSettings().label
    labels = {TrainSettings(**{field: value}).label for field, value in
              [("lr", 1.0), ("momentum", 0.5), ("schedule", "cosine"), ("parameterization", "standard"),
               ("augment", False), ("batch_size", 64), ("weight_decay", 0.0), ("batch_norm", True)]}
    assert len(labels) == 8 and base.label not in labels


@pytest.mark.parametrize("field, value, message", [
    ("width", 0, "--width: expected an integer >= 1"), ("lr", 0.0, "--lr: expected a finite number > 0"),
    ("lr", math.nan, "--lr"), ("weight_decay", -1.0, "--weight-decay"), ("schedule", "step", "--schedule"),
    ("parameterization", "mup", "--parameterization")])
def test_bad_settings_are_refused_with_the_option_named(field: str, value, message: str) -> None:
    with pytest.raises(NasCntkError, match=message):
        TrainSettings(**{field: value})
