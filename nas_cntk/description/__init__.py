"""The description vocabulary: what a network is, before any kernel is computed.

``ops`` holds each op's finite torch module and its exact kernel rule side by side, acting on the
pixel-pair layout of ``grid``; ``architecture`` parses, validates and hashes a description into a
graph of ops and builds its finite network; ``nasbench201`` spells NAS-Bench-201's cell genotypes
and macro network as descriptions.

May import: :mod:`nas_cntk.errors`, :mod:`nas_cntk.checks`.
"""
from nas_cntk.description.architecture import Architecture, load, nasbench201_network, parse

__all__ = ["Architecture", "load", "nasbench201_network", "parse"]
