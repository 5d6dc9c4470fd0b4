"""Scaling out on real servers: one PostgreSQL database, one MLflow tracking server, several workers.

PostgreSQL (a cluster made with initdb in a temporary folder, on a free port, with a password) and
`mlflow server` on a PostgreSQL backend store with an artifact folder are started for this module and
torn down after, as docs/search.md's "Scaling out" says. Where PostgreSQL or its driver is missing, the
tests that need them are skipped, except in CI (NAS_CNTK_CI=1, set by .ci/run, which installs both):
there that is a failure.

On them: processes that start together on an empty database create Optuna's tables, MLflow's and the
claims table once, and of those that claim one architecture at the same instant one wins (and of those
that take over a failed trial's claim, one); four search processes started at once on an empty database,
one killed (-9) midway and restarted, finish every trial once (the killed trial failed and run again with
its choices), score no architecture twice, log one MLflow run per trial, leave nothing running, and the
database password is in none of their output, MLflow tags and params, or Optuna attributes; a refused
password is one line, masked, and leaves no store. Four workers of one search on SQLite do the same.
The example deploy files parse, and run what the docs say.
"""
from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import commands
import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from nas_cntk import cli
from nas_cntk.search.claims import Claims
from nas_cntk.search.stores import masked, open_storage
from nas_cntk.search.study import EXHAUSTED_AFTER, finished_trials
from nas_cntk.search.tracking import Tracker

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = f"pw-{secrets.token_hex(8)}"  # the database's: to be found nowhere a search prints or stores
CI = os.environ.get("NAS_CNTK_CI") == "1"


def unavailable(reason: str) -> NoReturn:
    """Skip a test whose server cannot be had here; in CI, which installs it, fail it."""
    (pytest.fail if CI else pytest.skip)(reason)


def postgres_programs() -> Path:
    """The folder of initdb and pg_ctl: on the PATH, or where Debian's postgresql package puts them."""
    on_path = shutil.which("pg_ctl")
    for folder in [*([Path(on_path).parent] if on_path else []),
                   *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    unavailable("PostgreSQL is not installed (apt-get install postgresql)")


@dataclass(frozen=True, repr=False)
class Postgres:
    server: str  # postgresql://nas:PASSWORD@127.0.0.1:PORT

    def __repr__(self) -> str:  # pytest prints a failing test's fixtures: never the password
        return f"Postgres(server={masked(self.server)!r})"

    def database(self, name: str) -> str:
        """The URL of a new, empty database."""
        import psycopg

        with psycopg.connect(f"{self.server}/postgres", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return f"{self.server}/{name}"


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    programs = postgres_programs()
    if importlib.util.find_spec("psycopg") is None:
        unavailable("psycopg, PostgreSQL's driver, is not installed: pip install -e '.[postgres]'")
    folder = Path(tempfile.mkdtemp(prefix="nas-cntk-postgres-"))  # outside pytest's folders: postgres writes here
    (folder / "password").write_text(PASSWORD)
    as_postgres = []
    if os.geteuid() == 0:  # PostgreSQL does not run as root
        as_postgres = ["runuser", "-u", "postgres", "--"]
        for path in (folder, folder / "password"):
            shutil.chown(path, "postgres")
    data, port = folder / "data", commands.free_port()
    subprocess.run([*as_postgres, programs / "initdb", "-D", data, "-U", "nas", f"--pwfile={folder / 'password'}",
                    "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
    subprocess.run([*as_postgres, programs / "pg_ctl", "-D", data, "-l", folder / "log", "-w", "-o",
                    f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
                    "start"], check=True, capture_output=True)
    try:
        yield Postgres(f"postgresql://nas:{PASSWORD}@127.0.0.1:{port}")
    finally:
        subprocess.run([*as_postgres, programs / "pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder)


@pytest.fixture(scope="module")
def tracking_server(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` on a PostgreSQL backend store, serving artifacts from a folder; its address."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    address = f"http://127.0.0.1:{commands.free_port()}"
    with (folder / "log").open("w") as log:
        server = subprocess.Popen([Path(sys.executable).with_name("mlflow"), "server", "--backend-store-uri",
                                   postgres.database("mlflow"), "--artifacts-destination", folder / "artifacts",
                                   "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--workers", "2"],
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        commands.wait_for_server(server, address)
        yield address
    finally:
        os.killpg(server.pid, signal.SIGKILL)  # the server and its workers
        server.wait(timeout=60)


class Failed(str):
    """What a process of :func:`at_once` raised."""


def at_once(work: Callable[[int, Callable[[], None]], object], processes: int = 4) -> list:
    """``work(k, together)`` in forked processes k = 0, 1, ... that start it at the same instant, and meet
    again wherever it calls ``together()``; their results, by k."""
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(processes, timeout=120), context.Queue()

    def run(k: int) -> None:
        barrier.wait()
        try:
            results.put((k, work(k, barrier.wait)))
        except BaseException as error:  # the test fails on it (as text: a database's errors do not pickle)
            barrier.abort()  # the others fail too, rather than wait for this one
            results.put((k, Failed(repr(error))))
            raise

    started = [context.Process(target=run, args=(k,)) for k in range(processes)]
    for process in started:
        process.start()
    found = dict(results.get(timeout=300) for _ in started)
    for process in started:
        process.join()
    errors = [value for value in found.values() if isinstance(value, Failed)]
    assert not errors, errors
    return [found[k] for k in range(processes)]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_workers_that_start_together_create_the_tables_once_and_one_claim_wins(
        database: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = (f"sqlite:///{tmp_path / 'optuna.db'}" if database == "sqlite"
           else request.getfixturevalue("postgres").database("claims"))

    def claims(storage: optuna.storages.RDBStorage) -> Claims:
        return Claims(storage, storage.get_study_id_from_name("claims"))

    def claim(k: int, together: Callable[[], None]) -> tuple[int, int]:
        storage = open_storage(url)  # Optuna's tables, on an empty database, by all four at once
        number = optuna.create_study(storage=storage, study_name="claims", load_if_exists=True).ask().number
        claimed = claims(storage)  # the claims table, likewise
        together()
        return number, claimed.claim("cell", number)  # all four the same architecture at the same instant

    results = at_once(claim)
    holders = {holder for _, holder in results}
    assert sorted(number for number, _ in results) == [0, 1, 2, 3] and len(holders) == 1
    (winner,) = holders
    optuna.load_study(study_name="claims", storage=url).tell(winner, state=TrialState.FAIL)

    others = [number for number in range(4) if number != winner]

    def take_over(k: int, together: Callable[[], None]) -> int:
        claimed = claims(open_storage(url))
        together()
        return claimed.claim("cell", others[k])  # the three others' trials, at once

    holders = set(at_once(take_over, processes=3))
    assert len(holders) == 1 and holders < set(others)
    assert claims(open_storage(url)).holders() == {"cell": holders.pop()}


def test_workers_that_start_together_create_the_mlflow_store_and_experiment_once(postgres: Postgres) -> None:
    url = postgres.database("mlflow-at-once")
    experiments = at_once(lambda k, together: Tracker(url, "study").experiment_id)
    assert len(set(experiments)) == 1


def check_every_trial_once(study: optuna.Study, client: MlflowClient, trials: int) -> list[FrozenTrial]:
    """A study that workers are done with: nothing running or waiting; each failed trial (its process killed)
    run again with the choices it had made, and its architecture scored: by the retry, or by a trial that
    proposed it first after the failure (the retry then pruned as its repeat); at least ``trials`` finished;
    no architecture scored twice (the repeats pruned: too few to call the space used up); one MLflow run per
    trial. Returns the trials."""
    everything = study.get_trials()
    assert not [t.number for t in everything if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    retries = {RetryHeartbeatStaleTrialCallback.retried_trial_number(t): t for t in everything}
    for failed in (t for t in everything if t.state == TrialState.FAIL):
        retry = retries[failed.number]
        assert retry.params.items() >= failed.params.items()
        scorer = everything[retry.user_attrs.get("repeat_of", retry.number)]
        assert scorer.state == TrialState.COMPLETE and scorer.params == retry.params, (retry, scorer)
    complete = [t for t in everything if t.state == TrialState.COMPLETE]
    assert len({t.user_attrs["arch_hash"] for t in complete}) == len(complete)
    assert sum("repeat_of" in t.user_attrs for t in everything) < EXHAUSTED_AFTER
    assert finished_trials(study) >= trials
    experiment = client.get_experiment_by_name(study.study_name).experiment_id
    runs = client.search_runs([experiment], max_results=1000)
    trial_runs = {r.info.run_id: int(r.data.tags["trial_number"]) for r in runs if "trial_number" in r.data.tags}
    assert sorted(trial_runs.values()) == [t.number for t in everything]
    assert all(trial_runs[t.user_attrs["mlflow_run_id"]] == t.number for t in everything)
    return everything


def search_command(space: Path, study: str, trials_dir: Path, *options: str) -> list[str]:
    return [str(Path(sys.executable).with_name("nas-cntk")), "search", "--space", str(space), "--trials", "8",
            "--study", study, "--heartbeat", "1", "--trials-dir", str(trials_dir), *options]


@pytest.mark.integration
def test_four_workers_at_once_on_postgresql_one_killed_and_restarted(
        postgres: Postgres, tracking_server: str, cifar_dir: Path, tmp_path: Path) -> None:
    storage, space = postgres.database("four"), commands.write_space(tmp_path, commands.SMALL_SPACE)
    env = {**os.environ, "NAS_CNTK_DATA_DIR": str(cifar_dir), "PYTHONUNBUFFERED": "1"}
    outputs: list[Path] = []

    def start(k: int) -> subprocess.Popen:  # a worker on machine k: its own trials folder (score cache)
        outputs.append(tmp_path / f"output{len(outputs)}")
        with outputs[-1].open("w") as output:
            return subprocess.Popen(search_command(space, "four", tmp_path / f"machine{k}", *commands.TINY,
                                                   "--storage", storage, "--tracking-uri", tracking_server),
                                    stdout=output, stderr=subprocess.STDOUT, env=env)

    workers = [start(k) for k in range(4)]
    names = {f"{socket.gethostname()}:{worker.pid}": k for k, worker in enumerate(workers)}
    running: list[int] = []

    def one_running_a_trial(trials: list[FrozenTrial]) -> bool:
        running.extend(names[t.user_attrs["worker"]] for t in trials if t.state == TrialState.RUNNING
                       and t.user_attrs.get("worker") in names and "mlflow_run_id" in t.user_attrs)
        return bool(running)

    try:
        # Once one worker has opened the study (all its tables made by the workers, none by this test), kill
        # the first seen running a trial (its MLflow run started), and start it again.
        while not any("study four:" in output.read_text() for output in outputs):
            assert all(worker.poll() is None for worker in workers), [o.read_text() for o in outputs]
            time.sleep(0.1)
        commands.wait_for_trials(workers[0], storage, "four", one_running_a_trial)
        workers[running[0]].kill()
        workers[running[0]].wait()
        workers[running[0]] = start(running[0])
        for worker in workers:
            worker.wait(timeout=600)
    finally:
        for worker in workers:
            worker.kill()
    texts = [o.read_text() for o in outputs]
    assert [w.returncode for w in workers] == [0] * 4, texts

    study = optuna.load_study(study_name="four", storage=storage)
    client = MlflowClient(tracking_server)
    trials = check_every_trial_once(study, client, 8)
    assert any(t.state == TrialState.FAIL for t in trials)  # the killed worker's, run again
    assert len({t.user_attrs["worker"] for t in trials if t.state == TrialState.COMPLETE}) >= 2
    runs = client.search_runs([client.get_experiment_by_name("four").experiment_id], max_results=1000)
    searches = [r for r in runs if "trial_number" not in r.data.tags]  # the restarted worker's, if it had work
    assert len(searches) in (4, 5) and {r.data.tags["storage"] for r in searches} == {masked(storage)}
    scored = next(t for t in trials if t.state == TrialState.COMPLETE)
    assert [a.path for a in client.list_artifacts(scored.user_attrs["mlflow_run_id"])] == ["architecture.json"]
    # The password: in no output, MLflow run (tags, params), experiment tag, or study and trial attribute.
    stored = [json.dumps([r.data.tags, r.data.params]) for r in runs]
    optuna_storage = open_storage(storage)
    stored += [json.dumps(client.get_experiment_by_name("four").tags), json.dumps(study.user_attrs),
               json.dumps(optuna_storage.get_study_system_attrs(optuna_storage.get_study_id_from_name("four"))),
               *(json.dumps([t.user_attrs, t.system_attrs]) for t in trials)]
    assert not [text for text in texts + stored if PASSWORD in text]
    assert all("View experiment at" not in text for text in texts)  # MLflow's own lines, between ours


@pytest.mark.integration
def test_a_refused_password_is_one_masked_line_and_leaves_no_store(
        postgres: Postgres, cifar_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url = postgres.database("refused").replace(PASSWORD, "not-the-password")
    status = cli.main(["search", "--storage", url, *commands.TINY, "--data-dir", str(cifar_dir), "--trials-dir",
                       str(tmp_path / "trials")])
    out, err = capsys.readouterr()
    err = err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "password authentication failed" in err[0], err
    assert f"Optuna storage {masked(url)}:" in err[0] and "not-the-password" not in err[0] + out
    assert not (tmp_path / "trials").exists()  # no MLflow store, no cache


@pytest.mark.integration
def test_four_workers_of_one_search_on_sqlite(cifar_dir: Path, tmp_path: Path) -> None:
    trials_dir = tmp_path / "trials"
    # Trials of seconds: the workers' processes start (seconds of imports) before the first has run them all.
    space = commands.write_space(tmp_path, commands.SLOW_SPACE)
    result = commands.nas_cntk_command(*search_command(space, "four", trials_dir, *commands.SLOW, "--workers", "4")[1:],
                                       data_dir=cifar_dir, timeout=600)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="four", storage=f"sqlite:///{trials_dir / 'optuna.db'}")
    trials = check_every_trial_once(study, MlflowClient(f"sqlite:///{trials_dir / 'mlflow.db'}"), 8)
    assert len({t.user_attrs["worker"] for t in trials if t.state == TrialState.COMPLETE}) >= 2


def test_deploy_examples_parse_and_run_the_search_the_docs_describe() -> None:
    jobs = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes-job.yaml").read_text()))
    job = next(j for j in jobs if j["kind"] == "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert job["spec"]["parallelism"] >= 2 and container["command"][:2] == ["nas-cntk", "search"]
    assert {"--storage", "--tracking-uri"} <= set(container["args"])
    slurm = ROOT / "deploy" / "slurm-array.sh"
    check = subprocess.run(["bash", "-n", str(slurm)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "#SBATCH --array=" in slurm.read_text() and "nas-cntk search --storage" in slurm.read_text()
    docs = (ROOT / "docs" / "search.md").read_text()
    section = docs[docs.index("## Scaling out"):]
    assert "mlflow server --backend-store-uri postgresql://" in section and "--artifacts-destination" in section
    assert "nas-cntk search --storage postgresql://" in section and "--tracking-uri http://" in section
    assert "deploy/kubernetes-job.yaml" in section and "deploy/slurm-array.sh" in section
