"""Does the kernel proxy rank NAS-Bench-201's trained networks? Score a sample of the benchmark's table.

A table of cell genotypes with their trained CIFAR-10 accuracy (columns ``arch``,
``cifar10_test_acc_200ep``, ``n_seeds``) is sampled at random; each sampled cell's macro network
(:func:`nas_cntk.description.nasbench201.description`) gets every score of one kernel pass, NTK
and NNGP (:data:`nas_cntk.scoring.measures.SCORE_NAMES`), and the benchmark's trained network
its FLOPs, its parameter count and two finite-network proxies at initialisation, NASWOT and synflow
(:mod:`nas_cntk.trained.baselines`), on the sample's training images at 32 x 32: the baselines,
measured here. Each score's rank correlation
with the trained accuracy is reported beside the others, with bootstrap intervals, and beside the
published whole-space figures of other training-free proxies; so is the default score's rank
correlation with FLOPs, which shows how much of its signal is size. Scores go to the per-score cache as they come,
so an interrupted run resumes where it stopped, and a larger sample with the same seed extends a
smaller one (the sample is a prefix of one seeded permutation of the table).
"""
from __future__ import annotations

import functools
import hashlib
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from nas_cntk import checks
from nas_cntk.data import DataSettings, DataSplits
from nas_cntk.description import nasbench201
from nas_cntk.description.architecture import Architecture, nasbench201_network
from nas_cntk.errors import ArchitectureError, KernelError, NasCntkError
from nas_cntk.kernels import plan
from nas_cntk.scoring.measures import SCORE_NAMES, direction, ranking_label
from nas_cntk.scoring.regression import Score, score
from nas_cntk.search.cache import JsonFiles, ScoreCache
from nas_cntk.search.objectives import SUM_KEY, Objective, objective_keys, reference
from nas_cntk.search.space import load_space
from nas_cntk.search.stores import Stores
from nas_cntk.search.tracking import Tracker
from nas_cntk.trained.baselines import naswot, synflow
from nas_cntk.trained.correlation import Correlation, correlate, correlation_figure
from nas_cntk.trained.edge_pairs import PairAgreement, agreement, format_agreements, one_edge_pairs

ARCH, TRAINED, SEEDS = "arch", "cifar10_test_acc_200ep", "n_seeds"
EXPERIMENT = "nb201-benchmark"  # one MLflow experiment: runs at different fidelities side by side
TRAINED_LABEL = "CIFAR-10 test accuracy after 200 epochs (%)"
BASELINES = ("flops", "parameters", "naswot", "synflow")  # of the benchmark's trained network: higher ranks higher
OBJECTIVE = SUM_KEY  # the column of an objective that sums standardised terms
PROXY_IMAGES = 128  # NASWOT's batch on NAS-Bench-201 (Mellor et al.)

# Kendall tau / Spearman rho with CIFAR-10 test accuracy over the whole space (15,625 networks), as
# published for other training-free proxies (sources in docs/benchmark.md); not measured here.
PUBLISHED = (("FLOPs", 0.62, 0.80), ("parameter count", 0.58, 0.75), ("synflow", 0.56, 0.76), ("NASWOT", 0.57, 0.76),
             ("jacov", 0.62, 0.80), ("ZiCo", 0.61, 0.80), ("TE-NAS", 0.54, 0.72), ("AZ-NAS", 0.71, 0.89),
             ("VKDNW", 0.75, 0.92))
SEED_AGREEMENT = ("two training seeds", 0.91, 0.99)  # trained vs trained: the ceiling of any proxy


@dataclass(frozen=True)
class BenchmarkSettings:
    table: Path
    sample: int | None          # architectures drawn from the table; None: all of it
    seed: int                   # of the sample and the bootstrap (the data's own seed is in `data`)
    cells_per_stage: int        # the benchmark trains 5; fewer is a cheaper proxy
    data: DataSettings
    objective: str              # the space's objective, shown first and against FLOPs (a sum: over this sample)
    stores: Stores              # the score cache, the MLflow store and its local artifacts
    out: Path | None = None     # the per-architecture CSV; default trials_dir/benchmark/LABEL.csv
    kernels: Path | None = None  # a folder for the kernel matrices of the architectures scored now
    data_dir: str | None = None
    device: str | None = None

    @classmethod
    def with_space_defaults(cls, table: Path, stores: Stores, *, sample: int | None = None, seed: int = 0,
                            cells_per_stage: int | None = None, train_size: int | None = None,
                            val_size: int | None = None, resolution: int | None = None, zca: bool = False,
                            out: Path | None = None, kernels: Path | None = None, data_dir: str | None = None,
                            device: str | None = None) -> BenchmarkSettings:
        """Settings where what is not given comes from the nasbench201 space's fidelity and objective, so
        that a search of that space and the benchmark share their scores."""
        space = load_space("nasbench201")
        cells = checks.integer(space.cells_per_stage if cells_per_stage is None else cells_per_stage,
                               "--cells-per-stage")
        return cls(table, sample, seed, cells, space.data_settings(train_size, val_size, resolution, seed, zca),
                   space.objectives[0], stores, out, kernels, data_dir, device)

    @property
    def label(self) -> str:
        """Names the run and its CSV, e.g. ``nb201-n1-t200-v100-r8-s0-k200``."""
        return f"nb201-n{self.cells_per_stage}-{self.data.label}-k{self.sample or 'all'}"

    @property
    def objective_column(self) -> str:
        """The objective's column: a score's own, or :data:`OBJECTIVE` for a sum."""
        return objective_keys([Objective.parse(self.objective)])[0]

    @property
    def out_path(self) -> Path:
        return self.out or self.stores.trials_dir / "benchmark" / f"{self.label}.csv"


@dataclass(frozen=True)
class BenchmarkResult:
    settings: BenchmarkSettings
    table_rows: int                         # rows of the whole table
    scores: pd.DataFrame                    # one row per sampled architecture, in sample order
    correlations: dict[str, Correlation]    # by score (SCORE_NAMES, then BASELINES) with the trained accuracy
    size_share: Correlation                 # the default score with FLOPs
    pairs: pd.DataFrame                     # the sample's cells that differ in one edge (positions in `scores`)
    edge_pairs: dict[str, PairAgreement]    # by score, as `correlations`: how each orders those pairs
    computed: int                           # architectures scored now (the others came from the cache)
    wall_seconds: float
    run_id: str


# ------------------------------------------------------------------------------------------------ table

def read_table(path: Path) -> pd.DataFrame:
    """The benchmark table, checked row by row; an error names the file and the line."""
    try:  # as text: a bad value is reported as written, not as pandas' NaN
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise NasCntkError(f"{path}: no such benchmark table (a CSV with columns {ARCH}, {TRAINED}, {SEEDS})") \
            from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise NasCntkError(f"{path}: cannot read the benchmark table ({str(error).splitlines()[0]})") from None
    missing = [c for c in (ARCH, TRAINED, SEEDS) if c not in table.columns]
    if missing:
        raise NasCntkError(f"{path}: no column {missing[0]!r} (columns there: {', '.join(map(str, table.columns))})")
    if not len(table):
        raise NasCntkError(f"{path}: the table has no rows")
    accuracy, seeds = (pd.to_numeric(table[c], errors="coerce") for c in (TRAINED, SEEDS))
    first_seen: dict[str, int] = {}
    for i, text in enumerate(table[ARCH]):
        line = f"{path}, line {i + 2}"  # the header is line 1
        try:
            nasbench201.parse_genotype(text, ARCH)
        except ArchitectureError as error:
            raise NasCntkError(f"{line}: {error}") from None
        if not np.isfinite(accuracy[i]):
            raise NasCntkError(f"{line}: {TRAINED}: expected a number, got {table[TRAINED][i]!r}")
        if not (seeds[i] >= 1 and seeds[i] == int(seeds[i])):
            raise NasCntkError(f"{line}: {SEEDS}: expected an integer >= 1, got {table[SEEDS][i]!r}")
        if text in first_seen:
            raise NasCntkError(f"{line}: {text} is listed again (first on line {first_seen[text] + 2})")
        first_seen[text] = i
    return pd.DataFrame({ARCH: table[ARCH], TRAINED: accuracy, SEEDS: seeds.astype(int)})


def sample_table(table: pd.DataFrame, sample: int | None, seed: int) -> pd.DataFrame:
    """``sample`` rows drawn without replacement: the first ones of a seeded permutation of the table."""
    if sample is not None and not 3 <= sample <= len(table):
        raise NasCntkError(f"--sample: expected 3 to {len(table)} architectures (the table's rows; rank "
                           f"correlation needs at least 3), got {sample}")
    order = np.random.default_rng(seed).permutation(len(table))
    return table.iloc[order[:sample]].reset_index(drop=True)


# ------------------------------------------------------------------------------------------------ running

def run_benchmark(settings: BenchmarkSettings) -> BenchmarkResult:
    """Score the sampled architectures (cached ones are looked up), correlate, and log it all to MLflow."""
    started = time.perf_counter()
    table = read_table(settings.table)
    sample = sample_table(table, settings.sample, settings.seed)
    archs = [nasbench201_network(g, settings.cells_per_stage) for g in sample[ARCH]]
    try:  # every sampled network shares the macro skeleton: one check covers the resolution
        plan(archs[0], settings.data.resolution, settings.data.resolution)
    except ArchitectureError as error:
        raise NasCntkError(f"resolution {settings.data.resolution}: {error}") from None
    checks.device(settings.device)
    if settings.kernels is not None:
        settings.kernels.mkdir(parents=True, exist_ok=True)
    tracker = settings.stores.tracker(EXPERIMENT)  # fail fast
    cache = ScoreCache(settings.stores.cache, settings.data.label)
    scores: list[Score | None] = [cache.get(arch.hash) for arch in archs]
    cached = [s is not None for s in scores]
    splits = settings.data.load(settings.data_dir) if not all(cached) else None  # data errors end it before any score
    # the proxies' images: the training subset's first, at the resolution the network is trained at
    proxy_data = replace(settings.data, resolution=32)
    baseline_cache = JsonFiles(settings.stores.cache / "baselines" / f"{proxy_data.label}-seed{settings.seed}")
    baselines: list[dict[str, float]] = []
    run_id = _start_run(tracker, settings, len(sample))
    with tracker.ending(run_id):
        with tqdm(total=len(archs), initial=sum(cached), desc="architectures", unit="arch", smoothing=0,
                  dynamic_ncols=True) as bar:
            for i, arch in enumerate(archs):
                if scores[i] is None:
                    scores[i] = _score(arch, splits, settings.device,
                                       None if settings.kernels is None else settings.kernels / f"{arch.hash}.npz")
                    cache.put(scores[i])
                    bar.update()
                    shown = dict.fromkeys([*(n for n in Objective.parse(settings.objective).names if n in SCORE_NAMES),
                                           "cntk_val_accuracy"])
                    values = scores[i].metrics()
                    tqdm.write(f"{i + 1:>5}/{len(archs)}  " + "  ".join(f"{n} {values[n]:.4f}" for n in shown) +
                               f"  trained {sample[TRAINED].iloc[i]:6.2f}  {scores[i].seconds:6.1f} s  {arch.name}")
                baselines.append(_baselines(sample[ARCH].iloc[i], proxy_data, settings, baseline_cache))
                _log_architecture(tracker, run_id, sample.iloc[i], arch, scores[i], baselines[i], cached[i])
        frame = _score_table(sample, archs, scores, baselines, cached, Objective.parse(settings.objective))
        out = settings.out_path
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False)
        tracker.log_text(run_id, frame.to_csv(index=False), "scores.csv")
        indexed = frame.set_index(ARCH)
        try:
            correlations = {name: correlate(_ranked(indexed, name), indexed[TRAINED], seed=settings.seed)
                            for name in dict.fromkeys([settings.objective_column, *SCORE_NAMES, *BASELINES])}
            size_share = correlate(_ranked(indexed, settings.objective_column), indexed["flops"], seed=settings.seed)
        except NasCntkError as error:
            raise NasCntkError(f"{error}; the scores are in {out}") from None
        pairs = one_edge_pairs(list(frame[ARCH]))
        trained = frame[TRAINED].to_numpy(float)
        edge_pairs = {name: agreement(_ranked(frame, name).to_numpy(float), trained, pairs, seed=settings.seed)
                      for name in correlations} if len(pairs) else {}
        result = BenchmarkResult(settings, len(table), frame, correlations, size_share, pairs, edge_pairs,
                                 cached.count(False), time.perf_counter() - started, run_id)
        _finish_run(tracker, result)
    return result


def _score(arch: Architecture, splits: DataSplits, device: str | None, save_kernels: Path | None) -> Score:
    try:
        return score(arch, splits, device=device, save_kernels=save_kernels)
    except KernelError as error:
        raise KernelError(f"{arch.name}: {error}") from None


def _baselines(genotype: str, proxy_data: DataSettings, settings: BenchmarkSettings,
               cache: JsonFiles) -> dict[str, float]:
    """The trained network's baselines, from the cache (by genotype, images and seed) when it has them."""
    key = hashlib.sha256(genotype.encode()).hexdigest()[:16]
    found = cache.get(key)
    if found is None:
        flops, parameters = nasbench201.trained_network_cost(genotype)
        images = _proxy_images(proxy_data, settings.data_dir)
        found = {"flops": flops, "parameters": parameters, "naswot": naswot(genotype, images, settings.seed),
                 "synflow": synflow(genotype, settings.seed)}
        cache.put(key, found)
    return found


@functools.cache
def _proxy_images(data: DataSettings, data_dir: str | None) -> torch.Tensor:
    """The first training images of ``data``: read only when some baseline is not in the cache."""
    return data.load(data_dir).x_train[:PROXY_IMAGES]


def _ranked(frame: pd.DataFrame, name: str) -> pd.Series:
    """A score's column oriented so that higher is better (the baselines and a sum already are)."""
    return direction(name) * frame[name] if name in SCORE_NAMES else frame[name]


def _label(name: str) -> str:
    return ranking_label(name) if name in SCORE_NAMES else name


def _score_table(sample: pd.DataFrame, archs: list[Architecture], scores: list[Score],
                 baselines: list[dict[str, float]], cached: list[bool], objective: Objective) -> pd.DataFrame:
    """One row per architecture; a sum objective's value (standardised over the sample) in :data:`OBJECTIVE`."""
    frame = pd.DataFrame([{
        ARCH: row[ARCH], TRAINED: row[TRAINED], SEEDS: row[SEEDS], **s.metrics(), **b,
        "kernel_seconds": s.seconds, "device": s.device, "cached": was_cached, "hash": arch.hash,
        "connected": nasbench201.connected(nasbench201.parse_genotype(row[ARCH])),
    } for (_, row), arch, s, b, was_cached in zip(sample.iterrows(), archs, scores, baselines, cached)])
    if objective.combined:
        rows = frame.to_dict("records")
        statistics = reference([objective], rows)
        frame.insert(3, OBJECTIVE, [objective.value(row, statistics) for row in rows])
    return frame


# ------------------------------------------------------------------------------------------------ MLflow

def _start_run(tracker: Tracker, settings: BenchmarkSettings, sampled: int) -> str:
    data = settings.data
    params = {"table": settings.table, "sample": settings.sample or "all", "sampled": sampled,
              "seed": settings.seed, "cells_per_stage": settings.cells_per_stage, "train_size": data.train_size,
              "val_size": data.val_size, "resolution": data.resolution, "data_seed": data.seed, "zca": data.zca,
              "device": settings.device or "auto"}
    return tracker.start_run(settings.label, params=params, tags={"benchmark": "nb201", "table": str(settings.table)})


def _log_architecture(tracker: Tracker, parent_run_id: str, row: pd.Series, arch: Architecture, result: Score,
                      baselines: dict[str, float], cached: bool) -> None:
    """One nested run per architecture: its scores beside its trained accuracy, comparable in the MLflow UI."""
    run_id = tracker.start_run(
        arch.name, parent=parent_run_id, params={ARCH: arch.name, SEEDS: row[SEEDS]},
        # NASWOT is -inf where the codes tell no two images apart (a constant network): not a metric value
        metrics={**result.metrics(), **{k: v for k, v in baselines.items() if math.isfinite(v)},
                 TRAINED: row[TRAINED], "kernel_seconds": result.seconds},
        tags={"arch_hash": arch.hash, "cached": str(cached).lower(), "device": result.device})
    tracker.end_run(run_id)


def _finish_run(tracker: Tracker, result: BenchmarkResult) -> None:
    metrics = {f"correlation.{name}.{key}": value for name, c in result.correlations.items()
               for key, value in c.to_dict().items()}
    metrics |= {f"correlation.{result.settings.objective_column}_with_flops.{key}": value
                for key, value in result.size_share.to_dict().items()}
    metrics |= {f"one_edge.{name}.{key}": value for name, a in result.edge_pairs.items()
                for key, value in a.to_dict().items() if math.isfinite(value)}
    seconds = result.scores["kernel_seconds"]
    metrics |= {"kernel_seconds_mean": seconds.mean(), "kernel_seconds_total": seconds.sum(),
                "computed": result.computed, "wall_seconds": result.wall_seconds}
    tracker.log(result.run_id, metrics=metrics)
    tracker.log_text(result.run_id, format_report(result), "report.txt")
    frame = result.scores.set_index(ARCH)
    for name in dict.fromkeys([result.settings.objective_column, "cntk_val_accuracy", "flops"]):
        figure = correlation_figure(_ranked(frame, name), frame[TRAINED], result.correlations[name],
                                    kernel_label=_label(name),
                                    trained_label=TRAINED_LABEL)
        tracker.log_figure(result.run_id, figure, f"correlation_{name}.png")


# ------------------------------------------------------------------------------------------------ report

def format_report(result: BenchmarkResult) -> str:
    """The sample's rank correlations beside the published whole-space figures, and the kernel's cost."""
    s, frame = result.settings, result.scores
    seconds = frame["kernel_seconds"]
    devices = ", ".join(sorted(frame["device"].unique()))
    head = [f"NAS-Bench-201, CIFAR-10: {len(frame)} of the {result.table_rows} architectures in {s.table} "
            f"(random sample, seed {s.seed}); {(~frame['connected']).sum()} with a disconnected cell",
            f"kernel proxy: {s.cells_per_stage} cell(s) per stage, {s.data.train_size} training + "
            f"{s.data.val_size} validation images, {s.data.resolution}x{s.data.resolution}, data seed "
            f"{s.data.seed}{', ZCA' if s.data.zca else ''} (cache {s.data.label})",
            f"kernel time: {seconds.mean():.2f} s per architecture on average, {seconds.sum():.0f} s in all "
            f"({devices}); {result.computed} scored now, {len(frame) - result.computed} from the cache, "
            f"{result.wall_seconds:.0f} s wall clock",
            ""]
    confidence = next(iter(result.correlations.values())).confidence
    c = result.correlations
    rows = [(f"this sample (n={len(frame)}, {confidence * 100:g}% bootstrap intervals)", "", ""),
            ("  kernel scores, one kernel pass (- : lower is better)", "", "")]
    key = s.objective_column
    rows += [(f"    {ranking_label(name)}{' (default)' if name == key else ''}", str(c[name].kendall),
              str(c[name].spearman)) for name in SCORE_NAMES]
    if key == OBJECTIVE:
        rows += [(f"  the default objective, {s.objective} (terms standardised over this sample)",
                  str(c[key].kendall), str(c[key].spearman))]
    rows += [("  the trained network (16/32/64 channels, 5 cells per stage): size, and proxies at initialisation",
              "", "")]
    rows += [(f"    {name}", str(c[name].kendall), str(c[name].spearman)) for name in BASELINES]
    rows += [(f"  {_label(key)} with FLOPs (how much of it is size)", str(result.size_share.kendall),
              str(result.size_share.spearman))]
    rows += [("published, whole space (15,625 architectures; not measured here)", "", "")]
    rows += [(f"  {name}", f"{tau:.2f}", f"{rho:.2f}") for name, tau, rho in (*PUBLISHED, SEED_AGREEMENT)]
    width = max(len(r[0]) for r in rows)
    columns = max(len(r[1]) for r in rows)
    lines = [f"{'':<{width}}  {'Kendall tau':<{columns}}  Spearman rho"]
    lines += [f"{a:<{width}}  {b:<{columns}}  {c}".rstrip() for a, b, c in rows]
    shown = dict.fromkeys([key, "cntk_val_accuracy", "flops"])
    tail = ["", *(f"{name}: precision@{c[name].top_k} {c[name].precision_at_k}; regret of its pick "
                  f"{c[name].regret:.2f} points (picks {c[name].kernel_pick})" for name in shown)]
    if result.edge_pairs:
        labels = {_label(name): a for name, a in result.edge_pairs.items()}
        tail += ["", format_agreements(labels, result.pairs)]
    else:
        tail += ["", "one-edge pairs: no two cells of the sample differ in one edge"]
    return "\n".join(head + lines + tail)
