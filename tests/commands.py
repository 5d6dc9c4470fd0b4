"""Running the installed `nas-cntk` console script as a user runs it.

`nas_cntk_command` runs the script beside the test's Python in a subprocess, with NAS_CNTK_DATA_DIR
set when a data folder is given; `one_error_line` checks that a failure is exit code 2 and exactly
one `nas-cntk: error: ...` line on stderr.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


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
