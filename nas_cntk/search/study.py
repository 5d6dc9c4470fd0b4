"""The search: an Optuna study whose objective is the CNTK validation accuracy of a proposed network.

Storage is a plain Optuna RDB storage (SQLite under the trials folder by default, any RDB URL
otherwise) with heartbeats: a trial whose process died (kill -9, a lost machine) is marked failed
once its heartbeat is older than the grace period, and re-queued with the same choices. Several
worker processes, on this machine or others, share one study through the storage. Scores are
cached by architecture hash and data setting, and every trial is logged to MLflow as it ends.
"""
from __future__ import annotations

import multiprocessing
import os
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from tqdm.auto import tqdm

from nas_cntk import checks
from nas_cntk.data import DataSettings, DataSplits
from nas_cntk.description.architecture import Architecture
from nas_cntk.errors import ArchitectureError, InvalidCandidate, KernelError, NasCntkError
from nas_cntk.kernels import kernel
from nas_cntk.scoring.regression import Score, score
from nas_cntk.search.cache import ScoreCache
from nas_cntk.search.leaderboard import leaderboard
from nas_cntk.search.space import ListSpace, SearchSpace, check_candidate, load_space
from nas_cntk.search.tracking import Tracker, local_tracking_uri

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SAMPLERS = ("auto", "tpe", "random", "grid")


@dataclass(frozen=True)
class SearchSettings:
    """What a search is asked to do. The data sizes left as None come from the space file's fidelity."""

    space: str                      # search-space file, or the name of a built-in one
    stores: Stores
    study: str | None = None        # None: named after the space and the data, e.g. default-t200-v100-r8-s0
    trials: int = 100               # finished (completed or pruned) trials the study should have
    sampler: str = "auto"
    seed: int = 0                   # of the sampler and of the data subsets
    workers: int = 1
    train_size: int | None = None
    val_size: int | None = None
    resolution: int | None = None
    zca: bool = False
    data_dir: str | None = None
    device: str | None = None
    heartbeat: int = 10             # seconds; a trial is stale after 3 missed heartbeats

    def __post_init__(self) -> None:
        for option in ("trials", "workers", "heartbeat"):
            checks.integer(getattr(self, option), f"--{option}")
        if self.sampler not in SAMPLERS:
            raise NasCntkError(f"--sampler: expected one of {', '.join(SAMPLERS)}, got {self.sampler!r}")


@dataclass(frozen=True)
class Search:
    """A search's settings resolved against its space file: the space, the data and the study's name."""

    settings: SearchSettings
    space: SearchSpace
    data: DataSettings
    study_name: str

    @classmethod
    def resolve(cls, settings: SearchSettings) -> Search:
        space = load_space(settings.space)
        data = space.data_settings(settings.train_size, settings.val_size, settings.resolution, settings.seed,
                                   settings.zca)
        return cls(settings, space, data, settings.study or f"{space.label}-{data.label}")

    def tracker(self) -> Tracker:
        return self.settings.stores.tracker(self.study_name)


@dataclass(frozen=True)
class Stores:
    """Where results live: the Optuna storage and the MLflow store (local under ``trials_dir`` unless
    given), the score cache and MLflow's local artifacts (always under ``trials_dir``)."""

    trials_dir: Path
    storage_url: str | None = None      # e.g. postgresql://host/db; default sqlite:///DIR/optuna.db
    tracking_uri_given: str | None = None  # e.g. http://host:5000; default sqlite:///DIR/mlflow.db

    @property
    def storage(self) -> str:
        return self.storage_url or f"sqlite:///{(self.trials_dir / 'optuna.db').resolve()}"

    @property
    def tracking_uri(self) -> str:
        return self.tracking_uri_given or local_tracking_uri(self.trials_dir)

    @property
    def cache(self) -> Path:
        return self.trials_dir / "cache"

    def tracker(self, experiment: str) -> Tracker:
        return Tracker(self.tracking_uri, experiment, self.trials_dir / "mlartifacts")

    def study(self, name: str | None = None) -> optuna.Study:
        """A study by name, or the most recently created one."""
        return load_study(self.storage, name)


def open_storage(url: str, heartbeat: int | None = None) -> RDBStorage:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # SQLite serialises writers: wait for the lock instead of failing when several workers write at once.
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    try:
        with warnings.catch_warnings():  # heartbeats are marked experimental, unchanged since Optuna 2.8
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(url, engine_kwargs=engine, heartbeat_interval=heartbeat,
                              grace_period=None if heartbeat is None else 3 * heartbeat,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3)
                              if heartbeat else None)
    except Exception as error:  # SQLAlchemy and driver errors: bad URL, unreachable server, missing driver
        raise NasCntkError(f"Optuna storage {url}: {str(error).splitlines()[0]}") from None


def load_study(storage: str, study: str | None = None) -> optuna.Study:
    """A study by name, or the most recently created one in ``storage``."""
    names = optuna.get_all_study_names(open_storage(storage))
    if not names:
        raise NasCntkError(f"no study in {storage}; run `nas-cntk search` first")
    if study is not None and study not in names:
        raise NasCntkError(f"no study named {study!r} in {storage} (there: {', '.join(names)})")
    return optuna.load_study(study_name=study or names[-1], storage=open_storage(storage))


def make_sampler(name: str, space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    if name == "auto":
        name = "grid" if isinstance(space, ListSpace) else "tpe"
    if name == "grid":
        if not space.finite:
            raise NasCntkError(f"--sampler grid: search space {space.path} has continuous ranges; give them a "
                               "`step` or use --sampler tpe")
        # Every combination once, conditional choices included; the study stops when all are done.
        with warnings.catch_warnings():  # experimental since Optuna 3.1, unchanged since
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.BruteForceSampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def open_study(search: Search) -> optuna.Study:
    """Create the study, or resume it after checking it searches the same space on the same data."""
    settings = search.settings
    study = optuna.create_study(storage=open_storage(settings.stores.storage, settings.heartbeat),
                                study_name=search.study_name, direction="maximize", load_if_exists=True,
                                sampler=make_sampler(settings.sampler, search.space, settings.seed))
    expected = {"space": search.space.name, "space_digest": search.space.digest, "data": search.data.label}
    found = {key: study.user_attrs[key] for key in expected if key in study.user_attrs}
    if not found:
        for key, value in expected.items():
            study.set_user_attr(key, value)
    elif found != expected:
        key = next(k for k in expected if found.get(k) != expected[k])
        raise NasCntkError(f"study {search.study_name!r} was run with {key} {found.get(key)!r}, not "
                           f"{expected[key]!r}; resume it with its own settings or choose another --study")
    return study


class Objective:
    """Score one proposed network; record everything about it on the trial and in MLflow."""

    def __init__(self, search: Search, splits: DataSplits, tracker: Tracker, parent_run_id: str, device: str):
        self.space, self.data, self.splits = search.space, search.data, splits
        self.tracker, self.parent_run_id, self.device = tracker, parent_run_id, device
        self.cache = ScoreCache(search.settings.stores.cache, search.data)

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            arch = self.space.suggest(trial)
            check_candidate(arch, self.data.resolution)
        except (InvalidCandidate, ArchitectureError) as error:
            reason = str(error)
            trial.set_user_attr("pruned_reason", reason)
            self._log(trial, "PRUNED", tags={"pruned_reason": reason})
            tqdm.write(f"trial {trial.number:>4}  pruned: {reason}")
            raise optuna.TrialPruned(reason) from None
        for key, value in {"arch_hash": arch.hash, "summary": arch.summary(), "name": arch.name,
                           "architecture": dict(arch.spec), "worker": f"{socket.gethostname()}:{os.getpid()}"}.items():
            trial.set_user_attr(key, value)
        result = self.cache.get(arch.hash)
        cached = result is not None
        if result is None:
            try:
                result = score(arch, self.splits, device=self.device)
            except KernelError as error:
                self._log(trial, "FAIL", arch, tags={"error": str(error)})
                raise
            self.cache.put(result)
        record = _trial_record(result, cached)
        for key, value in record.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("mlflow_run_id", self._log(trial, "COMPLETE", arch, record))
        tqdm.write(f"trial {trial.number:>4}  CNTK {result.ntk.accuracy:.4f}  NNGP {result.nngp.accuracy:.4f}  "
                   f"{'cached' if cached else f'{result.seconds:6.1f} s'}  {arch.name or arch.summary()}")
        return result.ntk.accuracy

    def _log(self, trial: optuna.Trial, state: str, arch: Architecture | None = None, record: dict | None = None,
             tags: dict[str, str] | None = None) -> str:
        data = self.data
        params = {**trial.params, "train_size": data.train_size, "val_size": data.val_size,
                  "resolution": data.resolution, "data_seed": data.seed, "zca": data.zca}
        tags = {"state": state, **{k: v[:5000] for k, v in (tags or {}).items()}}
        metrics = {}
        if arch is not None:
            params["network"] = arch.summary()[:6000]
            tags["arch_hash"] = arch.hash
        if record is not None:
            tags.update(device=record["device"], cached=str(record["cached"]).lower())
            metrics = {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        return self.tracker.log_trial(self.parent_run_id, trial.number, params=params, metrics=metrics, tags=tags,
                                      architecture_json=None if arch is None else arch.to_json(),
                                      status="FAILED" if state == "FAIL" else "FINISHED")


def _trial_record(result: Score, cached: bool) -> dict:
    """What a trial keeps about its score (Optuna user attributes; the numbers are also MLflow metrics)."""
    return {"cntk_val_accuracy": result.ntk.accuracy, "nngp_val_accuracy": result.nngp.accuracy,
            "cntk_ridge": result.ntk.ridge, "cntk_relative_ridge": result.ntk.relative_ridge,
            "cntk_loo_accuracy": result.ntk.loo_accuracy, "nngp_ridge": result.nngp.ridge,
            "nngp_relative_ridge": result.nngp.relative_ridge, "nngp_loo_accuracy": result.nngp.loo_accuracy,
            "kernel_seconds": result.seconds, "pairs": result.pairs, "pairs_per_second": result.pairs_per_second,
            "device": result.device, "cached": cached}


# ------------------------------------------------------------------------------------------------ running

def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def _device(device: str | None, worker: int) -> str:
    """The device of a worker: the one asked for, else one GPU per worker in turn, else the CPU."""
    if device is not None:
        return device
    return f"cuda:{worker % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu"


def _work(search: Search, worker: int, parent_run_id: str) -> None:
    """A spawned worker process: open its own study, tracker and data, then work on the study."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(search)
    if finished_trials(study) < search.settings.trials:
        _optimize(search, study, search.tracker(), search.data.load(search.settings.data_dir), worker, parent_run_id)


def _optimize(search: Search, study: optuna.Study, tracker: Tracker, splits: DataSplits, worker: int,
              parent_run_id: str, bar: tqdm | None = None) -> None:
    """Run trials on the shared study until it has ``settings.trials`` finished trials."""
    settings = search.settings
    objective = Objective(search, splits, tracker, parent_run_id, _device(settings.device, worker))
    parent_pid = os.getppid()

    def stop_if_orphaned(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if worker and os.getppid() != parent_pid:  # the search process was killed: stop after this trial
            study.stop()

    def show_progress(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if bar is not None:
            bar.n = finished_trials(study)
            if any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
                bar.set_postfix_str(f"best CNTK {study.best_value:.4f}", refresh=False)
            bar.refresh()

    study.optimize(objective, catch=(KernelError,), callbacks=[
        MaxTrialsCallback(settings.trials, states=FINISHED), stop_if_orphaned, show_progress])


def estimate_trial_seconds(space: SearchSpace, data: DataSettings, device: str, samples: int = 5,
                           seed: int = 0) -> float:
    """Kernel seconds of one trial on ``device``, timed on a few networks of the space on random images.

    Timed without torch.compile, so for large trials it is an upper bound (compiled runs are faster).
    """
    sampler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    pairs = data.train_size * (data.train_size + 1) // 2 + data.val_size * data.train_size
    seconds = []
    for _ in range(10 * samples):  # invalid candidates do not count
        trial = sampler.ask()
        try:
            arch = space.suggest(trial)
            check_candidate(arch, data.resolution)
        except (InvalidCandidate, ArchitectureError):
            continue
        seconds.append(pairs / _pairs_per_second(arch, data.resolution, device))
        if len(seconds) == samples:
            break
    return sum(seconds) / max(len(seconds), 1)


def _pairs_per_second(arch: Architecture, resolution: int, device: str) -> float:
    warm_up = torch.randn(2, 3, resolution, resolution, device=device)
    kernel(arch, warm_up, progress=False, torch_compile=False)
    n = 4
    while True:  # grow the block until the timing means something
        x = torch.randn(n, 3, resolution, resolution, device=device)
        start = time.perf_counter()
        kernel(arch, x, device=device, progress=False, torch_compile=False)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
        if elapsed > 0.5 or n >= 64:
            return n * (n + 1) / 2 / elapsed
        n *= 2


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def run_search(settings: SearchSettings, *, dry_run: bool = False) -> tuple[Search, optuna.Study]:
    """Run (or resume) the study until it has ``settings.trials`` finished trials; return it."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is ours to print
    checks.device(settings.device)
    search = Search.resolve(settings)
    space, data = search.space, search.data
    tracker = search.tracker()  # fail fast
    study = open_study(search)
    done, device = finished_trials(study), _device(settings.device, 0)
    remaining = max(settings.trials - done, 0)
    if isinstance(space, ListSpace):
        remaining = min(remaining, len(space.architectures))
    print(f"study {search.study_name}: {done} trials finished, {remaining} to run, {settings.workers} worker(s); "
          f"space {space.name}, data {data.label}")
    per_trial = estimate_trial_seconds(space, data, device, seed=settings.seed)
    total = per_trial * remaining / settings.workers
    print(f"estimated kernel time on {device}: about {duration(per_trial)} per trial, {duration(total)} in all "
          "(timed uncompiled on a few sampled networks)")
    if total > 3600:
        print("that is long; cheaper, lower-fidelity settings: --train-size 500 --val-size 200 --resolution 16 "
              f"(or 8){'' if dry_run else '; going on'}")
    if dry_run or remaining == 0:
        return search, study
    splits = data.load(settings.data_dir)  # data errors end the run before any trial
    parent_run_id = tracker.start_search(
        params={"space": space.name, "sampler": settings.sampler, "seed": settings.seed, "trials": settings.trials,
                "workers": settings.workers, **vars(data)},
        tags={"storage": settings.stores.storage, "space_file": str(space.path)})
    context = multiprocessing.get_context("spawn")  # CUDA and fork do not mix
    workers = [context.Process(target=_work, args=(search, k, parent_run_id), daemon=False)
               for k in range(1, settings.workers)]
    with tracker.ending(parent_run_id):
        try:
            for process in workers:
                process.start()
            with tqdm(total=done + remaining, initial=done, desc="trials", unit="trial", smoothing=0,
                      dynamic_ncols=True) as bar:
                _optimize(search, study, tracker, splits, 0, parent_run_id, bar)
                for process in workers:
                    process.join()
            failed = [k for k, process in enumerate(workers, 1) if process.exitcode]
            if failed:
                raise NasCntkError(f"worker(s) {', '.join(map(str, failed))} stopped with an error (see above); "
                                   "finished trials are kept, run the same command again to resume")
        finally:
            for process in workers:
                if process.is_alive():
                    process.terminate()
            _log_summary(tracker, parent_run_id, study)
    return search, study


def _log_summary(tracker: Tracker, parent_run_id: str, study: optuna.Study) -> None:
    """The parent run's summary: the leaderboard as CSV and the optimisation history as a plot."""
    import matplotlib.pyplot as plt  # only here: a second or two of import that scoring never needs

    table = leaderboard(study)
    metrics = {"finished_trials": finished_trials(study)}
    figure = None
    if len(table):
        metrics["best_cntk_val_accuracy"] = float(table["cntk_acc"].iloc[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            figure = optuna.visualization.matplotlib.plot_optimization_history(study).figure
    tracker.log_search_summary(parent_run_id, table, figure, metrics)
    if figure is not None:
        plt.close(figure)
