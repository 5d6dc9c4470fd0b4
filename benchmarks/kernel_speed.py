"""Image pairs per second of the exact CNTK, ours beside neural-tangents', on 32x32 CIFAR-10 images.

    python benchmarks/kernel_speed.py                          # ours only
    python benchmarks/kernel_speed.py --nt-python .venv-nt/bin/python   # with the peer, same run

The paper's networks (depth x [conv3, relu], flatten or GAP readout), float32. Our timings
exclude the one-off torch.compile of the first call (seconds, once per network and shape) and
use the path a full-size trial takes; the peer's exclude its jit compile the same way. The
peer runs in its own environment (neural-tangents pulls JAX and TensorFlow), as a subprocess.
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

PEER = Path(__file__).resolve().parents[1] / "tools" / "neural_tangents" / "peer_benchmark.py"


def paper_network(readout: str, depth: int) -> dict:
    return {"weight_std": math.sqrt(2), "bias_std": 0.0, "readout": readout,
            "layers": [{"op": "conv", "kernel": 3}, {"op": "relu"}] * depth}


def cifar_images(n: int) -> torch.Tensor:
    images, _ = load_cifar10("train")
    x = torch.tensor(images[:n], dtype=torch.float32) / 255
    return (x - x.mean(dim=(0, 2, 3), keepdim=True)) / x.std(dim=(0, 2, 3), keepdim=True)


def ours(readout: str, depth: int, pairs: int, device: str) -> float:
    side = max(1, int(math.sqrt(pairs)))
    x = cifar_images(2 * side).to(device)
    arch = paper_network(readout, depth)
    nas_cntk.kernel(arch, x[:side], x[side:], compile=True, progress=False)  # warm-up: compiles for this shape
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    nas_cntk.kernel(arch, x[:side], x[side:], compile=True, progress=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return side * side / (time.perf_counter() - start)


def peer(python: str, readout: str, depth: int, pairs: int) -> float | None:
    command = [python, str(PEER), "--readout", readout, "--depth", str(depth), "--pairs", str(pairs), "--json"]
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
    parser.add_argument("--pairs-flatten", type=int, default=40_000, help="pairs timed, ours, flatten readout")
    parser.add_argument("--pairs-gap", type=int, default=900, help="pairs timed, ours, GAP readout")
    parser.add_argument("--nt-python", help="python of an environment with neural-tangents 0.6.5")
    parser.add_argument("--nt-pairs-flatten", type=int, default=2_000)
    parser.add_argument("--nt-pairs-gap", type=int, default=30)
    args = parser.parse_args()

    cpu = platform.processor() or platform.machine()
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{cpu}, {os.cpu_count()} cores"
    print(f"device: {device}; torch {torch.__version__}, {torch.get_num_threads()} threads; float32, 32x32 CIFAR-10")
    print(f"{'readout':<8} {'depth':>5} {'ours pairs/s':>14} {'nt pairs/s':>12} {'ratio':>8}")
    for readout in args.readouts.split(","):
        for depth in map(int, args.depths.split(",")):
            mine = ours(readout, depth, getattr(args, f"pairs_{readout}"), args.device)
            theirs = peer(args.nt_python, readout, depth, getattr(args, f"nt_pairs_{readout}")) if args.nt_python \
                else None
            ratio = f"{mine / theirs:8.1f}" if theirs else f"{'-':>8}"
            print(f"{readout:<8} {depth:>5} {mine:>14,.1f} {theirs or float('nan'):>12,.2f} {ratio}", flush=True)


if __name__ == "__main__":
    main()
