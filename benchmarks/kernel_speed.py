"""Image pairs per second of the exact CNTK, ours beside neural-tangents', on 32x32 CIFAR-10 images.

    python benchmarks/kernel_speed.py                                   # ours only (on the GPU if there is one)
    python benchmarks/kernel_speed.py --nt-python .venv-nt/bin/python   # with the peer, same run
    python benchmarks/kernel_speed.py --plain                           # and our plain torch path

The paper's networks (depth x [conv3, relu], flatten or GAP readout), float32, NNGP and NTK both.
"ours" is what `nas_cntk.kernel` picks (for these chain networks the fused kernel: Numba on the
CPU, Triton on a CUDA GPU); "plain" is the torch path it is tested against, torch.compiled (one
run). Our timings exclude the first call (compiling, seconds), the peer's its jit compile, and
both sides report the best of --repeats runs (a shared machine's speed varies by 20% or more).
The peer runs in its own environment (neural-tangents pulls JAX and TensorFlow), as a subprocess.

GFLOP/s counts the arithmetic of the exact recursion per pixel-pair entry (a model, stated in
`flops_per_pair`), against the device's measured float32 peak: a large float32 matmul (TF32 off).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

import nas_cntk
from nas_cntk.data import load_cifar10
from nas_cntk.description.architecture import load

PEER = Path(__file__).resolve().parents[1] / "tools" / "neural_tangents" / "peer_benchmark.py"


def paper_network(readout: str, depth: int) -> dict:
    return {"weight_std": math.sqrt(2), "bias_std": 0.0, "readout": readout,
            "layers": [{"op": "conv", "kernel": 3}, {"op": "relu"}] * depth}


def cifar_images(n: int) -> torch.Tensor:
    images, _ = load_cifar10("train")
    x = torch.tensor(images[:n], dtype=torch.float32) / 255
    return (x - x.mean(dim=(0, 2, 3), keepdim=True)) / x.std(dim=(0, 2, 3), keepdim=True)


def flops_per_pair(spec: dict, channels: int = 3, size: int = 32) -> int:
    """Arithmetic per image pair: per entry of the readout's pixel pairs (P^2 for GAP, P for flatten),
    the input layer 2C, a k x k conv 2 (k^2 + 1) (box sum, scale and offset for Sigma and Theta), a
    ReLU 26 (variance product, square root, the angle with one division and a degree-4 polynomial,
    the two outputs), counting a square root or a division as one."""
    arch = load(spec)
    per_entry = 2 * channels
    for node in arch.nodes[1:]:
        per_entry += 2 * (node.op.kernel**2 + 1) if node.op.name == "conv" else 26 if node.op.name == "relu" else 0
    return per_entry * arch.readout.grid(size, size).entries


def measured_peak(device: str) -> float:
    """FLOP/s of a float32 matmul on the device (TF32 off on CUDA): the float32 peak in practice."""
    torch.backends.cuda.matmul.allow_tf32 = False
    n = 8192 if device.startswith("cuda") else 2048
    a = torch.randn(n, n, device=device)
    a @ a
    repeats = 20 if device.startswith("cuda") else 3
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ a
    synchronize(device)
    return repeats * 2 * n**3 / (time.perf_counter() - start)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def ours(spec: dict, pairs: int, device: str, fused: bool | None, repeats: int) -> float:
    side = max(1, int(math.sqrt(pairs)))
    x = cifar_images(2 * side).to(device)
    options = dict(progress=False, fused=fused, torch_compile=True)
    nas_cntk.kernel(spec, x[:side], x[side:], **options)  # warm-up: compiles for this shape
    seconds = math.inf
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        nas_cntk.kernel(spec, x[:side], x[side:], **options)
        synchronize(device)
        seconds = min(seconds, time.perf_counter() - start)
    return side * side / seconds


def peer(python: str, readout: str, depth: int, pairs: int, repeats: int) -> float | None:
    command = [python, str(PEER), "--readout", readout, "--depth", str(depth), "--pairs", str(pairs),
               "--repeats", str(repeats), "--json"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        print(f"neural-tangents failed: {result.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])["pairs_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", default="3,6,11")
    parser.add_argument("--readouts", default="flatten,gap")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--pairs-flatten", type=int, default=200_000, help="pairs timed, ours, flatten readout")
    parser.add_argument("--pairs-gap", type=int, default=2_500, help="pairs timed, ours, GAP readout")
    parser.add_argument("--plain", action="store_true", help="also time the plain torch path (on 1/10 of the pairs)")
    parser.add_argument("--nt-python", help="python of an environment with neural-tangents 0.6.5")
    parser.add_argument("--nt-pairs-flatten", type=int, default=2_000)
    parser.add_argument("--nt-pairs-gap", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timed runs, each side")
    args = parser.parse_args()

    if args.device.startswith("cuda"):
        device = torch.cuda.get_device_name()
    else:
        device = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    peak = measured_peak(args.device)
    print(f"device: {device}; torch {torch.__version__}, {torch.get_num_threads()} threads; float32, 32x32 "
          f"CIFAR-10; measured float32 peak {peak / 1e9:,.0f} GFLOP/s")
    print(f"{'readout':<8} {'depth':>5} {'ours pairs/s':>14} {'GFLOP/s':>9} {'% peak':>7} {'plain pairs/s':>14} "
          f"{'nt pairs/s':>12} {'ours/nt':>8}")
    for readout in args.readouts.split(","):
        for depth in map(int, args.depths.split(",")):
            spec, pairs = paper_network(readout, depth), getattr(args, f"pairs_{readout}")
            mine = ours(spec, pairs, args.device, None, args.repeats)
            flops = mine * flops_per_pair(spec)
            plain = ours(spec, max(1, pairs // 10), args.device, False, 1) if args.plain else float("nan")
            theirs = peer(args.nt_python, readout, depth, getattr(args, f"nt_pairs_{readout}"), args.repeats) \
                if args.nt_python else None
            ratio = f"{mine / theirs:8.1f}" if theirs else f"{'-':>8}"
            print(f"{readout:<8} {depth:>5} {mine:>14,.1f} {flops / 1e9:>9,.1f} {100 * flops / peak:>6.1f}% "
                  f"{plain:>14,.1f} {theirs or float('nan'):>12,.2f} {ratio}", flush=True)


if __name__ == "__main__":
    main()
