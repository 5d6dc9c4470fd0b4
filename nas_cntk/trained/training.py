"""Train the finite network of an architecture and measure its test accuracy.

The network is :meth:`Architecture.module`: the NTK parameterisation the kernel describes, with
N(0, 1) weights times ``weight_std / sqrt(fan_in)`` and N(0, 1) biases times ``bias_std``, so a
trained net and its kernel start from the same random-network distribution. Two ways to train it:

- ``ntk`` (default): SGD on those N(0, 1) parameters with one learning rate. This is gradient
  descent in the parameterisation whose infinite-width limit is the CNTK: the fair pairing.
- ``standard``: each parameter's learning rate is divided and its weight decay multiplied by its
  scale squared, which makes the updates of the effective weights exactly those of SGD in the
  standard parameterisation (same initial distribution, per-layer learning rates equal).

The paper's ``fix`` variant keeps the first conv and the readout at their initial values, as its kernel does.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from nas_cntk.data import DataSplits
from nas_cntk.description.architecture import Architecture
from nas_cntk.errors import TrainingDiverged
from nas_cntk.trained.settings import TrainSettings


@dataclass(frozen=True)
class TrainResult:
    test_accuracy: float
    train_loss: list[float] = field(repr=False)      # per epoch, averaged over its batches
    train_accuracy: list[float] = field(repr=False)  # per epoch, on the (augmented) batches as trained
    seconds: float
    device: str
    parameters: int                                  # trainable

    def to_dict(self) -> dict:
        return asdict(self)


def parameter_groups(model: nn.Module, settings: TrainSettings) -> list[dict]:
    """Optimizer groups: what each N(0, 1) parameter's scale asks of its learning rate and weight decay."""
    groups = []
    for module in model.modules():
        scales = (("weight", getattr(module, "weight_scale", None)), ("bias", getattr(module, "bias_scale", None)))
        for name, scale in scales:
            parameter = getattr(module, name, None) if scale is not None else None
            if parameter is None or not parameter.requires_grad or scale == 0:  # a zero-scale bias is not there
                continue
            # Weight decay acts on the effective weight scale * p:  d/dp (wd/2 (scale p)^2) = wd scale^2 p.
            lr = settings.lr / scale**2 if settings.parameterization == "standard" else settings.lr
            groups.append({"params": [parameter], "lr": lr, "weight_decay": settings.weight_decay * scale**2})
    return groups


def learning_rate_factor(schedule: str, step: int, total_steps: int) -> float:
    """onecycle: linear warm-up over the first quarter, then linear decay to zero; cosine: cosine decay to zero."""
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * step / total_steps))
    warmup = max(1, total_steps // 4)
    return (step + 1) / warmup if step < warmup else max(0.0, (total_steps - step) / max(1, total_steps - warmup))


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crops of the zero-padded images and random horizontal flips, each image its own."""
    b, _, h, w = x.shape
    pad = max(1, h // 8)
    shift = torch.randint(0, 2 * pad + 1, (2, b), generator=generator, device=x.device)
    rows = (shift[0, :, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (shift[1, :, None] + torch.arange(w, device=x.device))[:, None, None, :]
    flip = torch.rand(b, generator=generator, device=x.device) < 0.5
    cols = torch.where(flip[:, None, None, None], cols.flip(-1), cols)
    padded = F.pad(x, (pad, pad, pad, pad))
    return padded[torch.arange(b, device=x.device)[:, None, None, None],
                  torch.arange(x.shape[1], device=x.device)[None, :, None, None], rows, cols]


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch: int = 1000) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(x), batch):
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x[start:start + batch].to(device))
        correct += int((logits.argmax(1).cpu() == y[start:start + batch]).sum())
    return correct / len(x)


def train(arch: Architecture, data: DataSplits, settings: TrainSettings, *, device: torch.device | str | None = None,
          progress: bool | None = None) -> TrainResult:
    """Train ``arch`` at ``settings.width`` on ``data.x_train`` and return its accuracy on ``data.x_eval``."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(settings.seed)
    generator = torch.Generator(device).manual_seed(settings.seed)
    model = arch.module(settings.width, input_size=tuple(data.x_train.shape[-2:]),
                        batch_norm=settings.batch_norm).to(device)
    if arch.fix_first_and_readout:
        for parameter in (*model.layers[arch.first_conv].parameters(), *model.readout.parameters()):
            parameter.requires_grad_(False)
    groups = parameter_groups(model, settings)
    optimizer = torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum, nesterov=settings.momentum > 0)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    steps_per_epoch = math.ceil(len(x_train) / settings.batch_size)
    total_steps = settings.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: learning_rate_factor(
        settings.schedule, step, total_steps))

    start = time.perf_counter()
    losses, accuracies = [], []
    with tqdm(total=total_steps, desc="train", unit="step", disable=not progress if progress is not None else None,
              dynamic_ncols=True, leave=False) as bar:
        for epoch in range(settings.epochs):
            model.train()
            order = torch.randperm(len(x_train), generator=generator, device=device)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device)
            for step in range(steps_per_epoch):
                batch = order[step * settings.batch_size:(step + 1) * settings.batch_size]
                x, y = x_train[batch], y_train[batch]
                if settings.augment:
                    x = _augment(x, generator)
                with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
                    logits = model(x)
                    loss = F.cross_entropy(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.detach() * len(batch)
                correct += (logits.argmax(1) == y).sum()
                bar.update()
            losses.append(float(loss_sum) / len(x_train))
            accuracies.append(float(correct) / len(x_train))
            if not math.isfinite(losses[-1]):
                raise TrainingDiverged(f"training diverged in epoch {epoch + 1} (loss {losses[-1]}); "
                                       "try a lower --lr")
            bar.set_postfix_str(f"epoch {epoch + 1} loss {losses[-1]:.3f} acc {accuracies[-1]:.3f}")
    test_accuracy = accuracy(model, data.x_eval, data.y_eval, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return TrainResult(test_accuracy, losses, accuracies, time.perf_counter() - start, str(device),
                       sum(p.numel() for g in groups for p in g["params"]))
