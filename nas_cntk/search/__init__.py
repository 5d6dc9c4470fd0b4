"""The search: which architectures to try, in what order, and what is kept about each.

``settings`` says what a search is asked to do and ``stores`` where its results live (both light:
the command line reads them before anything heavy is imported); ``space`` reads search-space files
and proposes architectures; ``samplers`` says which Optuna sampler proposes (restricted to given
cells for a benchmark); ``objectives`` says what a study maximises; ``study`` opens the Optuna study
(its pruner, resume); ``trials`` scores and records each proposal (the study's objective);
``workers`` runs the study in one process or several; ``estimate`` times a trial beforehand;
``claims`` lets one trial of all workers score an architecture, decided by the storage's database;
``cache`` keeps scores by architecture and data; ``tracking`` logs every trial to MLflow;
``leaderboard`` ranks a study's architectures and ``export`` writes the best as standalone PyTorch.
The names below are the package's public face, each imported from its module on first use, so that
the light modules stay light.

May import: :mod:`nas_cntk.scoring`, :mod:`nas_cntk.kernels`, :mod:`nas_cntk.description`,
:mod:`nas_cntk.data`, :mod:`nas_cntk.errors`, :mod:`nas_cntk.checks`, :mod:`nas_cntk.lazy`.
"""
from nas_cntk.lazy import LazyNames

_public = LazyNames(__name__, {
    "SAMPLERS": "settings", "SearchSettings": "settings",
    "Stores": "stores", "load_study": "stores", "local_tracking_uri": "stores",
    "SearchSpace": "space", "load_space": "space",
    "make_sampler": "samplers", "RestrictedCellSampler": "samplers",
    "Search": "study", "finished_trials": "study", "run_search": "workers",
    "Tracker": "tracking",
    "format_table": "leaderboard", "leaderboard": "leaderboard", "trial_architecture": "leaderboard",
    "run_export": "export",
})
__getattr__, __all__ = _public, _public.names
