"""Running the installed `nas-cntk` console script as a user runs it, on small searches.

`nas_cntk_command` runs the script beside the test's Python in a subprocess, with NAS_CNTK_DATA_DIR
set when a data folder is given; `one_error_line` checks that a failure is exit code 2 and exactly
one `nas-cntk: error: ...` line on stderr; `wait_for_trials` watches a running search's study until its
trials are as a test wants them (to stop it there); `wait_for_server` waits until a server started in a
subprocess answers. The search spaces and data options here keep searches small.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial

TINY = ["--train-size", "20", "--val-size", "10", "--resolution", "8", "--device", "cpu"]
SMALL_SPACE = """
name: small
stages: [1, 2]
layers: [1]
kernel: [1, 3]
residual: [false, true]
readout: [flatten, gap]
weight_std: 1.4142135623730951
bias_std: [0.0, 0.1]
"""
# Distinct networks that take a second or more each at 40 + 20 images: long enough to be caught running
# (pooled: the plain path; chains take the fused kernel, much faster).
SLOW_SPACE = """
name: slow
stages: [2]
layers: [3, 4]
kernel: {choices: [3, 5], per: layer}
readout: [gap]
"""
# Trials of a few seconds each: long enough for a second worker to start and take some, and for a
# search to be killed while a trial runs.
SLOW = ["--train-size", "40", "--val-size", "20", "--resolution", "16", "--device", "cpu"]


def write_space(directory: Path, text: str) -> Path:
    path = directory / "space.yaml"
    path.write_text(text)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def wait_for_trials(process: subprocess.Popen, storage: str, study: str,
                    ready: Callable[[list[FrozenTrial]], bool], seconds: float = 240) -> None:
    """Until the study (in the Optuna storage at URL ``storage``) has trials for which ``ready`` is true, while
    the search ``process`` still runs."""
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None and time.monotonic() < deadline, "the search ended before it was stopped"
        time.sleep(0.1)
        try:
            trials = optuna.load_study(study_name=study, storage=storage).get_trials()
        except (KeyError, sqlalchemy.exc.OperationalError):  # no storage or no study yet
            continue
        if ready(trials):
            return


def wait_for_server(process: subprocess.Popen, address: str, seconds: float = 120) -> None:
    """Until the server at ``address`` (started as ``process``) answers its /health page."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{address}/health", timeout=5):
                return
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, f"the server at {address} did not start"
            time.sleep(0.5)
