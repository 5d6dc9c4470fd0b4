"""The ops an architecture description may use, by name. Adding an op: one file here and one entry below."""
from nas_cntk.ops.avg_pool import AvgPool
from nas_cntk.ops.base import Cross, Fork, Kind, Op, PairContext
from nas_cntk.ops.conv import Conv
from nas_cntk.ops.identity import Identity
from nas_cntk.ops.readout import Readout
from nas_cntk.ops.relu import Relu
from nas_cntk.ops.zero import Zero

OPS: dict[str, type[Op]] = {op.name: op for op in (Conv, Relu, AvgPool)}

__all__ = ["OPS", "AvgPool", "Conv", "Cross", "Fork", "Identity", "Kind", "Op", "PairContext", "Readout", "Relu", "Zero"]
