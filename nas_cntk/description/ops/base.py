"""What every op provides: its finite torch module and its exact infinite-width kernel rules.

As in neural-tangents' ``stax``, one object holds both behaviours of a layer, so adding an op
touches one file. Kernel rules act on pair tensors in the layout of :mod:`nas_cntk.description.grid`,
each twice: on torch tensors (``moments``, ``cross``, ``mean``: the plain path, the reference) and as
the instructions of a fused program (``emit_moments``, ``emit_cross``, ``emit_mean``), side by side,
so that the fused kernels hold no rule of their own; tests hold every fused result to the plain path.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import torch
from torch import nn

from nas_cntk import checks
from nas_cntk.description.grid import AxisMap, Grid
from nas_cntk.errors import ArchitectureError

# A channel count: an int when building a module, a Python expression when exporting its code.
Channels = TypeVar("Channels", int, str)
# A pair tensor: a torch tensor on the plain path, a program's buffer when the rules are emitted.
T = TypeVar("T")


class Kind(Enum):
    """What a node's value is in the infinite-width limit; it decides which exact rules apply."""

    GAUSSIAN = "Gaussian"          # centred Gaussian process: conv outputs, their sums and pools
    NONNEGATIVE = "non-negative"   # ReLU outputs, their sums and pools
    MIXED = "mixed"                # a sum of both: its second moments are exact, a ReLU of it is not

    def __add__(self, other: Kind) -> Kind:
        return self if self is other else Kind.MIXED


@dataclass
class PairContext:
    """What a kernel rule needs besides the incoming moments, for a batch of B image pairs."""

    grid_in: Grid
    grid_out: Grid
    var_a: torch.Tensor      # (B, H, W): variance of the op's input per pixel, first image of each pair
    var_b: torch.Tensor      # the same for the second image
    kind_in: Kind
    trainable: bool = True   # False for the first conv of the paper's `fix` variant


@dataclass
class Cross(Generic[T]):
    """Second moments between a branch point f and a node n on a branch leaving it.

    ``sigma_fn = E[f(x) n(x')]`` and ``sigma_nf = E[n(x) f(x')]`` (NNGP), ``theta_*`` the NTK
    counterparts. ``None`` means exactly zero (and ``theta_*`` is None when the NTK is not needed).
    A sum of the two branches needs them: ``M(f + n) = M(f) + M(n) + sigma_fn + sigma_nf``.
    """

    sigma_fn: T | None
    sigma_nf: T | None
    theta_fn: T | None = None
    theta_nf: T | None = None

    def parts(self) -> tuple[T | None, T | None, T | None, T | None]:
        return self.sigma_fn, self.sigma_nf, self.theta_fn, self.theta_nf

    def map(self, fn: Callable[[T], T]) -> Cross[T]:
        """``fn`` applied to each part that is not exactly zero."""
        return Cross(*(None if t is None else fn(t) for t in self.parts()))

    def swapped(self) -> Cross[T]:
        """The same moments seen from the other node: n's with f."""
        return Cross(self.sigma_nf, self.sigma_fn, self.theta_nf, self.theta_fn)


@dataclass
class Fork:
    """A branch point f as the cross rules see it: its kind and per-pixel means on both sides
    (``(B, H, W)`` tensors, or in a program the handle :meth:`Emitter.outer` reads them by)."""

    kind: Kind
    mean_a: Any
    mean_b: Any


class Emitter(Protocol[T]):
    """What an op's rules may emit into a fused program (:mod:`nas_cntk.kernels.fused.graph.lowering`).

    Its tensors are buffers of pair tensors, each on a grid; None stands for exactly zero. Every
    linear map of the pixel pairs is one :class:`~nas_cntk.description.grid.AxisMap` per axis.
    """

    def zeros(self, grid: Grid) -> T: ...

    def add(self, a: T | None, b: T | None) -> T | None: ...

    def scale(self, t: T | None, factor: float) -> T | None: ...

    def linear(self, t: T, out: Grid, rows: AxisMap | None, cols: AxisMap | None, alpha: float = 1.0,
               beta: float = 0.0) -> T:
        """``alpha A t B^T + beta`` with A = ``rows`` and B = ``cols`` (None: the identity), on ``out``."""
        ...

    def subsample(self, t: T, stride: int, out: Grid) -> T:
        """The pixels a stride keeps, ``stride * I`` in both images (:meth:`Grid.subsample`)."""
        ...

    def relu(self, sigma: T, theta: T | None, variance: int) -> tuple[T, T | None]:
        """The arc-cosine rules of :mod:`.relu`, normalised by the recorded ``variance`` slot."""
        ...

    def sqrt_variance(self, variance: int, out: Grid, factor: float) -> T:
        """One image's per-pixel ``sqrt(factor * v)`` of a recorded variance, on a grid of one shift."""
        ...

    def outer(self, first: Any, second: Any, grid: Grid) -> T:
        """The products of per-pixel means, the first image's at p with the second's at p' (handles as in Fork)."""
        ...


@dataclass
class ProgramContext:
    """:class:`PairContext`'s counterpart when an op writes its rules as a fused program's instructions."""

    program: Emitter
    grid_in: Grid
    grid_out: Grid
    kind_in: Kind
    trainable: bool = True
    variance: int = -1  # the recorded variance of the op's input (what a ReLU normalises by); -1: none
    mean: Any = None    # the handle of this node's per-image mean, as :meth:`Emitter.outer` reads it


class Op:
    """Base class of the ops of an architecture description (see :mod:`nas_cntk.description.architecture`)."""

    name: ClassVar[str]
    keys: ClassVar[frozenset[str]] = frozenset()  # allowed keys besides "op"
    module_classes: ClassVar[tuple[type[nn.Module], ...]] = ()  # nas_cntk classes that module_code uses
    # Fresh zero-mean weights (or a zero output): the output's moments with every other node vanish.
    independent: ClassVar[bool] = False

    @classmethod
    def parse(cls, spec: Mapping[str, Any], path: str, defaults: Mapping[str, float]) -> Op:
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """Canonical description: every value explicit, so equal networks hash equally."""
        return {"op": self.name}

    # --- finite network -----------------------------------------------------------------------
    def module(self, channels: int, width: int) -> nn.Module:
        raise NotImplementedError

    def module_code(self, channels: str, width: str) -> str:
        """The Python expression that builds :meth:`module`, given expressions for its arguments."""
        raise NotImplementedError

    def output_channels(self, channels: Channels, width: Channels) -> Channels:
        return channels

    # --- shapes and kinds (checked before any computation) --------------------------------------
    def output_size(self, size: tuple[int, int], path: str) -> tuple[int, int]:
        return size

    def output_kind(self, kind: Kind, path: str) -> Kind:
        return kind

    def input_grid(self, out: Grid, height: int, width: int) -> Grid:
        """The pixel pairs this op's input must hold to produce the pairs ``out`` holds."""
        return out

    # --- exact kernel rules, on torch tensors (the plain path) ----------------------------------------
    def moments(self, sigma: torch.Tensor, theta: torch.Tensor | None,
                ctx: PairContext) -> tuple[torch.Tensor, torch.Tensor | None]:
        """NNGP and NTK pair tensors of the output from those of the input."""
        raise NotImplementedError

    @property
    def has_cross(self) -> bool:
        """Whether :meth:`cross` is defined: ops between two nodes whose branches a sum joins need it."""
        return True

    def cross(self, cross: Cross | None, ctx: PairContext, fork: Fork) -> Cross | None:
        """Moments with an earlier node f (``fork``) from those with this op's input, or None where zero.
        Never asked of an ``independent`` op: its crosses vanish, and the plan leaves them out."""
        raise NotImplementedError

    def mean(self, mean: torch.Tensor, ctx: PairContext) -> torch.Tensor:
        """Per-pixel mean of the output for single images ``(B, H, W)`` (ctx.var_a: the input's variance)."""
        return mean

    # --- the same rules as a fused program's instructions (ctx.program: where they go) --------------
    def emit_moments(self, sigma: Any, theta: Any | None, ctx: ProgramContext) -> tuple[Any, Any | None]:
        """:meth:`moments`, emitted."""
        raise NotImplementedError

    def emit_cross(self, cross: Cross | None, ctx: ProgramContext, fork: Fork) -> Cross | None:
        """:meth:`cross`, emitted."""
        raise NotImplementedError

    def emit_mean(self, mean: Any | None, ctx: ProgramContext) -> Any | None:
        """:meth:`mean`, emitted (None: exactly zero)."""
        return mean


# --- validation helpers, shared by the ops' parse methods ---------------------------------------
def check_keys(spec: Mapping[str, Any], allowed: frozenset[str], path: str) -> None:
    unknown = sorted(set(spec) - allowed - {"op"})
    if unknown:
        raise ArchitectureError(f"{path}: unknown key {unknown[0]!r} for op {spec['op']!r}; "
                                f"allowed: {', '.join(sorted(allowed)) or 'none'}")


def integer(spec: Mapping[str, Any], key: str, path: str, *, minimum: int, odd: bool = False) -> int:
    if key not in spec:
        raise ArchitectureError(f"{path}.{key}: missing")
    return checks.integer(spec[key], f"{path}.{key}", minimum, odd=odd, error=ArchitectureError)


def std(spec: Mapping[str, Any], key: str, path: str, default: float | None = None) -> float:
    value = spec.get(key, default)
    if value is None:
        raise ArchitectureError(f"{path}.{key}: missing")
    return checks.number(value, f"{path}.{key}", error=ArchitectureError)
