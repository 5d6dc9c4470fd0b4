"""Where a study's results live: the Optuna storage and the MLflow store, local under the trials folder
unless given, and opening them. MLflow is imported only when a tracker is made: the leaderboard needs
Optuna alone.

A database URL is checked (its form, its database, its driver installed) before any store is created,
and shown only with its password masked. Workers that start together on an empty database all create
its tables at once: the database lets one creation through and refuses the others, which try again.
"""
from __future__ import annotations

import random
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from nas_cntk.errors import NasCntkError

if TYPE_CHECKING:
    from nas_cntk.search.tracking import Tracker

T = TypeVar("T")
# What to install for a database driver SQLAlchemy cannot import, by the driver's name in the URL
# (postgresql:// is psycopg 3, mysql:// is mysqlclient); any other by its own name.
DRIVER_PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "pymysql": "PyMySQL",
                   "mysqldb": "mysqlclient", "mysqlconnector": "mysql-connector-python"}
# MLflow's tracking URIs that name a database (the others: a server, a folder).
MLFLOW_DATABASES = ("postgresql", "mysql", "sqlite", "mssql")
CREATION_ATTEMPTS = 8


def masked(url: str) -> str:
    """``url`` as it may be shown or stored: its password, in the user part or a ``password=`` query, as ***."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # e.g. an unescaped @ in the password: mask up to the last @
        shown = re.sub(r"^([^:/?#]+://[^:/?#@]*:).*@", r"\1***@", url)
    else:
        shown = url if parsed.password is None else parsed.render_as_string(hide_password=True)
    return re.sub(r"(?i)(password=)[^&]*", r"\1***", shown)


def check_database_url(url: str, option: str) -> None:
    """A database URL that SQLAlchemy can open: a known database, its driver installed; else one line naming
    what to install."""
    shown = masked(url)
    try:
        dialect = make_url(url).get_dialect()
    except NoSuchModuleError:
        raise NasCntkError(f"{option} {shown}: SQLAlchemy knows no database {url.split(':')[0]!r} (postgresql, "
                           "mysql, sqlite, ...)") from None
    except (ArgumentError, ValueError):
        raise NasCntkError(f"{option} {shown}: not a database URL such as postgresql://user:password@host/db") \
            from None
    try:
        dialect.import_dbapi()
    except ImportError as error:
        package = DRIVER_PACKAGES.get(dialect.driver, dialect.driver)
        extra = " (nas-cntk's postgres extra)" if package == "psycopg[binary]" else ""
        raise NasCntkError(f"{option} {shown}: its database driver {dialect.driver} cannot be imported ({error}); "
                           f"pip install '{package}'{extra}") from None


CREATED_AT_ONCE = re.compile(r"already exists|duplicate|unique constraint failed|deadlock", re.I)


def created_safely(create: Callable[[], T]) -> T:
    """``create()``, which creates the tables it needs where they are missing; again, after a moment, when
    another process was creating them at the same time and the database refused this one."""
    for attempt in range(1, CREATION_ATTEMPTS):
        try:
            return create()
        except Exception as error:
            if not _created_at_once(error):
                raise
        time.sleep(random.uniform(0.05, 0.2) * attempt)
    return create()


def _created_at_once(error: BaseException) -> bool:
    """Whether ``error`` (or an error it was raised from) is the database refusing a table, type or row that
    another process created just before: a duplicate (SQLite says "UNIQUE constraint failed"), or a
    deadlock between two creations."""
    chain: list[BaseException] = []
    link: BaseException | None = error
    while link is not None and len(chain) < 10:
        chain.append(link)
        link = link.__cause__ or link.__context__
    return any(isinstance(e, DBAPIError) and CREATED_AT_ONCE.search(str(e.orig)) for e in chain)


def _scheme(url: str) -> str:
    """The kind of store a URL names: ``postgresql`` for ``postgresql+psycopg://...``."""
    return url.split(":", 1)[0].split("+", 1)[0].lower()


def local_tracking_uri(trials_dir: Path) -> str:
    return f"sqlite:///{(trials_dir / 'mlflow.db').resolve()}"


@dataclass(frozen=True)
class Stores:
    """Where results live: the Optuna storage and the MLflow store (local under ``trials_dir`` unless
    given), the score cache (always under ``trials_dir``) and a local MLflow store's artifacts. Bad URLs
    fail as it is made, before any store is created."""

    trials_dir: Path
    storage_url: str | None = None      # e.g. postgresql://host/db; default sqlite:///DIR/optuna.db
    tracking_uri_given: str | None = None  # e.g. http://host:5000; default sqlite:///DIR/mlflow.db

    def __post_init__(self) -> None:
        if self.storage_url is not None:
            check_database_url(self.storage_url, "--storage")
        if self.tracking_uri_given is not None and _scheme(self.tracking_uri_given) in MLFLOW_DATABASES:
            check_database_url(self.tracking_uri_given, "--tracking-uri")

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
        from nas_cntk.search.tracking import Tracker  # MLflow takes seconds to import; most commands need none

        # A tracking server keeps the artifacts where it was told to; a local store keeps them in the trials folder.
        server = _scheme(self.tracking_uri) in ("http", "https")
        return Tracker(self.tracking_uri, experiment, None if server else self.trials_dir / "mlartifacts")

    def study(self, name: str | None = None) -> optuna.Study:
        """A study by name, or the most recently created one."""
        return load_study(self.storage, name)


GRACE_HEARTBEATS = 3  # a running trial whose process has missed this many heartbeats is failed ...
with warnings.catch_warnings():  # heartbeats are marked experimental, unchanged since Optuna 2.8
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    RETRY = RetryHeartbeatStaleTrialCallback(max_retry=3)  # ... and run again with the same choices, up to 3 times


def open_storage(url: str, heartbeat: int | None = None) -> RDBStorage:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # SQLite serialises writers: wait for the lock instead of failing when several workers write at once.
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    try:
        with warnings.catch_warnings():  # as above
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return created_safely(lambda: RDBStorage(
                url, engine_kwargs=engine, heartbeat_interval=heartbeat,
                grace_period=None if heartbeat is None else GRACE_HEARTBEATS * heartbeat,
                heartbeat_stale_trial_callback=RETRY if heartbeat else None))
    except Exception as error:  # SQLAlchemy and driver errors: unreachable server, refused password
        raise NasCntkError(f"Optuna storage {masked(url)}: {str(error).splitlines()[0]}") from None


def load_study(storage: str, study: str | None = None) -> optuna.Study:
    """A study by name, or the most recently created one in ``storage`` (a local store must exist already)."""
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).is_file():
        raise NasCntkError(f"no Optuna store at {storage.removeprefix('sqlite:///')}; run `nas-cntk search` first, "
                           "or point --trials-dir at the folder that holds optuna.db")
    names = optuna.get_all_study_names(open_storage(storage))
    if not names:
        raise NasCntkError(f"no study in {masked(storage)}; run `nas-cntk search` first")
    if study is not None and study not in names:
        raise NasCntkError(f"no study named {study!r} in {masked(storage)} (there: {', '.join(names)})")
    return optuna.load_study(study_name=study or names[-1], storage=open_storage(storage))
