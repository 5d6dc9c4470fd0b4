"""Checks against trained networks: does the kernel's ranking predict the trained ranking?

``settings`` holds the training settings (light: the command line reads them before anything heavy
is imported); ``training`` trains the finite network of a
description; ``results`` keeps trained results on a
study and pairs them with the kernel scores (``nas-cntk train``); ``correlation`` measures rank
agreement with bootstrap intervals (``nas-cntk correlate``); ``benchmark`` scores a sample of
NAS-Bench-201's table of trained networks (``nas-cntk benchmark nb201``), beside the baselines of
``baselines`` (the benchmark's own network at initialisation: NASWOT, synflow); ``search_benchmark``
runs searches over the table's cells and looks up their picks (``nas-cntk search-benchmark nb201``).
The names below are the package's public face, each imported from its module on first use.

May import: :mod:`nas_cntk.search`, :mod:`nas_cntk.scoring`, :mod:`nas_cntk.kernels`,
:mod:`nas_cntk.description`, :mod:`nas_cntk.data`, :mod:`nas_cntk.errors`, :mod:`nas_cntk.checks`, :mod:`nas_cntk.lazy`.
"""
from nas_cntk.lazy import LazyNames

_public = LazyNames(__name__, {
    "PARAMETERIZATIONS": "settings", "SCHEDULES": "settings", "TrainSettings": "settings",
    "run_correlation": "results", "run_training": "results",
    "EXPERIMENT": "benchmark", "BenchmarkSettings": "benchmark", "format_report": "benchmark",
    "run_benchmark": "benchmark",
    "SearchBenchmarkSettings": "search_benchmark", "run_search_benchmark": "search_benchmark",
})
__getattr__, __all__ = _public, _public.names
