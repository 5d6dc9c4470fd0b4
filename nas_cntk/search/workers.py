"""Running a search: the study's trials in this process and in ``--workers`` - 1 spawned ones, until it has
``--trials`` finished trials and none left running by a process that stopped; progress, and the search
run's summary in MLflow. Every input is checked before anything is created.
"""
from __future__ import annotations

import multiprocessing
import os
import time
import warnings

import optuna
import torch
from optuna.trial import TrialState
from tqdm.auto import tqdm

from nas_cntk import checks
from nas_cntk.errors import KernelError, NasCntkError
from nas_cntk.search.estimate import duration, estimate_trial_seconds
from nas_cntk.search.leaderboard import leaderboard
from nas_cntk.search.objectives import Objective, objective_keys, objectives_label, orientation
from nas_cntk.search.settings import SearchSettings
from nas_cntk.search.space import ListSpace
from nas_cntk.search.stores import GRACE_HEARTBEATS, masked
from nas_cntk.search.study import Search, existing_study, finished_trials, open_study
from nas_cntk.search.tracking import Tracker
from nas_cntk.search.trials import TrialScorer, load_references


def _device(device: str | None, worker: int) -> str:
    """The device of a worker: the one asked for, else one GPU per worker in turn, else the CPU."""
    if device is not None:
        return device
    return f"cuda:{worker % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu"


def _work(search: Search, worker: int, parent_run_id: str) -> None:
    """A spawned worker process: open its own study, tracker and data, then work on the study."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our lines say what happened to each trial
    study, claims = open_study(search, worker)
    try:
        scorer = TrialScorer(search, claims, search.data.load(search.settings.data_dir), search.tracker(),
                             parent_run_id, _device(search.settings.device, worker))
        load_references(search, study, scorer)
        _optimize(search, study, scorer, worker)
    except KeyboardInterrupt:  # Ctrl-C reaches every worker: the search process reports it, once
        pass


def _optimize(search: Search, study: optuna.Study, scorer: TrialScorer, worker: int, bar: tqdm | None = None) -> None:
    """Run trials on the shared study until it has ``settings.trials`` finished trials and no trial waits to
    be run again; then see to the trials that other processes left running (:func:`_fail_dead_trials`)."""
    settings = search.settings
    parent_pid = os.getppid()

    def orphaned() -> bool:  # the search process was killed: stop after this trial
        return worker > 0 and os.getppid() != parent_pid

    def pending() -> bool:
        return finished_trials(study) < settings.trials or bool(study.get_trials(deepcopy=False,
                                                                                 states=(TrialState.WAITING,)))

    def show_progress(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if bar is not None:
            bar.n = finished_trials(study)
            if any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
                if len(search.objectives) == 1:
                    best = search.objectives[0].shown(study.best_value)
                    bar.set_postfix_str(f"best {scorer.keys[0]} {best:.4g}", refresh=False)
                else:
                    bar.set_postfix_str(f"Pareto front {len(study.best_trials)}", refresh=False)
            bar.refresh()

    def stop_when_done(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if orphaned() or not pending():
            study.stop()

    while True:
        if pending() and not orphaned():
            study.optimize(scorer, catch=(KernelError,), callbacks=[stop_when_done, show_progress])
        if orphaned() or not _fail_dead_trials(study, settings.heartbeat, say=worker == 0):
            return


def _fail_dead_trials(study: optuna.Study, heartbeat: int, say: bool) -> bool:
    """Once this process has no trial to run: wait while other processes' trials run, for at most the grace
    period and a heartbeat, failing each whose heartbeat stops (its process died) and queuing it to run
    again. Returns whether trials wait to be run."""
    deadline = time.monotonic() + (GRACE_HEARTBEATS + 1) * heartbeat
    while True:
        with warnings.catch_warnings():  # experimental since Optuna 2.9, unchanged since
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
        if any(t.state == TrialState.WAITING for t in trials):
            return True
        if not trials or time.monotonic() > deadline:
            return False
        if say:
            tqdm.write(f"trial(s) {', '.join(str(t.number) for t in trials)} still running in other processes: "
                       f"waiting up to {duration(deadline - time.monotonic())} for them to finish, or to fail "
                       "them and run them again if their process has stopped")
            say = False
        time.sleep(1)


def run_search(settings: SearchSettings, *, dry_run: bool = False) -> tuple[Search, optuna.Study | None]:
    """Run (or resume) the study until it has ``settings.trials`` finished trials; return it.

    Every input is checked (settings, space, data files, stores) before the study or its MLflow
    experiment is created, so a bad input leaves nothing behind. A dry run creates nothing (its study
    is None when there is none yet).
    """
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # one line per trial is ours to print
    checks.device(settings.device)
    search = Search.resolve(settings)
    space, data = search.space, search.data
    if dry_run:
        study = existing_study(search)
    else:
        splits = data.load(settings.data_dir)
        tracker = search.tracker()  # an unreachable server fails here
        study, claims = open_study(search)
    done, device = (0 if study is None else finished_trials(study)), _device(settings.device, 0)
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
    # A trial left running, or queued to run again, by a process that stopped: see to it, even with none to run.
    unfinished = study is not None and study.get_trials(deepcopy=False, states=(TrialState.RUNNING,
                                                                                 TrialState.WAITING))
    if dry_run or (remaining == 0 and not unfinished):
        return search, study
    parent_run_id = tracker.start_search(
        params={"space": space.name, "sampler": settings.sampler, "seed": settings.seed, "trials": settings.trials,
                "workers": settings.workers, "objective": objectives_label(search.objectives), **vars(data)},
        tags={"storage": masked(settings.stores.storage), "space_file": str(space.path)},
        objectives=[(key, not o.combined and orientation(o.text) < 0)
                    for key, o in zip(objective_keys(search.objectives), search.objectives)])
    context = multiprocessing.get_context("spawn")  # CUDA and fork do not mix
    workers = [context.Process(target=_work, args=(search, k, parent_run_id), daemon=False)
               for k in range(1, settings.workers)]
    with tracker.ending(parent_run_id):
        try:
            scorer = TrialScorer(search, claims, splits, tracker, parent_run_id, device)
            load_references(search, study, scorer)  # before the workers start, which read them from the study
            for process in workers:
                process.start()
            with tqdm(total=done + remaining, initial=done, desc="trials", unit="trial", smoothing=0,
                      dynamic_ncols=True) as bar:
                _optimize(search, study, scorer, 0, bar)
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
            _log_summary(tracker, parent_run_id, study, search.objectives)
    return search, study


def _log_summary(tracker: Tracker, parent_run_id: str, study: optuna.Study, objectives: tuple[Objective, ...]) -> None:
    """The parent run's summary: the leaderboard as CSV, and the optimisation history (one objective) or the
    Pareto front (several) as a plot, whose trials' runs are tagged ``pareto_front``."""
    import matplotlib.pyplot as plt  # only here: a second or two of import that scoring never needs
    from optuna.visualization.matplotlib import plot_optimization_history, plot_pareto_front

    table = leaderboard(study)
    metrics = {"finished_trials": finished_trials(study)}
    figures = {}
    keys = objective_keys(objectives)
    if len(table):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if len(objectives) == 1:
                # at the last trial's step: the latest value of the per-trial series is the study's best
                tracker.log(parent_run_id, metrics={f"best_{keys[0]}": float(table[keys[0]].iloc[0])},
                            step=study.get_trials(deepcopy=False)[-1].number)
                figures["optimization_history.png"] = plot_optimization_history(study).figure
            else:
                metrics["pareto_front"] = int(table["front"].eq(1).sum())
                tracker.tag([t.user_attrs["mlflow_run_id"] for t in study.best_trials], "pareto_front", "true")
                if len(objectives) <= 3:  # what Optuna plots
                    figures["pareto_front.png"] = plot_pareto_front(study, target_names=keys).figure
    tracker.log_search_summary(parent_run_id, table, figures, metrics)
    for figure in figures.values():
        plt.close(figure)
