"""Checks against trained networks: does the kernel's ranking predict the trained ranking?

``training`` trains the finite network of a description; ``results`` keeps trained results on a
study and pairs them with the kernel scores (``nas-cntk train``); ``correlation`` measures rank
agreement with bootstrap intervals (``nas-cntk correlate``); ``benchmark`` scores a sample of
NAS-Bench-201's table of trained networks (``nas-cntk benchmark nb201``).

May import: :mod:`nas_cntk.search`, :mod:`nas_cntk.scoring`, :mod:`nas_cntk.kernels`,
:mod:`nas_cntk.description`, :mod:`nas_cntk.data`, :mod:`nas_cntk.errors`, :mod:`nas_cntk.checks`.
"""
from nas_cntk.trained.benchmark import EXPERIMENT, BenchmarkSettings, format_report, run_benchmark
from nas_cntk.trained.results import SCORES, run_correlation, run_training
from nas_cntk.trained.training import PARAMETERIZATIONS, SCHEDULES, TrainSettings

__all__ = ["EXPERIMENT", "PARAMETERIZATIONS", "SCHEDULES", "SCORES", "BenchmarkSettings", "TrainSettings",
           "format_report", "run_benchmark", "run_correlation", "run_training"]
