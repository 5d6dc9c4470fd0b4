"""The ``nas-cntk`` command line: one class per command, its arguments beside its action.

Building the parser imports only light modules (settings and constants); each action imports what
it runs, so that ``--help`` and the leaderboard start without torch or MLflow.

Each action parses what argparse cannot (lists of trial numbers, presets), calls one ``run_*``
function of the package the command belongs to, and prints the result. Errors that users can
cause are :class:`~nas_cntk.errors.NasCntkError`: one line on stderr, exit status 2.

The module is over 400 lines because it is the whole command line in one place: the shared options
once, then ten short command classes, each a screen or less, with no logic beyond parsing and printing.
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
# An option several commands take is declared once, in a parent parser that those commands inherit
# (argparse's ``parents``, as Optuna's CLI does); each command names the parents it takes.

Options = argparse._ActionsContainer  # a parser or one of its argument groups

def data_source_options(parser: Options) -> None:
    """Where the images come from and where the work runs."""
    parser.add_argument("--data-dir", metavar="DIR",
                        help=f"CIFAR-10: the {data.FOLDER} folder or the folder holding it (default: "
                             f"${data.DATA_DIR_ENV}, else {data.default_data_dir()}; downloaded there when absent)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")


def subset_options(parser: Options) -> None:
    """The kernel's subsets. The sizes and resolution default to None: ``score`` and ``evaluate`` fill in
    :class:`~nas_cntk.data.DataSettings`' defaults, a search or benchmark its space file's fidelity."""
    defaults = data.DataSettings()
    fidelity = "search and benchmarks: the space file's fidelity"
    parser.add_argument("--train-size", type=int, metavar="N",
                        help=f"training images, stratified (default {defaults.train_size}; {fidelity})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stratified subsets, and of a search's "
                        "sampler or a benchmark's sample and bootstrap (default 0)")
    parser.add_argument("--resolution", type=int, metavar="PIXELS",
                        help=f"downsample images to this size: cheaper, lower-fidelity score (default "
                             f"{defaults.resolution}; {fidelity})")
    parser.add_argument("--zca", action="store_true", help="ZCA-whiten the images (fitted on the training subset)")


def validation_options(parser: Options) -> None:
    parser.add_argument("--val-size", type=int, metavar="N",
                        help=f"validation images, stratified, from the training split (default "
                             f"{data.DataSettings().val_size}; search and benchmarks: the space file's fidelity)")


def test_options(parser: Options) -> None:
    parser.add_argument("--test-size", type=int, metavar="N",
                        help=f"test-split images, stratified (default {data.TEST_IMAGES}: all of them)")


def store_options(parser: Options) -> None:
    """Where results live."""
    parser.add_argument("--trials-dir", default=DEFAULT_TRIALS_DIR, metavar="DIR",
                        help="where the local stores live: optuna.db, mlflow.db, mlartifacts/, cache/ "
                             f"(default {DEFAULT_TRIALS_DIR}/)")
    parser.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI, e.g. http://host:5000 "
                        "(default: sqlite:///DIR/mlflow.db)")


def optuna_options(parser: Options) -> None:
    parser.add_argument("--storage", metavar="URL", help="Optuna RDB storage URL, e.g. postgresql://host/db "
                        "(default: sqlite:///DIR/optuna.db)")


def study_options(parser: Options) -> None:
    parser.add_argument("--study", help="study name (default: the most recent; a search names a new one SPACE-DATA, "
                                        "e.g. default-t2000-v1000-r32-s0)")


def rung_options(parser: Options) -> None:
    """Multi-fidelity search: the rungs, and the pruner that decides which trials earn the next one."""
    parser.add_argument("--rungs", metavar="N1,N2,...", help="score each trial on nested subsets with these "
                        "training images in turn (validation images in proportion), the last the search's own; "
                        "e.g. 50,100,200 (default: the space file's fidelity.rungs, else one rung)")
    parser.add_argument("--pruner", choices=PRUNERS, default="sh", help="sh: successive halving; hyperband "
                        "(default sh)")
    parser.add_argument("--reduction-factor", type=int, default=2, metavar="ETA",
                        help="a rung keeps 1/ETA of the trials that reach it (default 2)")


# name: (the heading its options are listed under in --help, what declares them)
SHARED_OPTIONS = {"data source": ("data", data_source_options), "subsets": ("data", subset_options),
                  "validation": ("data", validation_options), "test": ("data", test_options),
                  "stores": ("store", store_options), "optuna": ("store", optuna_options),
                  "study": ("store", study_options), "rungs": ("multi-fidelity", rung_options)}


def shared_parsers() -> dict[str, argparse.ArgumentParser]:
    """One parent parser per group of shared options; a command's help lists them after its own options."""
    parents = {}
    for name, (heading, declare) in SHARED_OPTIONS.items():
        parents[name] = argparse.ArgumentParser(add_help=False)
        declare(parents[name].add_argument_group(f"{heading} options"))
    return parents


def given(value: int | None, default: int) -> int:
    """An option's value, or ``default`` where it was left out."""
    return default if value is None else value


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
    """One subcommand: ``parents`` names the shared options it takes (:data:`SHARED_OPTIONS`),
    ``add_arguments`` declares its own, ``take_action`` does it."""

    name: str
    help: str
    parents: tuple[str, ...] = ()

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The command's own options (none by default)."""

    def take_action(self, args: argparse.Namespace) -> None:
        raise NotImplementedError


class Score(Command):
    name, help = "score", "score an architecture on a validation subset of the CIFAR-10 training split"
    parents = ("data source", "subsets", "validation")
    eval_name, eval_default = "val", data.DataSettings.val_size

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--arch", required=True, metavar="FILE", help="architecture description (.json/.yaml)")
        parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
        parser.add_argument("--save-kernel", metavar="FILE.npz", help="keep the kernel matrices in this file")
        parser.add_argument("--json", action="store_true", help="print the result as one JSON object")

    def take_action(self, args: argparse.Namespace) -> None:
        import torch

        from nas_cntk.scoring import run_score

        resolution = given(args.resolution, data.DataSettings.resolution)
        arch, splits, result = run_score(
            args.arch, self.eval_name, train_size=given(args.train_size, data.DataSettings.train_size),
            eval_size=given(getattr(args, f"{self.eval_name}_size"), self.eval_default), seed=args.seed,
            resolution=resolution, zca=args.zca, data_dir=args.data_dir, dtype=getattr(torch, args.dtype),
            device=args.device, save_kernels=args.save_kernel)
        if args.json:
            print(json.dumps({"architecture": arch.name, "hash": result.arch_hash, "summary": arch.summary(),
                              "train_size": len(splits.x_train), "eval_size": len(splits.x_eval),
                              "eval_split": splits.eval_split, "resolution": resolution, "seed": args.seed,
                              "ntk": asdict(result.ntk), "nngp": asdict(result.nngp), "seconds": result.seconds,
                              "pairs": result.pairs, "pairs_per_second": result.pairs_per_second,
                              "device": result.device}))
            return
        split = "validation (training split)" if splits.eval_split == "val" else "test split"
        rows = [("architecture", f"{arch.name or '-'} ({result.arch_hash}): {arch.summary()}"),
                ("data", f"{len(splits.x_train)} training images, {len(splits.x_eval)} {split}, "
                         f"{resolution}x{resolution}, seed {args.seed}{', ZCA' if args.zca else ''}")]
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
    parents = ("data source", "subsets", "test")
    eval_name, eval_default = "test", data.TEST_IMAGES


class Search(Command):
    name, help = "search", "search a space of architectures (Optuna), logging to MLflow"
    parents = ("data source", "subsets", "validation", "rungs", "study", "stores", "optuna")

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
        parser.add_argument("--objective", metavar="OBJECTIVE", action="append",
                            help="what to maximise: a score (" + ", ".join(SCORE_NAMES) + "), a cost (flops, "
                                 "parameters: minimised), or a sum such as 5*parameters-nngp_loo_sq_error (one that "
                                 "starts with '-' as --objective=-...); give it twice or more for a Pareto front "
                                 "(default: the space file's objective; every score and cost is recorded either "
                                 "way; docs/search.md#the-objective)")
        parser.add_argument("--dry-run", action="store_true", help="print the cost estimate and stop")

    def take_action(self, args: argparse.Namespace) -> None:
        settings = SearchSettings(  # bad settings and store URLs fail here, before the seconds of imports below
            space=args.space, stores=stores(args), study=args.study, trials=args.trials, sampler=args.sampler,
            seed=args.seed, workers=args.workers, train_size=args.train_size, val_size=args.val_size,
            resolution=args.resolution, zca=args.zca, objectives=args.objective and tuple(args.objective),
            rungs=rungs(args.rungs),
            pruner=args.pruner, reduction_factor=args.reduction_factor, data_dir=args.data_dir, device=args.device,
            heartbeat=args.heartbeat)
        from nas_cntk.search.leaderboard import format_table, leaderboard
        from nas_cntk.search.stores import masked
        from nas_cntk.search.study import finished_trials
        from nas_cntk.search.workers import run_search

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
    parents = ("study", "stores", "optuna")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--top", type=int, metavar="K", help="only the best K")
        parser.add_argument("--csv", metavar="FILE", help="also write the table to a CSV file")

    def take_action(self, args: argparse.Namespace) -> None:
        from nas_cntk.search.leaderboard import format_table, leaderboard

        study = stores(args).study(args.study)
        everything = leaderboard(study)
        if not len(everything):
            raise NasCntkError(f"study {study.study_name!r} has no completed trial yet")
        table = everything.head(args.top) if args.top else everything
        print(f"study {study.study_name}: {len(everything)} network structures, best "
              f"{', '.join(everything.attrs['objectives'])} first")
        print(format_table(table))
        if args.csv:
            table.to_csv(args.csv, index=False)


class Export(Command):
    name, help = "export", "write the best architectures as JSON and standalone PyTorch"
    parents = ("study", "stores", "optuna")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--top", type=int, default=5, metavar="K", help="how many (default 5)")
        parser.add_argument("--out", metavar="DIR", help="output folder (default: DIR/export/STUDY)")

    def take_action(self, args: argparse.Namespace) -> None:
        from nas_cntk.search.export import run_export

        objectives, written = run_export(stores(args), args.study, args.top, args.out)
        for row, py_path, json_path in written:
            values = "  ".join(f"{key} {getattr(row, key):.4g}" for key in objectives)
            print(f"{row.rank}. {values}  {py_path}  {json_path.name}")


class Train(Command):
    name, help = "train", ("train the finite networks of a study's architectures; their test accuracy goes next "
                           "to the kernel scores")
    parents = ("data source", "test", "study", "stores", "optuna")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        chosen = parser.add_mutually_exclusive_group()
        chosen.add_argument("--top", type=int, metavar="K", help="the kernel's best K architectures (default 5)")
        chosen.add_argument("--trial-numbers", metavar="N,N,...", help="these trials, e.g. 3,7,9")
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
        parser.add_argument("--train-seed", dest="seed", type=int, metavar="SEED",
                            help="seed of the training subset, initialisation and batches (default 0)")

    @staticmethod
    def settings(args: argparse.Namespace) -> TrainSettings:
        """The preset, overridden by the options given."""
        given = {name: getattr(args, name) for name in TrainSettings.__dataclass_fields__
                 if getattr(args, name, None) is not None}
        return TrainSettings(**{**PRESETS[args.preset], **given})

    def take_action(self, args: argparse.Namespace) -> None:
        from nas_cntk.trained.results import run_training

        try:
            numbers = None if args.trial_numbers is None else [int(n) for n in args.trial_numbers.split(",")]
        except ValueError:
            raise NasCntkError(f"--trial-numbers {args.trial_numbers!r}: expected trial numbers separated by "
                               "commas, e.g. 3,7,9") from None
        run = run_training(stores(args), self.settings(args), study=args.study, top=args.top, trials=numbers,
                           sample=args.sample, data_dir=args.data_dir, device=args.device)
        if len(run.table):
            print(run.table.to_string(index=False, formatters={
                "cntk_acc": "{:.4f}".format, "test_acc": "{:.4f}".format, "train_s": "{:.0f}".format}))
        run.raise_if_diverged()


class Correlate(Command):
    name, help = "correlate", ("how well the kernel ranking predicts the trained ranking (at least three trained "
                               "networks)")
    parents = ("study", "stores", "optuna")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--label", help="which trained results (default: the label with the most)")
        parser.add_argument("--trained-csv", metavar="FILE", help="trained accuracies from a CSV instead, keyed "
                            "by a 'hash' or 'name' column")
        parser.add_argument("--column", help="the CSV's accuracy column (default: its only numeric one)")
        parser.add_argument("--score", metavar="SCORE",
                            help="which score, any of " + ", ".join(SCORE_NAMES) + ", flops, parameters, or the "
                                 "study's objective (default: the study's first objective)")
        parser.add_argument("--top-k", type=int, metavar="K", help="k of precision@k (default: a tenth, at least 1)")
        parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
        parser.add_argument("--bootstrap-seed", type=int, default=0, metavar="SEED",
                            help="seed of the bootstrap resamples (default 0)")
        parser.add_argument("--out", metavar="FILE.png",
                            help="the plot (default: DIR/correlation/STUDY-KERNEL-LABEL.png)")

    def take_action(self, args: argparse.Namespace) -> None:
        from nas_cntk.trained.results import run_correlation

        run = run_correlation(stores(args), study=args.study, label=args.label, trained_csv=args.trained_csv,
                              column=args.column, score=args.score, top_k=args.top_k, resamples=args.resamples,
                              seed=args.bootstrap_seed, out=args.out)
        print(run.table.drop(columns="name").sort_values("kernel", ascending=False)
              .to_string(index=False, float_format="{:.4f}".format))
        print(f"\n{run.report}")
        print(f"\nplot          {run.plot}\nMLflow        run {run.run_id} of experiment {run.study}")


class Benchmark(Command):
    name, help = "benchmark", ("how well the kernel ranks a benchmark's trained networks: rank correlation on a "
                               "random sample of its table")
    parents = ("data source", "subsets", "validation", "stores")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("benchmark", choices=("nb201",), help="nb201: NAS-Bench-201 on CIFAR-10")
        parser.add_argument("--table", required=True, metavar="FILE.csv", help="architectures and trained "
                            "accuracies (columns arch, cifar10_test_acc_200ep, n_seeds)")
        parser.add_argument("--sample", type=int, metavar="K", help="architectures drawn at random (default: all "
                            "rows); a larger K with the same --seed extends a smaller sample")
        parser.add_argument("--cells-per-stage", type=int, metavar="N", help="cells per stage of the macro "
                            "network (the benchmark trains 5; default: the nasbench201 space's fidelity)")
        parser.add_argument("--out", metavar="FILE.csv", help="the per-architecture scores "
                            "(default: DIR/benchmark/nb201-nN-DATA-kK.csv)")
        parser.add_argument("--save-kernels", metavar="DIR", help="keep the kernel matrices of the architectures "
                            "scored now (not those from the cache) in DIR/HASH.npz, for scores the tool lacks")

    def take_action(self, args: argparse.Namespace) -> None:
        from nas_cntk.search.stores import masked
        from nas_cntk.trained.benchmark import EXPERIMENT, BenchmarkSettings, format_report, run_benchmark

        settings = BenchmarkSettings.with_space_defaults(
            Path(args.table), stores(args), sample=args.sample, seed=args.seed, cells_per_stage=args.cells_per_stage,
            train_size=args.train_size, val_size=args.val_size, resolution=args.resolution, zca=args.zca,
            out=None if args.out is None else Path(args.out),
            kernels=None if args.save_kernels is None else Path(args.save_kernels), data_dir=args.data_dir,
            device=args.device)
        result = run_benchmark(settings)
        print(f"\n{format_report(result)}\n\nscores        {settings.out_path}\nMLflow        run {result.run_id} of "
              f"experiment {EXPERIMENT} in {masked(settings.stores.tracking_uri)}")


class SearchBenchmark(Command):
    name, help = "search-benchmark", ("how good the search's picks are: searches over a benchmark table's cells, "
                                      "their picks' trained accuracy beside FLOPs-guided and random picks")
    parents = ("data source", "subsets", "validation", "rungs", "stores", "optuna")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("benchmark", choices=("nb201",), help="nb201: the nasbench201 space on CIFAR-10")
        parser.add_argument("--table", required=True, metavar="FILE.csv", help="the cells the searches may propose, "
                            "with their trained accuracies (columns arch, cifar10_test_acc_200ep, n_seeds)")
        parser.add_argument("--trials", type=int, default=100, help="finished trials per search (default 100)")
        parser.add_argument("--seeds", type=int, default=5, help="searches, with sampler seeds 0, 1, ... (default 5)")
        parser.add_argument("--sampler", choices=[s for s in SAMPLERS if s != "grid"], default="tpe")
        parser.add_argument("--objective", metavar="OBJECTIVE", help="what the searches maximise, as `search "
                            "--objective` takes it (default: the nasbench201 space's objective)")
        parser.add_argument("--out", metavar="FILE.csv", help="one row per search "
                            "(default: DIR/benchmark/nb201-search-OBJECTIVE-SAMPLER-TT-DATA.csv)")

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
            reduction_factor=args.reduction_factor, train_size=args.train_size, val_size=args.val_size,
            resolution=args.resolution, seed=args.seed, zca=args.zca,
            out=None if args.out is None else Path(args.out), data_dir=args.data_dir, device=args.device)
        result = run_search_benchmark(settings)
        print(f"\n{format_report(result)}\n\nsearches      {settings.out_path}\nMLflow        run {result.run_id} "
              f"of experiment {EXPERIMENT} in {masked(settings.stores.tracking_uri)}")


class Ui(Command):
    name, help = "ui", "start the MLflow UI on the local tracking store"
    parents = ("stores",)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=5000)

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
        # Each study's runs page first: the bare address opens MLflow's GenAI home, not the trials.
        for study, page in study_runs_pages(tracking_uri, address).items():
            print(f"{study}: {page}", flush=True)
        print(f"MLflow UI on {masked(tracking_uri)}: {address} (open a study's runs page above)", flush=True)
        os.execv(sys.executable, command)


COMMANDS: tuple[Command, ...] = (Score(), Evaluate(), Search(), Leaderboard(), Export(), Train(), Correlate(),
                                 Benchmark(), SearchBenchmark(), Ui())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nas-cntk", description="Neural architecture search with exact CNTK "
                                     "kernel regression on small CIFAR-10 subsets.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    shared = shared_parsers()
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help,
                                    parents=[shared[name] for name in command.parents])
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
