"""Bad input through the CLI: each case exits 2 with one ``nas-cntk: error:`` line that names the
problem, before any data is read or store created, and nothing a user can cause escapes as a traceback.
A store URL is shown with its password masked; a missing database driver is named with the package to
install."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from nas_cntk import cli

TABLE = Path(__file__).parent / "data" / "nb201_cifar10_dev.csv"
EXAMPLE = str(Path(__file__).resolve().parents[1] / "search_spaces" / "examples" / "cntk_v_3.json")

CASES = [
    (["search", "--trials", "0"], "--trials: expected an integer >= 1, got 0"),
    (["search", "--workers", "0"], "--workers: expected an integer >= 1, got 0"),
    (["search", "--heartbeat", "-1"], "--heartbeat: expected an integer >= 1, got -1"),
    (["search", "--device", "cuda:99"], "--device cuda:99: no such CUDA device here"),
    (["search", "--space", "no-such-space"], "no-such-space: no such search-space file"),
    (["search", "--objective", "accuracy"], "--objective: unknown score or cost 'accuracy'"),
    (["search", "--objective", "cntk_alignment+"], "--objective: expected a score"),
    (["search", "--storage", "bogus://host/db"], "--storage bogus://host/db: SQLAlchemy knows no database 'bogus'"),
    (["search", "--storage", "optuna.db"], "--storage optuna.db: not a database URL such as postgresql://"),
    (["search", "--storage", "mysql+pymysql://nas:hunter2@db/optuna"],
     "--storage mysql+pymysql://nas:***@db/optuna: its database driver pymysql cannot be imported"),
    (["search", "--tracking-uri", "postgresql+psycopg2://nas:hunter2@db/mlflow"],
     "--tracking-uri postgresql+psycopg2://nas:***@db/mlflow: its database driver psycopg2 cannot be imported"),
    (["leaderboard", "--storage", "mysql+pymysql://nas:hunter2@db/optuna"], "pip install 'PyMySQL'"),
    (["score", "--arch", EXAMPLE, "--device", "gpu"], "--device gpu: not a device name"),
    (["score", "--arch", "missing.json"], "missing.json"),
    (["benchmark", "nb201", "--table", str(TABLE), "--cells-per-stage", "0"],
     "--cells-per-stage: expected an integer >= 1, got 0"),
    (["benchmark", "nb201", "--table", str(TABLE), "--device", "cuda:99"], "--device cuda:99"),
    (["leaderboard"], "no Optuna store at"),
    (["ui"], "no MLflow store there"),
    (["export", "--top", "0"], "--top: expected an integer >= 1, got 0"),
    (["train", "--trial-numbers", "3,x"], "--trial-numbers '3,x': expected trial numbers separated by commas"),
    (["train", "--top", "0"], "--top: expected an integer >= 1, got 0"),
    (["train", "--width", "0"], "--width: expected an integer >= 1, got 0"),
    (["correlate"], "no Optuna store at"),
    (["correlate", "--score", "cntk"], "--score: expected one of cntk_val_accuracy, "),
]


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(a[:3]) for a, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    status = cli.main([*args, *([] if args[0] == "score" else ["--trials-dir", str(tmp_path)])])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert err[0].startswith("nas-cntk: error: ") and message in err[0], err[0]
    assert "hunter2" not in err[0]  # the password of a store's URL
    assert not any(tmp_path.iterdir())  # nothing created: no store in a mistyped --trials-dir


def test_a_missing_postgresql_driver_names_the_package(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed: importing it fails
    status = cli.main(["search", "--storage", "postgresql://nas:hunter2@db/optuna", "--trials-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "postgresql://nas:***@db/optuna" in err[0], err
    assert "pip install 'psycopg[binary]'" in err[0] and "postgres extra" in err[0]
    assert not any(tmp_path.iterdir())
