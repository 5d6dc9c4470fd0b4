"""Does the search find good cells? Run the nasbench201 search over a benchmark table's cells and look up
the trained accuracy of what it picks.

Each of ``seeds`` searches (sampler seeds 0, 1, ...; the same data subsets) runs ``trials`` trials that
propose only the table's cells (:class:`nas_cntk.search.samplers.RestrictedCellSampler`), and its pick,
the first of its leaderboard, is looked up in the table. Beside it, at the same budget of ``trials``
cells drawn at random from the table (seeded like the search): the pick of one drawn cell at random,
the FLOPs-guided pick (the drawn cell with the most FLOPs), and the best cell the search itself scored,
which tells exploring from ranking. The searches share the score cache, so a later seed looks up what an
earlier one scored; a search's cost is the kernel time of the scores it used, as measured when each was
computed, so it does not depend on what the cache held.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from nas_cntk.data import DataSettings
from nas_cntk.description import nasbench201
from nas_cntk.search.leaderboard import leaderboard
from nas_cntk.search.objectives import file_label
from nas_cntk.search.settings import SearchSettings
from nas_cntk.search.space import load_space
from nas_cntk.search.stores import Stores
from nas_cntk.search.workers import run_search
from nas_cntk.trained.benchmark import ARCH, TRAINED, read_table

EXPERIMENT = "nb201-search-benchmark"
SPACE = "nasbench201"
# CIFAR-10 test accuracy (%) of the pick, mean and sd over runs, whole space, as tabulated by TE-NAS
# (Chen et al., ICLR 2021); not measured here.
PUBLISHED = (("NASWOT (Mellor et al.)", 91.78, 1.45), ("TE-NAS (1,558 GPU-seconds)", 93.90, 0.47))
PICKS = {"search": "the search's pick (its leaderboard's first)",
         "best_scored": "the best cell the search scored (an oracle over its trials)",
         "flops": "FLOPs-guided: the most FLOPs of as many cells drawn at random",
         "random": "a cell drawn at random"}


@dataclass(frozen=True)
class SearchBenchmarkSettings:
    table: Path
    trials: int                 # per search
    seeds: int                  # searches, with sampler seeds 0 .. seeds-1
    data: DataSettings          # of every search (its seed is the data's, not the samplers')
    objective: str
    sampler: str
    stores: Stores
    rungs: tuple[int, ...] | None = None  # multi-fidelity: training images per rung (the last the data's)
    pruner: str = "sh"
    reduction_factor: int = 2
    out: Path | None = None     # the per-search CSV; default trials_dir/benchmark/LABEL.csv
    data_dir: str | None = None
    device: str | None = None

    @classmethod
    def with_space_defaults(cls, table: Path, stores: Stores, *, trials: int, seeds: int, objective: str | None,
                            sampler: str, rungs: tuple[int, ...] | None = None, pruner: str = "sh",
                            reduction_factor: int = 2, train_size: int | None = None, val_size: int | None = None,
                            resolution: int | None = None, seed: int = 0, zca: bool = False,
                            out: Path | None = None, data_dir: str | None = None,
                            device: str | None = None) -> SearchBenchmarkSettings:
        space = load_space(SPACE)
        train_size = rungs[-1] if train_size is None and rungs else train_size
        return cls(table, trials, seeds, space.data_settings(train_size, val_size, resolution, seed, zca),
                   objective or ",".join(space.objectives), sampler, stores, rungs, pruner, reduction_factor, out,
                   data_dir, device)

    @property
    def label(self) -> str:
        """Names the benchmark's run, its CSV and its searches' studies, e.g.
        ``nb201-search-cntk_alignment-tpe-T100-t200-v100-r8-s0`` (and ``-sh2-rungs50-100-200`` with rungs)."""
        sizes = "-".join(map(str, self.rungs or ()))
        rungs = "" if self.rungs is None else f"-{self.pruner}{self.reduction_factor}-rungs{sizes}"
        return f"nb201-search-{file_label(self.objective)}-{self.sampler}-T{self.trials}-{self.data.label}{rungs}"

    @property
    def out_path(self) -> Path:
        return self.out or self.stores.trials_dir / "benchmark" / f"{self.label}.csv"

    def search(self, seed: int, cells: tuple[str, ...]) -> SearchSettings:
        d = self.data
        return SearchSettings(SPACE, self.stores, study=f"{self.label}-seed{seed}", trials=self.trials,
                              sampler=self.sampler, seed=seed, data_seed=d.seed, train_size=d.train_size,
                              val_size=d.val_size, resolution=d.resolution, zca=d.zca,
                              objectives=tuple(self.objective.split(",")), cells=cells, rungs=self.rungs,
                              pruner=self.pruner, reduction_factor=self.reduction_factor, data_dir=self.data_dir,
                              device=self.device)


@dataclass(frozen=True)
class SearchBenchmarkResult:
    settings: SearchBenchmarkSettings
    table: pd.DataFrame         # the whole table
    searches: pd.DataFrame      # one row per search: each pick's genotype and accuracy, cost
    wall_seconds: float
    run_id: str

    def summary(self, pick: str) -> tuple[float, float, float, float]:
        """Mean, sd and the 95% t-interval of a pick's accuracy over the searches."""
        values = self.searches[f"{pick}_accuracy"].to_numpy()
        mean, sd = float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0
        half = float(stats.t.ppf(0.975, len(values) - 1) * sd / np.sqrt(len(values))) if len(values) > 1 else 0.0
        return mean, sd, mean - half, mean + half


def run_search_benchmark(settings: SearchBenchmarkSettings) -> SearchBenchmarkResult:
    """Run the searches (each resumes if it exists), look up their picks, log it all to MLflow."""
    started = time.perf_counter()
    table = read_table(settings.table)
    accuracy = dict(zip(table[ARCH], table[TRAINED]))
    flops = {g: nasbench201.trained_network_cost(g)[0] for g in table[ARCH]}
    cells = tuple(table[ARCH])
    for seed in range(settings.seeds):
        settings.search(seed, cells)  # bad settings fail before any search starts
    tracker = settings.stores.tracker(EXPERIMENT)
    run_id = tracker.start_run(settings.label, params={
        "table": settings.table, "trials": settings.trials, "seeds": settings.seeds, "objective": settings.objective,
        "sampler": settings.sampler, "rungs": settings.rungs or "none", "pruner": settings.pruner,
        "reduction_factor": settings.reduction_factor, **vars(settings.data)}, tags={"benchmark": "nb201-search"})
    rows = []
    with tracker.ending(run_id):
        for seed in range(settings.seeds):
            search, study = run_search(settings.search(seed, cells))
            board = leaderboard(study)
            drawn = list(np.random.default_rng(seed).choice(table[ARCH], min(settings.trials, len(table)),
                                                            replace=False))
            picks = {"search": board["name"].iloc[0],
                     "best_scored": max(board["name"], key=accuracy.__getitem__),
                     "flops": max(drawn, key=flops.__getitem__), "random": drawn[0]}
            row = {"seed": seed, "study": search.study_name, "scored": len(board),
                   "kernel_seconds": float(board["kernel_s"].sum()),
                   **{f"{name}_pick": cell for name, cell in picks.items()},
                   **{f"{name}_accuracy": accuracy[cell] for name, cell in picks.items()}}
            rows.append(row)
            tracker.end_run(tracker.start_run(
                f"seed {seed}", parent=run_id, params={"study": search.study_name, "seed": seed,
                                                      **{k: v for k, v in row.items() if k.endswith("_pick")}},
                metrics={k: v for k, v in row.items() if k.endswith("_accuracy") or k in ("scored", "kernel_seconds")},
                tags={"study": search.study_name}))
        frame = pd.DataFrame(rows)
        out = settings.out_path
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False)
        result = SearchBenchmarkResult(settings, table, frame, time.perf_counter() - started, run_id)
        best = float(table[TRAINED].max())
        metrics = {"kernel_seconds_mean": frame["kernel_seconds"].mean(), "table_best": best}
        for pick in PICKS:
            mean, sd, low, high = result.summary(pick)
            metrics |= {f"{pick}_accuracy_mean": mean, f"{pick}_accuracy_sd": sd, f"{pick}_regret_mean": best - mean}
        tracker.log(run_id, metrics=metrics)
        tracker.log_text(run_id, frame.to_csv(index=False), "searches.csv")
        tracker.log_text(run_id, format_report(result), "report.txt")
    return result


def format_report(result: SearchBenchmarkResult) -> str:
    s, trained = result.settings, result.table[TRAINED]
    best = float(trained.max())
    seconds = result.searches["kernel_seconds"]
    lines = [f"NAS-Bench-201 search benchmark: {s.seeds} search(es) of {s.trials} trials over the {len(trained)} "
             f"cells of {s.table}",
             f"the table: best {best:.2f}, 90th percentile {trained.quantile(0.9):.2f}, median {trained.median():.2f}",
             f"each search: space {SPACE}, sampler {s.sampler}, objective {s.objective}, data {s.data.label}"
             + ("" if s.rungs is None else f", rungs {list(s.rungs)} ({s.pruner}, reduction factor "
                                           f"{s.reduction_factor})") + "; "
             f"kernel time {seconds.mean():.0f} s on average (as measured when each score was computed), "
             f"{result.searches['scored'].mean():.0f} cells scored; {result.wall_seconds:.0f} s wall clock in all",
             "", f"{'pick (CIFAR-10 test accuracy after 200 epochs, %)':<64}  {'mean +- sd':<15}  "
             f"{'95% interval':<16}  regret"]
    for pick, what in PICKS.items():
        mean, sd, low, high = result.summary(pick)
        lines.append(f"{what:<64}  {mean:6.2f} +- {sd:4.2f}  [{low:.2f}, {high:.2f}]  {best - mean:6.2f}")
    lines += ["published, whole space (15,625 cells, best 94.37; not measured here)"]
    lines += [f"  {name:<62}  {mean:6.2f} +- {sd:4.2f}" for name, mean, sd in PUBLISHED]
    return "\n".join(lines)
