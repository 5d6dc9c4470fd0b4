"""The ``nas-cntk`` command line."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

import torch

from nas_cntk import architecture, data, engine
from nas_cntk.errors import NasCntkError
from nas_cntk.score import Score, score


def _add_data_options(parser: argparse.ArgumentParser, eval_name: str, eval_default: int) -> None:
    parser.add_argument("--arch", required=True, metavar="FILE", help="architecture description (.json/.yaml)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help=f"CIFAR-10 folder (default: ${data.DATA_DIR_ENV}, else {data.default_data_dir()}; "
                             "downloaded there when absent)")
    parser.add_argument("--train-size", type=int, default=2000, help="training images, stratified (default 2000)")
    parser.add_argument(f"--{eval_name}-size", dest="eval_size", type=int, default=eval_default,
                        help=f"{eval_name} images, stratified (default {eval_default})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stratified subsets (default 0)")
    parser.add_argument("--resolution", type=int, default=32,
                        help="downsample images to this size: cheaper, lower-fidelity score (default 32)")
    parser.add_argument("--zca", action="store_true", help="ZCA-whiten the images (fitted on the training subset)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--save-kernel", metavar="FILE.npz", help="keep the kernel matrices in this file")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nas-cntk", description="Neural architecture search with exact CNTK "
                                     "kernel regression on small CIFAR-10 subsets.")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_data_options(commands.add_parser(
        "score", help="score an architecture on a validation subset of the CIFAR-10 training split"), "val", 1000)
    _add_data_options(commands.add_parser(
        "evaluate", help="score an architecture on the CIFAR-10 test split (the paper's 2K experiment)"),
        "test", 10000)
    return parser


def _report(arch: architecture.Architecture, splits: data.DataSplits, result: Score, args) -> str:
    if args.json:
        return json.dumps({"architecture": arch.name, "hash": result.arch_hash, "summary": arch.summary(),
                           "train_size": len(splits.x_train), "eval_size": len(splits.x_eval),
                           "eval_split": splits.eval_split, "resolution": args.resolution, "seed": args.seed,
                           "ntk": asdict(result.ntk), "nngp": asdict(result.nngp), "seconds": result.seconds,
                           "pairs": result.pairs, "pairs_per_second": result.pairs_per_second,
                           "device": result.device})
    split = "validation (training split)" if splits.eval_split == "val" else "test split"
    rows = [("architecture", f"{arch.name or '-'} ({result.arch_hash}): {arch.summary()}"),
            ("data", f"{len(splits.x_train)} training images, {len(splits.x_eval)} {split}, "
                     f"{args.resolution}x{args.resolution}, seed {args.seed}{', ZCA' if args.zca else ''}")]
    for name, r in (("CNTK accuracy", result.ntk), ("NNGP accuracy", result.nngp)):
        rows.append((name, f"{r.accuracy:.4f}   (ridge {r.relative_ridge:g} x mean diagonal = {r.ridge:.4g}; "
                           f"leave-one-out accuracy {r.loo_accuracy:.4f})"))
    rows.append(("kernel time", f"{result.seconds:.1f} s on {result.device}: {result.pairs:,} image pairs, "
                                f"{result.pairs_per_second:,.0f} pairs/s"))
    if args.save_kernel:
        rows.append(("kernels", args.save_kernel))
    return "\n".join(f"{key:<14}{value}" for key, value in rows)


def _score_command(args) -> None:
    if args.device and args.device.startswith("cuda") and not torch.cuda.is_available():
        raise NasCntkError(f"--device {args.device}: no CUDA device is available here; use --device cpu")
    arch = architecture.load(args.arch)
    engine.plan(arch, args.resolution, args.resolution)  # a bad architecture fails before any data is read
    eval_split = "val" if args.command == "score" else "test"
    splits = data.load_splits(args.train_size, args.eval_size, eval_split=eval_split, seed=args.seed,
                              resolution=args.resolution, zca=args.zca, data_dir=args.data_dir)
    result = score(arch, splits, dtype=getattr(torch, args.dtype), device=args.device,
                   save_kernels=args.save_kernel)
    print(_report(arch, splits, result, args))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _score_command(args)
    except NasCntkError as error:
        print(f"nas-cntk: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nas-cntk: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
