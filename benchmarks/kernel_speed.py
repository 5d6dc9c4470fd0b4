"""Image pairs per second of the exact CNTK, ours beside neural-tangents', on 32x32 CIFAR-10 images.

    python benchmarks/kernel_speed.py                                   # ours only (on the GPU if there is one)
    python benchmarks/kernel_speed.py --nt-python .venv-nt/bin/python   # with the peer, same run
    python benchmarks/kernel_speed.py --plain                           # and our plain torch path
    python benchmarks/kernel_speed.py --graphs                          # cells and residual networks
    python benchmarks/kernel_speed.py --graphs --graph-size 32          # the same networks at 32x32

The paper's networks (depth x [conv3, relu], flatten or GAP readout), float32, NNGP and NTK both.
With --graphs, instead: NAS-Bench-201 cell networks (1 and 5 cells per stage, 8x8 and 16x16) and
the default space's residual and pooled networks (8x8), or with --graph-size each at that size
alone; the fused graph kernel against the plain path uncompiled (what a search runs without
torch.compile), both on the same CIFAR-10 images, the repeats of the two interleaved, each side's
best reported.
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


def ours(spec, pairs: int, device: str, fused: bool | None, repeats: int, size: int = 32,
         torch_compile: bool = True) -> float:
    side = max(1, int(math.sqrt(pairs)))
    x = torch.nn.functional.avg_pool2d(cifar_images(2 * side), 32 // size).to(device)
    options = dict(progress=False, fused=fused, torch_compile=torch_compile)
    nas_cntk.kernel(spec, x[:side], x[side:], **options)  # warm-up: compiles for this shape
    seconds = math.inf
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        nas_cntk.kernel(spec, x[:side], x[side:], **options)
        synchronize(device)
        seconds = min(seconds, time.perf_counter() - start)
    return side * side / seconds


def graph_networks(size: int | None = None) -> list[tuple[str, object, int, int]]:
    """The networks of --graphs: (name, description, image size, pairs timed). At ``size``, each network
    once, on as many pairs as make the arithmetic of its smallest size's (by `graph_flops_per_pair`)."""
    from nas_cntk.description import nasbench201_network

    cell = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    pools = "|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|skip_connect~0|avg_pool_3x3~1|avg_pool_3x3~2|"
    block = {"op": "residual", "body": [{"op": "conv", "kernel": 3}, {"op": "relu"}]}
    pooled_residual = {"readout": "flatten", "layers": [{"op": "conv", "kernel": 3}, {"op": "relu"}, block,
                                                        {"op": "avg_pool", "window": 2}, block, block]}
    residual_gap = {"readout": "gap", "layers": [{"op": "conv", "kernel": 3}, {"op": "relu"}, block, block, block]}
    pooled = {"readout": "gap", "layers": [{"op": "conv", "kernel": 5}, {"op": "relu"}, {"op": "avg_pool", "window": 2},
                                           {"op": "conv", "kernel": 3}, {"op": "relu"}] * 1 + [
        {"op": "avg_pool", "window": 2}, {"op": "conv", "kernel": 3}, {"op": "relu"}]}
    # Enough pairs that each image's own pass (a pair's cost or more) weighs as little as in a
    # trial's kernel (hundreds of pairs an image).
    networks = [("nb201 cell, N=1", nasbench201_network(cell, 1), ((8, 10000), (16, 1200))),
                ("nb201 pools, N=1", nasbench201_network(pools, 1), ((8, 10000), (16, 600))),
                ("nb201 cell, N=5", nasbench201_network(cell, 5), ((8, 2500), (16, 400))),
                ("default: pooled residual, flatten", pooled_residual, ((8, 20000),)),
                ("default: residual, GAP", residual_gap, ((8, 3000),)), ("default: pooled, GAP", pooled, ((8, 3000),))]
    if size is not None:
        networks = [(name, arch, ((size, max(1, round(pairs * graph_flops_per_pair(load(arch), s) /
                                                       graph_flops_per_pair(load(arch), size)))),))
                    for name, arch, ((s, pairs), *_) in networks]
    return [(f"{name}, {s}x{s}", arch, s, pairs) for name, arch, sizes in networks for s, pairs in sizes]


def graph_flops_per_pair(arch, size: int) -> int:
    """Arithmetic per pair of the fused graph kernel's program: a linear map 2 per matrix entry it
    applies, a ReLU 26 per entry (as for chains) and 1 more for Theta, the input 2C, a sum of k terms k - 1."""
    from nas_cntk.kernels import plan
    from nas_cntk.kernels.fused.graph import instructions as graph
    from nas_cntk.kernels.fused.graph import lower

    p = plan(arch, size, size)
    program = lower(p, lower(p))
    (grid_table, _), (table, _, _) = program.grids, program.matrices
    flops = 0
    for row in program.code:
        op, rows, cols = row[0], grid_table[row[6], 0], grid_table[row[6], 1]
        if op == graph.LINEAR:
            in_rows = grid_table[row[5], 0]
            for matrix, other in ((row[4], in_rows), (row[3], cols)):  # B on each input row, then A per column
                if matrix >= 0:
                    flops += 2 * table[matrix, 0] * table[matrix, 1] * other
            flops += 2 * rows * cols
        elif op == graph.RELU:
            flops += (26 + (row[3] >= 0)) * rows * cols
        elif op == graph.INPUT:
            flops += 6 * rows * cols
        elif op == graph.ADD:
            flops += (row[4] - 1) * rows * cols
        elif op in (graph.SCALE, graph.OUTER, graph.READOUT):
            flops += rows * cols
    return int(flops)


def graphs(device: str, peak: float, repeats: int, scale: float, at_size: int | None) -> None:
    print(f"{'network':<40} {'nodes':>5} {'fused pairs/s':>14} {'GFLOP/s':>9} {'% peak':>7} {'plain pairs/s':>14} "
          f"{'fused/plain':>11}")
    for name, arch, size, pairs in graph_networks(at_size):
        arch, pairs = load(arch), max(1, round(pairs * scale))
        mine = plain = 0.0
        for _ in range(repeats):  # interleaved: both sides see the same machine, whose speed drifts by 20% or more
            mine = max(mine, ours(arch, pairs, device, None, 1, size, torch_compile=False))
            plain = max(plain, ours(arch, max(1, pairs // 10), device, False, 1, size, torch_compile=False))
        flops = mine * graph_flops_per_pair(arch, size)
        print(f"{name:<40} {len(arch.nodes):>5} {mine:>14,.1f} {flops / 1e9:>9,.1f} {100 * flops / peak:>6.1f}% "
              f"{plain:>14,.1f} {mine / plain:>11.1f}", flush=True)


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
    parser.add_argument("--graphs", action="store_true", help="cells and residual networks instead (see above)")
    parser.add_argument("--graph-scale", type=float, default=1.0,
                        help="--graphs: time this fraction of each network's pairs (0.1: a quick run)")
    parser.add_argument("--graph-size", type=int, metavar="PIXELS",
                        help="--graphs: each network at this image size alone (default: 8x8 and 16x16)")
    args = parser.parse_args()

    if args.device.startswith("cuda"):
        device = torch.cuda.get_device_name()
    else:
        device = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    peak = measured_peak(args.device)
    print(f"device: {device}; torch {torch.__version__}, {torch.get_num_threads()} threads; float32, "
          f"CIFAR-10; measured float32 peak {peak / 1e9:,.0f} GFLOP/s")
    if args.graphs:
        graphs(args.device, peak, args.repeats, args.graph_scale, args.graph_size)
        return
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
