"""The search: which architectures to try, in what order, and what is kept about each.

``settings`` says what a search is asked to do and ``stores`` where its results live (both light:
the command line reads them before anything heavy is imported); ``space`` reads search-space files
and proposes architectures; ``study`` runs the Optuna study (sampler, workers, resume) whose
objective scores each proposal; ``cache`` keeps scores by architecture and data; ``tracking`` logs
every trial to MLflow; ``leaderboard`` ranks a study's architectures and ``export`` writes the best
as standalone PyTorch. Import the modules themselves: the package imports nothing, so that its light
modules stay light.

May import: :mod:`nas_cntk.scoring`, :mod:`nas_cntk.kernels`, :mod:`nas_cntk.description`,
:mod:`nas_cntk.data`, :mod:`nas_cntk.errors`, :mod:`nas_cntk.checks`.
"""
