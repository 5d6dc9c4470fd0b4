"""Checks against trained networks: does the kernel's ranking predict the trained ranking?

``settings`` holds the training settings and the kernel scores a ranking uses (light: the command
line reads them before anything heavy is imported); ``training`` trains the finite network of a
description; ``results`` keeps trained results on a
study and pairs them with the kernel scores (``nas-cntk train``); ``correlation`` measures rank
agreement with bootstrap intervals (``nas-cntk correlate``); ``benchmark`` scores a sample of
NAS-Bench-201's table of trained networks (``nas-cntk benchmark nb201``). Import the modules
themselves: the package imports nothing.

May import: :mod:`nas_cntk.search`, :mod:`nas_cntk.scoring`, :mod:`nas_cntk.kernels`,
:mod:`nas_cntk.description`, :mod:`nas_cntk.data`, :mod:`nas_cntk.errors`, :mod:`nas_cntk.checks`.
"""
