"""Image pairs per second of neural-tangents' exact CNTK on the paper's networks (the speed peer).

    .venv-nt/bin/python tools/neural_tangents/peer_benchmark.py --readout gap --depth 3 --pairs 100 --json

The network is Arora et al. (2019)'s CNTK-V / CNTK-GAP without the `fix` variant: depth x [conv 3x3
(W_std=sqrt(2), b_std=0), relu], then Flatten or GlobalAvgPool, then Dense. The kernel (NNGP and
NTK) of an n1 x n2 block of 3 x size x size images, n1 * n2 ~ --pairs, is computed on the CPU in
--dtype. Inputs are standard normal (already "standardised"), or the first CIFAR-10 training
images with --data (per-channel standardised, average-pooled to --size).

Timing excludes compilation and takes the best of --repeats runs: with --batch-size 0 (default) the
whole block is one jitted kernel_fn call, compiled ahead of time (lower().compile(), nothing run);
with --batch-size b the block goes through nt.batch(kernel_fn, b) (n1, n2 rounded up to multiples of b),
warmed up by one b x b call that compiles the per-batch function. Prints one line; with --json a JSON object with
readout, depth, pairs, seconds, pairs_per_second, jax_version, nt_version and the configuration.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stax_mapping import nhwc, to_stax  # noqa: E402


def paper_network(readout: str, depth: int) -> dict:
    return {"weight_std": math.sqrt(2), "bias_std": 0.0, "readout": readout,
            "layers": [{"op": "conv", "kernel": 3}, {"op": "relu"}] * depth}


class _ArraysOnly(pickle.Unpickler):
    """CIFAR-10's pickles hold numpy arrays and plain values; refuse anything else."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name}")
        return super().find_class(module, name)


def images(n: int, size: int, data: str | None, seed: int) -> np.ndarray:
    """n images (n, 3, size, size), float64, standardised per channel."""
    if data is None:
        return np.random.default_rng(seed).standard_normal((n, 3, size, size))
    with open(Path(data) / "data_batch_1", "rb") as f:
        batch = _ArraysOnly(f, encoding="bytes").load()
    if n > len(batch[b"data"]):
        raise SystemExit(f"--data: only {len(batch[b'data'])} images in data_batch_1, {n} needed")
    x = batch[b"data"][:n].reshape(n, 3, 32, 32).astype(np.float64) / 255
    r = 32 // size
    x = x.reshape(n, 3, size, r, size, r).mean(axis=(3, 5))
    return (x - x.mean(axis=(0, 2, 3), keepdims=True)) / x.std(axis=(0, 2, 3), keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readout", choices=("flatten", "gap"), required=True)
    parser.add_argument("--depth", type=int, required=True)
    parser.add_argument("--pairs", type=int, default=1000, help="image pairs in the timed block (about)")
    parser.add_argument("--repeats", type=int, default=1, help="time the block this many times, report the best")
    parser.add_argument("--size", type=int, default=32, choices=(8, 16, 32))
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--batch-size", type=int, default=0, help="nt.batch batch size; 0: one call")
    parser.add_argument("--data", help="cifar-10-batches-py folder (default: random normal images)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import neural_tangents as nt

    warnings.filterwarnings("ignore", category=UserWarning)
    n = max(1, round(math.sqrt(args.pairs)))
    if args.batch_size:
        n = math.ceil(n / args.batch_size) * args.batch_size
    x = nhwc(images(2 * n, args.size, args.data, args.seed)).astype(args.dtype)
    x1, x2 = jax.device_put(x[:n]), jax.device_put(x[n:])
    kernel_fn = to_stax(paper_network(args.readout, args.depth))[2]
    get = ("nngp", "ntk")

    if args.batch_size:
        compute = nt.batch(kernel_fn, batch_size=args.batch_size, device_count=0, store_on_device=False)
        b = args.batch_size
        jax.block_until_ready(compute(x1[:b], x2[:b], get=get))  # warm-up: compiles the b x b function
        run = lambda: compute(x1, x2, get=get)  # noqa: E731
    else:
        compiled = jax.jit(kernel_fn, static_argnames="get").lower(x1, x2, get=get).compile()
        run = lambda: compiled(x1, x2)  # noqa: E731

    seconds = math.inf
    for _ in range(args.repeats):  # the best of a few runs: the least disturbed by other work
        start = time.perf_counter()
        out = jax.block_until_ready(run())
        seconds = min(seconds, time.perf_counter() - start)
    assert out.ntk.shape == (n, n) and np.isfinite(np.asarray(out.ntk)).all(), "bad kernel"

    result = {"readout": args.readout, "depth": args.depth, "pairs": n * n, "seconds": round(seconds, 3),
              "pairs_per_second": n * n / seconds, "jax_version": jax.__version__,
              "nt_version": nt.__version__, "n1": n, "n2": n, "batch_size": args.batch_size,
              "dtype": args.dtype, "size": args.size, "data": "cifar10" if args.data else "random",
              "cpu_count": os.cpu_count(), "load_average": round(os.getloadavg()[0], 2)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"neural-tangents {nt.__version__}: {args.readout} depth {args.depth}, {n} x {n} = {n * n} pairs "
              f"({args.size}x{args.size}, {args.dtype}, batch {args.batch_size or 'none'}): {seconds:.2f} s, "
              f"{n * n / seconds:,.2f} pairs/s")


if __name__ == "__main__":
    main()
