"""Running the installed `nas-cntk` console script as a user runs it.

`nas_cntk_command` runs the script beside the test's Python in a subprocess, with NAS_CNTK_DATA_DIR
set when a data folder is given; `one_error_line` checks that a failure is exit code 2 and exactly
one `nas-cntk: error: ...` line on stderr; `wait_for_trials` watches a running search's study until its
trials are as a test wants them (to stop it there).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial


def nas_cntk_command(*args: str, data_dir: Path | str | None = None,
                     timeout: float = 300) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("nas-cntk")
    env = dict(os.environ)
    if data_dir is not None:
        env["NAS_CNTK_DATA_DIR"] = str(data_dir)
    return subprocess.run([str(script), *args], capture_output=True, text=True, env=env, timeout=timeout)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nas-cntk: error: "), result.stderr
    return lines[0]


def wait_for_trials(process: subprocess.Popen, trials_dir: Path, study: str,
                    ready: Callable[[list[FrozenTrial]], bool], seconds: float = 240) -> None:
    """Until the study (in ``trials_dir/optuna.db``) has trials for which ``ready`` is true, while the search
    ``process`` still runs."""
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None and time.monotonic() < deadline, "the search ended before it was stopped"
        time.sleep(0.1)
        try:
            trials = optuna.load_study(study_name=study, storage=f"sqlite:///{trials_dir / 'optuna.db'}").get_trials()
        except (KeyError, sqlalchemy.exc.OperationalError):  # no storage or no study yet
            continue
        if ready(trials):
            return
