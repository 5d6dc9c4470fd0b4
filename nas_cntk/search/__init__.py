"""The search: which architectures to try, in what order, and what is kept about each.

``space`` reads search-space files and proposes architectures; ``study`` runs the Optuna study
(storage, sampler, workers, resume) whose objective scores each proposal; ``cache`` keeps scores by
architecture and data; ``tracking`` logs every trial to MLflow; ``leaderboard`` ranks a study's
architectures and ``export`` writes the best as standalone PyTorch.

May import: :mod:`nas_cntk.scoring`, :mod:`nas_cntk.kernels`, :mod:`nas_cntk.description`,
:mod:`nas_cntk.data`, :mod:`nas_cntk.errors`, :mod:`nas_cntk.checks`.
"""
from nas_cntk.search.leaderboard import format_table, leaderboard, trial_architecture
from nas_cntk.search.space import SearchSpace, load_space
from nas_cntk.search.study import SAMPLERS, Search, SearchSettings, Stores, finished_trials, load_study, run_search
from nas_cntk.search.tracking import Tracker, local_tracking_uri

__all__ = ["SAMPLERS", "Search", "SearchSettings", "SearchSpace", "Stores", "Tracker", "finished_trials",
           "format_table", "leaderboard", "load_space", "load_study", "local_tracking_uri", "run_search",
           "trial_architecture"]
