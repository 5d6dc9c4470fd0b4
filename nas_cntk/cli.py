"""The ``nas-cntk`` command line."""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch

from nas_cntk import architecture, data, engine, trained
from nas_cntk.correlation import correlate, correlation_figure, format_correlation
from nas_cntk.errors import NasCntkError
from nas_cntk.leaderboard import format_table, leaderboard, trial_architecture
from nas_cntk.score import Score, score
from nas_cntk.search import SAMPLERS, SearchSettings, finished_trials, load_study, run_search
from nas_cntk.tracking import Tracker, local_tracking_uri
from nas_cntk.train import PARAMETERIZATIONS, SCHEDULES, TrainSettings
from nas_cntk.trained import KERNELS

DEFAULT_TRIALS_DIR = "trials"
# Training settings a 2-core CPU finishes in minutes per network (timings in BENCHMARKS.md).
PRESETS = {"full": {}, "cpu": {"width": 64, "epochs": 15, "train_size": 10000, "resolution": 8}}


def _add_data_options(parser: argparse.ArgumentParser, eval_name: str, eval_default: int, *,
                      space_defaults: str | None = None) -> None:
    """The data options; with ``space_defaults`` (where they come from, for the help) the sizes and
    resolution default to None, so that a search space's fidelity settings fill in what is left out."""
    def default(value: int) -> tuple[int | None, str]:
        return (None, f"{space_defaults}, else {value}") if space_defaults else (value, str(value))

    parser.add_argument("--data-dir", metavar="DIR",
                        help=f"CIFAR-10 folder (default: ${data.DATA_DIR_ENV}, else {data.default_data_dir()}; "
                             "downloaded there when absent)")
    value, text = default(2000)
    parser.add_argument("--train-size", type=int, default=value, help=f"training images, stratified (default: {text})")
    value, text = default(eval_default)
    parser.add_argument(f"--{eval_name}-size", dest="eval_size", type=int, default=value,
                        help=f"{eval_name} images, stratified (default: {text})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stratified subsets (default 0)")
    value, text = default(32)
    parser.add_argument("--resolution", type=int, default=value,
                        help=f"downsample images to this size: cheaper, lower-fidelity score (default: {text})")
    parser.add_argument("--zca", action="store_true", help="ZCA-whiten the images (fitted on the training subset)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")


def _add_score_options(parser: argparse.ArgumentParser, eval_name: str, eval_default: int) -> None:
    parser.add_argument("--arch", required=True, metavar="FILE", help="architecture description (.json/.yaml)")
    _add_data_options(parser, eval_name, eval_default)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--save-kernel", metavar="FILE.npz", help="keep the kernel matrices in this file")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _add_tracking_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials-dir", default=DEFAULT_TRIALS_DIR, metavar="DIR",
                        help="where the local stores live: optuna.db, mlflow.db, mlartifacts/, cache/ "
                             f"(default {DEFAULT_TRIALS_DIR}/)")
    parser.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI, e.g. http://host:5000 "
                        "(default: sqlite:///DIR/mlflow.db)")


def _add_store_options(parser: argparse.ArgumentParser, study_help: str) -> None:
    parser.add_argument("--study", help=study_help)
    _add_tracking_options(parser)
    parser.add_argument("--storage", metavar="URL", help="Optuna RDB storage URL, e.g. postgresql://host/db "
                        "(default: sqlite:///DIR/optuna.db)")


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
                        help="search-space file, or a built-in one by name: default, arora2019, nasbench201 "
                             "(default: default)")
    search.add_argument("--trials", type=int, default=100,
                        help="finished trials the study should have in all, earlier runs included (default 100)")
    search.add_argument("--sampler", choices=SAMPLERS, default="auto",
                        help="auto: grid for a list of architectures, else tpe (default auto)")
    search.add_argument("--workers", type=int, default=1,
                        help="processes working on the study at once, one GPU each where there are several")
    search.add_argument("--heartbeat", type=int, default=10, metavar="SECONDS",
                        help="a trial whose process stops beating for 3 heartbeats is failed and retried")
    search.add_argument("--dry-run", action="store_true", help="print the cost estimate and stop")
    _add_data_options(search, "val", 1000, space_defaults="the space file's fidelity")
    _add_store_options(search, "study name (default: SPACE-DATA, e.g. default-t2000-v1000-r32-s0)")

    board = commands.add_parser("leaderboard", help="the study's architectures, best first")
    board.add_argument("--top", type=int, metavar="K", help="only the best K")
    board.add_argument("--csv", metavar="FILE", help="also write the table to a CSV file")
    _add_store_options(board, "study name (default: the most recent)")

    export = commands.add_parser("export", help="write the best architectures as JSON and standalone PyTorch")
    export.add_argument("--top", type=int, default=5, metavar="K", help="how many (default 5)")
    export.add_argument("--out", metavar="DIR", help="output folder (default: DIR/export/STUDY)")
    _add_store_options(export, "study name (default: the most recent)")

    train = commands.add_parser("train", help="train the finite networks of a study's architectures; "
                                "their test accuracy goes next to the kernel scores")
    chosen = train.add_mutually_exclusive_group()
    chosen.add_argument("--top", type=int, metavar="K", help="the kernel's best K architectures (default 5)")
    chosen.add_argument("--trials", metavar="N,N,...", help="these trials, e.g. 3,7,9")
    chosen.add_argument("--sample", type=int, metavar="K", help="K architectures drawn at random: an unbiased "
                        "sample for `nas-cntk correlate`")
    train.add_argument("--preset", choices=PRESETS, default="full",
                       help="full: the settings below; cpu: " + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v
                                                                        in PRESETS["cpu"].items())
                       + " (options given explicitly override the preset)")
    defaults = TrainSettings()
    for name, kind, text in (
            ("width", int, "channels of every conv"), ("epochs", int, ""), ("batch_size", int, ""),
            ("lr", float, "learning rate of the N(0, 1) parameters (ntk), or of the effective weights (standard)"),
            ("momentum", float, "Nesterov momentum"), ("weight_decay", float, "on the effective weights"),
            ("train_size", int, "training images, stratified, from the training split without the study's "
                                "validation images"),
            ("test_size", int, "test-split images the accuracy is measured on"),
            ("resolution", int, "downsample images to this size")):
        default = getattr(defaults, name)
        train.add_argument(f"--{name.replace('_', '-')}", type=kind, metavar=name.split("_")[-1].upper(),
                           help=f"{text}{'; ' if text else ''}default {default if default is not None else 'all'}")
    train.add_argument("--schedule", choices=SCHEDULES, help=f"learning-rate schedule (default {defaults.schedule})")
    train.add_argument("--parameterization", choices=PARAMETERIZATIONS,
                       help=f"how the learning rate meets each layer (default {defaults.parameterization}; "
                            "see the README)")
    train.add_argument("--no-augment", dest="augment", action="store_false", default=None,
                       help="no random crops and flips")
    train.add_argument("--batch-norm", action="store_true", default=None,
                       help="a batch norm after every conv, as NAS-Bench-201 trains its networks (the kernel "
                            "describes them without it)")
    train.add_argument("--seed", type=int, help="seed of the training subset, initialisation and batches (default 0)")
    train.add_argument("--data-dir", metavar="DIR", help="CIFAR-10 folder (as for score)")
    train.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available; bfloat16 mixed "
                       "precision on CUDA)")
    _add_store_options(train, "study name (default: the most recent)")

    correlate = commands.add_parser("correlate", help="how well the kernel ranking predicts the trained ranking")
    correlate.add_argument("--label", help="which trained results (default: the label with the most)")
    correlate.add_argument("--trained-csv", metavar="FILE", help="trained accuracies from a CSV instead, keyed "
                           "by a 'hash' or 'name' column")
    correlate.add_argument("--column", help="the CSV's accuracy column (default: its only numeric one)")
    correlate.add_argument("--kernel", choices=KERNELS, default="cntk", help="which kernel score (default cntk)")
    correlate.add_argument("--top-k", type=int, metavar="K", help="k of precision@k (default: a tenth, at least 1)")
    correlate.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    correlate.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    correlate.add_argument("--out", metavar="FILE.png", help="the plot (default: DIR/correlation/STUDY-KERNEL-LABEL.png)")
    _add_store_options(correlate, "study name (default: the most recent)")

    bench = commands.add_parser("benchmark", help="how well the kernel ranks a benchmark's trained networks: "
                                "rank correlation on a random sample of its table")
    bench.add_argument("benchmark", choices=("nb201",), help="nb201: NAS-Bench-201 on CIFAR-10")
    bench.add_argument("--table", required=True, metavar="FILE.csv",
                       help="architectures and trained accuracies (columns arch, cifar10_test_acc_200ep, n_seeds)")
    bench.add_argument("--sample", type=int, metavar="K", help="architectures drawn at random (default: all rows); "
                       "a larger K with the same --seed extends a smaller sample")
    bench.add_argument("--cells-per-stage", type=int, metavar="N", help="cells per stage of the macro network "
                       "(the benchmark trains 5; default: the nasbench201 space's fidelity)")
    _add_data_options(bench, "val", 1000, space_defaults="the nasbench201 space's fidelity")  # --seed: the sample too
    bench.add_argument("--out", metavar="FILE.csv", help="the per-architecture scores "
                       "(default: DIR/benchmark/nb201-nN-DATA-kK.csv)")
    _add_tracking_options(bench)

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


def _check_device(device: str | None) -> None:
    if device and device.startswith("cuda") and not torch.cuda.is_available():
        raise NasCntkError(f"--device {device}: no CUDA device is available here; use --device cpu")


def _score_command(args) -> None:
    _check_device(args.device)
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
    space = load_space(args.space)
    settings = space.data_settings(args.train_size, args.eval_size, args.resolution, args.seed, args.zca)
    study = args.study or f"{space.label}-{settings.label}"
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
        arch = trial_architecture(trials[row.trial])
        json_path, py_path = export_architecture(arch, out, f"rank{row.rank}_trial{row.trial}_{row.hash}")
        print(f"{row.rank}. CNTK {row.cntk_acc:.4f}  {py_path}  {json_path.name}")
    table.to_csv(out / "leaderboard.csv", index=False)


def _train_settings(args) -> TrainSettings:
    given = {name: getattr(args, name) for name in TrainSettings.__dataclass_fields__ if getattr(args, name, None) is not None}
    return TrainSettings(**{**PRESETS[args.preset], **given})


def _train_command(args) -> None:
    settings = _train_settings(args)
    _check_device(args.device)
    try:
        numbers = None if args.trials is None else [int(n) for n in args.trials.split(",")]
    except ValueError:
        raise NasCntkError(f"--trials {args.trials!r}: expected trial numbers separated by commas, e.g. 3,7,9") from None
    for option in ("top", "sample"):
        if getattr(args, option) is not None:
            _positive(getattr(args, option), f"--{option}")
    storage, tracking_uri = _stores(args)
    study = load_study(storage, args.study)
    chosen = trained.select(study, top=args.top or 5, trials=numbers, sample=args.sample, seed=settings.seed)
    done = trained.results(study).get(settings.label, {})
    todo = [t for t in chosen if t.number not in done]
    networks = {t.number: trial_architecture(t) for t in todo}
    for number, arch in networks.items():  # a network that does not fit fails now, not after hours of training
        try:
            arch.sizes(settings.resolution, settings.resolution)
        except NasCntkError as error:
            raise NasCntkError(f"trial {number} at --resolution {settings.resolution}: {error}") from None
    print(f"study {study.study_name}: {len(todo)} network(s) to train, {len(chosen) - len(todo)} already trained "
          f"with these settings (label {settings.label})")
    tracker = Tracker(tracking_uri, study.study_name, Path(args.trials_dir) / "mlartifacts")
    data_splits = data.load_training_data(data.DataSettings.from_label(study.user_attrs["data"]),
                                          settings.train_size, settings.test_size, resolution=settings.resolution,
                                          seed=settings.seed, data_dir=args.data_dir)
    diverged = trained.train_trials(study, networks, todo, settings, data_splits, tracker, device=args.device)
    results = trained.results(study).get(settings.label, {})
    table = pd.DataFrame([{"trial": t.number, "cntk_acc": t.value, "test_acc": results[t.number]["test_accuracy"],
                           "train_s": results[t.number]["seconds"], "network": trained.architecture_id(t)}
                          for t in chosen if t.number in results])
    if len(table):
        print(table.to_string(index=False, formatters={"cntk_acc": "{:.4f}".format, "test_acc": "{:.4f}".format,
                                                       "train_s": "{:.0f}".format}))
    if diverged:
        raise NasCntkError(f"training diverged for trial(s) {', '.join(map(str, diverged))}; the others are "
                           "kept; run again with a lower --lr to train those")


def _correlate_command(args) -> None:
    storage, tracking_uri = _stores(args)
    study = load_study(storage, args.study)
    if args.trained_csv:
        trained_scores, label = trained.external_trained(args.trained_csv, args.column), \
            f"csv-{Path(args.trained_csv).stem}"
    else:
        label = trained.choose_label(study, args.label)
        trained_scores = trained.study_trained(study, label)
    table = trained.pair(trained.kernel_scores(study, args.kernel), trained_scores)
    kernel_scores, trained_accuracy = (table.set_index("id")[column] for column in ("kernel", "trained"))
    result = correlate(kernel_scores, trained_accuracy, top_k=args.top_k, resamples=args.resamples, seed=args.seed)
    kernel_label = f"{args.kernel.upper()} validation accuracy"
    report = (f"study {study.study_name}, {kernel_label} vs trained test accuracy ({label})\n"
              f"{format_correlation(result)}")
    print(table.drop(columns="name").sort_values("kernel", ascending=False)
          .to_string(index=False, float_format="{:.4f}".format))
    print(f"\n{report}")
    figure = correlation_figure(kernel_scores, trained_accuracy, result, kernel_label=kernel_label)
    out = Path(args.out or Path(args.trials_dir) / "correlation" / f"{study.study_name}-{args.kernel}-{label}.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    tracker = Tracker(tracking_uri, study.study_name, Path(args.trials_dir) / "mlartifacts")
    run_id = tracker.latest_search_run()
    tracker.log_correlation(run_id, f"{args.kernel}.{label}", result.to_dict(), table, report, figure)
    print(f"\nplot          {out}\nMLflow        run {run_id} of experiment {study.study_name}")


def _benchmark_command(args) -> None:
    from nas_cntk.nb201_benchmark import EXPERIMENT, BenchmarkSettings, format_report, run_benchmark
    from nas_cntk.space import load_space

    _check_device(args.device)
    space = load_space("nasbench201")  # its fidelity gives the defaults: a search there shares these scores
    cells = space.cells_per_stage if args.cells_per_stage is None else args.cells_per_stage
    _positive(cells, "--cells-per-stage")
    trials_dir = Path(args.trials_dir)
    settings = BenchmarkSettings(
        table=Path(args.table), sample=args.sample, seed=args.seed, cells_per_stage=cells,
        data=space.data_settings(args.train_size, args.eval_size, args.resolution, args.seed, args.zca),
        trials_dir=trials_dir, tracking_uri=args.tracking_uri or local_tracking_uri(trials_dir),
        out=None if args.out is None else Path(args.out), data_dir=args.data_dir, device=args.device)
    result = run_benchmark(settings)
    print(f"\n{format_report(result)}\n\nscores        {settings.out_path}\nMLflow        run {result.run_id} of "
          f"experiment {EXPERIMENT} in {settings.tracking_uri}")


def _ui_command(args) -> None:
    tracking_uri = _stores(args)[1]
    if tracking_uri.startswith(("http://", "https://")):
        raise NasCntkError(f"{tracking_uri} is a tracking server already: open it in a browser")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
               "--host", args.host, "--port", str(args.port)]
    print(f"MLflow UI on {tracking_uri}: http://{args.host}:{args.port}", flush=True)
    os.execv(sys.executable, command)


COMMANDS = {"score": _score_command, "evaluate": _score_command, "search": _search_command,
            "leaderboard": _leaderboard_command, "export": _export_command, "train": _train_command,
            "correlate": _correlate_command, "benchmark": _benchmark_command, "ui": _ui_command}


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
