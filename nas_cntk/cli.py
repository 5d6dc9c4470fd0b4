"""The ``nas-cntk`` command line: one class per command, its arguments beside its action.

Building the parser imports only light modules (settings and constants); each action imports what
it runs, so that ``--help`` and the leaderboard start without torch or MLflow.

Each action parses what argparse cannot (lists of trial numbers, presets), calls one ``run_*``
function of the package the command belongs to, and prints the result. Errors that users can
cause are :class:`~nas_cntk.errors.NasCntkError`: one line on stderr, exit status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from nas_cntk import data
from nas_cntk.errors import NasCntkError
from nas_cntk.scoring.measures import SCORE_NAMES
from nas_cntk.search.settings import PRUNERS, SAMPLERS, SearchSettings
from nas_cntk.trained.settings import PARAMETERIZATIONS, SCHEDULES, TrainSettings

if TYPE_CHECKING:
    from nas_cntk.search.stores import Stores

DEFAULT_TRIALS_DIR = "trials"
# Training settings a 2-core CPU finishes in minutes per network (timings in BENCHMARKS.md).
PRESETS = {"full": {}, "cpu": {"width": 64, "epochs": 15, "train_size": 10000, "resolution": 8}}


# ------------------------------------------------------------------------------------------------ shared options

def add_data_options(parser: argparse.ArgumentParser, eval_name: str, eval_default: int, *,
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


def add_store_options(parser: argparse.ArgumentParser, study_help: str | None = None, *, optuna: bool = True) -> None:
    """Where results live; with ``study_help``, also which study; without ``optuna``, only MLflow's store."""
    if study_help is not None:
        parser.add_argument("--study", help=study_help)
    parser.add_argument("--trials-dir", default=DEFAULT_TRIALS_DIR, metavar="DIR",
                        help="where the local stores live: optuna.db, mlflow.db, mlartifacts/, cache/ "
                             f"(default {DEFAULT_TRIALS_DIR}/)")
    parser.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI, e.g. http://host:5000 "
                        "(default: sqlite:///DIR/mlflow.db)")
    if optuna:
        parser.add_argument("--storage", metavar="URL", help="Optuna RDB storage URL, e.g. postgresql://host/db "
                            "(default: sqlite:///DIR/optuna.db)")


def add_rung_options(parser: argparse.ArgumentParser) -> None:
    """Multi-fidelity search: the rungs, and the pruner that decides which trials earn the next one."""
    parser.add_argument("--rungs", metavar="N1,N2,...", help="score each trial on nested subsets with these "
                        "training images in turn (validation images in proportion), the last the search's own; "
                        "e.g. 50,100,200 (default: the space file's fidelity.rungs, else one rung)")
    parser.add_argument("--pruner", choices=PRUNERS, default="sh", help="sh: successive halving; hyperband "
                        "(default sh)")
    parser.add_argument("--reduction-factor", type=int, default=2, metavar="ETA",
                        help="a rung keeps 1/ETA of the trials that reach it (default 2)")


def rungs(text: str | None) -> tuple[int, ...] | None:
    """``--rungs 50,100,200`` as training sizes."""
    if text is None:
        return None
    try:
        return tuple(int(n) for n in text.split(","))
    except ValueError:
        raise NasCntkError(f"--rungs: expected comma-separated training sizes such as 50,100,200, got {text!r}") \
            from None


def stores(args: argparse.Namespace) -> Stores:
    from nas_cntk.search.stores import Stores

    return Stores(Path(args.trials_dir), getattr(args, "storage", None), args.tracking_uri)


# ------------------------------------------------------------------------------------------------ commands

class Command:
    """One subcommand: ``add_arguments`` declares what it takes, ``take_action`` does it."""

    name: str
    help: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        raise NotImplementedError

    def take_action(self, args: argparse.Namespace) -> None:
        raise NotImplementedError


class Score(Command):
    name, help = "score", "score an architecture on a validation subset of the CIFAR-10 training split"
    eval_name, eval_default = "val", 1000

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--arch", required=True, metavar="FILE", help="architecture description (.json/.yaml)")
        add_data_options(parser, self.eval_name, self.eval_default)
        parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
        parser.add_argument("--save-kernel", metavar="FILE.npz", help="keep the kernel matrices in this file")
        parser.add_argument("--json", action="store_true", help="print the result as one JSON object")

    def take_action(self, args: argparse.Namespace) -> None:
        import torch

        from nas_cntk.scoring import run_score

        arch, splits, result = run_score(
            args.arch, self.eval_name, train_size=args.train_size, eval_size=args.eval_size, seed=args.seed,
            resolution=args.resolution, zca=args.zca, data_dir=args.data_dir, dtype=getattr(torch, args.dtype),
            device=args.device, save_kernels=args.save_kernel)
        if args.json:
            print(json.dumps({"architecture": arch.name, "hash": result.arch_hash, "summary": arch.summary(),
                              "train_size": len(splits.x_train), "eval_size": len(splits.x_eval),
                              "eval_split": splits.eval_split, "resolution": args.resolution, "seed": args.seed,
                              "ntk": asdict(result.ntk), "nngp": asdict(result.nngp), "seconds": result.seconds,
                              "pairs": result.pairs, "pairs_per_second": result.pairs_per_second,
                              "device": result.device}))
            return
        split = "validation (training split)" if splits.eval_split == "val" else "test split"
        rows = [("architecture", f"{arch.name or '-'} ({result.arch_hash}): {arch.summary()}"),
                ("data", f"{len(splits.x_train)} training images, {len(splits.x_eval)} {split}, "
                         f"{args.resolution}x{args.resolution}, seed {args.seed}{', ZCA' if args.zca else ''}")]
        for name, r in (("CNTK", result.ntk), ("NNGP", result.nngp)):
            rows.append((f"{name} accuracy", f"{r.val_accuracy:.4f}   (ridge {r.relative_ridge:g} x mean diagonal = "
                                             f"{r.ridge:.4g}; squared error {r.val_sq_error:.4f})"))
            rows.append(("", f"leave-one-out over all images: accuracy {r.loo_accuracy:.4f}, squared error "
                             f"{r.loo_sq_error:.4f}; alignment {r.alignment:.4f}; log10 condition "
                             f"{r.log_condition:.2f}"))
        rows.append(("kernel time", f"{result.seconds:.1f} s on {result.device}: {result.pairs:,} image pairs, "
                                    f"{result.pairs_per_second:,.0f} pairs/s"))
        if args.save_kernel:
            rows.append(("kernels", args.save_kernel))
        print("\n".join(f"{key:<14}{value}" for key, value in rows))


class Evaluate(Score):
    name, help = "evaluate", "score an architecture on the CIFAR-10 test split (the paper's 2K experiment)"
    eval_name, eval_default = "test", 10000


class Search(Command):
    name, help = "search", "search a space of architectures (Optuna), logging to MLflow"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--space", default="default", metavar="FILE",
                            help="search-space file, or a built-in one by name: default, arora2019, nasbench201 "
                                 "(default: default)")
        parser.add_argument("--trials", type=int, default=100,
                            help="finished trials the study should have in all, earlier runs included (default 100)")
        parser.add_argument("--sampler", choices=SAMPLERS, default="auto",
                            help="auto: grid for a list of architectures, else tpe (default auto)")
        parser.add_argument("--workers", type=int, default=1,
                            help="processes working on the study at once, one GPU each where there are several")
        parser.add_argument("--heartbeat", type=int, default=10, metavar="SECONDS",
                            help="a trial whose process stops beating for 3 heartbeats is failed and retried")
        parser.add_argument("--objective", metavar="SCORE",
                            help="the score to maximise, any of " + ", ".join(SCORE_NAMES) + " (default: the space "
                                 "file's objective; every score is recorded either way; docs/scoring.md)")
        parser.add_argument("--dry-run", action="store_true", help="print the cost estimate and stop")
        add_rung_options(parser)
        add_data_options(parser, "val", 1000, space_defaults="the space file's fidelity")
        add_store_options(parser, "study name (default: SPACE-DATA, e.g. default-t2000-v1000-r32-s0)")

    def take_action(self, args: argparse.Namespace) -> None:
        settings = SearchSettings(  # bad settings and store URLs fail here, before the seconds of imports below
            space=args.space, stores=stores(args), study=args.study, trials=args.trials, sampler=args.sampler,
            seed=args.seed, workers=args.workers, train_size=args.train_size, val_size=args.eval_size,
            resolution=args.resolution, zca=args.zca, objective=args.objective, rungs=rungs(args.rungs),
            pruner=args.pruner, reduction_factor=args.reduction_factor, data_dir=args.data_dir, device=args.device,
            heartbeat=args.heartbeat)
        from nas_cntk.search.leaderboard import format_table, leaderboard
        from nas_cntk.search.stores import masked
        from nas_cntk.search.study import finished_trials, run_search

        search, study = run_search(settings, dry_run=args.dry_run)
        if args.dry_run:
            return
        print(f"\ntop five of {finished_trials(study)} finished trials:")
        print(format_table(leaderboard(study, 5)))
        print(f"\nOptuna study  {search.study_name} in {masked(settings.stores.storage)}\nMLflow        experiment "
              f"{search.study_name} in {masked(settings.stores.tracking_uri)}"
              f"{'  (nas-cntk ui to browse)' if args.tracking_uri is None else ''}"
              f"\nexport        nas-cntk export --study {search.study_name}")


class Leaderboard(Command):
    name, help = "leaderboard", "the study's architectures, best first"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--top", type=int, metavar="K", help="only the best K")
        parser.add_argument("--csv", metavar="FILE", help="also write the table to a CSV file")
        add_store_options(parser, "study name (default: the most recent)")

    def take_action(self, args: argparse.Namespace) -> None:
        from nas_cntk.search.leaderboard import format_table, leaderboard

        study = stores(args).study(args.study)
        everything = leaderboard(study)
        if not len(everything):
            raise NasCntkError(f"study {study.study_name!r} has no completed trial yet")
        table = everything.head(args.top) if args.top else everything
        print(f"study {study.study_name}: {len(everything)} architectures, best {everything.attrs['objective']} "
              "first")
        print(format_table(table))
        if args.csv:
            table.to_csv(args.csv, index=False)


class Export(Command):
    name, help = "export", "write the best architectures as JSON and standalone PyTorch"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--top", type=int, default=5, metavar="K", help="how many (default 5)")
        parser.add_argument("--out", metavar="DIR", help="output folder (default: DIR/export/STUDY)")
        add_store_options(parser, "study name (default: the most recent)")

    def take_action(self, args: argparse.Namespace) -> None:
        from nas_cntk.search.export import run_export

        objective, written = run_export(stores(args), args.study, args.top, args.out)
        for row, py_path, json_path in written:
            print(f"{row.rank}. {objective} {row.score:.4f}  {py_path}  {json_path.name}")


class Train(Command):
    name, help = "train", ("train the finite networks of a study's architectures; their test accuracy goes next "
                           "to the kernel scores")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        chosen = parser.add_mutually_exclusive_group()
        chosen.add_argument("--top", type=int, metavar="K", help="the kernel's best K architectures (default 5)")
        chosen.add_argument("--trials", metavar="N,N,...", help="these trials, e.g. 3,7,9")
        chosen.add_argument("--sample", type=int, metavar="K", help="K architectures drawn at random: an unbiased "
                            "sample for `nas-cntk correlate`")
        parser.add_argument("--preset", choices=PRESETS, default="full",
                            help="full: the settings below; cpu: " + ", ".join(
                                f"--{k.replace('_', '-')} {v}" for k, v in PRESETS["cpu"].items())
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
            parser.add_argument(f"--{name.replace('_', '-')}", type=kind, metavar=name.split("_")[-1].upper(),
                                help=f"{text}{'; ' if text else ''}default "
                                     f"{default if default is not None else 'all'}")
        parser.add_argument("--schedule", choices=SCHEDULES,
                            help=f"learning-rate schedule (default {defaults.schedule})")
        parser.add_argument("--parameterization", choices=PARAMETERIZATIONS,
                            help=f"how the learning rate meets each layer (default {defaults.parameterization}; "
                                 "see docs/training.md)")
        parser.add_argument("--no-augment", dest="augment", action="store_false", default=None,
                            help="no random crops and flips")
        parser.add_argument("--batch-norm", action="store_true", default=None,
                            help="a batch norm after every conv, as NAS-Bench-201 trains its networks (the kernel "
                                 "describes them without it)")
        parser.add_argument("--seed", type=int,
                            help="seed of the training subset, initialisation and batches (default 0)")
        parser.add_argument("--data-dir", metavar="DIR", help="CIFAR-10 folder (as for score)")
        parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available; bfloat16 "
                            "mixed precision on CUDA)")
        add_store_options(parser, "study name (default: the most recent)")

    @staticmethod
    def settings(args: argparse.Namespace) -> TrainSettings:
        """The preset, overridden by the options given."""
        given = {name: getattr(args, name) for name in TrainSettings.__dataclass_fields__
                 if getattr(args, name, None) is not None}
        return TrainSettings(**{**PRESETS[args.preset], **given})

    def take_action(self, args: argparse.Namespace) -> None:
        from nas_cntk.trained.results import run_training

        try:
            numbers = None if args.trials is None else [int(n) for n in args.trials.split(",")]
        except ValueError:
            raise NasCntkError(f"--trials {args.trials!r}: expected trial numbers separated by commas, "
                               "e.g. 3,7,9") from None
        run = run_training(stores(args), self.settings(args), study=args.study, top=args.top, trials=numbers,
                           sample=args.sample, data_dir=args.data_dir, device=args.device)
        if len(run.table):
            print(run.table.to_string(index=False, formatters={
                "cntk_acc": "{:.4f}".format, "test_acc": "{:.4f}".format, "train_s": "{:.0f}".format}))
        run.raise_if_diverged()


class Correlate(Command):
    name, help = "correlate", "how well the kernel ranking predicts the trained ranking"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--label", help="which trained results (default: the label with the most)")
        parser.add_argument("--trained-csv", metavar="FILE", help="trained accuracies from a CSV instead, keyed "
                            "by a 'hash' or 'name' column")
        parser.add_argument("--column", help="the CSV's accuracy column (default: its only numeric one)")
        parser.add_argument("--score", metavar="SCORE",
                            help="which kernel score, any of " + ", ".join(SCORE_NAMES) + " (default: the study's "
                                 "objective)")
        parser.add_argument("--top-k", type=int, metavar="K", help="k of precision@k (default: a tenth, at least 1)")
        parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
        parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
        parser.add_argument("--out", metavar="FILE.png",
                            help="the plot (default: DIR/correlation/STUDY-KERNEL-LABEL.png)")
        add_store_options(parser, "study name (default: the most recent)")

    def take_action(self, args: argparse.Namespace) -> None:
        from nas_cntk.trained.results import run_correlation

        run = run_correlation(stores(args), study=args.study, label=args.label, trained_csv=args.trained_csv,
                              column=args.column, score=args.score, top_k=args.top_k, resamples=args.resamples,
                              seed=args.seed, out=args.out)
        print(run.table.drop(columns="name").sort_values("kernel", ascending=False)
              .to_string(index=False, float_format="{:.4f}".format))
        print(f"\n{run.report}")
        print(f"\nplot          {run.plot}\nMLflow        run {run.run_id} of experiment {run.study}")


class Benchmark(Command):
    name, help = "benchmark", ("how well the kernel ranks a benchmark's trained networks: rank correlation on a "
                               "random sample of its table")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("benchmark", choices=("nb201",), help="nb201: NAS-Bench-201 on CIFAR-10")
        parser.add_argument("--table", required=True, metavar="FILE.csv", help="architectures and trained "
                            "accuracies (columns arch, cifar10_test_acc_200ep, n_seeds)")
        parser.add_argument("--sample", type=int, metavar="K", help="architectures drawn at random (default: all "
                            "rows); a larger K with the same --seed extends a smaller sample")
        parser.add_argument("--cells-per-stage", type=int, metavar="N", help="cells per stage of the macro "
                            "network (the benchmark trains 5; default: the nasbench201 space's fidelity)")
        # --seed draws the sample too
        add_data_options(parser, "val", 1000, space_defaults="the nasbench201 space's fidelity")
        parser.add_argument("--out", metavar="FILE.csv", help="the per-architecture scores "
                            "(default: DIR/benchmark/nb201-nN-DATA-kK.csv)")
        parser.add_argument("--save-kernels", metavar="DIR", help="keep the kernel matrices of the architectures "
                            "scored now (not those from the cache) in DIR/HASH.npz, for scores the tool lacks")
        add_store_options(parser, optuna=False)

    def take_action(self, args: argparse.Namespace) -> None:
        from nas_cntk.search.stores import masked
        from nas_cntk.trained.benchmark import EXPERIMENT, BenchmarkSettings, format_report, run_benchmark

        settings = BenchmarkSettings.with_space_defaults(
            Path(args.table), stores(args), sample=args.sample, seed=args.seed, cells_per_stage=args.cells_per_stage,
            train_size=args.train_size, val_size=args.eval_size, resolution=args.resolution, zca=args.zca,
            out=None if args.out is None else Path(args.out),
            kernels=None if args.save_kernels is None else Path(args.save_kernels), data_dir=args.data_dir,
            device=args.device)
        result = run_benchmark(settings)
        print(f"\n{format_report(result)}\n\nscores        {settings.out_path}\nMLflow        run {result.run_id} of "
              f"experiment {EXPERIMENT} in {masked(settings.stores.tracking_uri)}")


class SearchBenchmark(Command):
    name, help = "search-benchmark", ("how good the search's picks are: searches over a benchmark table's cells, "
                                      "their picks' trained accuracy beside FLOPs-guided and random picks")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("benchmark", choices=("nb201",), help="nb201: the nasbench201 space on CIFAR-10")
        parser.add_argument("--table", required=True, metavar="FILE.csv", help="the cells the searches may propose, "
                            "with their trained accuracies (columns arch, cifar10_test_acc_200ep, n_seeds)")
        parser.add_argument("--trials", type=int, default=100, help="finished trials per search (default 100)")
        parser.add_argument("--seeds", type=int, default=5, help="searches, with sampler seeds 0, 1, ... (default 5)")
        parser.add_argument("--sampler", choices=[s for s in SAMPLERS if s != "grid"], default="tpe")
        parser.add_argument("--objective", metavar="SCORE", help="the score the searches maximise (default: the "
                            "nasbench201 space's objective)")
        add_rung_options(parser)
        # --seed is the data's: every search scores the same subsets
        add_data_options(parser, "val", 1000, space_defaults="the nasbench201 space's fidelity")
        parser.add_argument("--out", metavar="FILE.csv", help="one row per search "
                            "(default: DIR/benchmark/nb201-search-OBJECTIVE-SAMPLER-TT-DATA.csv)")
        add_store_options(parser)

    def take_action(self, args: argparse.Namespace) -> None:
        from nas_cntk import checks
        from nas_cntk.search.stores import masked
        from nas_cntk.trained.search_benchmark import (
            EXPERIMENT,
            SearchBenchmarkSettings,
            format_report,
            run_search_benchmark,
        )

        settings = SearchBenchmarkSettings.with_space_defaults(
            Path(args.table), stores(args), trials=args.trials, seeds=checks.integer(args.seeds, "--seeds"),
            objective=args.objective, sampler=args.sampler, rungs=rungs(args.rungs), pruner=args.pruner,
            reduction_factor=args.reduction_factor, train_size=args.train_size, val_size=args.eval_size,
            resolution=args.resolution, seed=args.seed, zca=args.zca,
            out=None if args.out is None else Path(args.out), data_dir=args.data_dir, device=args.device)
        result = run_search_benchmark(settings)
        print(f"\n{format_report(result)}\n\nsearches      {settings.out_path}\nMLflow        run {result.run_id} "
              f"of experiment {EXPERIMENT} in {masked(settings.stores.tracking_uri)}")


class Ui(Command):
    name, help = "ui", "start the MLflow UI on the local tracking store"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=5000)
        add_store_options(parser)

    def take_action(self, args: argparse.Namespace) -> None:
        from nas_cntk.search.stores import masked
        from nas_cntk.search.tracking import study_runs_pages

        tracking_uri = stores(args).tracking_uri
        if tracking_uri.startswith(("http://", "https://")):
            raise NasCntkError(f"{masked(tracking_uri)} is a tracking server already: open it in a browser")
        store = Path(tracking_uri.removeprefix("sqlite:///"))
        if tracking_uri.startswith("sqlite:///") and not store.is_file():
            raise NasCntkError(f"--trials-dir {args.trials_dir}: no MLflow store there ({store} does not exist); "
                               "run `nas-cntk search` first, or name the folder that holds mlflow.db")
        address = f"http://{args.host}:{args.port}"
        command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
                   "--host", args.host, "--port", str(args.port)]
        print(f"MLflow UI on {masked(tracking_uri)}: {address}", flush=True)
        for study, page in study_runs_pages(tracking_uri, address).items():
            print(f"  {study}: {page}", flush=True)
        os.execv(sys.executable, command)


COMMANDS: tuple[Command, ...] = (Score(), Evaluate(), Search(), Leaderboard(), Export(), Train(), Correlate(),
                                 Benchmark(), SearchBenchmark(), Ui())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nas-cntk", description="Neural architecture search with exact CNTK "
                                     "kernel regression on small CIFAR-10 subsets.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help)
        command.add_arguments(sub)
        sub.set_defaults(action=command.take_action)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.action(args)
    except NasCntkError as error:
        print(f"nas-cntk: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nas-cntk: interrupted; finished trials are kept, run the same command again to resume",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
