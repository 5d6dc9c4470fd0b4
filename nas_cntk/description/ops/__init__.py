"""The ops an architecture description may use, by name. Adding an op: one file here and one entry below.

Each op holds its finite torch module and its exact kernel rules side by side (:mod:`.base`).
"""
from nas_cntk.description.ops.avg_pool import AvgPool
from nas_cntk.description.ops.base import Cross, Emitter, Fork, Kind, Op, PairContext, ProgramContext
from nas_cntk.description.ops.conv import Conv
from nas_cntk.description.ops.dilated_conv import DilatedConv
from nas_cntk.description.ops.identity import Identity
from nas_cntk.description.ops.readout import Readout
from nas_cntk.description.ops.relu import Relu
from nas_cntk.description.ops.zero import Zero

OPS: dict[str, type[Op]] = {op.name: op for op in (Conv, DilatedConv, Relu, AvgPool)}

__all__ = ["OPS", "AvgPool", "Conv", "Cross", "DilatedConv", "Emitter", "Fork", "Identity", "Kind", "Op", "PairContext",
           "ProgramContext", "Readout", "Relu", "Zero"]
