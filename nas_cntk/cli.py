"""The ``nas-cntk`` command line."""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from nas_cntk import architecture, data, engine
from nas_cntk.errors import NasCntkError
from nas_cntk.leaderboard import format_table, leaderboard
from nas_cntk.score import Score, score
from nas_cntk.search import SAMPLERS, SearchSettings, finished_trials, load_study, run_search
from nas_cntk.tracking import local_tracking_uri

DEFAULT_TRIALS_DIR = "trials"


def _add_data_options(parser: argparse.ArgumentParser, eval_name: str, eval_default: int) -> None:
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


def _add_score_options(parser: argparse.ArgumentParser, eval_name: str, eval_default: int) -> None:
    parser.add_argument("--arch", required=True, metavar="FILE", help="architecture description (.json/.yaml)")
    _add_data_options(parser, eval_name, eval_default)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--save-kernel", metavar="FILE.npz", help="keep the kernel matrices in this file")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _add_store_options(parser: argparse.ArgumentParser, study_help: str) -> None:
    parser.add_argument("--study", help=study_help)
    parser.add_argument("--trials-dir", default=DEFAULT_TRIALS_DIR, metavar="DIR",
                        help="where the local stores live: optuna.db, mlflow.db, mlartifacts/, cache/ "
                             f"(default {DEFAULT_TRIALS_DIR}/)")
    parser.add_argument("--storage", metavar="URL", help="Optuna RDB storage URL, e.g. postgresql://host/db "
                        "(default: sqlite:///DIR/optuna.db)")
    parser.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI, e.g. http://host:5000 "
                        "(default: sqlite:///DIR/mlflow.db)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nas-cntk", description="Neural architecture search with exact CNTK "
                                     "kernel regression on small CIFAR-10 subsets.")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_score_options(commands.add_parser(
        "score", help="score an architecture on a validation subset of the CIFAR-10 training split"), "val", 1000)
    _add_score_options(commands.add_parser(
        "evaluate", help="score an architecture on the CIFAR-10 test split (the paper's 2K experiment)"),
        "test", 10000)

    search = commands.add_parser("search", help="search a space of architectures (Optuna), logging to MLflow")
    search.add_argument("--space", default="default", metavar="FILE",
                        help="search-space file, or a built-in one by name: default, arora2019 (default: default)")
    search.add_argument("--trials", type=int, default=100,
                        help="finished trials the study should have in all, earlier runs included (default 100)")
    search.add_argument("--sampler", choices=SAMPLERS, default="auto",
                        help="auto: grid for a list of architectures, else tpe (default auto)")
    search.add_argument("--workers", type=int, default=1,
                        help="processes working on the study at once, one GPU each where there are several")
    search.add_argument("--heartbeat", type=int, default=10, metavar="SECONDS",
                        help="a trial whose process stops beating for 3 heartbeats is failed and retried")
    search.add_argument("--dry-run", action="store_true", help="print the cost estimate and stop")
    _add_data_options(search, "val", 1000)
    _add_store_options(search, "study name (default: SPACE-DATA, e.g. default-t2000-v1000-r32-s0)")

    board = commands.add_parser("leaderboard", help="the study's architectures, best first")
    board.add_argument("--top", type=int, metavar="K", help="only the best K")
    board.add_argument("--csv", metavar="FILE", help="also write the table to a CSV file")
    _add_store_options(board, "study name (default: the most recent)")

    export = commands.add_parser("export", help="write the best architectures as JSON and standalone PyTorch")
    export.add_argument("--top", type=int, default=5, metavar="K", help="how many (default 5)")
    export.add_argument("--out", metavar="DIR", help="output folder (default: DIR/export/STUDY)")
    _add_store_options(export, "study name (default: the most recent)")

    ui = commands.add_parser("ui", help="start the MLflow UI on the local tracking store")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    _add_store_options(ui, argparse.SUPPRESS)
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


def _stores(args) -> tuple[str, str]:
    """The Optuna storage URL and the MLflow tracking URI, local under --trials-dir unless given."""
    trials_dir = Path(args.trials_dir)
    return (args.storage or f"sqlite:///{(trials_dir / 'optuna.db').resolve()}",
            args.tracking_uri or local_tracking_uri(trials_dir))


def _positive(value: int, option: str) -> None:
    if value < 1:
        raise NasCntkError(f"{option}: expected an integer >= 1, got {value}")


def _search_command(args) -> None:
    from nas_cntk.space import load_space

    _positive(args.trials, "--trials")
    _positive(args.workers, "--workers")
    _positive(args.heartbeat, "--heartbeat")
    storage, tracking_uri = _stores(args)
    settings = data.DataSettings(args.train_size, args.eval_size, args.resolution, args.seed, args.zca)
    study = args.study or f"{load_space(args.space).name}-{settings.label}"
    search_settings = SearchSettings(space=args.space, study=study, storage=storage, tracking_uri=tracking_uri,
                                     trials_dir=Path(args.trials_dir), trials=args.trials, sampler=args.sampler,
                                     seed=args.seed, workers=args.workers, data=settings, data_dir=args.data_dir,
                                     device=args.device, heartbeat=args.heartbeat)
    result = run_search(search_settings, dry_run=args.dry_run)
    if args.dry_run:
        return
    print(f"\ntop five of {finished_trials(result)} finished trials:")
    print(format_table(leaderboard(result, 5)))
    print(f"\nOptuna study  {study} in {storage}\nMLflow        experiment {study} in {tracking_uri}"
          f"{'  (nas-cntk ui to browse)' if args.tracking_uri is None else ''}"
          f"\nexport        nas-cntk export --study {study}")


def _leaderboard_command(args) -> None:
    table = leaderboard(load_study(_stores(args)[0], args.study), args.top)
    print(format_table(table))
    if args.csv:
        table.to_csv(args.csv, index=False)


def _export_command(args) -> None:
    from nas_cntk.export import export_architecture

    _positive(args.top, "--top")
    study = load_study(_stores(args)[0], args.study)
    table = leaderboard(study, args.top)
    if not len(table):
        raise NasCntkError(f"study {study.study_name!r} has no completed trial to export yet")
    out = Path(args.out or Path(args.trials_dir) / "export" / study.study_name)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    for row in table.itertuples():
        attrs = trials[row.trial].user_attrs
        arch = architecture.parse({**attrs["architecture"], **({"name": attrs["name"]} if attrs["name"] else {})})
        json_path, py_path = export_architecture(arch, out, f"rank{row.rank}_trial{row.trial}_{row.hash}")
        print(f"{row.rank}. CNTK {row.cntk_acc:.4f}  {py_path}  {json_path.name}")
    table.to_csv(out / "leaderboard.csv", index=False)


def _ui_command(args) -> None:
    tracking_uri = _stores(args)[1]
    if tracking_uri.startswith(("http://", "https://")):
        raise NasCntkError(f"{tracking_uri} is a tracking server already: open it in a browser")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
               "--host", args.host, "--port", str(args.port)]
    print(f"MLflow UI on {tracking_uri}: http://{args.host}:{args.port}", flush=True)
    os.execv(sys.executable, command)


COMMANDS = {"score": _score_command, "evaluate": _score_command, "search": _search_command,
            "leaderboard": _leaderboard_command, "export": _export_command, "ui": _ui_command}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except NasCntkError as error:
        print(f"nas-cntk: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nas-cntk: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
